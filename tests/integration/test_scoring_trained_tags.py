"""A scoring run stores top tags only among the tags its version was trained on (issue 22).

A real round on labels that cover a few digits of a vocabulary with forty never-labeled
independent tags, then a real scoring run: every stored top tag has a positive label in the
version's training data, and a clip gets min(k, trained tags) of them. (This probe round scores
the forty near 0, and before the change the fifth slot went to one of them; with 10,000 such
tags the probe scores them all exactly 0.5, ahead of every trained tag below it.) In-process on
SQLite with real demo clips."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tagloop.config import Settings
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Label, Prediction
from tagloop.pipeline.scoring import TOP_TAGS, score_pool
from tests.integration.test_demo_baseline import ingest_demo
from tests.integration.test_holdout_eval import train, version_metrics

pytestmark = pytest.mark.integration

N_EXTRA = 40


def test_scoring_ranks_only_the_tags_the_version_was_trained_on(tmp_path: Path) -> None:
    labels = write_av_dataset(build_demo_samples(n=14, seed=7), tmp_path / "set")
    settings = Settings(
        data_dir=tmp_path / "data",
        clip_seconds=2.0,
        train_epochs=1,
        train_patience=1,
        torch_threads=1,
        selection_strategy="balanced_cluster",
    )
    upgrade_database(settings.database_url)
    truth, _ = ingest_demo(settings, labels)
    clips = sorted(truth)
    with session_scope(settings.database_url) as s:
        for d in range(10):
            tag_repo.create_tag(s, name=str(d), group="digit")
        for i in range(N_EXTRA):
            tag_repo.create_tag(s, name=f"extra_{i:02d}")
        for c in clips[:8]:
            s.add(Label(clip_id=c, annotator="a", tags=[truth[c]]))
    version = train(settings)
    positives = version_metrics(settings, version)["train_positives"]
    trained = {t for t, n in positives.items() if n > 0}
    assert trained and trained <= {str(d) for d in range(10)}
    assert len(positives) == 10 + N_EXTRA

    assert score_pool(settings=settings) == len(clips) - 8
    with session_scope(settings.database_url) as s:
        stored = list(
            s.scalars(select(Prediction.top_tags).where(Prediction.model_version_id == version))
        )
    assert len(stored) == len(clips) - 8
    for items in stored:
        assert len(items) == min(TOP_TAGS, len(trained))
        assert {i["tag"] for i in items} <= trained, items
        ps = [i["p"] for i in items]
        assert ps == sorted(ps, reverse=True)
        assert all("p_none" in i for i in items)  # every trained tag here is a digit
