"""On paper, past this machine: a round's per-clip costs measured here, projected to 20,000,000
clips and 10,000 tags (issue 22).

Measured on this machine, one process, ``torch.set_num_threads(1)`` (a worker process per
core), wall clock and CPU time both recorded:

- ingest per clip: ``ingest_path`` + ``process_video`` (the media worker's use case: decode,
  8 model frames, log-mel, the keyframe embedding at 224 px, preview, thumbnail, blob writes
  and rows) at the service defaults, on generated 1-s 640x360 H.264/AAC clips
  (``tests/video_factory.py``); the first clip (the encoder's start-up) is not counted.
- bytes stored per clip, as ingest writes them (tensor file, preview, thumbnail; the uploaded
  file apart) and the embedding a scoring run writes (``pipeline.scoring``: float32 rows).
- scoring per clip with a 10,000-tag head: the scoring path of ``pipeline.scoring._score_batch``
  without its database write, on the stored tensors of the ingested clips (read from the blob
  store and deserialised each time) in pages of ``score_batch_size``: ``predict_clips`` with a
  linear probe (``build_model("probe")``, 10,000 outputs, not fitted: fitting does not change
  the cost of a prediction), the default strategy's uncertainty with tag counts, the top tags
  among 500 trained tags, the embedding saved.
- database rows and bytes per clip, in PostgreSQL (127.0.0.1:5432, a scratch database): the
  video, clip and job rows ingest writes (counted on the real ingest) copied to 5,000 clips,
  and 5,000 prediction rows with the top tags the scoring step produced; bytes per row =
  ``pg_total_relation_size`` (heap, TOAST and indexes) over rows. The prediction rows are
  written the way ``_score_batch`` writes them (ORM, one transaction per page) and timed:
  one PostgreSQL takes every scoring run's rows.

The projection (``project``, pure arithmetic) takes those to the pool and prints the table to
benchmarks/scale_20m.md.

    python -m tests.benchmarks.run bench_scale_paper
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tests.benchmarks.common import REPO

N_INGEST = 7  # clips timed (after one warm-up clip)
N_TAGS = 10_000
N_TRAINED = 500
SCORE_PAGES = 2  # pages of score_batch_size timed (after one warm-up page)
DB_ROWS = 5_000
POOL = 20_000_000
SAMPLE = 1_000_000
NEW_PER_ROUND = 100_000  # never-scored clips a sampled round adds (uploads since the last one)
ROUND_HOURS = 24
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TABLE = REPO / "benchmarks" / "scale_20m.md"


@dataclass(frozen=True)
class PerClip:
    """Measured costs of one clip. Seconds are one worker process's (one core)."""

    ingest_s: float  # media worker: decode, features, embedding, preview, rows
    score_s: float  # ml worker: one scoring run's prediction of the clip at N_TAGS tags
    blob_bytes: float  # tensor file + preview + thumbnail
    source_bytes: float  # the uploaded file, kept in the blob store
    embedding_bytes: float  # written by every scoring run (one version)
    db_ingest_bytes: float  # the video, clip and job rows of one clip, with their indexes
    db_prediction_bytes: float  # one prediction row (one version), with its indexes
    db_prediction_rows_per_s: float  # one writer into one PostgreSQL


def project(
    per: PerClip,
    *,
    clips: int = POOL,
    sample: int | None = SAMPLE,
    new_clips: int = NEW_PER_ROUND,
    versions_kept: int = 1,
    round_hours: float = ROUND_HOURS,
) -> dict[str, Any]:
    """Per-clip costs -> the pool's: worker-hours per round (the whole pool scored, and a
    sampled round: ``sample`` random clips plus ``new_clips`` never scored), ingest
    worker-hours, disk (TB, 10^12 bytes), database (GB, 10^9 bytes) with ``versions_kept``
    versions' predictions, the hours one PostgreSQL spends writing a full round's predictions,
    the workers a ``round_hours`` round needs and what limits it."""
    full_h = clips * per.score_s / 3600
    scored = clips if sample is None else min(clips, sample + new_clips)
    sampled_h = scored * per.score_s / 3600
    ingest_h = clips * per.ingest_s / 3600
    disk = clips * (per.blob_bytes + per.source_bytes + versions_kept * per.embedding_bytes)
    db = clips * (per.db_ingest_bytes + versions_kept * per.db_prediction_bytes)
    db_write_h = clips / per.db_prediction_rows_per_s / 3600
    workers = max(1, math.ceil(full_h / round_hours))
    return {
        "round_worker_hours": full_h,
        "sampled_round_worker_hours": sampled_h,
        "sampled_round_clips": scored,
        "ingest_worker_hours": ingest_h,
        "workers_for_round": workers,
        "workers_for_sampled_round": max(1, math.ceil(sampled_h / round_hours)),
        "ingest_workers_for_round_hours": max(1, math.ceil(ingest_h / round_hours)),
        "disk_tb": disk / 1e12,
        "derived_disk_tb": clips * per.blob_bytes / 1e12,
        "embedding_tb_per_version": clips * per.embedding_bytes / 1e12,
        "db_gb": db / 1e9,
        "db_gb_per_version": clips * per.db_prediction_bytes / 1e9,
        "db_write_hours_per_round": db_write_h,
        "limiting": "database writes (one PostgreSQL)"
        if db_write_h > round_hours
        else "worker CPU",
    }


def _clips(work: Path, n: int) -> list[Path]:
    from tests.video_factory import write_test_video

    work.mkdir(parents=True, exist_ok=True)
    return [
        # 2 px wider each: the generator's picture is otherwise the same file every time
        write_test_video(work / f"clip_{i}.mp4", seconds=1.0, width=640 + 2 * i, height=360)
        for i in range(n)
    ]


def measure_ingest(work: Path) -> dict[str, Any]:
    """Ingest N_INGEST + 1 clips at the service defaults (SQLite); the first warms up."""
    import torch
    from sqlalchemy import func, select

    from tagloop import pipeline
    from tagloop.config import Settings
    from tagloop.db.engine import session_scope
    from tagloop.db.migrate import upgrade_database
    from tagloop.db.models import Clip, Job, Video
    from tagloop.storage import BlobStore

    torch.set_num_threads(1)
    settings = Settings(data_dir=work / "data", torch_threads=1)
    upgrade_database(settings.database_url)
    store = BlobStore(settings.blob_url)
    files = _clips(work / "src", N_INGEST + 1)
    wall, cpu = [], []
    for path in files:
        with session_scope(settings.database_url) as session:
            r = pipeline.ingest_path(session, store=store, path=path, max_bytes=None)
            video_id, job_id = r.video.id, r.job_id
        w0, c0 = time.perf_counter(), time.process_time()
        status = pipeline.process_video(settings=settings, video_id=video_id, job_id=job_id)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        if status != "ready":
            raise RuntimeError(f"{path.name} ended {status}")
    with session_scope(settings.database_url) as session:
        n_clips = int(session.scalar(select(func.count(Clip.id))) or 0)
        rows = {
            "video": int(session.scalar(select(func.count(Video.id))) or 0) / n_clips,
            "clip": 1.0,
            "job": int(session.scalar(select(func.count(Job.id))) or 0) / n_clips,
        }
        uris = session.execute(select(Clip.tensor_uri, Clip.preview_uri)).all()
        examples = {
            name: {c.key: getattr(obj, c.key) for c in model.__table__.columns if c.key != "id"}
            for name, model in (("video", Video), ("clip", Clip), ("job", Job))
            for obj in [session.scalars(select(model).order_by(model.id.desc())).first()]
        }
    blobs = Path(settings.blob_url)
    by_prefix: dict[str, int] = {}
    for f in blobs.rglob("*"):
        if f.is_file():
            top = f.relative_to(blobs).parts[0]
            by_prefix[top] = by_prefix.get(top, 0) + f.stat().st_size
    source = sum(f.stat().st_size for f in files)
    return {
        "settings": settings,
        "store": store,
        "tensor_uris": [str(t) for t, _ in uris],
        "n_clips": n_clips,
        "wall_s": float(np.median(wall[1:])),
        "cpu_s": float(np.median(cpu[1:])),
        "rows_per_clip": rows,
        "examples": examples,
        "bytes_by_prefix": {k: v / n_clips for k, v in by_prefix.items()},
        "source_bytes": source / n_clips,
    }


def measure_scoring(ingest: dict[str, Any]) -> dict[str, Any]:
    """Score pages of the stored clips with a 10,000-tag probe, as _score_batch does."""
    import torch

    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.fusion.config import FusionConfig
    from tagloop.fusion.factory import build_model
    from tagloop.pipeline.scoring import top_tags, trained_columns, uncertainty_of
    from tagloop.training.predict import predict_clips
    from tagloop.vocabulary import TagVocabulary

    settings, store = ingest["settings"], ingest["store"]
    torch.set_num_threads(1)
    vocab = TagVocabulary.from_pairs([(f"tag_{i:05d}", None) for i in range(N_TAGS)])
    config = FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
    )
    model = build_model("probe", vocab_size=N_TAGS, config=config)
    rng = np.random.default_rng(0)
    trained = {vocab.tags[j] for j in rng.choice(N_TAGS, size=N_TRAINED, replace=False)}
    columns = trained_columns(vocab.tags, trained)
    counts = np.zeros(N_TAGS)
    counts[columns] = rng.integers(1, 50, size=N_TRAINED)
    page = settings.score_batch_size
    uris = [ingest["tensor_uris"][i % len(ingest["tensor_uris"])] for i in range(page)]
    wall, cpu, parts = [], [], {"load": 0.0, "predict": 0.0, "uncertainty": 0.0, "top": 0.0}
    stored: list[list[dict[str, object]]] = []
    emb_bytes = 0
    for i in range(SCORE_PAGES + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        tensors = [load_clip_tensors(store.get_bytes(u)) for u in uris]
        t1 = time.perf_counter()
        preds = predict_clips(model, tensors, vocab=vocab, audio_frames=None)
        t2 = time.perf_counter()
        u = uncertainty_of(
            preds,
            vocab=vocab,
            strategy=settings.selection_strategy,
            clip_ids=np.arange(page, dtype=np.int64) + i * page,
            tag_counts=counts,
        )
        t3 = time.perf_counter()
        stored = [top_tags(p, vocab.tags, vocab=vocab, columns=columns) for p in preds.probs]
        buffer = io.BytesIO()
        np.save(buffer, preds.embedding.astype(np.float32))
        store.put_bytes(f"embeddings/bench/{i:06d}.npy", buffer.getvalue())
        t4 = time.perf_counter()
        if i:  # the first page warms up
            wall.append(t4 - w0)
            cpu.append(time.process_time() - c0)
            for name, seconds in zip(parts, (t1 - w0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                parts[name] += seconds / (SCORE_PAGES * page)
        emb_bytes = len(buffer.getvalue())
        assert u.shape == (page,) and len(stored[0]) == 5
    return {
        "wall_s": sum(wall) / (SCORE_PAGES * page),
        "cpu_s": sum(cpu) / (SCORE_PAGES * page),
        "parts_s": parts,
        "embedding_bytes": emb_bytes / page,
        "embedding_dim": int(preds.embedding.shape[1]),
        "top_tags": stored,
    }


def measure_database(
    rows_per_clip: dict[str, float], examples: dict[str, dict[str, Any]], top: list[Any]
) -> dict[str, Any]:
    """Bytes per clip of ingest's rows and of a prediction row in a scratch PostgreSQL, and
    how fast one writer stores prediction rows."""
    from sqlalchemy import create_engine, insert, select, text

    from tagloop.db.engine import reset_engines, session_scope
    from tagloop.db.migrate import upgrade_database
    from tagloop.db.models import Clip, Job, ModelVersion, Prediction, Video

    name = f"tagloop_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade_database(url)
        with session_scope(url) as s:
            # Copies of the rows the real ingest wrote, unique keys made unique.
            video, clip, job = examples["video"], examples["clip"], examples["job"]
            video_ids = list(
                s.scalars(
                    insert(Video).returning(Video.id),
                    [{**video, "sha256": uuid.uuid4().hex * 2} for _ in range(DB_ROWS)],
                )
            )
            clip_ids = list(
                s.scalars(
                    insert(Clip).returning(Clip.id), [{**clip, "video_id": v} for v in video_ids]
                )
            )
            params = job.get("params") or {}
            s.execute(
                insert(Job),
                [
                    {**job, "params": {**params, "video_id": v}, "celery_task_id": uuid.uuid4().hex}
                    for v in video_ids
                ],
            )
            version = ModelVersion(
                status="promoted", vocabulary=[], config={}, metrics={}, n_train=1000
            )
            s.add(version)
            s.flush()
            version_id = version.id
        # Predictions as _score_batch writes them: ORM rows, a transaction per page.
        page = 256
        w0 = time.perf_counter()
        for start in range(0, DB_ROWS, page):
            with session_scope(url) as s:
                ids = clip_ids[start : start + page]
                known = set(
                    s.scalars(
                        select(Prediction.clip_id).where(
                            Prediction.model_version_id == version_id,
                            Prediction.clip_id.in_(ids),
                        )
                    )
                )
                for row, clip_id in enumerate(ids):
                    if clip_id in known:
                        continue
                    s.add(
                        Prediction(
                            clip_id=clip_id,
                            model_version_id=version_id,
                            top_tags=top[(start + row) % len(top)],
                            uncertainty=float(row) / page,
                            embedding_uri=f"embeddings/{version_id:06d}/{ids[0]:012d}.npy#{row}",
                        )
                    )
        write_s = time.perf_counter() - w0
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
            size = {
                t: int(conn.scalar(text(f"SELECT pg_total_relation_size('{t}')")) or 0) / DB_ROWS
                for t in ("video", "clip", "job", "prediction")
            }
        engine.dispose()
    finally:
        reset_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    ingest_bytes = sum(size[t] * rows_per_clip[t] for t in ("video", "clip", "job"))
    return {
        "bytes_per_row": size,
        "ingest_bytes_per_clip": ingest_bytes,
        "prediction_bytes": size["prediction"],
        "prediction_rows_per_s": DB_ROWS / write_s,
    }


def table(
    per: PerClip, p: dict[str, Any], *, load: str, wall: tuple[float, float, dict[str, Any]]
) -> str:
    """The markdown table of benchmarks/scale_20m.md and BENCHMARKS.md."""
    rows = [
        (
            "Ingest, per clip (1 worker process, CPU; wall clock here)",
            f"{per.ingest_s * 1000:.0f} ms ({wall[0] * 1000:.0f} ms)",
        ),
        (
            "Scoring at 10,000 tags, per clip (CPU; wall clock here)",
            f"{per.score_s * 1000:.2f} ms ({wall[1] * 1000:.2f} ms)",
        ),
        ("Blobs per clip (tensor + preview + thumbnail)", f"{per.blob_bytes / 1e3:.1f} kB"),
        ("Uploaded file per clip (1 s, 640x360)", f"{per.source_bytes / 1e3:.1f} kB"),
        ("Embedding per clip per scored version", f"{per.embedding_bytes / 1e3:.2f} kB"),
        ("Database, ingest rows per clip", f"{per.db_ingest_bytes:.0f} B"),
        ("Database, one prediction row", f"{per.db_prediction_bytes:.0f} B"),
        ("Prediction rows written, one writer", f"{per.db_prediction_rows_per_s:,.0f} rows/s"),
        ("**20M clips, 10,000 tags**", ""),
        (
            "Round, whole pool scored (by wall clock here)",
            f"{p['round_worker_hours']:,.1f} ({wall[2]['round_worker_hours']:,.1f}) worker-hours",
        ),
        (
            f"Round, sampled ({p['sampled_round_clips']:,} clips)",
            f"{p['sampled_round_worker_hours']:,.1f} worker-hours",
        ),
        ("Workers for a 24-h round (whole pool)", f"{p['workers_for_round']}"),
        ("Workers for a 24-h round (sampled)", f"{p['workers_for_sampled_round']}"),
        (
            "Ingest of the pool (by wall clock here)",
            f"{p['ingest_worker_hours']:,.0f} ({wall[2]['ingest_worker_hours']:,.0f}) worker-hours",
        ),
        ("Ingest workers to take it in 24 h", f"{p['ingest_workers_for_round_hours']}"),
        ("Disk (uploads + blobs + one version's embeddings)", f"{p['disk_tb']:.2f} TB"),
        ("  of which embeddings, per scored version", f"{p['embedding_tb_per_version']:.2f} TB"),
        ("Database (ingest rows + one version's predictions)", f"{p['db_gb']:.1f} GB"),
        ("  of which predictions, per scored version", f"{p['db_gb_per_version']:.1f} GB"),
        (
            "One PostgreSQL writing a whole round's predictions",
            f"{p['db_write_hours_per_round']:.1f} h",
        ),
        ("Limiting resource (24-h round)", p["limiting"]),
    ]
    lines = ["| quantity | value |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows]]
    return (
        "# On paper: 20M clips, 10,000 tags (issue 22)\n\n"
        "From `python -m tests.benchmarks.run bench_scale_paper`; per-clip costs measured on "
        f"this machine ({os.cpu_count()} cores, load: {load}); see BENCHMARKS.md for what "
        "each number includes.\n\n" + "\n".join(lines) + "\n"
    )


def run(*, out: dict[str, Any]) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        ingest = measure_ingest(Path(tmp))
        scoring = measure_scoring(ingest)
    database = measure_database(ingest["rows_per_clip"], ingest["examples"], scoring["top_tags"])
    by_prefix = ingest["bytes_by_prefix"]
    derived = sum(v for k, v in by_prefix.items() if k not in ("videos", "embeddings"))
    # A worker process has its core to itself: CPU time is what the projection counts; the
    # wall clock here also counts the other work on a shared machine (kept as a bound).
    per = PerClip(
        ingest_s=ingest["cpu_s"],
        score_s=scoring["cpu_s"],
        blob_bytes=derived,
        source_bytes=ingest["source_bytes"],
        embedding_bytes=scoring["embedding_bytes"],
        db_ingest_bytes=database["ingest_bytes_per_clip"],
        db_prediction_bytes=database["prediction_bytes"],
        db_prediction_rows_per_s=database["prediction_rows_per_s"],
    )
    p = project(per)
    p_wall = project(replace(per, ingest_s=ingest["wall_s"], score_s=scoring["wall_s"]))
    text = table(per, p, load=load, wall=(ingest["wall_s"], scoring["wall_s"], p_wall))
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(text)
    print(text)
    out.update(
        scale_20m_round_worker_hours=round(p["round_worker_hours"], 2),
        scale_20m_sampled_round_worker_hours=round(p["sampled_round_worker_hours"], 2),
        scale_20m_round_worker_hours_by_wall_clock=round(p_wall["round_worker_hours"], 2),
        scale_20m_ingest_worker_hours=round(p["ingest_worker_hours"], 1),
        scale_20m_ingest_worker_hours_by_wall_clock=round(p_wall["ingest_worker_hours"], 1),
        scale_20m_disk_tb=round(p["disk_tb"], 3),
        scale_20m_db_gb=round(p["db_gb"], 2),
        scale_20m_db_write_hours_per_round=round(p["db_write_hours_per_round"], 2),
        scale_20m_workers_for_24h_round=p["workers_for_round"],
        scale_20m_limiting=p["limiting"],
        scale_per_clip={
            **{k: round(v, 6) for k, v in asdict(per).items()},
            "ingest_wall_s": round(ingest["wall_s"], 4),
            "score_wall_s": round(scoring["wall_s"], 6),
            "score_parts_s": {k: round(v, 6) for k, v in scoring["parts_s"].items()},
            "bytes_by_prefix": {k: round(v) for k, v in by_prefix.items()},
            "rows_per_clip": ingest["rows_per_clip"],
            "db_bytes_per_row": {k: round(v) for k, v in database["bytes_per_row"].items()},
            "embedding_dim": scoring["embedding_dim"],
            "n_tags": N_TAGS,
            "n_trained_tags": N_TRAINED,
            "load_average": load,
        },
    )


if __name__ == "__main__":
    results: dict[str, Any] = {}
    run(out=results)
