"""The active-learning simulation: curves on a tiny demo set (the service's own training and
selection code, a few seconds), and the labels-to-match arithmetic on hand-made curves."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tagloop.errors import InvalidInput
from tagloop.fusion import FusionConfig
from tagloop.simulation import RoundRecord, SimulationOptions, run_simulation, simulate_curve
from tagloop.simulation_data import SimulationSet, load_demo_set
from tagloop.simulation_report import (
    CURVE_COLUMNS,
    format_summary,
    labels_to_reach,
    mean_curves,
    plot_curves,
    read_curves_csv,
    summarize_savings,
    write_curves_csv,
    write_summary,
)

CONFIG = FusionConfig(
    frames_per_clip=2,
    frame_size=16,
    n_mels=32,
    visual_channels=(8, 16),
    audio_channels=(8, 16),
    hidden_dim=32,
)
OPTIONS = SimulationOptions(
    strategies=("entropy",),
    seed_size=10,
    batch_size=10,
    rounds=2,
    seeds=1,
    epochs=1,
    seed_epochs=2,
    train_batch_size=8,
    min_steps=4,
    mc_passes=2,
    num_threads=1,  # tiny models: a second thread only adds synchronisation
)


@pytest.fixture(scope="module")
def demo() -> SimulationSet:
    return load_demo_set(n=60, seed=0, config=CONFIG, frames=2)


@pytest.fixture(scope="module")
def records(demo: SimulationSet) -> list[RoundRecord]:
    return run_simulation(demo, options=OPTIONS)


def test_demo_set_holds_out_its_test_split(demo: SimulationSet) -> None:
    pool_ids = {c.clip_id for c in demo.pool}
    assert len(demo.pool) + len(demo.test) == 60 and 6 <= len(demo.test) <= 14
    assert pool_ids.isdisjoint(c.clip_id for c in demo.test)
    assert demo.pool[0].tensors.frames.shape == (2, 3, 16, 16)
    assert demo.pool_videos.shape == (len(demo.pool),)


def test_curves_have_a_row_per_round_and_grow_by_the_batch(
    records: list[RoundRecord], tmp_path: Path
) -> None:
    path = write_curves_csv(records, tmp_path / "curves.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CURVE_COLUMNS
    # random is always simulated, first, as the reference.
    assert [(r["strategy"], int(r["round"])) for r in rows] == [
        (s, k) for s in ("random", "entropy") for k in range(3)
    ]
    for strategy in ("random", "entropy"):
        labels = [int(r["n_labels"]) for r in rows if r["strategy"] == strategy]
        assert labels == [10, 20, 30]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert read_curves_csv(path)[3].accuracy == pytest.approx(records[3].accuracy, abs=1e-6)


def test_the_same_seed_gives_the_same_curve(
    demo: SimulationSet, records: list[RoundRecord]
) -> None:
    again = simulate_curve(demo, strategy="entropy", seed=0, options=OPTIONS)
    before = [(r.n_labels, r.accuracy) for r in records if r.strategy == "entropy"]
    assert [(r.n_labels, r.accuracy) for r in again] == before


def test_bald_and_disagreement_run_a_round(demo: SimulationSet) -> None:
    options = SimulationOptions(
        **{**OPTIONS.__dict__, "strategies": ("bald", "disagreement"), "rounds": 1}
    )
    for strategy in ("bald", "disagreement"):
        curve = simulate_curve(demo, strategy=strategy, seed=1, options=options)
        assert [r.n_labels for r in curve] == [10, 20]


def test_unknown_strategy_fails_before_training(demo: SimulationSet) -> None:
    options = SimulationOptions(**{**OPTIONS.__dict__, "strategies": ("entropi",)})
    with pytest.raises(InvalidInput) as err:
        run_simulation(demo, options=options)
    assert err.value.code == "unknown_strategy"


def test_bad_options_are_refused() -> None:
    with pytest.raises(InvalidInput):
        SimulationOptions(batch_size=0)
    with pytest.raises(InvalidInput):
        SimulationOptions(strategies=())


def test_labels_to_reach_interpolates_between_rounds() -> None:
    x = np.array([10, 20, 30, 40])
    y = np.array([0.2, 0.4, 0.8, 0.9])
    assert labels_to_reach(x, y, target=0.6) == pytest.approx(25.0)
    assert labels_to_reach(x, y, target=0.8) == pytest.approx(30.0)
    assert labels_to_reach(x, y, target=0.1) == 10.0  # reached at the first point
    assert labels_to_reach(x, y, target=0.95) is None  # never reached
    # A dip after the target does not matter: the first crossing counts.
    assert labels_to_reach(x, np.array([0.2, 0.7, 0.5, 0.9]), target=0.6) == pytest.approx(18.0)
    with pytest.raises(InvalidInput):
        labels_to_reach(np.array([10, 10]), np.array([0.1, 0.2]), target=0.5)


def _curve(strategy: str, seed: int, accuracies: list[float]) -> list[RoundRecord]:
    return [
        RoundRecord(strategy, seed, k, 100 * (k + 1), a, 1, 0.0, 0.0)
        for k, a in enumerate(accuracies)
    ]


def test_summary_reads_fractions_off_the_mean_curve(tmp_path: Path) -> None:
    records = [
        *_curve("random", 0, [0.2, 0.4, 0.6, 0.7]),
        *_curve("random", 1, [0.2, 0.4, 0.6, 0.9]),  # random's final mean: 0.8 at 400 labels
        *_curve("entropy", 0, [0.2, 0.6, 0.8, 0.9]),
        *_curve("entropy", 1, [0.2, 0.6, 0.8, 0.9]),
        *_curve("margin", 0, [0.2, 0.3, 0.4, 0.5]),
        *_curve("margin", 1, [0.2, 0.3, 0.4, 0.5]),
    ]
    curves = mean_curves(records)
    np.testing.assert_allclose(curves["random"].mean, [0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(curves["random"].std, [0, 0, 0, 0.1], atol=1e-12)
    summary = summarize_savings(records)
    assert summary["target_accuracy"] == pytest.approx(0.8)
    entropy = summary["strategies"]["entropy"]
    assert entropy["labels_to_match"] == pytest.approx(300.0)
    assert entropy["fraction"] == pytest.approx(0.75)
    # Per seed: seed 0's random ends at 0.7 (entropy passes it at 250), seed 1's at 0.9 (400).
    assert entropy["per_seed_fraction"] == pytest.approx([250 / 400, 1.0])
    assert summary["strategies"]["margin"]["fraction"] is None
    assert summary["strategies"]["random"]["fraction"] == pytest.approx(1.0)
    assert summary["best"] == "entropy" and summary["best_fraction"] == pytest.approx(0.75)
    assert "never" in format_summary(summary)
    # 95 % of random's final 0.8 is 0.76: entropy between 200 (0.6) and 300 (0.8) labels,
    # random between 300 (0.6) and 400 (0.8); margin never.
    assert entropy["labels_to_95pct"] == pytest.approx(200 + 100 * 0.16 / 0.2)
    assert summary["strategies"]["random"]["labels_to_95pct"] == pytest.approx(380.0)
    assert summary["strategies"]["margin"]["labels_to_95pct"] is None
    # Area: the mean height over 100-400 labels, by trapezoids.
    assert entropy["area"] == pytest.approx((0.4 + 0.7 + 0.85) / 3)
    assert summary["strategies"]["margin"]["area"] == pytest.approx(0.35)

    write_summary(summary, csv_path=tmp_path / "t.csv", json_path=tmp_path / "t.json")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert {r["strategy"]: r["fraction"] for r in rows}["margin"] == ""
    png = plot_curves(records, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_needs_the_reference() -> None:
    with pytest.raises(InvalidInput) as err:
        summarize_savings(_curve("entropy", 0, [0.1, 0.2]))
    assert err.value.code == "missing_reference"
