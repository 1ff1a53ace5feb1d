"""The import contracts `make lint` enforces (issue 21): the core imports no framework and
nothing above it, and the API, the workers and the UI never import one another.

Each case hands ruff one import as a file in that folder (on stdin: nothing is written to the
repository), so a contract that stops firing (a ruff.toml deleted or no longer extended) fails
here, and so does one that refuses what a layer must be able to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BANNED = [
    ("tagloop", "from fastapi import APIRouter"),
    ("tagloop", "from starlette.types import Scope"),
    ("tagloop", "import uvicorn"),
    ("tagloop", "from celery import Celery"),
    ("tagloop", "import streamlit as st"),
    ("tagloop/pipeline", "from services.api.deps import TaskSender"),
    ("tagloop/db", "import workers.tasks"),
    ("tagloop/db", "from celery import Celery"),
    ("tagloop/db", "from tagloop.pipeline.loop import LoopPlan"),
    ("tagloop/db", "from tagloop.pipeline import dispatch"),
    ("tagloop", "from ui import api_client"),
    ("tagloop/pipeline", "def f():\n    from celery import Celery\n    return Celery"),
    ("services/api", "from workers.tasks import train"),
    ("services/api/routes", "import ui.app"),
    ("services/api", "import torch"),
    ("workers", "from services.api import deps"),
    ("workers", "from ui.api_client import ApiError"),
    ("ui", "from services.api.schemas import VideoOut"),
    ("ui/views", "import workers.celery_app"),
]

ALLOWED = [
    ("tagloop", "from kombu import Connection"),  # broker housekeeping, no Celery
    ("tagloop/pipeline", "import torch"),
    ("tagloop/pipeline", "from tagloop.db import loop_state"),
    ("tagloop/db", "from tagloop.db import jobs as job_repo"),
    ("services/api", "from celery import Celery"),  # the API's sender, by task name
    ("services/api", "from tagloop.pipeline.dispatch import dispatch"),
    ("workers", "from celery import Task"),
    ("workers", "from tagloop.pipeline import loop"),
    ("ui", "import streamlit as st"),
    ("ui", "from tagloop.client import TagloopClient"),
]


def _codes(folder: str, source: str) -> list[str]:
    """Ruff's rule codes for ``source`` as a module in ``folder`` (its config applies)."""
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "json"]
    command += ["--stdin-filename", f"{folder}/_contract_probe.py", "-"]
    result = subprocess.run(
        command,
        input=f"{source}\n\n__all__: list[str] = []\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode in (0, 1), result.stderr
    return [d["code"] for d in json.loads(result.stdout)]


@pytest.mark.parametrize(("folder", "source"), BANNED)
def test_a_banned_import_fails_lint(folder: str, source: str) -> None:
    assert "TID251" in _codes(folder, source)


@pytest.mark.parametrize(("folder", "source"), ALLOWED)
def test_what_a_layer_needs_passes(folder: str, source: str) -> None:
    assert "TID251" not in _codes(folder, source)
