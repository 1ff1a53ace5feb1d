"""Queue refill at pool scale: the service's ``refill_queue`` on 1,000,000 scored clips in
PostgreSQL (targets: under 10 s, peak RSS of the process under 1 GB).

Setup (not timed): a fresh database migrated with the project's Alembic migrations, then 2,000
ready videos of 500 clips each, one promoted model version, one prediction per clip with its
embedding in batched ``.npy`` blobs of 256 rows as ``score_pool`` writes them, and 3,000
labels. Uncertainty clusters by video as it does in practice: 100 hard videos get +0.5, so the
per-video cap binds; a third of the labels go on the most uncertain clips, so a refill that
ignored labels would queue labeled clips. Embeddings are 32-d here (the model's are 128-d)
to keep the blobs at 128 MB; the refill reads only the rows of its candidates.

A fresh child process imports, records its RSS, then runs ``refill_queue`` three times; the
figures are the median and the first refill, and the child's own peak RSS (VmHWM; its
``ru_maxrss`` starts at the parent's peak, see ``own_peak_rss_gb``). The parent then checks
the queue: 100 queued rows, no labeled clip, at most ``per_video_cap`` per video.

    python -m tests.benchmarks.bench_refill
"""

from __future__ import annotations

import hashlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tagloop.config import Settings
from tests.benchmarks.common import peak_rss_gb, run_child

MODULE = "tests.benchmarks.bench_refill"
N_VIDEOS = 2000
CLIPS_PER_VIDEO = 500
N_HARD_VIDEOS = 100
N_LABELS = 3000
EMB_DIM = 32
SCORE_BATCH = 256  # Settings.score_batch_size: rows per embedding blob
VERSION_ID = 1
QUEUE_SIZE = 100
PER_VIDEO_CAP = 3
REPEATS = 3
TAGS = [f"tag_{i}" for i in range(10)]


def refill_settings(url: str, blobs: str) -> Settings:
    return Settings(
        data_dir=Path(blobs).parent / "data",
        database_url=url,
        blob_url=blobs,
        queue_size=QUEUE_SIZE,
        per_video_cap=PER_VIDEO_CAP,
        selection_strategy="entropy",
    )


def copy_rows(conn: Any, table: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
    """``COPY table (columns created_at) FROM STDIN`` (psycopg 3), ``columns`` space-separated;
    columns left out stay NULL or take their defaults (0003's clip ``split`` = "pool")."""
    names = ", ".join(f'"{c}"' for c in [*columns.split(), "created_at"])
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


VIDEO_COLUMNS = "id sha256 filename blob_uri size_bytes status duration_s fps has_audio"
CLIP_COLUMNS = "id video_id index start_s end_s has_audio status tensor_uri preview_uri"


def video_rows(now: datetime) -> Iterator[tuple[Any, ...]]:
    for v in range(1, N_VIDEOS + 1):
        sha = hashlib.sha256(f"bench-refill-{v}".encode()).hexdigest()
        uri = f"videos/{sha[:2]}/{sha}/v{v}.mp4"
        yield (v, sha, f"v{v}.mp4", uri, 2**30, "ready", 5000.0, 25.0, True, now)


def clip_rows(now: datetime) -> Iterator[tuple[Any, ...]]:
    for c in range(1, N_VIDEOS * CLIPS_PER_VIDEO + 1):
        v, j = divmod(c - 1, CLIPS_PER_VIDEO)
        uris = (f"tensors/{c:09d}.npz", f"previews/{c:09d}.mp4")
        yield (c, v + 1, j, 10.0 * j, 10.0 * j + 10, True, "ready", *uris, now)


def write_embeddings(blobs: Path, *, n_clips: int, rng: np.random.Generator) -> list[str]:
    """One float32 ``(<=256, EMB_DIM)`` .npy per score batch, keyed as ``score_pool`` keys
    them (first clip id of the batch); returns each clip's ``key#row``."""
    from tagloop.storage import BlobStore

    store = BlobStore(str(blobs))
    uris: list[str] = []
    for start in range(0, n_clips, SCORE_BATCH):
        key = f"embeddings/{VERSION_ID:06d}/{start + 1:012d}.npy"
        rows = min(SCORE_BATCH, n_clips - start)
        buffer = io.BytesIO()
        np.save(buffer, rng.standard_normal((rows, EMB_DIM), dtype=np.float32))
        store.put_bytes(key, buffer.getvalue())
        uris.extend(f"{key}#{r}" for r in range(rows))
    return uris


def add_labels(url: str, clip_ids: Sequence[int]) -> None:
    """Through the repository, as the API stores labels (with any bookkeeping it does)."""
    from tagloop.db import labels as label_repo
    from tagloop.db import tags as tag_repo
    from tagloop.db.engine import session_scope

    with session_scope(url) as session:
        for name in TAGS:
            tag_repo.create_tag(session, name=name)
        for i, clip_id in enumerate(clip_ids):
            label_repo.create_label(
                session, clip_id=clip_id, annotator=f"bench-{i % 20}", tags=[TAGS[i % 10]]
            )


def load_pool(url: str, blobs: Path, *, seed: int = 0) -> dict[str, float]:
    """Fill a migrated database and blob dir; returns seconds per step.

    Ids are set here (clip ``(v - 1) * 500 + j + 1``, prediction id = clip id) and the
    sequences moved past them, so the service's own inserts do not clash.
    """
    import psycopg

    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    n_clips = N_VIDEOS * CLIPS_PER_VIDEO
    clip_ids = np.arange(1, n_clips + 1, dtype=np.int64)
    video_of = (clip_ids - 1) // CLIPS_PER_VIDEO + 1
    hard = np.zeros(N_VIDEOS + 1)
    hard[rng.choice(np.arange(1, N_VIDEOS + 1), N_HARD_VIDEOS, replace=False)] = 0.5
    uncertainty = rng.random(n_clips) * 0.5 + hard[video_of]
    # 64 top-tag lists (JSON text, 3 tags) stand in for a million different ones.
    top_tags = [
        json.dumps([{"tag": TAGS[(k + i) % 10], "p": round(0.6 / (i + 1), 4)} for i in range(3)])
        for k in range(64)
    ]
    vocab = json.dumps([{"name": t, "group": None} for t in TAGS])
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        copy_rows(conn, "video", VIDEO_COLUMNS, video_rows(now))
        copy_rows(conn, "clip", CLIP_COLUMNS, clip_rows(now))
        copy_rows(
            conn,
            "model_version",
            "id status vocabulary config metrics n_train artifact_uri",
            [(VERSION_ID, "promoted", vocab, "{}", '{"f1": 0.8}', 2000, "models/1.pt", now)],
        )
        seconds["videos_clips"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        uris = write_embeddings(blobs, n_clips=n_clips, rng=rng)
        seconds["embedding_blobs"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        copy_rows(
            conn,
            "prediction",
            "id clip_id model_version_id top_tags uncertainty embedding_uri",
            (
                (c, c, VERSION_ID, top_tags[c % 64], u, uri, now)
                for c, u, uri in zip(clip_ids.tolist(), uncertainty.tolist(), uris, strict=True)
            ),
        )
        for table in ("video", "clip", "model_version", "prediction"):
            seq = f"pg_get_serial_sequence('{table}', 'id')"
            conn.execute(f"SELECT setval({seq}, max(id)) FROM {table}")
        conn.commit()
        seconds["predictions"] = time.perf_counter() - t0
    # A third of the labels on the most uncertain clips: a refill that ignored them would show.
    t0 = time.perf_counter()
    top = clip_ids[np.argsort(-uncertainty)[: 2 * N_LABELS // 3]]
    some = rng.choice(clip_ids, N_LABELS - N_LABELS // 3, replace=False)
    labeled = np.unique(np.concatenate([rng.choice(top, N_LABELS // 3, replace=False), some]))
    add_labels(url, labeled.tolist())
    seconds["labels"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # steady state: planner statistics, visibility map
    seconds["vacuum_analyze"] = time.perf_counter() - t0
    return seconds


def check_queue(url: str, *, queued: int) -> dict[str, int]:
    """Raise unless the queue holds ``queued`` = QUEUE_SIZE rows, unlabeled, capped per video."""
    from sqlalchemy import func, select

    from tagloop.db.engine import session_scope
    from tagloop.db.models import Clip, Label, QueueItem

    with session_scope(url) as s:
        rows = s.execute(
            select(QueueItem.clip_id, Clip.video_id)
            .join(Clip, Clip.id == QueueItem.clip_id)
            .where(QueueItem.status == "queued")
        ).all()
        clips = [r[0] for r in rows]
        n_labeled = s.scalar(
            select(func.count(func.distinct(Label.clip_id))).where(Label.clip_id.in_(clips))
        )
    per_video = np.bincount([r[1] for r in rows]) if rows else np.zeros(1, dtype=np.int64)
    if queued != QUEUE_SIZE or len(rows) != queued:
        raise RuntimeError(
            f"refill_queue returned {queued} and the table holds {len(rows)} queued rows; "
            f"expected {QUEUE_SIZE}"
        )
    if n_labeled:
        raise RuntimeError(f"{n_labeled} of the {len(rows)} queued clips are already labeled")
    if int(per_video.max()) > PER_VIDEO_CAP:
        raise RuntimeError(f"a video has {int(per_video.max())} queued clips, cap {PER_VIDEO_CAP}")
    return {"videos": int((per_video > 0).sum()), "max_per_video": int(per_video.max())}


def own_peak_rss_gb() -> float:
    """Peak RSS of this process's own address space (VmHWM). ``ru_maxrss`` is not: Linux
    carries the parent's peak across fork+exec into it, so a child of a big parent reads big.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # KiB -> GiB
    return peak_rss_gb()  # no /proc: an upper bound


def child(url: str, blobs: str) -> None:
    """Import what a worker has loaded, record RSS, then refill REPEATS times."""
    import psycopg  # noqa: F401  (loaded by the engine in a worker anyway)

    import tagloop.selection  # noqa: F401
    from tagloop.pipeline.scoring import refill_queue

    baseline, baseline_maxrss = own_peak_rss_gb(), peak_rss_gb()
    settings = refill_settings(url, blobs)
    runs, queued = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        queued.append(refill_queue(settings=settings))
        runs.append(time.perf_counter() - start)
    record = {
        "runs": runs,
        "queued": queued,
        "baseline_rss_gb": baseline,
        "peak_rss_gb": own_peak_rss_gb(),
        "ru_maxrss_gb": {"before": baseline_maxrss, "after": peak_rss_gb()},
    }
    print(json.dumps(record), flush=True)


def run(*, out: dict[str, Any]) -> None:
    from tagloop.db.migrate import upgrade_database
    from tests.benchmarks.bench_queue import fresh_postgres

    with fresh_postgres() as url, tempfile.TemporaryDirectory(prefix="tagloop-refill-") as tmp:
        blobs = Path(tmp) / "blobs"
        start = time.perf_counter()
        upgrade_database(url)
        seconds = load_pool(url, blobs)
        setup = time.perf_counter() - start
        record = run_child(MODULE, "child", url, str(blobs))
        queue = check_queue(url, queued=record["queued"][-1])
    out["refill_1m_service_seconds"] = statistics.median(record["runs"])
    out["refill_1m_service_first_seconds"] = record["runs"][0]
    out["refill_1m_service_peak_rss_gb"] = record["peak_rss_gb"]
    out["refill_1m_service_baseline_rss_gb"] = record["baseline_rss_gb"]
    out["refill_1m_queued"] = record["queued"][-1]
    out["refill_1m_detail"] = {
        **{k: record[k] for k in ("runs", "queued", "ru_maxrss_gb")},
        "queue": queue,
        "setup_seconds": {"total": setup, **seconds},
        "pool": f"{N_VIDEOS} videos x {CLIPS_PER_VIDEO} clips, {N_LABELS} labels, dim {EMB_DIM}",
        "settings": f"queue_size={QUEUE_SIZE} per_video_cap={PER_VIDEO_CAP} entropy",
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        figures: dict[str, Any] = {}
        run(out=figures)
        print(json.dumps(figures, indent=1))
