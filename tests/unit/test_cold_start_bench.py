"""The pure parts of the cold-start benchmark (tests/benchmarks/bench_cold_start.py): the
co-training candidates, the pseudo-label accuracy, the table and the targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagloop.pipeline.pretrain import DEFAULT_MIN_STEPS
from tagloop.training.cotrain import PseudoLabel
from tests.benchmarks.bench_cold_start import (
    VARIANTS,
    candidate_rows,
    encoders_path,
    parse_setting,
    pretrain_options,
    pseudo_label_accuracy,
    public_cell,
    summarize,
    targets_met,
)

FIRST = "cotrain_100_at_least_scratch_100_plus_10pt"
SECOND = "cotrain_200_above_scratch_400"


def test_candidates_leave_out_the_labeled_and_keep_all_under_the_limit() -> None:
    rows = candidate_rows(np.arange(10, 20), exclude=np.array([12, 15, 99]), limit=100)
    assert rows.tolist() == [10, 11, 13, 14, 16, 17, 18, 19]


def test_candidates_are_strided_as_candidate_uris_strides_them() -> None:
    pool = np.random.default_rng(0).permutation(np.arange(1000))[:700]
    exclude = pool[:50]
    rows = candidate_rows(pool, exclude=exclude, limit=64)
    left = sorted(set(pool.tolist()) - set(exclude.tolist()))
    step = len(left) / 64
    assert rows.tolist() == [left[int(i * step)] for i in range(64)]
    assert len(set(rows.tolist())) == 64


def test_pseudo_label_accuracy_counts_exact_tags_per_source() -> None:
    digits = np.array([3, 1, 4, 1, 5])
    labels = [
        PseudoLabel(clip_id=0, tags=["digit_3"], source="audio", confidence=0.95),
        PseudoLabel(clip_id=1, tags=["digit_7"], source="audio", confidence=0.91),
        PseudoLabel(clip_id=2, tags=["digit_4"], source="visual", confidence=0.99),
        PseudoLabel(clip_id=4, tags=["digit_5"], source="visual", confidence=0.93),
    ]
    accuracy, by_source = pseudo_label_accuracy(labels, digits)
    assert accuracy == pytest.approx(0.75)
    assert by_source == {"audio": {"n": 2, "accuracy": 0.5}, "visual": {"n": 2, "accuracy": 1.0}}


def test_no_pseudo_labels_has_no_accuracy() -> None:
    assert pseudo_label_accuracy([], np.arange(3)) == (None, {})


def _records() -> list[dict[str, float | int]]:
    out: list[dict[str, float | int]] = []
    for seed, shift in enumerate((-0.01, 0.0, 0.01)):
        for budget in (100, 200):
            out.append(
                {
                    "budget": budget,
                    "seed": seed,
                    "scratch": 0.5 + budget / 1000 + shift,
                    "pretrained": 0.55 + budget / 1000 + shift,
                    "pretrained_cotrain": 0.6 + budget / 1000 + shift,
                }
            )
        out.append({"budget": 400, "seed": seed, "scratch": 0.8 + shift})
    return out


def test_summary_has_mean_sample_std_and_runs_per_variant() -> None:
    table = summarize(_records(), budgets=(100, 200, 400), variants=VARIANTS)
    assert sorted(table) == [100, 200, 400]
    cell = table[100]["pretrained_cotrain"]
    assert cell["mean"] == pytest.approx(0.7)
    assert cell["std"] == pytest.approx(0.01)  # sample std of -0.01, 0, 0.01
    assert cell["runs"] == pytest.approx([0.69, 0.7, 0.71])
    assert sorted(table[400]) == ["scratch"]  # a variant absent at a budget is left out
    assert public_cell(cell) == {"mean": cell["mean"], "std": cell["std"]}


def test_one_seed_has_zero_std() -> None:
    table = summarize(_records()[:3], budgets=(100,), variants=VARIANTS)
    assert table[100]["scratch"]["std"] == 0.0


def test_targets_on_the_means() -> None:
    table = summarize(_records(), budgets=(100, 200, 400), variants=VARIANTS)
    # cotrain 100: 0.70 vs scratch 100 + 0.10 = 0.70 (met exactly); cotrain 200: 0.80 vs 0.80
    assert targets_met(table) == {FIRST: True, SECOND: False}
    table[200]["pretrained_cotrain"]["mean"] = 0.801
    table[100]["pretrained_cotrain"]["mean"] = 0.699
    assert targets_met(table) == {FIRST: False, SECOND: True}


def test_targets_missing_a_figure_are_none() -> None:
    table = summarize(_records(), budgets=(100, 200), variants=VARIANTS)
    assert targets_met(table) == {FIRST: True, SECOND: None}
    assert targets_met({}) == {FIRST: None, SECOND: None}


def test_encoder_files_are_one_per_option_set(tmp_path: Path) -> None:
    default = pretrain_options()
    assert default.seed == 0 and default.num_threads == 2
    assert default.min_steps == DEFAULT_MIN_STEPS  # the service job's floor, as it runs
    path = encoders_path(default, folder=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".pt"
    assert encoders_path(pretrain_options(), folder=tmp_path) == path
    assert encoders_path(pretrain_options({"epochs": 9}), folder=tmp_path) != path


def test_sweep_settings_parse_with_the_default_cap() -> None:
    assert parse_setting("0.9/0.8", default_cap=200) == (0.9, 0.8, 200)
    assert parse_setting("0.99/0.9/50", default_cap=200) == (0.99, 0.9, 50)
    with pytest.raises(ValueError):
        parse_setting("0.9", default_cap=200)
