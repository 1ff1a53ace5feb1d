"""The stopping rule through real training rounds, on SQLite and PostgreSQL: each round
predicts the fixed stop set, the second one reports its kappa against the first, and /stats and
/models show it (with macro-AP and micro-F1) without returning the stored decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db import holdout as holdout_repo
from tagloop.db import stats as stats_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Label, ModelVersion
from tagloop.pipeline import stopping
from tagloop.pipeline.stopping import stop_set_clip_ids
from tagloop.training.stopping import unpack_decisions
from tests.integration.api_helpers import make_api
from tests.integration.test_demo_baseline import ingest_demo
from tests.integration.test_holdout_eval import train, version_metrics
from tests.integration.test_labels import add_clips

pytestmark = pytest.mark.integration

STOP_SET = 6


def _tags(digit: str) -> list[str]:
    """A digit (one softmax group) and an independent tag: a multi-label vocabulary."""
    return [digit, "even"] if int(digit) % 2 == 0 else [digit]


def test_rounds_measure_the_stop_set_and_stats_report_the_kappa(
    tmp_path: Path, db_url: str
) -> None:
    labels = write_av_dataset(build_demo_samples(n=12, seed=5), tmp_path / "set")
    api = make_api(
        tmp_path,
        db_url,
        clip_seconds=2.0,
        train_epochs=1,
        train_patience=1,
        torch_threads=1,
        stop_set_size=STOP_SET,
    )
    settings = api.settings
    truth, _ = ingest_demo(settings, labels)
    clips = sorted(truth)
    for d in range(10):
        r = api.client.post(
            "/api/v1/tags", headers=api.admin, json={"name": str(d), "group": "digit"}
        )
        assert r.status_code == 201, r.text
    r = api.client.post("/api/v1/tags", headers=api.admin, json={"name": "even"})
    assert r.status_code == 201, r.text
    holdout = clips[:2]
    with session_scope(settings.database_url) as s:
        holdout_repo.mark_holdout(s, clip_ids=holdout)
        for c in [*holdout, *clips[2:8]]:
            s.add(Label(clip_id=c, annotator="a", tags=_tags(truth[c])))

    with session_scope(settings.database_url) as s:
        first = stop_set_clip_ids(s, size=STOP_SET)
        again = stop_set_clip_ids(s, size=STOP_SET)
    assert first == again and len(first) == STOP_SET
    assert not set(first) & set(holdout) and set(first) <= set(clips)

    v1 = train(settings)
    m1 = version_metrics(settings, v1)
    assert m1["stop_set"]["clip_ids"] == first and m1["stop_kappa"] is None
    assert m1["stop_set"]["compared_with"] is None
    # Each trained clip has one digit: the positives per tag add up to the training clips.
    positives = m1["train_positives"]
    with session_scope(settings.database_url) as s:
        n_train = s.get(ModelVersion, v1).n_train  # type: ignore[union-attr]
    assert sum(positives[str(d)] for d in range(10)) == n_train
    assert set(positives) == {*map(str, range(10)), "even"}
    assert isinstance(m1["holdout"]["macro_ap"], float)

    with session_scope(settings.database_url) as s:
        for c in clips[8:11]:
            s.add(Label(clip_id=c, annotator="a", tags=_tags(truth[c])))
    v2 = train(settings)
    m2 = version_metrics(settings, v2)
    kappa = m2["stop_kappa"]
    assert isinstance(kappa, float) and -1.0 <= kappa <= 1.0
    assert m2["stop_set"]["compared_with"] == v1 and m2["stop_set"]["clip_ids"] == first
    decisions = unpack_decisions(m2["stop_set"]["decisions"], shape=(STOP_SET, 11))
    assert decisions[:, :10].sum(axis=1).tolist() == [1] * STOP_SET  # one digit per clip

    body = api.client.get("/api/v1/stats", headers=api.annotator).json()
    stopping = body["stopping"]
    assert stopping["kappas"] == [{"version": v1, "kappa": None}, {"version": v2, "kappa": kappa}]
    assert (stopping["threshold"], stopping["window"]) == (0.99, 3)
    assert stopping["fired"] is False and stopping["fired_at_version"] is None
    curve = {p["version_id"]: p for p in body["learning_curve"]}
    assert curve[v2]["stop_kappa"] == kappa and curve[v1]["stop_kappa"] is None
    assert curve[v2]["metrics_on"] == "holdout"
    assert curve[v2]["macro_ap"] == m2["holdout"]["macro_ap"]
    assert curve[v2]["micro_f1"] == m2["holdout"]["micro_f1"]
    # The rarest fifth of 11 tags (3), by the holdout's positives, with v2's training counts.
    rare = curve[v2]["rare_positives"]
    assert len(rare) == 3 and all(rare[t] == m2["train_positives"][t] for t in rare)
    # A rule that fires at once (any kappa, a window of one) fires at v2, with its labels.
    with session_scope(settings.database_url) as s:
        fired = stats_repo.describe_stopping(s, threshold=-1.0, window=1)
    used = m2["n_val"] * (not m2["val_is_train"]) + curve[v2]["n_labels"]
    assert (fired["fired"], fired["fired_at_version"], fired["labels_at_fire"]) == (True, v2, used)
    assert used == 9  # the nine pool labels, never the holdout's

    models = {v["id"]: v for v in api.client.get("/api/v1/models", headers=api.admin).json()}
    assert models[v2]["stop_kappa"] == kappa and models[v1]["stop_kappa"] is None
    assert models[v2]["macro_ap"] == m2["holdout"]["macro_ap"]
    assert models[v2]["metrics"]["stop_set"] == {"n_clips": STOP_SET, "compared_with": v1}

    # Stop-set clips whose tensors are gone cost v3 its kappa, not its model; v4, with the
    # pool whole again, is compared with v2, the last version that measured the set.
    ghosts = add_clips(settings.database_url, 40, sha="g")
    with session_scope(settings.database_url) as s:
        s.execute(
            update(Clip).where(Clip.id.in_(ghosts)).values(status="ready", tensor_uri="clips/gone")
        )
        assert set(stop_set_clip_ids(s, size=STOP_SET)) & set(ghosts)
    v3 = train(settings)
    m3 = version_metrics(settings, v3)
    assert m3["stop_set_error"]["code"] == "blob_not_found" and "stop_set" not in m3
    with session_scope(settings.database_url) as s:
        assert s.get(ModelVersion, v3).status != "failed"  # type: ignore[union-attr]
        s.execute(update(Clip).where(Clip.id.in_(ghosts)).values(status="failed"))
    v4 = train(settings)
    m4 = version_metrics(settings, v4)
    assert m4["stop_set"]["compared_with"] == v2 and isinstance(m4["stop_kappa"], float)
    kappas = api.client.get("/api/v1/stats", headers=api.annotator).json()["stopping"]["kappas"]
    assert [k["version"] for k in kappas] == [v1, v2, v4]


def test_the_stop_set_only_moves_when_the_pool_grows(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_api(tmp_path, db_url)
    url = api.settings.database_url
    pool = add_clips(url, 40, sha="p")
    with session_scope(url) as s:
        s.execute(update(Clip).values(tensor_uri="clips/x"))
        holdout_repo.mark_holdout(s, clip_ids=pool[:5])
        before = stop_set_clip_ids(s, size=10)
    assert len(before) == 10 and not set(before) & set(pool[:5])
    new = add_clips(url, 40, sha="q")
    with session_scope(url) as s:
        s.execute(update(Clip).where(Clip.id.in_(new[:30])).values(tensor_uri="clips/y"))
        s.execute(update(Clip).where(Clip.id.in_(new[30:])).values(status="failed"))
        after = stop_set_clip_ids(s, size=10)
        ready = set(s.scalars(select(Clip.id).where(Clip.tensor_uri.is_not(None))))
    # Old clips never enter: whoever is in now and was in the pool before was in before.
    assert set(after) & set(pool) <= set(before)
    assert set(after) - set(before) <= set(new[:30]) and set(after) <= ready
    # Read in pages of 7 ids it is the same set: pages and order do not matter.
    monkeypatch.setattr(stopping, "_PAGE", 7)
    with session_scope(url) as s:
        assert stop_set_clip_ids(s, size=10) == after
        assert stop_set_clip_ids(s, size=0) == []
