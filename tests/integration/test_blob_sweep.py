"""The blob sweep on SQLite and PostgreSQL: only unreferenced blobs older than the minimum age
go, the report says what went, a dry run removes nothing; the CLI prints the report, and beat
runs the sweep on a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tagloop.config import Settings
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Clip, ModelVersion, Prediction, Video
from tagloop.pipeline.sweep import _delete_if_unchanged, sweep_orphan_blobs
from tagloop.storage import BlobStore, clip_key, video_key
from tagloop.task_names import QUEUE_MEDIA, SWEEP_BLOBS, TASK_QUEUES
from tests.conftest import REPO
from tests.integration.stack_helpers import running_stack, stack_settings, wait_until

MIN_AGE = 3600.0
SHA = "ab" * 32
ORPHAN_SHA = "cd" * 32


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI and the stack read TAGLOOP_* from the environment they are given only.
    for name in list(os.environ):
        if name.startswith("TAGLOOP_"):
            monkeypatch.delenv(name)


def put(store: BlobStore, key: str, data: bytes, *, age_s: float) -> None:
    store.put_bytes(key, data)
    then = time.time() - age_s
    os.utime(store.path(key), (then, then))


def seed(settings: Settings) -> tuple[BlobStore, set[str], dict[str, int], set[str]]:
    """Rows with their blobs, plus orphans old and young. Returns the store, the referenced
    keys, the old orphans (key -> size) and the young orphans."""
    store = BlobStore(settings.blob_url)
    upgrade_database(settings.database_url)
    with session_scope(settings.database_url) as s:
        video = Video(sha256=SHA, filename="a.mp4", blob_uri=video_key(SHA, "a.mp4"))
        s.add(video)
        s.flush()
        clips = [Clip(video_id=video.id, index=i, start_s=i, end_s=i + 1) for i in range(2)]
        for clip in clips:
            clip.tensor_uri = clip_key(video.id, clip.index, "tensor")
            clip.preview_uri = clip_key(video.id, clip.index, "preview")
            clip.thumbnail_uri = clip_key(video.id, clip.index, "thumbnail")
        version = ModelVersion(status="promoted", artifact_uri="models/000001/model.pt")
        s.add_all([*clips, version])
        s.flush()
        # A scoring page named after its first clip, whose first clip has no prediction
        # (scored by a concurrent run): the second row still references the page.
        page = f"embeddings/{version.id:06d}/{clips[0].id:012d}.npy"
        s.add(
            Prediction(clip_id=clips[1].id, model_version_id=version.id, embedding_uri=f"{page}#1")
        )
        video_id, version_id = video.id, version.id
        referenced = {
            video.blob_uri,
            *(uri for c in clips for uri in (c.tensor_uri, c.preview_uri, c.thumbnail_uri) if uri),
            "models/000001/model.pt",
            page,
        }
    for key in referenced:
        put(store, key, b"r" * 10, age_s=2 * MIN_AGE)
    old_orphans = {
        video_key(ORPHAN_SHA, "b.mp4"): 11,  # a losing upload of the old code
        "incoming/0123456789abcdef": 12,  # a killed upload
        clip_key(video_id, 2, "tensor"): 13,  # a clip row never committed
        clip_key(999, 0, "preview"): 14,  # a deleted video's clip
        f"{clip_key(video_id, 0, 'tensor')}.tmp-0a1b": 15,  # an interrupted write
        f"embeddings/{version_id:06d}/{999999:012d}.npy": 16,  # a page without predictions
        f"{page}.tmp-ffff": 17,
        "models/000002/model.pt": 18,  # a round that died before its row was updated
    }
    for key, size in old_orphans.items():
        put(store, key, b"o" * size, age_s=2 * MIN_AGE)
    young = {"incoming/in-flight", video_key("ef" * 32, "c.mp4"), clip_key(video_id, 5, "tensor")}
    for key in young:
        put(store, key, b"y", age_s=10)
    # Outside the prefixes tagloop writes: never touched.
    put(store, "exports/report.csv", b"x", age_s=2 * MIN_AGE)
    return store, referenced, old_orphans, young


def all_keys(store: BlobStore) -> set[str]:
    root = Path(store.root)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_sweep_removes_only_old_orphans(tmp_path: Path, db_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
    store, referenced, orphans, young = seed(settings)
    before = all_keys(store)
    assert before == referenced | set(orphans) | young | {"exports/report.csv"}
    n_listed = len(before) - 1  # exports/ is not listed

    dry = sweep_orphan_blobs(settings=settings, older_than_s=MIN_AGE, dry_run=True)
    assert all_keys(store) == before
    assert dry.dry_run and dry.removed == len(orphans)
    assert dry.removed_bytes == sum(orphans.values())
    assert dry.scanned == n_listed and dry.too_young == len(young)
    assert set(dry.sample) == set(orphans)

    report = sweep_orphan_blobs(settings=settings, older_than_s=MIN_AGE)
    assert not report.dry_run
    assert (report.removed, report.removed_bytes) == (len(orphans), sum(orphans.values()))
    assert set(report.sample) == set(orphans)
    assert all_keys(store) == referenced | young | {"exports/report.csv"}

    again = sweep_orphan_blobs(settings=settings, older_than_s=MIN_AGE)
    assert again.removed == 0 and again.scanned == n_listed - len(orphans)
    # With no minimum age the young orphans go too; referenced blobs never do.
    sweep_orphan_blobs(settings=settings, older_than_s=0, now=time.time() + 1)
    assert all_keys(store) == referenced | {"exports/report.csv"}


def test_sweep_keeps_a_blob_rewritten_since_the_listing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store, _, orphans, _ = seed(settings)
    key = next(iter(orphans))
    listed = {b.key: b for p in ("videos", "incoming") for b in store.iter_blobs(p)}
    put(store, key, b"new", age_s=0)  # the same bytes uploaded again after the listing
    assert _delete_if_unchanged(store, listed[key]) is False
    assert store.exists(key)


def test_cli_sweep(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store, referenced, orphans, young = seed(settings)
    env = {**os.environ, "TAGLOOP_DATA_DIR": str(settings.data_dir)}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tagloop.cli", "sweep", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cli("--dry-run")
    assert f"would remove {len(orphans)} orphans ({sum(orphans.values())} bytes)" in out
    assert video_key(ORPHAN_SHA, "b.mp4") in out
    assert set(orphans) <= all_keys(store)
    out = cli()
    assert f"removed {len(orphans)} orphans" in out
    assert all_keys(store) == referenced | young | {"exports/report.csv"}


def test_beat_runs_the_sweep_on_the_media_queue(tmp_path: Path) -> None:
    assert TASK_QUEUES[SWEEP_BLOBS] == QUEUE_MEDIA
    settings = stack_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}",
        broker_url="",
        blob_sweep_every_minutes=0.05,  # every 3 s
        blob_sweep_min_age_seconds=MIN_AGE,
    )
    store, referenced, orphans, young = seed(settings)
    with running_stack(settings, ["worker", "beat"]):
        wait_until(
            lambda: not set(orphans) & all_keys(store), timeout_s=90, what="beat's blob sweep"
        )
    assert all_keys(store) == referenced | young | {"exports/report.csv"}
