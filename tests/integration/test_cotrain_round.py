"""A training round with co-training on: the round pseudo-labels unlabeled pool clips where
one view is sure and the other is not, trains on them, stores them against the version, and
they stay out of everything that means human labels (labels, export, validation, the holdout).
In-process on SQLite with real demo clips; the API reads the stored rows."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from tagloop.config import Settings
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import jobs as job_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Label, ModelVersion, PseudoLabelRow
from tagloop.pipeline.training import train_round
from tests.integration.api_helpers import make_api
from tests.integration.test_demo_baseline import ingest_demo


def test_a_cotrained_round_stores_pseudo_labels_apart_from_labels(tmp_path: Path) -> None:
    labels_csv = write_av_dataset(build_demo_samples(n=40, seed=5), tmp_path / "set")
    settings = Settings(
        data_dir=tmp_path / "data",
        clip_seconds=2.0,
        cotrain=True,
        # Loose thresholds: a probe trained on 20 clips is rarely sure of a digit.
        cotrain_confident=0.55,
        cotrain_unsure=0.55,
    )
    upgrade_database(settings.database_url)
    truth, _ = ingest_demo(settings, labels_csv)
    human = dict(list(truth.items())[:20])
    with session_scope(settings.database_url) as s:
        for d in range(10):
            tag_repo.create_tag(s, name=str(d), group="digit")
        for c, digit in human.items():
            s.add(Label(clip_id=c, annotator="a", tags=[digit]))
        job_id = job_repo.create_job(s, kind="train", params={}).id

    outcome = train_round(settings=settings, job_id=job_id)

    with session_scope(settings.database_url) as s:
        version = s.get(ModelVersion, outcome.version_id)
        assert version is not None
        info = version.config["cotrain"]
        rows = list(s.scalars(select(PseudoLabelRow)))
        n_labels = s.scalar(select(func.count(Label.id)))
    assert info["n_candidates"] == len(truth) - len(human)
    assert 0 < info["n_pseudo"] <= info["n_candidates"], info
    assert {r.clip_id for r in rows} <= set(truth) - set(human)  # never a human-labeled clip
    assert len({r.clip_id for r in rows}) == info["n_pseudo"]
    assert {r.source for r in rows} <= {"visual", "audio"}
    assert all(r.confidence >= 0.55 for r in rows)
    assert n_labels == len(human)  # nothing was written as a label

    h = make_api(tmp_path, settings.database_url)  # the same data dir and database
    export = h.client.get("/api/v1/export", headers=h.admin, params={"format": "jsonl"})
    exported = {json.loads(line)["clip_id"] for line in export.text.splitlines() if line}
    assert exported == set(human)
    page = h.client.get(
        f"/api/v1/models/{outcome.version_id}/pseudo-labels",
        headers=h.annotator,
        params={"limit": 1000},
    ).json()
    assert page["total"] == len(rows)
    assert {i["kind"] for i in page["items"]} == {"pseudo"}
