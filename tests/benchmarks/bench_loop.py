"""The loop's liveness and the demo, measured as a user meets them (issue: the loop never
stalls).

- ``loop_soak_*``: the liveness soak (tests/integration/loop_soak.py) on SQLite with the
  SQLAlchemy broker and on PostgreSQL with Redis, two seeds each: stalls, skipped clips offered
  to the same annotator again, new clips that never reached the queue, rounds without new
  labels.
- ``demo_fresh_clone_seconds``: ``tagloop demo`` with its defaults in a fresh data directory
  (what ``make demo`` runs after the install), and its final holdout accuracy next to random
  selection's on the same clips.

    python -m tests.benchmarks.run bench_loop
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis

from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tests.benchmarks.bench_queue import fresh_postgres
from tests.benchmarks.common import REPO
from tests.conftest import free_port
from tests.integration.loop_soak import run_soak
from tests.integration.stack_helpers import stack_settings

SEEDS = (0, 1)
REDIS_URL = "redis://127.0.0.1:6379/12"


def soak_once(stack: str, seed: int, demo: Path, tmp: Path) -> dict[str, Any]:
    data = tmp / f"{stack}-{seed}"
    if stack == "sqlite+sqla":
        settings = stack_settings(
            data,
            database_url=f"sqlite:///{data / 'data' / 'tagloop.db'}",
            broker_url=f"sqla+sqlite:///{data / 'data' / 'broker.sqlite'}",
        )
        return asdict(run_soak(settings, demo, first_videos=30, seed=seed))
    redis.Redis.from_url(REDIS_URL).flushdb()
    with fresh_postgres() as url:
        settings = stack_settings(data, database_url=url, broker_url=REDIS_URL)
        return asdict(run_soak(settings, demo, first_videos=30, seed=seed))


def run_demo(tmp: Path) -> dict[str, Any]:
    """`tagloop demo` with its defaults, as `make demo` runs it, in a fresh data dir."""
    data = tmp / "demo-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGLOOP_")}
    env.update(TAGLOOP_DATA_DIR=str(data), TAGLOOP_API_PORT=str(free_port()))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tagloop.cli", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"tagloop demo failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    with (data / "demo_learning_curve.csv").open() as f:
        curve = list(csv.DictReader(f))
    table = re.findall(r"^\s*(\d+)\s+([\d.]+|-)\s+([\d.]+)\s*$", proc.stdout, re.MULTILINE)
    random_final = float(table[-1][2]) if table else None
    verdict = [line for line in proc.stdout.splitlines() if "random's final accuracy" in line]
    return {
        "demo_fresh_clone_seconds": round(seconds, 1),
        "demo_final_holdout_accuracy": float(curve[-1]["test_accuracy"]),
        "demo_final_random_accuracy": random_final,
        "demo_detail": {
            "labels": [int(r["labels"]) for r in curve],
            "holdout_accuracy": [float(r["test_accuracy"]) for r in curve],
            "random_accuracy": [float(t[2]) for t in table],
            "verdict": verdict[0].strip() if verdict else None,
        },
    }


def run(*, out: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="tagloop-bench-loop-") as name:
        tmp = Path(name)
        demo = write_av_dataset(build_demo_samples(n=42, seed=5), tmp / "soak-set")
        runs = {
            f"{stack}/seed{seed}": soak_once(stack, seed, demo, tmp)
            for stack in ("sqlite+sqla", "postgresql+redis")
            for seed in SEEDS
        }
        out["loop_soak_stalls"] = sum(r["stalls"] for r in runs.values())
        out["loop_soak_new_clips_queued_fraction"] = min(
            r["new_clips_queued_or_labeled"] / max(1, r["new_clips"]) for r in runs.values()
        )
        out["loop_soak_skipped_reoffered_to_same_annotator"] = sum(
            r["skipped_reoffered_to_same_annotator"] for r in runs.values()
        )
        out["loop_soak_rounds_without_new_labels"] = sum(
            r["rounds_without_new_labels"] for r in runs.values()
        )
        out["loop_soak_longest_starved_s"] = max(r["longest_starved_s"] for r in runs.values())
        out["loop_soak_detail"] = runs
        out.update(run_demo(tmp))
