"""API tokens: random, shown once, stored only as a SHA-256 hash.

Tokens carry 256 bits of randomness, so a fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagloop.db.labels import check_annotator
from tagloop.db.models import ApiToken, utcnow
from tagloop.errors import InvalidInput, NotFound

ROLES = ("admin", "annotator")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, name: str, role: str) -> str:
    """Store a new token and return its plaintext (the only time it exists)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    if not name.strip():
        raise InvalidInput("a token needs a name", code="invalid_name")
    try:
        # The name is the annotator of every label the token stores: the label check's rules.
        check_annotator(name)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, code="invalid_name") from exc
    token = "tl_" + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=hash_token(token), name=name.strip(), role=role))
    session.flush()
    return token


def authenticate(session: Session, token: str) -> ApiToken | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row


@dataclass(frozen=True)
class Identity:
    """Who a valid token speaks for."""

    name: str
    role: str


class TokenCache:
    """Tokens that authenticated in the last ``ttl_s`` seconds, so the API does not look the
    same token up on every request of an annotator.

    A revocation (``tagloop token revoke`` runs in another process, which cannot tell this
    one) takes effect within ``ttl_s``. Unknown tokens are never cached: a flood of made-up
    tokens costs lookups, not memory. ``ttl_s = 0`` turns the cache off.
    """

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Identity]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Identity | None:
        """The token's identity while its cache entry is fresh, else None; no database."""
        with self._lock:
            hit = self._entries.get(hash_token(token))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def lookup(self, session: Session, token: str) -> Identity | None:
        """The token's identity: from the cache while fresh, else from the database."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        key = hash_token(token)
        now = time.monotonic()
        row = authenticate(session, token)
        if row is None:
            with self._lock:
                self._entries.pop(key, None)
            return None
        identity = Identity(name=row.name, role=row.role)
        if self.ttl_s > 0:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()  # rare; every entry is one lookup away
                self._entries[key] = (now + self.ttl_s, identity)
        return identity


def revoke_token(session: Session, *, name: str) -> int:
    rows = list(
        session.scalars(
            select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        )
    )
    if not rows:
        raise NotFound(f"no active token named {name!r}", code="token_not_found")
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)
