"""`make bench`: run every benchmark and merge its figures into benchmarks/results.json.

``python -m tests.benchmarks.run [name ...]`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

from tests.benchmarks.common import RESULTS, save_results

BENCHMARKS = [
    "bench_extract",
    "bench_fusion",
    "bench_fusion_folds",
    "bench_fusion_folds_pretrained",
    "bench_train_round",
    "bench_selection",
    "bench_al",
    "bench_low_label",
    "bench_low_label_ceiling",
    "bench_pretrain",
    "bench_cold_start",
    "bench_cold_start_lt",
    "bench_al_pretrained",
    "bench_al_lt",
    "bench_al_lt_stop",
    "bench_al_stop_av",
    "bench_al_lt_small",
    "bench_queue",
    "bench_refill",
    "bench_loop",
    "bench_suite",
    "bench_api_fuzz",
    "bench_scale_paper",
]


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        module = importlib.import_module(f"tests.benchmarks.{name}")
        out: dict[str, Any] = {}
        start = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        module.run(out=out)
        print(
            f"[bench] {name} took {time.perf_counter() - start:.0f} s: "
            f"{json.dumps(out, default=str)[:600]}",
            flush=True,
        )
        save_results(out)
    print(f"[bench] results in {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
