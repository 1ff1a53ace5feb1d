import hashlib
import io
from pathlib import Path

import pytest

from tagloop.errors import NotFound, PayloadTooLarge
from tagloop.storage import BlobStore, clip_key, video_key


def test_put_stream_hashes_and_roundtrips(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = b"x" * (3 * 1024 * 1024 + 17)  # several chunks
    blob = store.put_stream("a/b.bin", io.BytesIO(data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    assert store.get_bytes("a/b.bin") == data
    with store.open("a/b.bin") as f:
        f.seek(10)
        assert f.read(5) == data[10:15]


def test_size_limit_removes_partial_blob(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    with pytest.raises(PayloadTooLarge) as err:
        store.put_stream("big.bin", io.BytesIO(b"y" * 5000), max_bytes=4000)
    assert err.value.code == "upload_too_large"
    assert not store.exists("big.bin")


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    for key in ("../etc/passwd", "/etc/passwd", "a/../../x"):
        with pytest.raises(NotFound):
            store.path(key)


def test_missing_blob_is_not_found(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    with pytest.raises(NotFound), store.open("nope"):
        pass


def test_memory_filesystem_by_url() -> None:
    store = BlobStore("memory://tagloop-test")
    store.put_bytes("k/v.bin", b"hello")
    assert store.get_bytes("k/v.bin") == b"hello"
    assert store.local_path("k/v.bin") is None
    store.delete("k/v.bin")
    assert not store.exists("k/v.bin")


def test_key_shapes() -> None:
    sha = "ab" * 32
    assert video_key(sha, "my clip (1).mp4") == f"videos/ab/{sha}/my_clip__1_.mp4"
    assert clip_key(3, 7, "preview") == "clips/3/00007.mp4"
