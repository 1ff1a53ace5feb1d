"""Versions trained before the holdout existed, or on fewer holdout labels, are measured again
on today's holdout labels; holdout labels never train a version. In-process on SQLite with
real demo clips (the worker that calls these is exercised by the soak and the demo)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tagloop.config import Settings
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import holdout as holdout_repo
from tagloop.db import jobs as job_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Job, Label, ModelVersion
from tagloop.pipeline.holdout_eval import refresh_holdout_metrics
from tagloop.pipeline.training import train_round
from tests.integration.test_demo_baseline import ingest_demo


def version_metrics(settings: Settings, version_id: int) -> dict:
    with session_scope(settings.database_url) as s:
        return dict(s.get(ModelVersion, version_id).metrics)  # type: ignore[union-attr]


def train(settings: Settings) -> int:
    with session_scope(settings.database_url) as s:
        job_id = job_repo.create_job(s, kind="train", params={}).id
    return train_round(settings=settings, job_id=job_id).version_id


def test_versions_are_measured_again_on_todays_holdout(tmp_path: Path) -> None:
    labels = write_av_dataset(build_demo_samples(n=16, seed=4), tmp_path / "set")
    settings = Settings(
        data_dir=tmp_path / "data", clip_seconds=2.0, train_epochs=2, promote_min_holdout=2
    )
    upgrade_database(settings.database_url)
    truth, _ = ingest_demo(settings, labels)
    clips = sorted(truth)
    with session_scope(settings.database_url) as s:
        for d in range(10):
            tag_repo.create_tag(s, name=str(d), group="digit")
        for c in clips[:10]:
            s.add(Label(clip_id=c, annotator="a", tags=[truth[c]]))
    v1 = train(settings)
    assert "holdout" not in version_metrics(settings, v1)
    first = version_metrics(settings, v1)["promotion"]
    assert first["on"] == "validation" and first["old_score"] is None and first["delta"] is None
    assert refresh_holdout_metrics(settings=settings) == []  # no holdout yet: nothing to do

    # The admin draws a holdout of three clips after v1; two of them get labels.
    with session_scope(settings.database_url) as s:
        holdout_repo.mark_holdout(s, clip_ids=clips[10:13])
        for c in clips[10:12]:
            s.add(Label(clip_id=c, annotator="a", tags=[truth[c]]))
    v2 = train(settings)
    assert version_metrics(settings, v2)["holdout"]["n_clips"] == 2
    # Trained on the 10 pool labels only (train + validation split), never the holdout's.
    m2 = version_metrics(settings, v2)
    # With enough holdout labels (2 here) promotion compares v2 and v1 on them, with an
    # interval, and says so in the round's job message.
    compared = m2["promotion"]
    assert compared["on"] == "holdout" and compared["n_clips"] == 2
    assert compared["old_score"] == m2["baseline_score"] is not None
    assert compared["ci95"][0] <= compared["delta"] <= compared["ci95"][1]
    with session_scope(settings.database_url) as s:
        message = s.scalar(select(Job.message).order_by(Job.id.desc()).limit(1))
    assert "on 2 holdout clips" in str(message)
    with session_scope(settings.database_url) as s:
        n_train = s.get(ModelVersion, v2).n_train  # type: ignore[union-attr]
    assert n_train + (0 if m2["val_is_train"] else m2["n_val"]) == 10
    assert refresh_holdout_metrics(settings=settings) == [v1]
    measured = version_metrics(settings, v1)["holdout"]
    assert measured["n_clips"] == 2 and 0.0 <= measured["score"] <= 1.0
    assert "digit" in measured["accuracy"]
    # The third holdout clip is labeled: both versions are measured on all three.
    with session_scope(settings.database_url) as s:
        s.add(Label(clip_id=clips[12], annotator="a", tags=[truth[clips[12]]]))
    assert sorted(refresh_holdout_metrics(settings=settings)) == sorted([v1, v2])
    assert version_metrics(settings, v2)["holdout"]["n_clips"] == 3
    assert refresh_holdout_metrics(settings=settings) == []
