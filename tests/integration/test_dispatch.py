"""One send path (issue 21): a task the broker cannot take ends its job ``failed``, so the job
blocks nothing and a retry goes through once the broker is back.

The broker is a real Redis server of this test's own, stopped and started again on the same
port; the API is the real uvicorn process."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from tagloop.client import ApiError, TagloopClient
from tagloop.db.engine import session_scope
from tagloop.db.models import Job
from tagloop.pipeline import PROCESS_VIDEO_JOB, loop
from tagloop.task_names import PRETRAIN, PROCESS_VIDEO, QUEUE_MEDIA, QUEUE_ML, TRAIN
from tests.conftest import IN_CI, free_port
from tests.integration.stack_helpers import running_stack, stack_settings
from tests.video_factory import write_test_video

pytestmark = pytest.mark.integration


class RedisServer:
    """A redis-server child on a fixed port that can be stopped and started again."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def queued_tasks(self, queue: str) -> list[tuple[str, list[int]]]:
        """(task name, args) of the messages waiting in ``queue``, oldest first."""
        out = []
        for raw in reversed(redis.Redis(port=self.port).lrange(queue, 0, -1)):
            message = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            out.append((message["headers"]["task"], args))
        return out


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


def _post_error(client: TagloopClient, path: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        client.request("POST", path)
    return caught.value


def _jobs(db_url: str, kind: str) -> list[tuple[str, str]]:
    with session_scope(db_url) as s:
        rows = s.scalars(select(Job).where(Job.kind == kind).order_by(Job.id))
        return [(j.status, j.message) for j in rows]


def test_a_broker_outage_during_a_manual_round_leaves_no_live_job(
    tmp_path: Path, pg_url: str, broker: RedisServer
) -> None:
    settings = stack_settings(
        tmp_path, database_url=pg_url, broker_url=f"redis://127.0.0.1:{broker.port}/0"
    )
    with running_stack(settings, ["api"]) as (_, client):
        broker.stop()
        for path in ("/api/v1/models/train", "/api/v1/models/pretrain"):
            err = _post_error(client, path)
            assert (err.http_status, err.code) == (503, "broker_unavailable"), path
        # Both jobs ended failed with the code: neither blocks a retry as "live".
        for kind in (loop.TRAIN_JOB, loop.PRETRAIN_JOB):
            [(status, message)] = _jobs(pg_url, kind)
            assert status == "failed" and message.startswith("broker_unavailable: "), message

        broker.start()
        train = client.request("POST", "/api/v1/models/train")
        pretrain = client.request("POST", "/api/v1/models/pretrain")
        assert train.status_code == pretrain.status_code == 202
        train_id, pretrain_id = train.json()["job_id"], pretrain.json()["job_id"]
        # The broker holds exactly the retried tasks, and the new jobs are live: one at a time.
        assert broker.queued_tasks(QUEUE_ML) == [(TRAIN, [train_id]), (PRETRAIN, [pretrain_id])]
        assert _jobs(pg_url, loop.TRAIN_JOB)[-1][0] == "queued"
        assert _post_error(client, "/api/v1/models/train").code == "training_running"
        assert _post_error(client, "/api/v1/models/pretrain").code == "pretrain_running"


def test_an_upload_during_a_broker_outage_is_retried_by_uploading_again(
    tmp_path: Path, pg_url: str, broker: RedisServer
) -> None:
    video_path = write_test_video(tmp_path / "v.mp4", seconds=2, width=64, height=48)
    settings = stack_settings(
        tmp_path, database_url=pg_url, broker_url=f"redis://127.0.0.1:{broker.port}/0"
    )
    with running_stack(settings, ["api"]) as (_, client):
        broker.stop()
        with pytest.raises(ApiError) as caught:
            client.upload_video(video_path)
        assert (caught.value.http_status, caught.value.code) == (503, "broker_unavailable")
        [(status, message)] = _jobs(pg_url, PROCESS_VIDEO_JOB)
        assert status == "failed" and message.startswith("broker_unavailable: "), message

        broker.start()
        video = client.upload_video(video_path)
        assert video["duplicate"] is True and video["job_id"] is not None
        assert broker.queued_tasks(QUEUE_MEDIA) == [(PROCESS_VIDEO, [video["id"], video["job_id"]])]
        assert [status for status, _ in _jobs(pg_url, PROCESS_VIDEO_JOB)] == ["failed", "queued"]
