"""Active learning with and without pretraining on the pool: the service's default strategy
(``Settings().selection_strategy``) against random, each from scratch and from the pretrained
branches (``al_pretrained_*``).

``tagloop.simulation`` as in ``bench_al`` (the service's training, scoring and selection code
with an oracle; FSDD+MNIST at 35% image energy and 20 dB, pool = the 2,500 clips of the five
training speakers, test = the 500 clips of theo; one frame per clip; one torch thread), to
400 labels: a seed round of 100 (k-center on descriptors), then 3 rounds of 100, 2 seeds (the
probe's fit takes 1-2 minutes a round on 2 shared cores, so rounds of 50 would take hours).
With
``probe_below = Settings().probe_below_labels`` the simulated service follows the capacity
policy: the linear probe below that many labels, CentralNet from there on (fresh at the
switch, then warm-started round to round). At the default 500 every round to 400 labels is the
probe.

``pretrained``: every round gets ``Backbone(visual=path, audio=path)`` of one pretraining run
on the pool (default ``PretrainOptions``, num_threads=2, seed 0; never the held-out speaker):
the probe appends the frozen pretrained branch embeddings, CentralNet starts its branches from
them when it starts fresh. The weights of a ``bench_cold_start`` run with the same options are
reused when there are some (``bench_cold_start.encoders_path``), else pretraining runs here.

Figures: per configuration the final accuracy (mean ± std over seeds), the labels-to-match
table within it (``summarize_savings``: the strategy against that configuration's random),
and across both: the labels each curve needs to reach scratch random's final accuracy.
Curves: ``benchmarks/al_pretrained.png``; rows in ``benchmarks/work/al_pretrained.csv``.

    python -m tests.benchmarks.bench_al_pretrained [--quick]   (no results file)

``--quick`` (or ``AL_PRETRAINED_QUICK=1`` under ``run``): one seed, 2 rounds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.benchmarks.av_digits_tensors import cache_path, load_av_digits_tensors
from tests.benchmarks.bench_cold_start import cached_encoders, pretrain_options
from tests.benchmarks.bench_fusion import IMAGE_ENERGY, SNR_DB
from tests.benchmarks.bench_low_label import uptime
from tests.benchmarks.common import REPO, WORK, finish_accuracy_plot

if TYPE_CHECKING:
    from tagloop.simulation import RoundRecord

SEEDS = 2
SEED_SIZE = 100
BATCH = 100
ROUNDS = 3  # 100 + 3 x 100 = 400 labels
FRAMES = 1
NUM_THREADS = 1  # see bench_al: 2 threads on 2 shared cores ran rounds 6x slower
CONFIGS = ("scratch", "pretrained")
NAMES = {"scratch": "scratch", "pretrained": "pretrained on the pool"}
CURVE_PNG = REPO / "benchmarks" / "al_pretrained.png"
ROWS_CSV = WORK / "al_pretrained.csv"
RESULT_JSON = WORK / "al_pretrained.json"


def tag_records(records: Sequence[RoundRecord], config: str) -> list[RoundRecord]:
    """The records with ``strategy`` renamed ``"<strategy> (<config>)"``."""
    return [replace(r, strategy=f"{r.strategy} ({config})") for r in records]


def curve_table(records: Sequence[RoundRecord]) -> dict[str, list[dict[str, float]]]:
    """Series -> ``[{"n_labels", "mean", "std", "seeds"}]`` per round."""
    from tagloop.simulation_report import mean_curves

    return {
        name: [
            {"n_labels": float(n), "mean": float(m), "std": float(s), "seeds": curve.seeds}
            for n, m, s in zip(curve.n_labels, curve.mean, curve.std, strict=True)
        ]
        for name, curve in sorted(mean_curves(records).items())
    }


def encoders_file(*, settings: Any) -> tuple[Path, dict[str, Any]]:
    """The pretrained encoders for the default options (``bench_cold_start.pretrain_options``):
    a ``bench_cold_start`` run's file when there is one, else pretrained here; (path, what it
    took)."""
    from tagloop.training.pretrain import load_encoder_state

    data = load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)
    pool_rows = np.flatnonzero((~data.is_test).numpy())
    path, record = cached_encoders(data, pool_rows, options=pretrain_options(), settings=settings)
    if record is not None:
        return path, {"reused": None, **record}
    found = load_encoder_state(path.read_bytes())
    return path, {
        "reused": str(path.relative_to(REPO)),
        "pretrain_seconds": round(found.seconds, 1),
        "n_clips": found.n_clips,
        "options": found.options.to_dict(),
        "history": found.history,
    }


def plot_al_pretrained(
    records: Sequence[RoundRecord],
    path: Path,
    *,
    strategies: Sequence[str],
    title: str,
    probe_below: int = 0,
) -> Path:
    """Mean accuracy ± std against labels: a colour per strategy, dashed scratch, solid
    pretrained; the chance line, and the probe -> CentralNet switch when within the curves."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    from tagloop.simulation_report import mean_curves

    curves = mean_curves(records)
    colors = {s: c for s, c in zip(strategies, ("black", "tab:blue", "tab:orange"), strict=False)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy in strategies:
        for config, style in (("scratch", "--"), ("pretrained", "-")):
            curve = curves.get(f"{strategy} ({config})")
            if curve is None:
                continue
            ax.plot(
                curve.n_labels,
                curve.mean,
                style,
                color=colors.get(strategy),
                marker="o" if config == "pretrained" else "s",
                ms=3,
                label=f"{strategy}, {NAMES[config]}",
            )
            ax.fill_between(
                curve.n_labels,
                curve.mean - curve.std,
                curve.mean + curve.std,
                color=colors.get(strategy),
                alpha=0.12,
            )
    if 0 < probe_below <= max(r.n_labels for r in records):
        ax.axvline(
            probe_below, color="grey", linewidth=0.8, linestyle="-.", label="probe → CentralNet"
        )
    return finish_accuracy_plot(fig, ax, path, title=title)


def final_cells(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``summarize_savings`` -> strategy -> its final accuracy ``{"mean", "std"}``."""
    return {
        name: {"mean": row["final_accuracy"], "std": row["final_accuracy_std"]}
        for name, row in summary["strategies"].items()
    }


def run(*, out: dict[str, Any], seeds: int | None = None, rounds: int | None = None) -> None:
    from tagloop.config import Settings
    from tagloop.simulation import SimulationOptions, run_simulation
    from tagloop.simulation_data import load_tensor_set
    from tagloop.simulation_report import summarize_savings, write_curves_csv
    from tagloop.training.backbone import Backbone

    quick = os.environ.get("AL_PRETRAINED_QUICK", "") not in ("", "0")
    seeds = seeds if seeds is not None else 1 if quick else SEEDS
    rounds = rounds if rounds is not None else 2 if quick else ROUNDS
    settings = Settings()
    strategy = settings.selection_strategy
    start = time.perf_counter()
    load_before = uptime()
    load_av_digits_tensors(image_energy=IMAGE_ENERGY, snr_db=SNR_DB)  # build the cache once
    path, pretraining = encoders_file(settings=settings)
    data = load_tensor_set(
        cache_path(image_energy=IMAGE_ENERGY, snr_db=SNR_DB, seed=0), frames=FRAMES
    )
    options = SimulationOptions(
        strategies=(strategy,),
        seed_size=SEED_SIZE,
        batch_size=BATCH,
        rounds=rounds,
        seeds=seeds,
        num_threads=NUM_THREADS,
        probe_below=settings.probe_below_labels,
    )
    records: list[RoundRecord] = []
    by_config: dict[str, list[RoundRecord]] = {}
    for config in CONFIGS:
        backbone = Backbone(visual=path, audio=path) if config == "pretrained" else None
        found: list[RoundRecord] = []

        def on_round(
            record: RoundRecord, config: str = config, found: list[RoundRecord] = found
        ) -> None:
            found.append(record)
            records.append(tag_records([record], config)[0])
            print(
                f"[al_pretrained] {config:<10} {record.strategy:<8} seed {record.seed} "
                f"round {record.round}: {record.n_labels} labels, accuracy "
                f"{record.accuracy:.3f} (train {record.train_seconds:.0f} s, select "
                f"{record.select_seconds:.0f} s, {time.perf_counter() - start:.0f} s so far)",
                flush=True,
            )
            write_curves_csv(records, ROWS_CSV)

        run_simulation(data, options=options, progress=on_round, backbone=backbone)
        by_config[config] = found
    runs = f"{seeds} seed" + ("" if seeds == 1 else "s")
    title = f"AV digits, speaker theo held out: {strategy} vs random ({runs})"
    plot_al_pretrained(
        records,
        CURVE_PNG,
        strategies=("random", strategy),
        title=title,
        probe_below=settings.probe_below_labels,
    )
    within = {config: summarize_savings(found) for config, found in by_config.items()}
    across = summarize_savings(records, reference="random (scratch)")
    out["al_pretrained_final_acc"] = {c: final_cells(s) for c, s in within.items()}
    out["al_pretrained_label_fraction_to_match_random"] = {
        c: s["strategies"][strategy]["fraction"] for c, s in within.items()
    }
    out["al_pretrained_labels_to_match_scratch_random"] = {
        name: row["labels_to_match"] for name, row in across["strategies"].items()
    }
    out["al_pretrained"] = {
        "seconds": round(time.perf_counter() - start, 1),
        "strategy": strategy,
        "scratch_random_final": across["target_accuracy"],
        "within": within,
        "across": across,
        "curves": curve_table(records),
        "pretraining": pretraining,
        "settings": {
            "dataset": "fsdd-mnist",
            "image_energy": IMAGE_ENERGY,
            "snr_db": SNR_DB,
            "test_speaker": "theo",
            "pool": len(data.pool),
            "test": len(data.test),
            "frames_per_clip": FRAMES,
            **{k: v for k, v in options.__dict__.items() if k != "strategies"},
            "strategies": ["random", strategy],
        },
        "curve_png": str(CURVE_PNG.relative_to(REPO)),
        "rows_csv": str(ROWS_CSV.relative_to(REPO)),
        "load_before": load_before,
        "load_after": uptime(),
    }


def format_result(out: Mapping[str, Any]) -> str:
    lines = ["config | strategy | final acc | fraction to match its random"]
    for config, cells in out["al_pretrained_final_acc"].items():
        for name, cell in cells.items():
            lines.append(f"{config} | {name} | {cell['mean']:.3f} ± {cell['std']:.3f}")
        fraction = out["al_pretrained_label_fraction_to_match_random"][config]
        lines.append(f"{config} | fraction to match random: {fraction}")
    detail = out["al_pretrained"]
    lines.append(f"labels to reach scratch random's final {detail['scratch_random_final']:.3f}:")
    for name, labels in out["al_pretrained_labels_to_match_scratch_random"].items():
        lines.append(f"  {name}: {labels}")
    return "\n".join(lines)


if __name__ == "__main__":
    if "--quick" in sys.argv[1:]:
        os.environ["AL_PRETRAINED_QUICK"] = "1"
    result: dict[str, Any] = {}
    run(out=result)
    RESULT_JSON.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(format_result(result))
    print(f"{result['al_pretrained']['seconds']:.0f} s")
