"""docker-compose.yml is complete and valid (no engine runs here; `config` needs none)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import IN_CI, REPO


def test_compose_file_is_valid() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        if IN_CI:
            pytest.fail("docker-compose is missing (.ci/run installs Debian's package)")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    subprocess.run([exe, "config", "-q"], cwd=REPO, check=True)
    services = subprocess.run(
        [exe, "config", "--services"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    assert {"redis", "postgres", "migrate", "api", "worker", "loop-worker", "beat", "ui"} <= set(
        services
    )
    rendered = subprocess.run(
        [exe, "config"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    assert "redis://redis:6379/0" in rendered and "postgresql+psycopg://" in rendered
