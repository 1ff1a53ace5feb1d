"""The API fuzz (tests/integration/test_api_fuzz.py) with a larger budget: ``examples``
drawn requests per operation, database (SQLite, PostgreSQL) and role (admin, annotator,
nobody), from a fixed seed. Records ``api_fuzz_requests`` and ``api_fuzz_failed_tests``
(must be 0); the failing cases are in the pytest output it prints.

    python -m tests.benchmarks.bench_api_fuzz [examples]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

from tests.benchmarks.common import REPO

EXAMPLES = 100
TEST = "tests/integration/test_api_fuzz.py"


def run(*, out: dict[str, Any], examples: int = EXAMPLES) -> None:
    start = time.perf_counter()
    env = {**os.environ, "TAGLOOP_FUZZ_EXAMPLES": str(examples)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    print(proc.stdout[-20_000:], flush=True)
    passed = re.search(r"(\d+) passed", proc.stdout)
    failed = re.search(r"(\d+) failed", proc.stdout)
    if passed is None and failed is None:
        raise RuntimeError(f"the fuzz did not run:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    from tests.integration.test_api_fuzz import ROLES

    operations = len(_operation_keys())
    out["api_fuzz_examples_per_operation"] = examples
    out["api_fuzz_requests"] = examples * operations * len(ROLES) * 2  # two databases
    out["api_fuzz_failed_tests"] = int(failed.group(1)) if failed else 0
    out["api_fuzz_seconds"] = round(time.perf_counter() - start, 1)


def _operation_keys() -> list[str]:
    import tempfile
    from pathlib import Path

    from services.api.app import create_app
    from tagloop.config import Settings
    from tests.integration.openapi_fuzz import operations

    with tempfile.TemporaryDirectory() as tmp:
        doc = create_app(Settings(data_dir=Path(tmp))).openapi()
    return [op.key for op in operations(doc)]


if __name__ == "__main__":
    result: dict[str, Any] = {}
    run(out=result, examples=int(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES)
    print(result)
