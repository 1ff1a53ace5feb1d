"""Queue load: 50 annotators doing ``GET /queue/next`` + ``POST /clips/{id}/labels`` against
the real API (uvicorn child process) on a fresh PostgreSQL database (DESIGN section 9).

Records ``queue_p99_ms_50_annotators`` (p99 of one next+label pair, ms) and ``double_leases``
(clips handed to two annotators; must be 0), plus the split per request and the throughput.
Each annotator waits ``think_s`` between clips (a person looks at the clip); a second,
closed-loop run (no pauses) measures the saturated server.

    python -m tests.benchmarks.bench_queue
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, func, insert, select, text

from tagloop.auth import create_token
from tagloop.cli import prepare
from tagloop.config import Settings
from tagloop.db import queue as queue_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import reset_engines, session_scope
from tagloop.db.models import Clip, Label, Video
from tagloop.errors import TagloopError
from tagloop.launcher import Stack, child_specs
from tests.conftest import PG_ADMIN_URL, free_port

DIGITS = [str(d) for d in range(10)]


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped afterwards."""
    name = f"tagloop_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # psycopg raises several connection error types
        raise TagloopError(
            f"PostgreSQL at {PG_ADMIN_URL} is needed for the queue benchmark: {exc}",
            code="postgres_unreachable",
        ) from exc
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        reset_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str, *, n_clips: int, n_annotators: int) -> list[str]:
    """Tags 0-9 (group digit), one video with ``n_clips`` clips, all queued; annotator tokens."""
    with session_scope(url) as s:
        for d in DIGITS:
            tag_repo.create_tag(s, name=d, group="digit")
        video = Video(sha256="b" * 64, filename="bench.mp4", blob_uri="videos/bench")
        s.add(video)
        s.flush()
        rows = [
            {"video_id": video.id, "index": i, "start_s": 10.0 * i, "end_s": 10.0 * i + 10}
            for i in range(n_clips)
        ]
        s.execute(insert(Clip), rows)
        ids = list(s.scalars(select(Clip.id).order_by(Clip.id)))
        scores = np.random.default_rng(0).random(len(ids))
        order = np.argsort(-scores)
        queue_repo.replace_queue(s, items=[(ids[i], "entropy", float(scores[i])) for i in order])
        return [create_token(s, name=f"bench-{i}", role="annotator") for i in range(n_annotators)]


def annotate(
    api_url: str,
    token: str,
    *,
    seed_: int,
    deadline: float,
    max_pairs: int,
    think_s: float,
    start: threading.Barrier,
    log: list[dict[str, Any]],
) -> None:
    """One annotator: next + label until the deadline; appends one record per pair."""
    rng = np.random.default_rng(seed_)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        start.wait()
        if think_s > 0:  # people do not all click at the same millisecond
            time.sleep(float(rng.uniform(0, think_s)))
        for _ in range(max_pairs):
            if time.monotonic() >= deadline:
                return
            t0 = time.perf_counter()
            r = client.get("/api/v1/queue/next")
            t1 = time.perf_counter()
            if r.status_code == 204:
                return
            if r.status_code != 200:
                log.append({"error": f"next {r.status_code}: {r.text[:200]}"})
                return
            lease = r.json()
            clip_id = lease["clip"]["id"]
            body = {"tags": [DIGITS[int(rng.integers(10))]], "lease_id": lease["lease_id"]}
            r = client.post(f"/api/v1/clips/{clip_id}/labels", json=body)
            t2 = time.perf_counter()
            record: dict[str, Any] = {
                "clip": clip_id,
                "token": token,
                "next_ms": 1000 * (t1 - t0),
                "label_ms": 1000 * (t2 - t1),
            }
            if r.status_code != 201 or not r.json().get("lease_closed"):
                record["error"] = f"label {r.status_code}: {r.text[:200]}"
            log.append(record)  # list.append is atomic under the GIL
            if think_s > 0:
                time.sleep(float(rng.uniform(0.5 * think_s, 1.5 * think_s)))


def run(
    *,
    out: dict[str, Any],
    n_annotators: int = 50,
    n_clips: int = 5000,
    duration_s: float = 30.0,
    max_pairs: int = 200,
    think_s: float = 2.0,
    closed_loop_s: float = 15.0,
) -> None:
    """Run the load test and write its figures into ``out``.

    ``think_s`` is the mean pause between an annotator's clips (uniform in 0.5x..1.5x; a
    person watching a 10 s clip takes longer). Then, unless ``closed_loop_s`` is 0, a
    closed-loop stress run (no pauses) adds the same figures with a ``_closed_loop`` suffix.
    """
    run_once(
        out=out,
        n_annotators=n_annotators,
        n_clips=n_clips,
        duration_s=duration_s,
        max_pairs=max_pairs,
        think_s=think_s,
    )
    if closed_loop_s > 0:
        run_once(
            out=out,
            n_annotators=n_annotators,
            n_clips=n_clips,
            duration_s=closed_loop_s,
            max_pairs=max_pairs,
            think_s=0.0,
            key_suffix="_closed_loop",
        )


def run_once(
    *,
    out: dict[str, Any],
    n_annotators: int,
    n_clips: int,
    duration_s: float,
    max_pairs: int,
    think_s: float,
    key_suffix: str = "",
) -> None:
    """One load run on a fresh database; figures go into ``out`` with ``key_suffix``."""
    with fresh_postgres() as url, tempfile.TemporaryDirectory(prefix="tagloop-bench-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data", database_url=url, api_port=free_port(), api_workers=2
        )
        prepare(settings)
        tokens = seed(url, n_clips=n_clips, n_annotators=n_annotators)
        stack = Stack(
            settings, child_specs(settings, components=["api"]), log_dir=settings.data_dir / "logs"
        )
        try:
            stack.wait_for_api(timeout_s=90)
            log: list[dict[str, Any]] = []
            barrier = threading.Barrier(n_annotators)
            deadline = time.monotonic() + duration_s
            threads = [
                threading.Thread(
                    target=annotate,
                    args=(settings.api_url, tok),
                    kwargs={
                        "seed_": i,
                        "deadline": deadline,
                        "max_pairs": max_pairs,
                        "think_s": think_s,
                        "start": barrier,
                        "log": log,
                    },
                )
                for i, tok in enumerate(tokens)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=duration_s + 120)
            wall = time.perf_counter() - t0
        finally:
            stack.stop()
        with session_scope(url) as s:
            n_labels = int(s.scalar(select(func.count(Label.id))) or 0)
            counts = queue_repo.count_by_status(s)
    pairs = [r for r in log if "next_ms" in r]
    errors = [r["error"] for r in log if "error" in r]
    annotators_per_clip: dict[int, set[str]] = {}
    for r in pairs:
        annotators_per_clip.setdefault(r["clip"], set()).add(r["token"])
    total = np.array([r["next_ms"] + r["label_ms"] for r in pairs])
    nxt = np.array([r["next_ms"] for r in pairs])
    lab = np.array([r["label_ms"] for r in pairs])
    sfx = key_suffix
    out[f"queue_p99_ms_{n_annotators}_annotators{sfx}"] = round(float(np.percentile(total, 99)), 1)
    out[f"queue_p50_ms_{n_annotators}_annotators{sfx}"] = round(float(np.percentile(total, 50)), 1)
    for name, values in (("next", nxt), ("label", lab)):
        out[f"queue_{name}_p50_ms{sfx}"] = round(float(np.percentile(values, 50)), 1)
        out[f"queue_{name}_p99_ms{sfx}"] = round(float(np.percentile(values, 99)), 1)
    out[f"queue_pairs_per_s{sfx}"] = round(len(pairs) / wall, 1)
    out[f"queue_pairs{sfx}"] = len(pairs)
    out[f"queue_think_s{sfx}"] = think_s
    out[f"double_leases{sfx}"] = sum(1 for a in annotators_per_clip.values() if len(a) > 1)
    out[f"queue_errors{sfx}"] = len(errors)
    # Server-side cross-checks: one label and one done row per pair, nothing left leased twice.
    out[f"queue_labels_stored{sfx}"] = n_labels
    out[f"queue_done_rows{sfx}"] = counts["done"]
    repeat = Counter(r["clip"] for r in pairs)
    out[f"queue_clips_handed_twice{sfx}"] = sum(1 for n in repeat.values() if n > 1)
    if errors:
        out[f"queue_first_error{sfx}"] = errors[0]


if __name__ == "__main__":
    figures: dict[str, Any] = {}
    run(out=figures)
    print(json.dumps(figures, indent=2))
