"""The long-tailed AL benchmark's bookkeeping: the default strategy's labels to match random,
rare positives ratio and where the stopping rule fires, the best strategy by area and the
paired area differences, on hand-made curves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tagloop.simulation import RoundRecord
from tagloop.simulation_report import curve_area as area
from tests.benchmarks.bench_al_lt import RARE_AT, paired_area_difference, seed_areas, summarize


def record(strategy: str, seed: int, rnd: int, labels: int, ap: float, **extra: Any) -> RoundRecord:
    return RoundRecord(
        strategy=strategy,
        seed=seed,
        round=rnd,
        n_labels=labels,
        accuracy=ap,
        epochs_run=1,
        train_seconds=0.0,
        select_seconds=0.0,
        extra={"rare_positives": 0, "stop_kappa": None, "rare_ap": 0.1, "micro_f1": 0.2, **extra},
    )


def curves() -> list[RoundRecord]:
    labels = [100, 300, 500, 700, 900]
    random_ap = [0.10, 0.20, 0.30, 0.40, 0.50]
    fast_ap = [0.10, 0.30, 0.50, 0.55, 0.56]  # reaches 0.5 at 500 labels
    slow_ap = [0.10, 0.15, 0.20, 0.25, 0.30]
    kappas = [None, 0.5, 0.995, 0.999, 0.999]  # fires at round 4 with a window of 3
    out = []
    for seed in (0, 1):
        for i, n in enumerate(labels):
            rare = {"rare_positives": 10 * (seed + 1)} if n == RARE_AT else {}
            out.append(record("random", seed, i, n, random_ap[i], **rare))
            rare_fast = {"rare_positives": 30 * (seed + 1)} if n == RARE_AT else {}
            out.append(record("fast", seed, i, n, fast_ap[i], stop_kappa=kappas[i], **rare_fast))
            out.append(record("slow", seed, i, n, slow_ap[i]))
    return out


def test_the_headline_figures_are_the_default_strategys_and_best_is_the_largest_area() -> None:
    summary = summarize(curves(), default="fast", stop_kappa=0.99, stop_window=3)
    assert summary["best"] == "fast" and summary["default"] == "fast"
    assert summary["fraction"] == pytest.approx(500 / 900)
    assert summary["rare_ratio"] == pytest.approx(3.0)
    assert summary["strategies"]["slow"]["fraction_to_match_random"] is None
    assert summary["random_final_macro_ap"] == pytest.approx(0.5)
    # With another default, its figures lead even though "fast" stays the best by area.
    other = summarize(curves(), default="slow", stop_kappa=0.99, stop_window=3)
    assert other["best"] == "fast" and other["default"] == "slow"
    assert other["fraction"] is None and other["rare_ratio"] == pytest.approx(0.0)
    assert other["stop_fired_runs"] == 0  # the stopping rule is read on the default's curve
    with pytest.raises(ValueError, match="not among the curves"):
        summarize(curves(), default="missing", stop_kappa=0.99, stop_window=3)


def test_area_differences_are_paired_by_seed() -> None:
    recs = [
        record(name, seed, i, n, ap + bump)
        for seed, bump in ((0, 0.0), (1, 0.2))  # seed 1 is easier for every strategy
        for name, offset in (("a", 0.0), ("b", 0.01 if seed == 0 else -0.03))
        for i, (n, ap) in enumerate(((100, 0.1 + offset), (300, 0.3 + offset)))
    ]
    diff = paired_area_difference(seed_areas(recs), "b", against="a")
    assert diff["per_seed"] == [0.01, -0.03]
    assert diff["mean"] == pytest.approx(-0.01)
    assert diff["sd"] == pytest.approx(np.std([0.01, -0.03], ddof=1))


def test_the_stopping_rule_fires_where_the_window_of_kappas_is_first_full() -> None:
    summary = summarize(curves(), default="fast", stop_kappa=0.99, stop_window=3)
    assert summary["stop_fired_runs"] == 2
    assert summary["stop_labels_mean"] == 900
    assert summary["stop_gap_mean"] == pytest.approx(0.0)
    stricter = summarize(curves(), default="fast", stop_kappa=0.999, stop_window=3)
    assert stricter["stop_fired_runs"] == 0
    assert stricter["stop_labels_mean"] is None
    looser = summarize(curves(), default="fast", stop_kappa=0.99, stop_window=2)
    assert looser["stop_labels_mean"] == 700
    assert looser["stop_gap_mean"] == pytest.approx(0.56 - 0.55)


def test_area_is_the_mean_height_over_the_label_range() -> None:
    x = np.asarray([100.0, 300.0, 500.0])
    assert area(x, np.asarray([0.2, 0.2, 0.2])) == pytest.approx(0.2)
    assert area(x, np.asarray([0.0, 0.5, 1.0])) == pytest.approx(0.5)
    assert area(np.asarray([100.0]), np.asarray([0.3])) == pytest.approx(0.3)


def test_fire_table_finds_each_threshold_and_the_gap_to_the_end() -> None:
    from tests.benchmarks.bench_al_lt_stop import fire_table

    kappas = [None, 0.96, 0.975, 0.985, 0.985, 0.992, 0.993, 0.991]
    aps = [0.30, 0.35, 0.40, 0.44, 0.46, 0.47, 0.48, 0.50]
    recs = [
        record("cluster_margin", 0, i, 100 + 20 * i, ap, stop_kappa=k)
        for i, (k, ap) in enumerate(zip(kappas, aps, strict=True))
    ]
    table = fire_table(recs, thresholds=(0.95, 0.98, 0.99, 0.999), window=3)
    assert table["0.95"]["labels"] == 160  # kappas 0.96, 0.975, 0.985: third is round 3
    assert table["0.95"]["macro_ap"] == 0.44
    assert table["0.95"]["macro_ap_gap_to_end"] == pytest.approx(0.06)
    assert table["0.98"]["labels"] == 200 and table["0.99"]["labels"] == 240
    assert table["0.999"] is None


def test_small_pool_rare_tags_are_the_rarest_present_ones() -> None:
    from tests.benchmarks.bench_al_lt_small import rare_clip_count, rare_columns_of

    # Column counts 3, 0, 1, 2, 5: column 1 is absent, so the two rarest are 2 and 3.
    targets = np.zeros((5, 5))
    targets[:3, 0] = 1
    targets[4, 2] = 1
    targets[1:3, 3] = 1
    targets[:, 4] = 1
    rare = rare_columns_of(targets, fraction=0.4)
    assert rare.tolist() == [2, 3]
    assert rare_clip_count(targets, rare) == 3  # rows 1, 2 (column 3) and 4 (column 2)
    assert rare_clip_count(np.zeros((0, 5)), rare) == 0


def test_small_pool_summary_compares_each_draw_with_random() -> None:
    from tests.benchmarks.bench_al_lt_small import summarize as small_summary

    def row(draw: int, strategy: str, rounds: int, rare: int, q95: int) -> dict[str, Any]:
        return {
            "draw": draw,
            "strategy": strategy,
            "rounds": rounds,
            "rare_offered": rare,
            "q95": q95,
        }

    rows = [
        row(0, "random", 1, 4, 7),
        row(1, "random", 1, 6, 7),
        row(0, "balanced_cluster", 1, 8, 7),
        row(1, "balanced_cluster", 1, 6, 7),
        row(0, "random", 2, 9, 12),
        row(0, "balanced_cluster", 2, 13, 12),
    ]
    out = small_summary(rows)
    assert out["random"]["1"]["mean"] == 5.0 and out["random"]["1"]["ratio"] == 1.0
    one = out["balanced_cluster"]["1"]
    assert one["ratio"] == pytest.approx(7.0 / 5.0)
    assert one["wins"] == 1 and one["ties"] == 1 and one["above_q95"] == 1
    two = out["balanced_cluster"]["2"]
    assert two["draws"] == 1 and two["ratio"] == pytest.approx(13 / 9) and two["above_q95"] == 1


def test_hypergeometric_tail_matches_a_hand_count() -> None:
    from tests.benchmarks.bench_al_lt_small import hypergeom_tail

    # 2 successes in 4, draw 2: P(0) = 1/6, P(1) = 4/6, P(2) = 1/6.
    assert hypergeom_tail(population=4, successes=2, draws=2, q=0.5) == (1.0, 1)
    assert hypergeom_tail(population=4, successes=2, draws=2, q=0.9)[1] == 2
    assert hypergeom_tail(population=4, successes=2, draws=2, q=0.1)[1] == 0


def test_final_ap_per_tag_averages_the_last_round_over_seeds_and_skips_undefined() -> None:
    from tests.benchmarks.bench_al_lt import final_ap_per_tag

    records = [
        record("x", 0, 0, 100, 0.1, ap_per_tag={"a": 0.9, "b": 0.1}),  # not the last round
        record("x", 0, 1, 200, 0.2, ap_per_tag={"a": 0.5, "b": None}),
        record("x", 1, 1, 200, 0.2, ap_per_tag={"a": 0.7, "b": 0.3}),
        record("y", 0, 1, 200, 0.2),  # saved before per-tag AP was kept
    ]
    assert final_ap_per_tag(records, "x") == {"a": 0.6, "b": 0.3}
    assert final_ap_per_tag(records, "y") == {}
    assert final_ap_per_tag(records, "z") == {}


def test_benchmark_files_are_recorded_relative_to_the_repo_when_inside_it() -> None:
    """A one-off run (strategies registered in a script) may write its curves under /tmp;
    recording them must not fail at the end of a half-hour run."""
    from pathlib import Path

    from tests.benchmarks.common import REPO, shown_path

    assert shown_path(REPO / "benchmarks" / "al_lt_curves.png") == "benchmarks/al_lt_curves.png"
    assert shown_path(Path("/tmp/exp/al_lt_curves.csv")) == "/tmp/exp/al_lt_curves.csv"
