"""Active learning on AV digits (DESIGN section 9): the best strategy should reach random
sampling's final accuracy with at most 60% of its labels, mean of 3 seeds.

``tagloop.simulation`` runs the service's own training, scoring and selection code with an
oracle on the FSDD+MNIST set of ``bench_fusion`` (35% image energy, 20 dB; speaker "theo"
held out as the test set, every other clip is the pool). Budget, for about 25 minutes on 2
CPU cores: a seed round of 50 labels (k-center on descriptors), then 8 rounds of 50 (450
labels at the end), each warm-started from the previous round with at least 150 optimiser
steps; strategies random, entropy, margin and BALD (4 MC-dropout passes); seeds 0, 1, 2.
The frames of an AV-digit clip are one still image repeated, so one frame per clip is kept:
the same information at an eighth of the visual cost.

Curves go to ``benchmarks/al_curves.csv`` and ``benchmarks/al_curves.png`` (rewritten after
every round, so an interrupted run still leaves its curves), the table to
``benchmarks/al_summary.json``.
``python -m tests.benchmarks.bench_al [strategy ...]`` runs it without the results file;
``--from-csv`` recomputes the figures from ``al_curves.csv`` into the results file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from tests.benchmarks.av_digits_tensors import cache_path, load_av_digits_tensors
from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB
from tests.benchmarks.common import REPO

STRATEGIES = ("entropy", "margin", "bald")
SEEDS = 3
SEED_SIZE = 50
BATCH = 50
ROUNDS = 8
FRAMES = 1
# One torch thread: on 2 shared cores (other benchmarks running), 2 threads ran a round 6x
# slower than 1 (44 s against 7 s), the threads waiting on each other.
NUM_THREADS = 1
CURVES_CSV = REPO / "benchmarks" / "al_curves.csv"
CURVES_PNG = REPO / "benchmarks" / "al_curves.png"
SUMMARY_JSON = REPO / "benchmarks" / "al_summary.json"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The results-file figures: labels to match random's final accuracy (null when no
    strategy gets there: random's last point sits on the plateau's noise), and per strategy
    the labels to reach 95 % of it and the area under the mean curve."""
    rows = summary["strategies"]
    return {
        "al_label_fraction_to_match_random": summary["best_fraction"],
        "al_labels_to_95pct_random": {s: r["labels_to_95pct"] for s, r in rows.items()},
        "al_curve_area": {s: r["area"] for s, r in rows.items()},
    }


def from_csv() -> dict[str, Any]:
    """The figures again from the saved curves, without training (the run's timing and
    settings are kept from the results file)."""
    from tagloop.simulation_report import read_curves_csv, summarize_savings
    from tests.benchmarks.common import RESULTS

    summary = summarize_savings(read_curves_csv(CURVES_CSV))
    previous = json.loads(RESULTS.read_text()).get("al", {}) if RESULTS.exists() else {}
    return {**headline(summary), "al": {**previous, **summary}}


def run(*, out: dict[str, Any], strategies: tuple[str, ...] = STRATEGIES) -> None:
    from tagloop.simulation import RoundRecord, SimulationOptions, run_simulation
    from tagloop.simulation_data import load_tensor_set
    from tagloop.simulation_report import (
        format_summary,
        plot_curves,
        summarize_savings,
        write_curves_csv,
    )

    load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)  # build the cache once
    data = load_tensor_set(
        cache_path(image_energy=IMAGE_ENERGY, snr_db=SNR_DB, seed=0), frames=FRAMES
    )
    options = SimulationOptions(
        strategies=strategies,
        seed_size=SEED_SIZE,
        batch_size=BATCH,
        rounds=ROUNDS,
        seeds=SEEDS,
        num_threads=NUM_THREADS,
    )
    title = f"AV digits (FSDD+MNIST, speaker theo held out), {SEEDS} seeds"
    records: list[RoundRecord] = []
    start = time.perf_counter()
    load_before = uptime()

    def on_round(record: RoundRecord) -> None:
        records.append(record)
        print(
            f"[al] {record.strategy:<12} seed {record.seed} round {record.round}: "
            f"{record.n_labels} labels, accuracy {record.accuracy:.3f} "
            f"(train {record.train_seconds:.0f} s, select {record.select_seconds:.0f} s, "
            f"{time.perf_counter() - start:.0f} s so far)",
            flush=True,
        )
        write_curves_csv(records, CURVES_CSV)

    run_simulation(data, options=options, progress=on_round)
    seconds = time.perf_counter() - start
    plot_curves(records, CURVES_PNG, title=title)
    summary = summarize_savings(records)
    print(format_summary(summary), flush=True)
    settings = {
        "dataset": "fsdd-mnist",
        "image_energy": IMAGE_ENERGY,
        "snr_db": SNR_DB,
        "test_speaker": "theo",
        "pool": len(data.pool),
        "test": len(data.test),
        "frames_per_clip": FRAMES,
        **{k: v for k, v in options.__dict__.items() if k != "strategies"},
        "strategies": ["random", *strategies],
    }
    SUMMARY_JSON.write_text(json.dumps({**summary, "settings": settings}, indent=2) + "\n")
    out.update(headline(summary))
    out["al"] = {
        **summary,
        "settings": settings,
        "seconds": seconds,
        "load_before": load_before,
        "load_after": uptime(),
        "curves": str(CURVES_CSV.relative_to(REPO)),
    }


if __name__ == "__main__" and sys.argv[1:] == ["--from-csv"]:
    from tests.benchmarks.common import save_results

    figures = from_csv()
    save_results(figures)
    print(json.dumps({k: v for k, v in figures.items() if k != "al"}, indent=1))
elif __name__ == "__main__":
    result: dict[str, Any] = {}
    run(out=result, strategies=tuple(sys.argv[1:]) or STRATEGIES)
    print(json.dumps(result["al"], indent=1, default=str)[:4000])
