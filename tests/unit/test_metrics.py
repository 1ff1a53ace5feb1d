"""Evaluation metrics (tagloop.training.metrics) against hand-computed values and sklearn."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tagloop.errors import InvalidInput
from tagloop.training.metrics import (
    average_precision,
    evaluate_predictions,
    expected_calibration_error,
    f1_scores,
    global_average_precision,
    group_accuracy,
    group_nll,
    positives_per_tag,
    rare_tags,
)
from tagloop.vocabulary import TagVocabulary

VOCAB = TagVocabulary.from_pairs(
    [
        ("cat", "animal"),
        ("dog", "animal"),
        ("indoor", "scene"),
        ("outdoor", "scene"),
        ("music", None),
        ("speech", None),
        ("crowd", None),
    ]
)


def test_average_precision_hand_value() -> None:
    # Hits at ranks 1 and 3: (1/2) * 1 + (1/2) * (2/3).
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    assert ap is not None and math.isclose(ap, 5 / 6)
    assert average_precision(np.array([0.2, 0.1]), np.array([0, 0])) is None


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(40) < 0.3
    labels[0] = True
    scores = np.round(rng.random(40), 1)  # rounding makes ties, which sklearn groups
    ap = average_precision(scores, labels)
    assert ap is not None
    assert math.isclose(ap, average_precision_score(labels, scores), rel_tol=1e-12)


def test_group_accuracy_skips_unlabeled_clips() -> None:
    probs = np.array(
        [
            [0.8, 0.2, 0.3, 0.7, 0, 0, 0],
            [0.4, 0.6, 0.9, 0.1, 0, 0, 0],
            [0.1, 0.9, 0.5, 0.5, 0, 0, 0],
        ]
    )
    targets = np.array(
        [
            [1, 0, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0],  # clip 2: groups unsure (unknown)
        ],
        dtype=float,
    )
    known = np.ones_like(targets, dtype=bool)
    known[1, 2] = False  # clip 1's scene positive is not known -> scene skipped there
    # Was: no positive alone made clip 2 unlabeled; now that is "none", so say unknown.
    known[2, :4] = False
    accuracy = group_accuracy(probs, targets, known, vocab=VOCAB)
    assert accuracy == {"animal": 0.5, "scene": 0.0}


def test_group_nll_hand_values_with_none_as_an_outcome() -> None:
    probs = np.array(
        [
            [0.5, 0.25, 0.9, 0.0, 0, 0, 0],  # animal: cat; scene: P(none) = 0.1
            [0.5, 0.25, 0.0, 0.0, 0, 0, 0],  # animal: none (P 0.25); scene undecided
        ]
    )
    targets = np.zeros_like(probs)
    targets[0, 0] = 1.0
    known = np.ones_like(targets, dtype=bool)
    known[1, 2:4] = False  # scene undecided on clip 1
    nll = group_nll(probs, targets, known, vocab=VOCAB)
    assert nll["animal"] == pytest.approx((-math.log(0.5) - math.log(0.25)) / 2)
    assert nll["scene"] == pytest.approx(-math.log(0.1))  # clip 0 is "none" in scene
    # A sure wrong answer is floored, not infinite; no decided clip is None.
    sure_wrong = group_nll(
        np.array([[0.0, 1.0, 0, 0, 0, 0, 0]]), targets[:1], known[:1], vocab=VOCAB
    )
    assert sure_wrong["animal"] == pytest.approx(-math.log(1e-7))
    known[:, 0:2] = False
    assert group_nll(probs, targets, known, vocab=VOCAB)["animal"] is None
    report = evaluate_predictions(probs, targets, np.ones_like(known), vocab=VOCAB)
    assert report["mean_nll"] == pytest.approx(np.mean(list(report["nll"].values())))


def test_f1_hand_values() -> None:
    columns = np.array([4, 5])
    probs = np.zeros((3, 7))
    targets = np.zeros((3, 7))
    probs[:, 4] = [0.9, 0.8, 0.1]  # music: predicted on clips 0, 1
    targets[:, 4] = [1, 0, 1]  # -> tp 1, fp 1, fn 1: F1 = 0.5
    probs[:, 5] = [0.7, 0.2, 0.6]  # speech: predicted on 0, 2
    targets[:, 5] = [1, 0, 1]  # -> tp 2: F1 = 1
    known = np.ones((3, 7), dtype=bool)
    micro, macro = f1_scores(probs, targets, known, columns=columns)
    assert micro is not None and math.isclose(micro, 2 * 3 / (2 * 3 + 1 + 1))
    assert macro is not None and math.isclose(macro, 0.75)
    known[2, 4] = False  # the missed music clip is unlabeled: music F1 = 2/3
    micro, macro = f1_scores(probs, targets, known, columns=columns)
    assert macro is not None and math.isclose(macro, (2 / 3 + 1) / 2)


def test_gap_hand_value() -> None:
    columns = np.array([4, 5, 6])
    probs = np.zeros((2, 7))
    targets = np.zeros((2, 7))
    probs[0, 4:] = [0.9, 0.5, 0.1]
    targets[0, 4:] = [1, 0, 1]
    probs[1, 4:] = [0.3, 0.8, 0.2]
    targets[1, 4:] = [0, 1, 0]
    known = np.ones((2, 7), dtype=bool)
    # top-2 per clip: (0.9, hit), (0.5, miss), (0.8, hit), (0.3, miss); 3 positives in all.
    # Ranked: 0.9 hit, 0.8 hit, 0.5 miss, 0.3 miss -> (1 + 1) / 3.
    gap = global_average_precision(probs, targets, known, columns=columns, top_k=2)
    assert gap is not None and math.isclose(gap, 2 / 3)
    # With k covering every tag GAP equals AP over the pooled entries.
    full = global_average_precision(probs, targets, known, columns=columns, top_k=20)
    flat = average_precision(probs[:, 4:].ravel(), targets[:, 4:].ravel())
    assert full is not None and flat is not None and math.isclose(full, flat)


def test_ece_hand_value() -> None:
    confidence = np.array([0.95, 0.95, 0.6, 0.6])
    correct = np.array([True, False, True, True])
    # Bin (0.9, 1]: accuracy 0.5 vs 0.95; bin (0.5, 0.6]: accuracy 1 vs 0.6; each half.
    ece = expected_calibration_error(confidence, correct, n_bins=10)
    assert ece is not None and math.isclose(ece, 0.5 * 0.45 + 0.5 * 0.4)
    assert expected_calibration_error(np.array([]), np.array([], dtype=bool)) is None


def test_evaluate_predictions_is_json_and_consistent() -> None:
    rng = np.random.default_rng(0)
    n = 30
    targets = np.zeros((n, len(VOCAB)))
    targets[np.arange(n), rng.integers(0, 2, n)] = 1  # animal
    targets[np.arange(n), 2 + rng.integers(0, 2, n)] = 1  # scene
    targets[:, 4:] = rng.random((n, 3)) < 0.4
    targets[0, 4:] = [1, 0, 0]  # every ungrouped tag has a positive somewhere
    targets[1, 4:] = [0, 1, 1]
    probs = np.clip(targets * 0.6 + rng.random(targets.shape) * 0.4, 0, 1)
    probs[:, :2] /= probs[:, :2].sum(axis=1, keepdims=True)
    probs[:, 2:4] /= probs[:, 2:4].sum(axis=1, keepdims=True)
    known = np.ones_like(targets, dtype=bool)
    result = evaluate_predictions(probs, targets, known, vocab=VOCAB)
    json.dumps(result, allow_nan=False)
    assert set(result) >= {"accuracy", "map", "micro_f1", "macro_f1", "gap", "ap_per_tag", "ece"}
    assert result["n_clips"] == n
    assert set(result["accuracy"]) == {"animal", "scene"}
    assert set(result["ap_per_tag"]) == set(VOCAB.tags)
    ungrouped_ap = [result["ap_per_tag"][t] for t in ("music", "speech", "crowd")]
    assert math.isclose(result["map"], float(np.mean(ungrouped_ap)))
    for j in (4, 5, 6):
        expected = average_precision_score(targets[:, j], probs[:, j])
        assert math.isclose(result["ap_per_tag"][VOCAB.tags[j]], expected)
    assert 0.0 <= result["ece"] <= 1.0
    # Perfect, confident predictions score perfectly.
    perfect = evaluate_predictions(targets, targets, known, vocab=VOCAB)
    assert perfect["mean_accuracy"] == 1.0 and perfect["map"] == 1.0
    assert perfect["micro_f1"] == 1.0 and perfect["gap"] == 1.0 and perfect["ece"] == 0.0


def test_evaluate_predictions_without_ungrouped_tags() -> None:
    vocab = TagVocabulary.from_pairs([("a", "g"), ("b", "g")])
    probs = np.array([[0.7, 0.3], [0.6, 0.4]])
    targets = np.array([[1.0, 0.0], [0.0, 1.0]])
    result = evaluate_predictions(probs, targets, np.ones((2, 2), dtype=bool), vocab=vocab)
    assert result["accuracy"] == {"g": 0.5}
    assert result["map"] is None and result["gap"] is None and result["micro_f1"] is None
    json.dumps(result, allow_nan=False)


def test_evaluate_predictions_rejects_mismatched_shapes() -> None:
    with pytest.raises(InvalidInput) as err:
        evaluate_predictions(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3)), vocab=VOCAB)
    assert err.value.code == "bad_metric_input"


def test_macro_ap_averages_every_tag_grouped_ones_one_vs_rest() -> None:
    probs = np.array(
        [
            [0.9, 0.1, 0.6, 0.4, 0.8, 0.2, 0.5],
            [0.3, 0.7, 0.2, 0.8, 0.3, 0.9, 0.5],
            [0.6, 0.4, 0.5, 0.5, 0.6, 0.1, 0.5],
        ]
    )
    targets = np.array(
        [
            [1, 0, 1, 0, 1, 0, 0],
            [0, 1, 0, 1, 0, 1, 0],
            [0, 1, 0, 0, 1, 0, 0],  # clip 2: no scene label
        ],
        dtype=float,
    )
    known = np.ones_like(targets, dtype=bool)
    known[2, 2:4] = False
    result = evaluate_predictions(probs, targets, known, vocab=VOCAB)
    # cat: scores (0.9, 0.3, 0.6) hit on the first -> 1; dog: (0.1, 0.7, 0.4) hits 2nd, 3rd
    # -> 1; indoor on clips 0, 1 only: 1; outdoor: 1; music: (0.8, 0.3, 0.6) hits 1st, 3rd ->
    # 1; speech: 1; crowd: no positive -> undefined, left out.
    expected = {"cat": 1.0, "dog": 1.0, "indoor": 1.0, "outdoor": 1.0, "music": 1.0, "speech": 1.0}
    assert {t: v for t, v in result["ap_per_tag"].items() if v is not None} == expected
    assert result["ap_per_tag"]["crowd"] is None
    assert result["macro_ap"] == 1.0 and result["map"] == 1.0
    # Dog's one-vs-rest ranking now starts with a miss: AP = 1/2 * 1/2 + 1/2 * 2/3.
    probs[0, 1] = 0.95
    result = evaluate_predictions(probs, targets, known, vocab=VOCAB)
    assert math.isclose(result["ap_per_tag"]["dog"], 7 / 12)
    assert math.isclose(result["macro_ap"], (5 + 7 / 12) / 6)
    assert result["map"] == 1.0  # ungrouped tags only: unchanged by a grouped tag
    assert result["positives"] == {
        "cat": 1,
        "dog": 2,
        "indoor": 1,
        "outdoor": 1,
        "music": 2,
        "speech": 1,
        "crowd": 0,
    }


def test_positives_per_tag_counts_known_positives_only() -> None:
    targets = np.array([[1, 0, 0, 1, 1, 0, 0], [1, 0, 1, 0, 1, 1, 0]], dtype=float)
    known = np.ones_like(targets, dtype=bool)
    known[1, 4] = False  # an unknown positive is no positive
    counts = positives_per_tag(targets, known, vocab=VOCAB)
    assert counts == {
        "cat": 2,
        "dog": 0,
        "indoor": 1,
        "outdoor": 1,
        "music": 1,
        "speech": 1,
        "crowd": 0,
    }
    assert list(counts) == list(VOCAB.tags)


def test_rare_tags_are_the_rarest_fifth_ties_by_name() -> None:
    counts = {"a": 50, "b": 3, "c": 7, "d": 3, "e": 100, "f": 0, "g": 9, "h": 12, "i": 40, "j": 8}
    assert rare_tags(counts) == ["f", "b"]  # ceil(0.2 * 10) = 2, rarest first
    assert rare_tags(counts, fraction=0.3) == ["f", "b", "d"]
    assert rare_tags({"x": 4}) == ["x"]  # at least one tag once there is one
    assert rare_tags({}) == []
    with pytest.raises(InvalidInput):
        rare_tags(counts, fraction=0.0)


def test_the_promotion_score_counts_every_group_and_every_ungrouped_tag() -> None:
    from tagloop.training.loop import selection_score

    vocab = TagVocabulary.from_pairs(
        [("grey", "tint"), ("red", "tint"), ("cat", None), ("dog", None), ("owl", None)]
    )
    # Clip rows: the tint group is always right; the ungrouped tags are ranked perfectly for
    # cat and dog and exactly backwards for owl (AP 0.5 with one positive in two clips).
    targets = np.asarray([[1, 0, 1, 0, 0], [0, 1, 0, 1, 1]], dtype=np.float32)
    probs = np.asarray([[0.9, 0.1, 0.9, 0.1, 0.9], [0.2, 0.8, 0.1, 0.9, 0.1]])
    metrics = evaluate_predictions(probs, targets, np.ones_like(targets, bool), vocab=vocab)
    assert metrics["mean_accuracy"] == 1.0 and metrics["map_tags"] == 3
    assert metrics["map"] == pytest.approx((1 + 1 + 0.5) / 3)
    # One group and three tags: (1.0 + 2.5) / 4, not the group's 1.0 alone.
    assert selection_score(metrics) == pytest.approx(3.5 / 4)
    only_group = {"accuracy": {"tint": 0.7}, "mean_accuracy": 0.7, "map": None, "map_tags": 0}
    assert selection_score(only_group) == pytest.approx(0.7)
    assert (
        selection_score({"accuracy": {}, "mean_accuracy": None, "map": 0.4, "map_tags": 2}) == 0.4
    )
    # Stored before map_tags: the old rule.
    assert selection_score({"mean_accuracy": 0.6, "map": 0.2}) == 0.6
