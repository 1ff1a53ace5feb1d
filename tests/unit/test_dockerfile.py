"""The Dockerfile installs CPU torch by default (a build argument picks CUDA), pinned as
pyproject.toml pins it, before ``pip install .`` (which then keeps that build)."""

from __future__ import annotations

import re
import shlex
import tomllib

from tests.conftest import REPO

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile line, continuations joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"\s*(torch|torchaudio)\s*==\s*([^\s;,]+)\s*", dep)
        if m:
            pins[m.group(1)] = m.group(2)
    assert set(pins) == {"torch", "torchaudio"}, f"pyproject should pin both exactly: {deps}"
    return pins


def test_torch_comes_from_the_cpu_index_by_default_with_pyprojects_pins() -> None:
    steps = _instructions()
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    assert args.get("TORCH_INDEX") == CPU_INDEX

    torch_runs = [
        (i, shlex.split(a)) for i, (kind, a) in enumerate(steps) if kind == "RUN" and "torch" in a
    ]
    assert len(torch_runs) == 1, torch_runs
    at, argv = torch_runs[0]
    assert argv[:2] == ["pip", "install"]
    assert argv[argv.index("--index-url") + 1] == "${TORCH_INDEX}"
    arg_at = next(i for i, (k, a) in enumerate(steps) if k == "ARG" and a.startswith("TORCH_INDEX"))
    assert arg_at < at, "the ARG must come before the RUN that uses it"

    pins = dict(p.split("==", 1) for p in argv if p.startswith("torch"))
    assert pins == _pyproject_pins()

    runs = [(i, shlex.split(a)) for i, (k, a) in enumerate(steps) if k == "RUN"]
    project_install = next(i for i, argv in runs if argv == ["pip", "install", "."])
    assert at < project_install, "torch first, so `pip install .` keeps the CPU build"
