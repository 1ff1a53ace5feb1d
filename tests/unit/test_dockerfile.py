"""The Dockerfile installs requirements.lock, hashes required, before the project itself
(``--no-deps``, so nothing outside the lock comes in), and the lock pins torch and torchaudio
as pyproject.toml does."""

from __future__ import annotations

import re
import shlex
import tomllib

from tests.conftest import REPO


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


def _lock_pins() -> dict[str, str]:
    text = (REPO / "requirements.lock").read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", text, flags=re.MULTILINE))


def test_the_image_installs_the_lock_with_hashes_before_the_project() -> None:
    runs = [(i, shlex.split(a)) for i, (k, a) in enumerate(_instructions()) if k == "RUN"]
    lock_at = next(i for i, argv in runs if "requirements.lock" in argv)
    lock_argv = dict(runs)[lock_at]
    assert lock_argv[:2] == ["pip", "install"] and "--require-hashes" in lock_argv
    project_at = next(i for i, argv in runs if argv[:2] == ["pip", "install"] and "." in argv)
    assert "--no-deps" in dict(runs)[project_at], "the project must not resolve its own deps"
    assert lock_at < project_at


def test_the_lock_pins_what_pyproject_pins_and_every_dependency() -> None:
    lock = _lock_pins()
    for name, version in _pyproject_pins().items():
        assert lock.get(name) == version
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(deps["dependencies"]) + list(deps["optional-dependencies"]["dev"])
    normalised = {k.lower().replace("_", "-") for k in lock}
    for dep in wanted:
        name = re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        assert name in normalised, f"{name} is in pyproject.toml but not in requirements.lock"
