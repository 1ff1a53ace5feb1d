"""The stopping rule on a second vocabulary (issue 12: choose the stop threshold on more than
one curve).

``bench_al_lt_stop`` runs the service's cadence on the 38-tag long-tailed set, where macro-AP
is still rising at 2,000 labels and the rule rightly never fires. This runs the same cadence
(the default strategy, the probe, a version every ``retrain_min_labels`` labels, stop-set kappa
against the version before) on the AV digits, one 10-way group on 2,500 pool clips, whose
curve does flatten, for ``SEEDS`` seeds up to ``MAX_LABELS`` labels: where the service's rule
fires there and how much macro-AP the curve still gains after it. Seed 0's curve goes to
``benchmarks/al_stop_av_digits.png``.
"""

from __future__ import annotations

import statistics
from typing import Any

from tests.benchmarks import bench_al_lt_stop
from tests.benchmarks.common import REPO

SEEDS = 3
MAX_LABELS = 600  # the AV digits' probe curve is flat from about 450 labels


def run(*, out: dict[str, Any]) -> None:
    curves = []
    for seed in range(SEEDS):
        one: dict[str, Any] = {}
        name = "al_stop_av_digits.png" if seed == 0 else f"work/al_stop_av_digits_s{seed}.png"
        bench_al_lt_stop.run(
            out=one,
            max_labels=MAX_LABELS,
            plot=REPO / "benchmarks" / name,
            seed=seed,
            data_set="av_digits",
        )
        curves.append(one["al_stop_curve"])
    fired = [c["service_rule"] for c in curves if c["service_rule"] is not None]
    out["al_stop_av_digits"] = {
        "threshold": curves[0]["threshold"],
        "window": curves[0]["window"],
        "fired_runs": len(fired),
        "runs": len(curves),
        "labels_mean": statistics.mean(f["labels"] for f in fired) if fired else None,
        "macro_ap_gap_mean": (
            statistics.mean(f["macro_ap_gap_to_end"] for f in fired) if fired else None
        ),
        "curves": curves,
    }
