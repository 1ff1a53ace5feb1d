"""Labels through the API -> a training round on a real worker -> a registered, guarded,
promoted version -> scoring -> a refilled queue ordered by the strategy; then roll back."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import select

from tagloop.client import TagloopClient
from tagloop.datasets.av_digits import build_demo_samples, write_av_dataset
from tagloop.db.engine import session_scope
from tagloop.db.models import Job, QueueItem
from tests.integration.stack_helpers import running_stack, stack_settings, wait_until


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    return write_av_dataset(build_demo_samples(n=60, seed=3), out)


def queued_clips(database_url: str) -> set[int]:
    with session_scope(database_url) as s:
        rows = s.query(QueueItem.clip_id).filter(QueueItem.status.in_(("queued", "leased")))
        return {int(c) for (c,) in rows}


def wait_job(client: TagloopClient, job_id: int, *, timeout_s: float = 300) -> dict:
    def done() -> bool:
        return client.get_job(job_id)["status"] in ("succeeded", "failed")

    wait_until(done, timeout_s=timeout_s, poll_s=0.5, what=f"job {job_id}")
    return client.get_job(job_id)


def test_label_train_promote_score_refill(tmp_path: Path, demo_set: Path) -> None:
    settings = stack_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite'}",
        clip_seconds=2.0,
        train_epochs=4,
        train_patience=4,
        queue_size=10,
        per_video_cap=1,
        torch_threads=1,
    )
    rows = list(csv.DictReader(demo_set.open()))
    with running_stack(settings, ["api", "worker"]) as (_, client):
        for d in range(10):
            client.request("POST", "/api/v1/tags", json={"name": str(d), "group": "digit"})
        videos = [client.upload_video(demo_set.parent / r["file"]) for r in rows]
        client.wait_for_videos([v["id"] for v in videos], timeout_s=300)
        clip_of = {v["id"]: client.list_clips(video_id=v["id"])[0]["id"] for v in videos}
        truth = {clip_of[v["id"]]: r["digit"] for v, r in zip(videos, rows, strict=True)}

        # Label 40 clips (the oracle answers from the demo labels), leaving 20 unlabeled.
        for clip_id in list(truth)[:40]:
            r = client.request(
                "POST", f"/api/v1/clips/{clip_id}/labels", json={"tags": [truth[clip_id]]}
            )
            assert r.status_code == 201
        job = client.request("POST", "/api/v1/models/train").json()
        assert wait_job(client, job["job_id"])["status"] == "succeeded"
        [v1] = client.request("GET", "/api/v1/models").json()
        assert v1["status"] == "promoted" and v1["n_train"] > 0
        assert v1["metrics"]["accuracy"]["digit"] is not None
        # 40 labels: below probe_below_labels, so the default round fits the linear probe.
        assert v1["config"]["kind"] == "probe" and v1["metrics"]["fusion_weights"] == []
        assert v1["config"]["capacity"] == {"labels": 40, "probe_below": 500}

        # The promotion chain scores the 20 unlabeled clips and refills the queue, which until
        # then held the seed batch (the labels above asked for it: the queue ran low).
        def ranked_by_the_model() -> bool:
            with session_scope(settings.database_url) as s:
                rows = s.query(QueueItem.strategy).filter(QueueItem.status == "queued")
                return {str(r) for (r,) in rows} == {settings.selection_strategy}

        wait_until(ranked_by_the_model, timeout_s=180, what="the refilled queue")
        # The refill a score job ends with is a job of its own, so the loop's state sees it.
        with session_scope(settings.database_url) as s:
            after_score = s.scalars(select(Job).where(Job.kind == "refill")).all()
            after_score = [j for j in after_score if j.params == {"trigger": "scored"}]
            assert [j.status for j in after_score] == ["succeeded"]
            assert after_score[0].message.startswith("queued ")
        item = client.request("GET", "/api/v1/queue/next").json()
        assert item["reason"]["strategy"] == settings.selection_strategy == "balanced_cluster"
        assert item["clip"]["id"] in list(truth)[40:]  # only unlabeled clips are queued
        assert len(item["suggestions"]) == 5 and {"tag", "p"} <= set(item["suggestions"][0])

        first_queue = queued_clips(settings.database_url)
        assert first_queue and first_queue <= set(list(truth)[40:])

        # A second round registers v2 and applies the guard against v1 on the same clips.
        for clip_id in list(truth)[40:50]:
            client.request(
                "POST", f"/api/v1/clips/{clip_id}/labels", json={"tags": [truth[clip_id]]}
            )
        job2 = client.request("POST", "/api/v1/models/train").json()
        assert wait_job(client, job2["job_id"])["status"] == "succeeded"
        versions = {v["id"]: v for v in client.request("GET", "/api/v1/models").json()}
        v2 = versions[max(versions)]
        assert v2["metrics"]["baseline_score"] is not None
        # A round warm-starts from the promoted version only where that version served the
        # configured probe: a probe that served another candidate (the floor, say) has other
        # features, and its state fits no round's configured model.
        [v1_served] = [c for c in v1["metrics"]["candidates"] if c["chosen"]]
        assert {c["name"] for c in v1["metrics"]["candidates"]} == {
            "configured",
            "embedding_stats",
            "floor",
        }
        expected_start = v1["id"] if v1_served["name"] == "configured" else None
        assert v2["config"]["warm_start_from"] == expected_start, v1_served
        assert v2["status"] in ("promoted", "ready")
        # The refill after round 2 no longer offers the clips labeled since round 1.
        wait_until(
            lambda: queued_clips(settings.database_url) != first_queue,
            timeout_s=120,
            what="the queue refilled after round 2",
        )
        second_queue = queued_clips(settings.database_url)
        assert second_queue and not second_queue & set(list(truth)[:50])

        # Roll back to v1 by API; annotators may not.
        r = client.request("POST", f"/api/v1/models/{v1['id']}/promote")
        assert r.json()["status"] == "promoted"
        statuses = {v["id"]: v["status"] for v in client.request("GET", "/api/v1/models").json()}
        assert statuses[v1["id"]] == "promoted" and statuses[v2["id"]] in ("retired", "ready")
        assert list(statuses.values()).count("promoted") == 1
