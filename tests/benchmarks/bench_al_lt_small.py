"""Rare tags on a small pool: the regime of ``tests/integration/test_long_tail_queue.py``, with
many draws instead of one.

The integration test labels a 400-clip long-tailed pool through the API: a seed batch of 40,
then two rounds of 40 ranked labels, and counts the clips carrying one of the pool's rarest
tags among the 80 offered. One run is one draw; this benchmark asks the same question of
``DRAWS`` random 400-clip subsets of the long-tailed pool (``lt_tensors``, seed 0) through
``tagloop.simulation`` (the service's probe, scoring and batch assembly), for each strategy and
for random, so the difference can be told from noise.

Per draw, strategy and round: ``rare_offered``, clips with a rare tag (the rarest
``RARE_FRACTION`` of the tags the subset's clips carry, by count in the subset, as the test
defines them) among the labels after the seed batch, and whether that count beats the 95th
percentile of a uniform draw of as many clips (``hypergeom_tail``), the bar one run of the
integration test has to clear. The seed batch is the same for every strategy of a draw (the
service's k-center seed rule), so the strategies differ only after it.

Figure: ``al_lt_small`` in results.json, per strategy and number of ranked rounds the mean
rare clips offered, its ratio to random's, the draws where it offered more than random, and
the draws where it cleared the 95th percentile: how many rounds the integration test needs.

    python -m tests.benchmarks.bench_al_lt_small [--draws N] [--rounds R] [strategy ...]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tagloop.simulation import RoundRecord
    from tagloop.simulation_data import SimulationSet

# The default, the previous default and the most rare-hungry.
STRATEGIES = ("tag_balanced_cluster", "balanced_cluster", "balanced_entropy")
DRAWS = 12
POOL = 400
SEED_SIZE = 40
BATCH = 40
ROUNDS = 4  # ranked rounds after the seed batch; the test runs fewer
RARE_FRACTION = 0.2
FRAMES = 4


def subset(data: SimulationSet, rows: np.ndarray) -> SimulationSet:
    """``data`` with only the pool ``rows`` (the test split is kept; nothing here measures it)."""
    return replace(data, pool=[data.pool[i] for i in rows], pool_videos=data.pool_videos[rows])


def hypergeom_tail(*, population: int, successes: int, draws: int, q: float) -> tuple[float, int]:
    """(mean, q-quantile) of successes among ``draws`` taken uniformly without replacement."""
    total = math.comb(population, draws)
    cdf = 0.0
    for k in range(draws + 1):
        cdf += math.comb(successes, k) * math.comb(population - successes, draws - k) / total
        if cdf >= q:
            break
    return draws * successes / population, k


def rare_columns_of(targets: np.ndarray, *, fraction: float = RARE_FRACTION) -> np.ndarray:
    """Columns of the ``ceil(fraction * K)`` tags fewest rows carry, among the tags some row
    carries (ties: lower column first), as the integration test's ``rare_tags`` picks them."""
    counts = (targets > 0.5).sum(axis=0)
    present = np.flatnonzero(counts > 0)
    k = math.ceil(fraction * targets.shape[1])
    order = present[np.argsort(counts[present], kind="stable")]
    return np.sort(order[:k])


def rare_clip_count(targets: np.ndarray, rare: np.ndarray) -> int:
    """Rows ``(N, K)`` carrying at least one of the ``rare`` columns."""
    if targets.size == 0:
        return 0
    return int(((targets[:, rare] > 0.5).any(axis=1)).sum())


def record_labeled(
    into: list[np.ndarray], model: Any, labeled: list[Any]
) -> tuple[float, dict[str, Any]]:
    """A simulation measure that keeps each round's labeled targets and measures nothing."""
    into.append(np.stack([c.targets for c in labeled]))
    return 0.0, {}


def summarize(
    rows: Sequence[dict[str, Any]], *, reference: str = "random"
) -> dict[str, dict[str, Any]]:
    """Per strategy, per number of ranked rounds (a string key), ``{"mean", "std", "ratio",
    "wins", "ties", "above_q95", "draws"}`` of ``rare_offered``: ``ratio`` is over random's
    mean, ``wins`` / ``ties`` count draws against random's, ``above_q95`` draws whose count
    beat that draw's uniform 95th percentile (``q95``)."""
    by: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["strategy"], int(r["rounds"])), {})[int(r["draw"])] = r
    out: dict[str, dict[str, Any]] = {}
    for (name, rounds), draws in sorted(by.items()):
        ref = by.get((reference, rounds), {})
        ref_mean = statistics.fmean(r["rare_offered"] for r in ref.values()) if ref else None
        values = [int(r["rare_offered"]) for r in draws.values()]
        common = [d for d in draws if d in ref]
        mean = statistics.fmean(values)
        out.setdefault(name, {})[str(rounds)] = {
            "mean": mean,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "ratio": None if not ref_mean else mean / ref_mean,
            "wins": sum(draws[d]["rare_offered"] > ref[d]["rare_offered"] for d in common),
            "ties": sum(draws[d]["rare_offered"] == ref[d]["rare_offered"] for d in common),
            "above_q95": sum(r["rare_offered"] > r["q95"] for r in draws.values()),
            "draws": len(values),
        }
    return out


def run(
    *,
    out: dict[str, Any],
    strategies: Sequence[str] = STRATEGIES,
    draws: int = DRAWS,
    rounds: int = ROUNDS,
) -> None:
    from tagloop.simulation import SimulationOptions, simulate_curve
    from tests.benchmarks.bench_al_lt import keep_frames
    from tests.benchmarks.lt_tensors import load_lt_simulation_set

    full = keep_frames(load_lt_simulation_set(0), FRAMES)
    options = SimulationOptions(
        strategies=tuple(strategies),
        seed_size=SEED_SIZE,
        batch_size=BATCH,
        rounds=rounds,
        seeds=1,
        num_threads=1,
        probe_below=10**9,  # the probe at every budget, as the service below 500 labels
        per_video_cap=1,
    )
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for draw in range(draws):
        picked = np.sort(np.random.default_rng(1000 + draw).choice(len(full.pool), POOL, False))
        data = subset(full, picked)
        targets = np.stack([c.targets for c in data.pool])
        rare = rare_columns_of(targets)
        for strategy in ("random", *strategies):
            labeled_by_round: list[np.ndarray] = []
            records: list[RoundRecord] = simulate_curve(
                data,
                strategy=strategy,
                seed=draw,
                options=options,
                measure=partial(record_labeled, labeled_by_round),
            )
            seed_rare = rare_clip_count(labeled_by_round[0], rare)
            in_pool = rare_clip_count(targets, rare)
            for done, labeled in enumerate(labeled_by_round[1:], start=1):
                offered = records[done].n_labels - records[0].n_labels
                mean, q95 = hypergeom_tail(
                    population=POOL - records[0].n_labels,
                    successes=in_pool - seed_rare,
                    draws=offered,
                    q=0.95,
                )
                row = {
                    "draw": draw,
                    "strategy": strategy,
                    "rounds": done,
                    "rare_tags": len(rare),
                    "rare_in_pool": in_pool,
                    "seed_rare": seed_rare,
                    "offered": offered,
                    "rare_offered": rare_clip_count(labeled, rare) - seed_rare,
                    "uniform_mean": mean,
                    "q95": q95,
                }
                rows.append(row)
                print(f"[al_lt_small] {json.dumps(row)} ({time.perf_counter() - start:.0f} s)")
    summary = summarize(rows)
    out["al_lt_small"] = {
        "summary": summary,
        "runs": rows,
        "setting": {
            "pool": POOL,
            "draws": draws,
            "seed_size": SEED_SIZE,
            "batch": BATCH,
            "rounds": rounds,
            "rare_fraction": RARE_FRACTION,
            "frames_per_clip": FRAMES,
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    numbers = {"--draws": DRAWS, "--rounds": ROUNDS}
    for flag in numbers:
        if flag in args:
            at = args.index(flag)
            numbers[flag] = int(args[at + 1])
            del args[at : at + 2]
    result: dict[str, Any] = {}
    run(
        out=result,
        strategies=tuple(args) or STRATEGIES,
        draws=numbers["--draws"],
        rounds=numbers["--rounds"],
    )
    print(json.dumps(result["al_lt_small"]["summary"], indent=1))
