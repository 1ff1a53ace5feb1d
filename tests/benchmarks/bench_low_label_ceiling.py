"""The ceiling of the low-label curve: every series of ``bench_low_label`` with the whole pool
labeled (2,500 clips of the five training speakers), one seed.

Why: ``low_label_curve``'s target asks the served model to beat the logistic regression by 5
points at 640 labels. Where no model here reaches that figure even with every pool label, the
target at 640 asks for more than the inputs hold; this says whether it does.

``low_label_ceiling`` in results.json: per series the held-out speaker's accuracy at the full
pool (``served_pretrained`` is what the service serves there after a pretraining run: past
``probe_below_labels_pretrained`` the full model from the pretrained branches), ``best`` the
highest of them, and the seconds.
"""

from __future__ import annotations

import time
from typing import Any

SEED = 0
POOL = 2500  # the training speakers' clips of the AV-digits set


def run(*, out: dict[str, Any]) -> None:
    from tests.benchmarks import bench_low_label

    start = time.perf_counter()
    found: dict[str, Any] = {}
    bench_low_label.run(out=found, seeds=(SEED,), budgets=(POOL,), with_cv=False, curve_png=None)
    (record,) = found["low_label"]["runs"]
    series = {
        name: float(value)
        for name, value in record.items()
        if name in bench_low_label.SERIES and isinstance(value, float)
    }
    best = max(series, key=lambda name: series[name])
    out["low_label_ceiling"] = {
        "labels": POOL,
        "seed": SEED,
        "series": series,
        "best": {"series": best, "accuracy": series[best]},
        "served_kind": record["served_kind"],
        "seconds": round(time.perf_counter() - start, 1),
    }
