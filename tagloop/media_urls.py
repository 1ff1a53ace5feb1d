"""Short-lived signed clip media URLs, for tools that cannot send a bearer token (Label Studio
fetching ``data.video``).

``/api/v1/clips/{id}/media?expires=<unix seconds>&sig=<hex>`` where ``sig`` is
HMAC-SHA256(key, ``"clip-media:<id>:<expires>"``). The message names what it grants (one
clip's media, not its thumbnail or anything else) and until when; the key never leaves the
server. The key is ``Settings.media_url_secret`` or, when that is empty, a random one made
once and kept in ``<data_dir>/media_url.secret`` (0600), so every API process that shares the
data dir signs and checks alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time

from tagloop.config import PRIVATE_FILE_MODE, Settings, ensure_data_dir
from tagloop.errors import Forbidden, TagloopError


class InvalidSignature(Forbidden):
    code = "invalid_signature"


class SignatureExpired(Forbidden):
    code = "signature_expired"


class MediaUrlKeyError(TagloopError):
    code = "media_url_key_invalid"
    http_status = 500


def media_signature(key: bytes, clip_id: int, expires: int) -> str:
    return hmac.new(key, f"clip-media:{clip_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def signed_media_query(key: bytes, clip_id: int, *, expires: int) -> str:
    """The query string that opens ``clip_id``'s media until ``expires`` (unix seconds)."""
    return f"expires={expires}&sig={media_signature(key, clip_id, expires)}"


def verify_media_signature(
    key: bytes, clip_id: int, expires: str | None, sig: str | None, *, now: float | None = None
) -> None:
    """Raise ``invalid_signature`` (403) unless ``sig`` signs ``clip_id`` and ``expires``, and
    ``signature_expired`` (403) once ``expires`` has passed."""
    if not expires or not sig:
        raise InvalidSignature("a signed media URL needs both 'expires' and 'sig'")
    try:
        when = int(expires)
    except ValueError:
        raise InvalidSignature("'expires' is not a unix time") from None
    expected = media_signature(key, clip_id, when)
    if not sig.isascii() or not hmac.compare_digest(expected, sig.lower()):
        raise InvalidSignature("the media URL's signature does not match")
    if when < (time.time() if now is None else now):
        raise SignatureExpired("this signed media URL has expired; export again for a new one")


def media_url_key(settings: Settings) -> bytes:
    """The signing key: the configured secret, else the data dir's (made on first use)."""
    if settings.media_url_secret:
        return settings.media_url_secret.encode()
    path = settings.media_url_secret_path
    if not path.exists():
        ensure_data_dir(settings)
        # Written in full under a private name, then linked into place: link() fails when
        # another process was first, and nobody ever reads a half-written key.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text().strip()
    if not key:
        raise MediaUrlKeyError(f"{path} is empty; delete it to make a new key")
    return key.encode()
