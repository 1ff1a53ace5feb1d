"""The blob sweep: remove blobs that no row references (run by beat and ``tagloop sweep``).

Orphans come from work that stopped between writing a blob and committing its row (a killed
upload, worker or training round), from a row deleted while its blobs could not be, and from
temp files of interrupted writes. Every writer stores its blob *before* the row that points
at it commits, so a blob younger than ``older_than_s`` may still be about to be referenced:
those are left alone. Only the prefixes tagloop writes are swept; anything else in the store
is never touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice

from tagloop.config import Settings
from tagloop.db.blob_reference import referenced_keys
from tagloop.db.engine import session_scope
from tagloop.errors import NotFound
from tagloop.storage import BlobInfo, BlobStore

log = logging.getLogger(__name__)

# Where tagloop writes: uploads in flight, videos, clip tensors/previews/thumbnails, scoring
# embeddings, model artifacts (see storage.py, pipeline/scoring.py, pipeline/training.py).
SWEPT_PREFIXES = ("incoming", "videos", "clips", "embeddings", "models")
CHECK_CHUNK = 500  # keys per reference lookup: bounds memory and the size of IN (...) lists
SAMPLE_SIZE = 20


@dataclass(frozen=True)
class SweepReport:
    scanned: int  # blobs listed under the swept prefixes
    too_young: int  # left alone for being younger than the minimum age
    removed: int  # orphans removed (or, on a dry run, that would be)
    removed_bytes: int
    dry_run: bool
    sample: tuple[str, ...] = field(default=())  # the first few removed keys

    def describe(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"blob sweep: scanned {self.scanned}, {verb} {self.removed} orphans "
            f"({self.removed_bytes} bytes), left {self.too_young} too young to judge"
        )


def sweep_orphan_blobs(
    *, settings: Settings, older_than_s: float, dry_run: bool = False, now: float | None = None
) -> SweepReport:
    """Delete blobs older than ``older_than_s`` that no database row references.

    Streams the listing and checks references ``CHECK_CHUNK`` keys at a time, so memory stays
    bounded however many blobs the store holds. A blob whose age the store does not report is
    kept. Just before deleting, the blob's age is read again: one rewritten since the listing
    (the same video uploaded again, say) is kept.
    """
    store = BlobStore(settings.blob_url)
    cutoff = (time.time() if now is None else now) - older_than_s
    scanned = too_young = removed = removed_bytes = 0
    sample: list[str] = []
    listing = chain.from_iterable(store.iter_blobs(prefix) for prefix in SWEPT_PREFIXES)
    for chunk in _chunks(listing, CHECK_CHUNK):
        scanned += len(chunk)
        old = [b for b in chunk if b.modified is not None and b.modified <= cutoff]
        too_young += len(chunk) - len(old)
        if not old:
            continue
        with session_scope(settings.database_url) as session:
            used = referenced_keys(session, [b.key for b in old])
        for blob in old:
            if blob.key in used or not (dry_run or _delete_if_unchanged(store, blob)):
                continue
            removed += 1
            removed_bytes += blob.size
            if len(sample) < SAMPLE_SIZE:
                sample.append(blob.key)
    report = SweepReport(
        scanned=scanned,
        too_young=too_young,
        removed=removed,
        removed_bytes=removed_bytes,
        dry_run=dry_run,
        sample=tuple(sample),
    )
    log.info("%s; e.g. %s", report.describe(), list(report.sample[:5]))
    return report


def _delete_if_unchanged(store: BlobStore, blob: BlobInfo) -> bool:
    try:
        if store.modified(blob.key) != blob.modified:
            return False
        store.delete(blob.key)
    except NotFound:  # gone already (a concurrent sweep or delete)
        return False
    return True


def _chunks(items: Iterable[BlobInfo], size: int) -> Iterator[list[BlobInfo]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
