"""Start the real stack (uvicorn API, celery worker, beat) as child processes for tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tagloop.cli import prepare
from tagloop.client import TagloopClient
from tagloop.config import Settings
from tagloop.db.engine import reset_engines
from tagloop.launcher import Stack, child_specs
from tests.conftest import free_port


def stack_settings(
    tmp_path: Path, *, database_url: str, broker_url: str, **extra: object
) -> Settings:
    reset_engines()
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=broker_url,
        api_port=free_port(),
        **extra,  # type: ignore[arg-type]
    )


@contextmanager
def running_stack(
    settings: Settings, components: list[str]
) -> Iterator[tuple[Stack, TagloopClient]]:
    token = prepare(settings)
    stack = Stack(
        settings, child_specs(settings, components=components), log_dir=settings.data_dir / "logs"
    )
    try:
        if "api" in components:
            stack.wait_for_api(timeout_s=90)
        with TagloopClient(settings.api_url, token) as client:
            yield stack, client
    except BaseException:
        for log in sorted((settings.data_dir / "logs").glob("*.log")):
            print(f"----- {log.name} -----\n{log.read_text()[-4000:]}")
        raise
    finally:
        stack.stop()


def wait_until(
    predicate, *, timeout_s: float, poll_s: float = 0.3, what: str = "condition"
) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
