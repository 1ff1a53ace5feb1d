"""`tagloop up`: run API, worker, beat and UI as child processes of one command.

Children are started by module name (``python -m services.api.serve``, celery), never
imported, so this process stays light and each child gets the same TAGLOOP_* settings through
its environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tagloop.config import Settings, ensure_data_dir, private_dir
from tagloop.errors import TagloopError

UI_APP = Path(__file__).resolve().parent.parent / "ui" / "app.py"


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]


def _celery_worker(name: str, queues: str, concurrency: int) -> ChildSpec:
    return ChildSpec(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "-Q",
            queues,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "-n",
            f"tagloop-{name}-{os.getpid()}@%h",
        ],
    )


def child_specs(
    settings: Settings, *, components: Iterable[str], worker_concurrency: int = 1
) -> list[ChildSpec]:
    """ "worker" is two processes: media and ml work, and the loop's own light worker (the
    tick and refills), so a refill never waits behind a training round."""
    py = sys.executable
    specs = {
        # Host, port and worker processes come from the TAGLOOP_* environment (child_env).
        "api": [ChildSpec("api", [py, "-m", "services.api.serve"])],
        "worker": [
            _celery_worker("worker", "media,ml", worker_concurrency),
            _celery_worker("loop", "loop", 1),
        ],
        "beat": [
            ChildSpec(
                "beat",
                [py, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel", "WARNING"],
            )
        ],
        "ui": [
            ChildSpec(
                "ui",
                [
                    py,
                    "-m",
                    "streamlit",
                    "run",
                    str(UI_APP),
                    "--server.headless",
                    "true",
                    "--server.port",
                    str(settings.ui_port),
                    # Same interface as the API (the UI signs in with the local admin token
                    # only when settings.ui_single_user is on, as `tagloop up` sets it).
                    "--server.address",
                    settings.api_host,
                    "--browser.gatherUsageStats",
                    "false",
                    # No Deploy button, rerun or clear-cache menu for the people labeling.
                    "--client.toolbarMode",
                    "viewer",
                ],
            )
        ],
    }
    return [spec for c in components for spec in specs[c]]


def child_env(settings: Settings) -> dict[str, str]:
    """The parent's environment plus every resolved setting, so all children agree."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        key = f"TAGLOOP_{name.upper()}"
        if value is None:  # unset: the child falls back to the field's default (None)
            env.pop(key, None)
            continue
        env[key] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Stack:
    """The running children; stop() ends them all (process groups, so grandchildren too)."""

    def __init__(self, settings: Settings, specs: Sequence[ChildSpec], *, log_dir: Path) -> None:
        self.settings = settings
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        ensure_data_dir(settings)
        private_dir(log_dir)
        self.log_dir = log_dir
        env = child_env(settings)
        root = Path(__file__).resolve().parent.parent
        for spec in specs:
            # Owner-only, like the rest of the data dir (request logs name callers).
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            log = os.fdopen(os.open(log_dir / f"{spec.name}.log", flags, 0o600), "ab")
            self.procs[spec.name] = subprocess.Popen(
                spec.argv,
                env=env,
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def wait_for_api(self, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if dead := self.dead():
                raise TagloopError(
                    f"{', '.join(dead)} exited at start; see {self.log_dir}", code="child_exited"
                )
            try:
                if httpx.get(f"{self.settings.api_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TagloopError(
            f"the API did not answer within {timeout_s:.0f} s; see {self.log_dir}",
            code="api_timeout",
        )

    def stop(self, *, timeout_s: float = 15.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
