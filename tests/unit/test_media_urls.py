"""Signed media URLs: the signature, its checks, and one key per data dir."""

from __future__ import annotations

import stat
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from tagloop.config import Settings
from tagloop.media_urls import (
    InvalidSignature,
    SignatureExpired,
    media_signature,
    media_url_key,
    signed_media_query,
    verify_media_signature,
)

KEY = b"k" * 32


def test_a_signature_opens_one_clip_until_it_expires() -> None:
    query = signed_media_query(KEY, 7, expires=1_000)
    expires, sig = (part.split("=", 1)[1] for part in query.split("&"))
    verify_media_signature(KEY, 7, expires, sig, now=999)
    verify_media_signature(KEY, 7, expires, sig.upper(), now=1_000)
    with pytest.raises(SignatureExpired) as exc:
        verify_media_signature(KEY, 7, expires, sig, now=1_001)
    assert exc.value.http_status == 403 and exc.value.code == "signature_expired"
    for clip, when, s, key in [
        (8, expires, sig, KEY),  # another clip
        (7, "1001", sig, KEY),  # a stretched expiry
        (7, expires, sig[:-2] + "00", KEY),  # tampered
        (7, expires, sig, b"other key"),
        (7, expires, "é" * 64, KEY),
        (7, "", sig, KEY),
        (7, expires, None, KEY),
        (7, "1e3", sig, KEY),
    ]:
        with pytest.raises(InvalidSignature):
            verify_media_signature(key, clip, when, s, now=0)
    assert media_signature(KEY, 7, 1_000) != media_signature(KEY, 70, 100)


def _key_of(data_dir: str) -> bytes:
    return media_url_key(Settings(data_dir=Path(data_dir)))


def test_the_data_dir_key_is_made_once_private_and_shared(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(_key_of, [str(data)] * 16))
    with ProcessPoolExecutor(4) as procs:
        keys |= set(procs.map(_key_of, [str(data)] * 8))
    assert len(keys) == 1 and len(next(iter(keys))) == 64
    path = Settings(data_dir=data).media_url_secret_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert [p.name for p in data.iterdir()] == [path.name]  # no temp files left behind


def test_a_configured_secret_wins(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", media_url_secret="s3cret")
    assert media_url_key(settings) == b"s3cret"
    assert not settings.data_dir.exists()
