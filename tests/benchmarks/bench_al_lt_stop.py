"""Where the stopping rule fires at the service's own cadence (issue 12, ``al_stop_round``).

``bench_al_lt`` compares versions 100 labels apart, and within 500 labels the stop-set kappa
never reached 0.99. The service trains a version every ``retrain_min_labels`` (20) new labels,
and the rule compares *consecutive versions*, so its kappa is measured over much smaller
steps. This benchmark runs that cadence: the default strategy on the long-tailed set (seed 0,
the same seed batch, probe, frames and measures as ``bench_al_lt``), a version every
``retrain_min_labels`` labels from ``SEED_SIZE`` up to ``MAX_LABELS``, and records each
version's macro-AP on the test split and its stop-set kappa against the version before.

Reported (``al_stop_curve``): where the rule fires with the service's threshold and window,
and for a few other thresholds, with the macro-AP there and the gap to the end of the curve
(how much an operator who stopped there would have missed by ``MAX_LABELS``). The curve goes
to ``benchmarks/al_lt_stop.png``.

``python -m tests.benchmarks.bench_al_lt_stop [max_labels] [--seed S] [--set av_digits]``
runs it without the results file, for a longer curve (to a plateau), another seed (seed batch,
training and ties) or another vocabulary (the AV digits of ``bench_al``: one 10-way group on
2,500 pool clips, a seed batch of 50): figures to ``benchmarks/work/al_stop_SET_N_sS.json``,
the plot to ``benchmarks/al_stop_SET_N_sS.png``, leaving ``make bench``'s files alone. These
are what the stop threshold is chosen on: one curve of one vocabulary cannot choose it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.benchmarks.bench_al_lt import (
    FRAMES,
    NUM_THREADS,
    PROBE_BELOW,
    SEED_SIZE,
    keep_frames,
    measures,
    rare_columns,
    stop_rows,
    uptime,
)
from tests.benchmarks.common import REPO, shown_path

if TYPE_CHECKING:
    from tagloop.simulation import RoundRecord
    from tagloop.simulation_data import SimulationSet

MAX_LABELS = 700
THRESHOLDS = (0.93, 0.94, 0.945, 0.95, 0.96, 0.97, 0.98, 0.99)
SEED = 0
SETS = ("long_tail", "av_digits")
AV_DIGITS_SEED_SIZE = 50  # bench_al's
CURVE_PNG = REPO / "benchmarks" / "al_lt_stop.png"


def fire_table(
    records: Sequence[RoundRecord], *, thresholds: Sequence[float], window: int
) -> dict[str, Any]:
    """Per threshold: where the rule first fires on this curve (labels, macro-AP there) and
    the macro-AP gap from there to the curve's end; None where it never fires."""
    from tagloop.training.stopping import first_stop

    kappas = [r.extra["stop_kappa"] for r in records]
    end = records[-1].accuracy
    table: dict[str, Any] = {}
    for threshold in thresholds:
        at = first_stop(kappas, threshold=threshold, window=window)
        table[f"{threshold:g}"] = (
            None
            if at is None
            else {
                "labels": records[at].n_labels,
                "macro_ap": records[at].accuracy,
                "macro_ap_gap_to_end": end - records[at].accuracy,
            }
        )
    return table


def plot_stop_curve(
    records: Sequence[RoundRecord], path: Any, *, threshold: float, title: str
) -> Any:
    """Macro-AP (left axis) and the stop-set kappa (right axis) against labels."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    labels = [r.n_labels for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(labels, [r.accuracy for r in records], color="tab:blue", marker="o", ms=3)
    ax.set_xlabel("labels")
    ax.set_ylabel("test macro-AP", color="tab:blue")
    twin = ax.twinx()
    measured = [(r.n_labels, r.extra["stop_kappa"]) for r in records if r.extra["stop_kappa"]]
    twin.plot([n for n, _ in measured], [k for _, k in measured], color="tab:red", marker=".")
    twin.axhline(threshold, color="tab:red", linestyle=":", linewidth=1)
    twin.set_ylabel("stop-set kappa vs the version before", color="tab:red")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_set(name: str) -> tuple[SimulationSet, int]:
    """(the simulation set, its seed batch size) for ``name`` in ``SETS``."""
    if name == "long_tail":
        from tests.benchmarks.lt_tensors import load_lt_simulation_set

        return keep_frames(load_lt_simulation_set(0), FRAMES), SEED_SIZE
    if name == "av_digits":
        from tagloop.simulation_data import load_tensor_set
        from tests.benchmarks import bench_al
        from tests.benchmarks.av_digits_tensors import cache_path, load_av_digits_tensors
        from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB

        load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)  # build once
        path = cache_path(image_energy=IMAGE_ENERGY, snr_db=SNR_DB, seed=0)
        return load_tensor_set(path, frames=bench_al.FRAMES), AV_DIGITS_SEED_SIZE
    raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")


def run(
    *,
    out: dict[str, Any],
    max_labels: int = MAX_LABELS,
    plot: Path = CURVE_PNG,
    seed: int = SEED,
    data_set: str = "long_tail",
) -> None:
    from tagloop.config import Settings
    from tagloop.simulation import SimulationOptions, simulate_curve

    settings = Settings()
    step = settings.retrain_min_labels
    strategy = settings.selection_strategy
    data, seed_size = load_set(data_set)
    options = SimulationOptions(
        strategies=(strategy,),
        seed_size=seed_size,
        batch_size=step,
        rounds=(max_labels - seed_size) // step,
        seeds=1,
        num_threads=NUM_THREADS,
        probe_below=PROBE_BELOW,
        candidates=None,
        per_video_cap=1,
    )
    factory = measures(data, options=options, rare=rare_columns(data), stop=stop_rows(data))
    start = time.perf_counter()
    load_before = uptime()

    def report(record: RoundRecord) -> None:
        kappa = record.extra["stop_kappa"]
        print(
            f"[al_stop] {record.n_labels} labels: macro-AP {record.accuracy:.3f}, "
            f"kappa {'-' if kappa is None else f'{kappa:.4f}'} "
            f"({time.perf_counter() - start:.0f} s so far)",
            flush=True,
        )

    records = simulate_curve(
        data,
        strategy=strategy,
        seed=seed,
        options=options,
        progress=report,
        measure=factory(strategy, seed),
    )
    plot_stop_curve(
        records,
        plot,
        threshold=settings.stop_kappa,
        title=f"stopping rule at the service's cadence ({data_set.replace('_', ' ')}, seed {seed})",
    )
    fires = fire_table(
        records, thresholds=sorted({*THRESHOLDS, settings.stop_kappa}), window=settings.stop_window
    )
    out["al_stop_curve"] = {
        "strategy": strategy,
        "set": data_set,
        "seed": seed,
        "step_labels": step,
        "window": settings.stop_window,
        "threshold": settings.stop_kappa,
        "fires": fires,
        "service_rule": fires[f"{settings.stop_kappa:g}"],
        "labels": [r.n_labels for r in records],
        "macro_ap": [round(r.accuracy, 4) for r in records],
        "kappa": [r.extra["stop_kappa"] for r in records],
        # Pre-check quality at 0.5 and at the cuts fitted on 100 random clips (the holdout).
        **{
            key: [_rounded(r.extra.get(key)) for r in records]
            for key in (
                "micro_f1",
                "micro_f1_fitted",
                "group_micro_f1",
                "group_micro_f1_fitted",
                "group_threshold",
            )
        },
        "plot": shown_path(plot),
        "seconds": round(time.perf_counter() - start, 1),
        "load_before": load_before,
        "load_after": uptime(),
    }


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _cli(argv: list[str]) -> tuple[int, int, str]:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_al_lt_stop")
    parser.add_argument("max_labels", type=int, nargs="?", default=MAX_LABELS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--set", dest="data_set", choices=SETS, default="long_tail")
    args = parser.parse_args(argv)
    return args.max_labels, args.seed, args.data_set


if __name__ == "__main__":
    n, seed, data_set = _cli(sys.argv[1:])
    name = f"al_stop_{data_set}_{n}_s{seed}"
    result: dict[str, Any] = {}
    run(
        out=result,
        max_labels=n,
        plot=REPO / "benchmarks" / f"{name}.png",
        seed=seed,
        data_set=data_set,
    )
    path = REPO / "benchmarks" / "work" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result["al_stop_curve"]["fires"], indent=1), f"\nall figures in {path}")
