"""Reports of an active-learning simulation: learning curves (CSV, PNG) and how many labels
each strategy needs to reach random sampling's final accuracy.

The labels-to-match figure is read off the mean curve over seeds (linear interpolation between
rounds), as a fraction of random's final label count: 0.6 means the strategy reached random's
final accuracy with 60% of random's labels. A curve that never gets there gives None.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.simulation import REFERENCE, RoundRecord

CURVE_COLUMNS = ("strategy", "seed", "round", "n_labels", "accuracy")
NEAR_FINAL = 0.95  # labels_to_95pct: labels to reach this share of the reference's final


@dataclass(frozen=True)
class MeanCurve:
    """n_labels ``(R,)``; mean and std ``(R,)`` of accuracy over ``seeds`` runs at each point."""

    n_labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seeds: int


def labels_to_reach(n_labels: np.ndarray, accuracy: np.ndarray, *, target: float) -> float | None:
    """Labels at which the curve ``accuracy (R,)`` over ``n_labels (R,)`` (increasing) first
    reaches ``target``, interpolated linearly between points; None if it never does.

    Reached at the first point: that point's label count (nothing is known before it).
    """
    x = np.asarray(n_labels, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise InvalidInput("need two 1-D arrays of the same non-zero length", code="bad_curve")
    if np.any(np.diff(x) <= 0):
        raise InvalidInput("n_labels must be strictly increasing", code="bad_curve")
    hits = np.flatnonzero(y >= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(x[0])
    # y[i - 1] < target <= y[i], so the slope is positive.
    return float(x[i - 1] + (target - y[i - 1]) / (y[i] - y[i - 1]) * (x[i] - x[i - 1]))


def curve_area(n_labels: np.ndarray, accuracy: np.ndarray) -> float:
    """Mean height of a curve over its label range (trapezoids): one number per strategy,
    comparable between strategies on the same label grid."""
    x = np.asarray(n_labels, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    width = float(x[-1] - x[0])
    return float(np.trapezoid(y, x) / width) if width > 0 else float(y[0])


def mean_curves(records: Sequence[RoundRecord]) -> dict[str, MeanCurve]:
    """Strategy -> its curve averaged over seeds, point by point (round by round).

    Rounds every seed reached are kept (a pool that ran dry shortens a curve).
    """
    by_strategy: dict[str, dict[int, dict[int, RoundRecord]]] = {}
    for r in records:
        by_strategy.setdefault(r.strategy, {}).setdefault(r.seed, {})[r.round] = r
    out: dict[str, MeanCurve] = {}
    for strategy, runs in by_strategy.items():
        rounds = sorted(set.intersection(*(set(run) for run in runs.values())))
        acc = np.asarray([[run[k].accuracy for k in rounds] for run in runs.values()])
        labels = np.asarray([[run[k].n_labels for k in rounds] for run in runs.values()])
        out[strategy] = MeanCurve(
            n_labels=labels.mean(axis=0),
            mean=acc.mean(axis=0),
            std=acc.std(axis=0),
            seeds=len(runs),
        )
    return out


def _per_seed_fractions(
    records: Sequence[RoundRecord], strategy: str, *, reference: str
) -> list[float | None]:
    """Each seed's own fraction, against the same seed's reference curve."""
    fractions: list[float | None] = []
    seeds = sorted({r.seed for r in records if r.strategy == strategy})
    for seed in seeds:
        ref = sorted(
            (r for r in records if r.strategy == reference and r.seed == seed),
            key=lambda r: r.round,
        )
        own = sorted(
            (r for r in records if r.strategy == strategy and r.seed == seed),
            key=lambda r: r.round,
        )
        if not ref or not own:
            fractions.append(None)
            continue
        reached = labels_to_reach(
            np.asarray([r.n_labels for r in own]),
            np.asarray([r.accuracy for r in own]),
            target=ref[-1].accuracy,
        )
        fractions.append(None if reached is None else reached / ref[-1].n_labels)
    return fractions


def summarize_savings(
    records: Sequence[RoundRecord], *, reference: str = REFERENCE
) -> dict[str, Any]:
    """The labels-to-match table (plain JSON).

    ``strategies``: strategy -> final_accuracy (mean, std), labels_to_match (on the mean curve,
    None if never reached), fraction (labels_to_match / reference's final labels), and
    per_seed_fraction (each seed against its own reference run). ``best``: the strategy
    other than the reference with the smallest fraction (None if none reached it).
    """
    curves = mean_curves(records)
    if reference not in curves:
        raise InvalidInput(f"no {reference!r} curve to compare with", code="missing_reference")
    ref = curves[reference]
    target = float(ref.mean[-1])
    final_labels = float(ref.n_labels[-1])
    table: dict[str, Any] = {}
    for strategy, curve in curves.items():
        reached = labels_to_reach(curve.n_labels, curve.mean, target=target)
        # Random's final point sits on a plateau's noise; 95 % of it is where the curves
        # still differ, so this figure separates strategies where labels_to_match cannot.
        near = labels_to_reach(curve.n_labels, curve.mean, target=NEAR_FINAL * target)
        table[strategy] = {
            "labels_to_95pct": near,
            "area": curve_area(curve.n_labels, curve.mean),
            "final_labels": float(curve.n_labels[-1]),
            "final_accuracy": float(curve.mean[-1]),
            "final_accuracy_std": float(curve.std[-1]),
            "labels_to_match": reached,
            "fraction": None if reached is None else reached / final_labels,
            "per_seed_fraction": _per_seed_fractions(records, strategy, reference=reference),
            "seeds": curve.seeds,
        }
    others = [s for s in table if s != reference and table[s]["fraction"] is not None]
    best = min(others, key=lambda s: table[s]["fraction"]) if others else None
    return {
        "reference": reference,
        "target_accuracy": target,
        "reference_final_labels": final_labels,
        "best": best,
        "best_fraction": None if best is None else table[best]["fraction"],
        "strategies": table,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The table as text, one strategy a line."""

    def show(x: float | None, spec: str) -> str:
        return "never" if x is None else format(x, spec)

    lines = [
        f"labels to reach {summary['reference']}'s final accuracy "
        f"{summary['target_accuracy']:.3f} ({summary['reference_final_labels']:.0f} labels):",
        f"{'strategy':<18}{'final acc':>12}{'labels':>9}{'fraction':>10}{'to 95%':>8}"
        f"{'area':>7}  per seed",
    ]
    for strategy, row in summary["strategies"].items():
        per_seed = ", ".join(show(f, ".2f") for f in row["per_seed_fraction"])
        lines.append(
            f"{strategy:<18}{row['final_accuracy']:>7.3f}±{row['final_accuracy_std']:.3f}"
            f"{show(row['labels_to_match'], '.0f'):>9}{show(row['fraction'], '.2f'):>10}"
            f"{show(row.get('labels_to_95pct'), '.0f'):>8}{row.get('area', float('nan')):>7.3f}"
            f"  [{per_seed}]"
        )
    lines.append(f"best: {summary['best']} ({show(summary['best_fraction'], '.2f')})")
    return "\n".join(lines)


def write_curves_csv(records: Sequence[RoundRecord], path: Path) -> Path:
    """One row per round: strategy, seed, round, n_labels, accuracy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CURVE_COLUMNS)
        for r in records:
            writer.writerow([r.strategy, r.seed, r.round, r.n_labels, f"{r.accuracy:.6f}"])
    return path


def read_curves_csv(path: Path) -> list[RoundRecord]:
    """Inverse of :func:`write_curves_csv` (timings are not stored: zero)."""
    with path.open(newline="") as handle:
        return [
            RoundRecord(
                strategy=row["strategy"],
                seed=int(row["seed"]),
                round=int(row["round"]),
                n_labels=int(row["n_labels"]),
                accuracy=float(row["accuracy"]),
                epochs_run=0,
                train_seconds=0.0,
                select_seconds=0.0,
            )
            for row in csv.DictReader(handle)
        ]


def write_summary(summary: dict[str, Any], *, csv_path: Path, json_path: Path) -> None:
    """The table as CSV (one row per strategy) and the whole summary as JSON."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "strategy",
                "final_labels",
                "final_accuracy",
                "final_accuracy_std",
                "labels_to_match",
                "fraction",
            ]
        )
        for strategy, row in summary["strategies"].items():
            writer.writerow(
                [strategy, row["final_labels"], row["final_accuracy"], row["final_accuracy_std"]]
                + ["" if row[key] is None else row[key] for key in ("labels_to_match", "fraction")]
            )


def plot_curves(
    records: Sequence[RoundRecord],
    path: Path,
    *,
    title: str = "",
    ylabel: str = "test accuracy (mean ± std over seeds)",
) -> Path:
    """Mean test accuracy ± std over seeds against labels, one line and band per strategy."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy, curve in sorted(mean_curves(records).items()):
        style = "--" if strategy == REFERENCE else "-"
        (line,) = ax.plot(curve.n_labels, curve.mean, style, marker="o", ms=3, label=f"{strategy}")
        ax.fill_between(
            curve.n_labels,
            curve.mean - curve.std,
            curve.mean + curve.std,
            color=line.get_color(),
            alpha=0.15,
        )
    ax.set_xlabel("labels")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "active learning: test accuracy vs labels")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
