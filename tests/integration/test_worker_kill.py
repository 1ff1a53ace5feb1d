"""A worker killed mid-task (SIGKILL, no chance to clean up) must not leave a video stuck in
``processing``: after a restart the video finishes, with every clip exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Job
from tagloop.launcher import Stack, child_specs
from tests.integration.stack_helpers import running_stack, stack_settings, wait_until
from tests.video_factory import write_test_video


@pytest.fixture(params=["redis-postgresql", "sqlite-embedded"])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite-embedded":
        return {
            "database_url": f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}",
            "broker_url": f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite'}",
        }
    return {
        "database_url": request.getfixturevalue("pg_url"),
        "broker_url": request.getfixturevalue("redis_url"),
    }


def test_killed_worker_video_finishes_after_restart(tmp_path: Path, mode: dict[str, str]) -> None:
    video_path = write_test_video(tmp_path / "long.mp4", seconds=60, width=320, height=240)
    settings = stack_settings(
        tmp_path,
        clip_seconds=1.0,  # 60 clips: plenty of time to kill the worker in the middle
        stale_job_seconds=4.0,
        recover_every_seconds=2.0,
        max_job_attempts=3,
        **mode,
    )
    with running_stack(settings, ["api", "worker", "beat"]) as (stack, client):
        video = client.upload_video(video_path)

        def n_clips() -> int:
            with session_scope(settings.database_url) as s:
                return s.query(Clip).filter(Clip.video_id == video["id"]).count()

        wait_until(lambda: n_clips() >= 5, timeout_s=120, what="the worker to store some clips")
        worker = stack.procs["worker"]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        before = n_clips()
        assert client.get_video(video["id"])["status"] == "processing"
        assert before < 60, "the worker finished before it could be killed; make the video longer"

        restarted = Stack(
            settings,
            child_specs(settings, components=["worker"]),
            log_dir=settings.data_dir / "logs",
        )
        try:
            [done] = client.wait_for_videos([video["id"]], timeout_s=240)
        finally:
            restarted.stop()
        assert done["status"] == "ready", done
        assert done["n_clips"] == 60
        clips = client.list_clips(video_id=video["id"])
        assert sorted(c["index"] for c in clips) == list(range(60))  # each clip exactly once
        with session_scope(settings.database_url) as s:
            job = s.get(Job, video["job_id"])
            assert job is not None and job.status == "succeeded" and job.attempts >= 2
