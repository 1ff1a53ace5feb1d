"""Blob store over fsspec: a local directory by default, any fsspec URL (s3://, ...) by config.

Blob URIs stored in the database are *relative keys* (``videos/ab/abcd.../file.mp4``), so the
store can move (a new mount point, a bucket) without rewriting rows.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs

from tagloop.config import private_dir
from tagloop.errors import NotFound, PayloadTooLarge, TransientError

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StreamedBlob:
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    modified: float | None  # POSIX seconds; None when the store does not say


class BlobStore:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        fs, root = url_to_fs(self.url)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/")
        if self._is_local:
            # A missing root (and data dir above it) is created owner-only (0700).
            private_dir(Path(self.root))

    @property
    def _is_local(self) -> bool:
        return "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def path(self, key: str) -> str:
        """The store's own path of a key (a local path for the default store)."""
        if key.startswith("/") or ".." in key.split("/"):
            raise NotFound(f"invalid blob key {key!r}", code="blob_not_found")
        return f"{self.root}/{key}"

    def local_path(self, key: str) -> str | None:
        """A filesystem path PyAV can open directly, or None for remote stores."""
        return self.path(key) if self._is_local else None

    def put_bytes(self, key: str, data: bytes) -> str:
        """Write atomically (temp + move) so a reader never sees half a blob."""
        target = self.path(key)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        with self._wrap_io():
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, target)
        return key

    def put_stream(
        self, key: str, stream: BinaryIO | IO[bytes], *, max_bytes: int | None = None
    ) -> StreamedBlob:
        """Copy a stream in chunks, hashing as it goes; never holds the whole stream.

        Raises PayloadTooLarge (and removes the partial blob) past ``max_bytes``.
        """
        target = self.path(key)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            with self._wrap_io(), self.fs.open(target, "wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(
                            f"upload is larger than the limit of {max_bytes} bytes",
                            code="upload_too_large",
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            self.delete(key)
            raise
        return StreamedBlob(key=key, sha256=digest.hexdigest(), size=size)

    def move(self, src: str, dst: str) -> str:
        target = self.path(dst)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with self._wrap_io():
            self.fs.mv(self.path(src), target)
        return dst

    def get_bytes(self, key: str) -> bytes:
        with self._wrap_io():
            data: bytes = self.fs.cat_file(self.path(key))
            return data

    @contextmanager
    def open(self, key: str) -> Iterator[Any]:
        """A seekable binary file object for reading."""
        if not self.exists(key):
            raise NotFound(f"blob {key!r} does not exist", code="blob_not_found")
        with self._wrap_io(), self.fs.open(self.path(key), "rb") as f:
            yield f

    def size(self, key: str) -> int:
        with self._wrap_io():
            return int(self.fs.size(self.path(key)))

    def exists(self, key: str) -> bool:
        with self._wrap_io():
            return bool(self.fs.exists(self.path(key)))

    def delete(self, key: str) -> None:
        path = self.path(key)
        with self._wrap_io():
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    def delete_many(self, keys: Iterable[str | None]) -> None:
        for key in keys:
            if key:
                self.delete(key)

    def iter_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        """Every blob under ``prefix`` (a key folder such as ``videos``), one directory
        listing at a time, so memory follows the largest folder, not the whole store."""
        base = self.path(prefix.strip("/"))
        with self._wrap_io():
            for _root, _dirs, files in self.fs.walk(base, detail=True):
                for info in files.values():
                    name = str(info["name"])
                    if not name.startswith(self.root + "/"):
                        continue
                    yield BlobInfo(
                        key=name[len(self.root) + 1 :],
                        size=int(info.get("size") or 0),
                        modified=_modified_of(info),
                    )

    def modified(self, key: str) -> float | None:
        """When a blob was last written (POSIX seconds), None when the store does not say."""
        with self._wrap_io():
            return _modified_of(self.fs.info(self.path(key)))

    def copy_from_local(self, key: str, local_path: str) -> StreamedBlob:
        with open(local_path, "rb") as src:
            return self.put_stream(key, src)

    @contextmanager
    def _wrap_io(self) -> Iterator[None]:
        # FileNotFoundError is a caller's mistake; other OS errors are worth a retry.
        try:
            yield
        except FileNotFoundError as exc:
            raise NotFound(f"blob not found: {exc}", code="blob_not_found") from exc
        except (ConnectionError, TimeoutError) as exc:
            raise TransientError(f"blob store unavailable: {exc}", code="blob_store") from exc


def _modified_of(info: dict[str, Any]) -> float | None:
    # Local files say "mtime", S3 "LastModified", GCS "updated", memory:// "created".
    for field in ("mtime", "LastModified", "updated", "created"):
        value = info.get(field)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def video_key(sha256: str, filename: str) -> str:
    """Where an ingested video lives: content-addressed so the same bytes land once."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[-120:] or "video"
    return f"videos/{sha256[:2]}/{sha256}/{safe}"


def clip_key(video_id: int, index: int, kind: str) -> str:
    """Deterministic per-clip keys: a redelivered task overwrites instead of duplicating."""
    ext = {"tensor": "pt", "preview": "mp4", "thumbnail": "jpg"}[kind]
    return f"clips/{video_id}/{index:05d}.{ext}"


def upload_key() -> str:
    return f"incoming/{uuid.uuid4().hex}"
