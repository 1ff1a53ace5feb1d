"""The 20M-clip projection (tests/benchmarks/bench_scale_paper.py) is plain arithmetic on the
measured per-clip costs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tests.benchmarks.bench_scale_paper import PerClip, project

PER = PerClip(
    ingest_s=0.2,
    score_s=0.005,
    blob_bytes=200_000,
    source_bytes=100_000,
    embedding_bytes=512,
    db_ingest_bytes=900,
    db_prediction_bytes=400,
    db_prediction_rows_per_s=3_600,
)


def test_the_numbers_follow_from_the_per_clip_costs() -> None:
    p = project(PER, clips=20_000_000, sample=1_000_000, new_clips=100_000)
    assert p["round_worker_hours"] == pytest.approx(20e6 * 0.005 / 3600)  # 27.8 h
    assert p["workers_for_round"] == math.ceil(p["round_worker_hours"] / 24) == 2
    assert p["sampled_round_clips"] == 1_100_000
    assert p["sampled_round_worker_hours"] == pytest.approx(1.1e6 * 0.005 / 3600)
    assert p["workers_for_sampled_round"] == 1
    assert p["ingest_worker_hours"] == pytest.approx(20e6 * 0.2 / 3600)
    assert p["disk_tb"] == pytest.approx(20e6 * 300_512 / 1e12)
    assert p["db_gb"] == pytest.approx(20e6 * 1300 / 1e9)
    assert p["db_write_hours_per_round"] == pytest.approx(20e6 / 3600 / 3600)
    assert p["limiting"] == "worker CPU"


def test_doubling_the_pool_doubles_the_costs() -> None:
    one = project(PER, clips=10_000_000, sample=None)
    two = project(PER, clips=20_000_000, sample=None)
    for key in ("round_worker_hours", "ingest_worker_hours", "disk_tb", "db_gb"):
        assert two[key] == pytest.approx(2 * one[key])
    assert one["sampled_round_clips"] == 10_000_000  # no sample: the whole pool


def test_workers_and_the_limit() -> None:
    slow = replace(PER, score_s=0.05)  # 277.8 worker-hours
    assert project(slow, round_hours=24)["workers_for_round"] == 12
    assert project(slow, round_hours=300)["workers_for_round"] == 1
    # Versions kept multiply the predictions and embeddings, not the rest.
    kept = project(PER, versions_kept=3)
    assert kept["db_gb"] - project(PER)["db_gb"] == pytest.approx(2 * kept["db_gb_per_version"])
    # One PostgreSQL that writes 100 prediction rows/s needs 55.6 h for 20M: the limit.
    assert project(replace(PER, db_prediction_rows_per_s=100))["limiting"].startswith("database")
