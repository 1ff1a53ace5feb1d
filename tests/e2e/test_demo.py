"""`tagloop demo` end to end, as `make demo` runs it: real processes on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, free_port


def run_cli(*args: str, data_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGLOOP_")}
    env.update(TAGLOOP_DATA_DIR=str(data_dir), TAGLOOP_API_PORT=str(free_port()))
    return subprocess.run(
        [sys.executable, "-m", "tagloop.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_ingests_clips_through_rest_and_workers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = run_cli("demo", "--n", "12", data_dir=data)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "uploaded 12 videos over REST (0 already known)" in proc.stdout
    assert "videos      12  {'ready': 12}" in proc.stdout
    assert "clips       12" in proc.stdout
    assert (data / "admin.token").read_text().startswith("tl_")
    assert oct((data / "admin.token").stat().st_mode)[-3:] == "600"
    # A second run finds the same bytes already ingested and still ends cleanly.
    again = run_cli("demo", "--n", "12", data_dir=data)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(12 already known)" in again.stdout


def test_token_cli_creates_usable_tokens(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("db", "upgrade", data_dir=data).returncode == 0
    made = run_cli("token", "create", "--name", "ana", "--role", "annotator", data_dir=data)
    assert made.returncode == 0 and made.stdout.strip().startswith("tl_")
    bad = run_cli("token", "create", "--name", "x", "--role", "root", data_dir=data)
    assert bad.returncode == 1 and "invalid_role" in bad.stderr

    from tagloop.auth import authenticate
    from tagloop.db.engine import session_scope

    with session_scope(f"sqlite:///{data / 'tagloop.db'}") as s:
        row = authenticate(s, made.stdout.strip())
        assert row is not None and row.role == "annotator"
