"""The loop never stalls: the liveness soak on real workers, on SQLite with the SQLAlchemy
broker and on PostgreSQL with Redis (see loop_soak.py for what it does and measures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tests.integration.loop_soak import run_soak
from tests.integration.stack_helpers import stack_settings


@pytest.fixture(scope="module")
def soak_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_av_dataset(build_demo_samples(n=42, seed=5), tmp_path_factory.mktemp("soak"))


@pytest.mark.parametrize("stack", ["sqlite+sqla", "postgresql+redis"])
def test_the_loop_never_stalls_under_randomised_use(
    stack: str, tmp_path: Path, soak_set: Path, request: pytest.FixtureRequest
) -> None:
    if stack == "sqlite+sqla":
        db = f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}"
        broker = f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite'}"
    else:
        db, broker = request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")
    settings = stack_settings(tmp_path, database_url=db, broker_url=broker)
    report = run_soak(settings, soak_set, first_videos=30, max_seconds=300)
    print(report)
    assert report.violations == [], report.violations
    assert report.stalls == 0
    # No refill emptied the queue while clips were offerable (the first promotion's gap).
    assert report.empty_refills == 0
    assert report.skipped_reoffered_to_same_annotator == 0 and report.labeled_reoffered == 0
    assert report.rounds_without_new_labels == 0
    assert report.new_clips == 12 and report.new_clips_queued_fraction == 1.0
    # The run exercised what it claims to: skips, labels, both kinds of round.
    assert report.labels >= 20 and report.skips >= 5 and report.empty_answers >= 0
    assert report.promoted_rounds >= 1 and report.rejected_rounds >= 1
    assert report.manual_promotions == 2
