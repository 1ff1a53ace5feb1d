"""Every tag group's implicit "none of these" outcome (issue 19 item 3), through each consumer:
the loss and probabilities, targets, metrics, thresholds, selection, suggestions and export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tagloop.export import predicted_choices
from tagloop.none_outcome import (
    group_decided,
    group_truth,
    likeliest_outcome,
    none_probability,
    with_none,
)
from tagloop.pipeline.scoring import top_tags
from tagloop.selection import score_pool
from tagloop.suggestions import prechecked_tags
from tagloop.training.loss import multitask_loss, probabilities
from tagloop.training.metrics import (
    decision_confidence,
    effective_known,
    evaluate_predictions,
    group_accuracy,
)
from tagloop.training.stopping import stop_decisions
from tagloop.training.targets import build_targets
from tagloop.training.thresholds import fit_group_threshold, group_decisions, group_micro_f1
from tagloop.vocabulary import TagVocabulary

# A number group (spoken or not) and an independent tag.
VOCAB = TagVocabulary.from_pairs([("one", "number"), ("two", "number"), ("loud", None)])
NUMBER = VOCAB.group_indices["number"]


# --- the loss and probabilities ----------------------------------------------------------------


def test_probabilities_leave_the_none_mass() -> None:
    logits = torch.tensor([[1.0, -1.0, 0.3], [-9.0, -9.0, 0.0]])
    probs = probabilities(logits, vocab=VOCAB)
    full = torch.softmax(torch.tensor([1.0, -1.0, 0.0]), dim=0)
    assert torch.allclose(probs[0, :2], full[:2])
    p_none = none_probability(probs[:, NUMBER].numpy())
    assert p_none[0] == pytest.approx(float(full[2]), abs=1e-6)
    assert p_none[1] > 0.999  # very negative tag logits: "nobody speaks"
    assert torch.allclose(probs[:, 2], torch.sigmoid(logits[:, 2]))


def test_a_group_with_no_positive_is_a_none_target_with_its_gradient() -> None:
    logits = torch.tensor([[0.5, -0.2, 0.0]], requires_grad=True)
    targets = torch.zeros(1, 3)
    known = torch.tensor([[True, True, False]])  # number decided: none; loud not labeled
    loss = multitask_loss(logits, targets, known, vocab=VOCAB)
    group = torch.softmax(torch.tensor([0.5, -0.2, 0.0]), dim=0)
    assert float(loss.detach()) == pytest.approx(-math.log(float(group[2])), rel=1e-6)
    loss.backward()
    assert logits.grad is not None
    # d(-log p_none)/dz_j = p_j: every tag logit is pushed down, the untouched tag gets none.
    np.testing.assert_allclose(logits.grad[0, :2].numpy(), group[:2].numpy(), rtol=1e-5)
    assert float(logits.grad[0, 2]) == 0.0


def test_all_zeros_known_is_none_but_unsure_is_nothing() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    zeros = torch.zeros(1, 3)
    decided = multitask_loss(logits, zeros, torch.tensor([[True, True, False]]), vocab=VOCAB)
    unsure = multitask_loss(logits, zeros, torch.tensor([[False, False, False]]), vocab=VOCAB)
    assert float(decided.detach()) > 0
    assert float(unsure.detach()) == 0.0
    unsure.backward()  # a no-op step, not an error
    assert logits.grad is not None and not logits.grad.any()
    # Half known without a positive says "not one", not which: skipped as before.
    half = multitask_loss(logits, zeros, torch.tensor([[True, False, False]]), vocab=VOCAB)
    assert float(half) == 0.0


def test_a_positive_still_has_its_tag_as_target() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    loss = multitask_loss(logits, targets, torch.tensor([[True, True, False]]), vocab=VOCAB)
    assert float(loss) == pytest.approx(math.log(3), rel=1e-6)  # tags and none all at 0


def test_fitting_learns_absence() -> None:
    """A linear model on one feature (1: speech, 0: silence) learns P(none) from labels whose
    silent clips name no number."""
    torch.manual_seed(0)
    x = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    labels = [["one"], ["two"], [], []]
    pairs = [build_targets(t, vocab=VOCAB) for t in labels]
    targets = torch.from_numpy(np.stack([t for t, _ in pairs]))
    known = torch.from_numpy(np.stack([k for _, k in pairs]))
    w = torch.zeros(1, 3, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        multitask_loss(x @ w + b, targets, known, vocab=VOCAB).backward()
        opt.step()
    p_none = none_probability(probabilities(x @ w + b, vocab=VOCAB).detach().numpy()[:, NUMBER])
    assert p_none[2] > 0.8 and p_none[0] < 0.2


# --- the outcome helpers -----------------------------------------------------------------------


def test_outcome_helpers() -> None:
    probs = np.array([[0.6, 0.3], [0.2, 0.1], [0.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(none_probability(probs), [0.1, 0.7, 1.0, 0.0], atol=1e-12)
    assert with_none(probs).shape == (4, 3)
    np.testing.assert_allclose(with_none(probs).sum(axis=1), 1.0)
    assert likeliest_outcome(probs).tolist() == [0, 2, 2, 0]
    # A tie between the top tag and none goes to none: an undecided model says nothing.
    assert likeliest_outcome(np.array([[1 / 3, 1 / 3]])).tolist() == [2]
    targets = np.array([[1, 0], [0, 0], [0, 0], [0, 0]], dtype=float)
    known = np.array([[True, True], [True, True], [False, False], [True, False]])
    assert group_decided(targets, known, np.arange(2)).tolist() == [True, True, False, False]
    assert group_truth(targets, known, np.arange(2)).tolist() == [0, 2, -1, -1]


# --- metrics ------------------------------------------------------------------------------------


def test_group_accuracy_counts_none_as_an_outcome() -> None:
    probs = np.array(
        [
            [0.7, 0.1, 0.5],  # truth one, predicted one
            [0.1, 0.1, 0.5],  # truth none, predicted none (0.8)
            [0.1, 0.6, 0.5],  # truth none, predicted two
            [0.2, 0.1, 0.5],  # unsure: not counted
        ]
    )
    targets = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=float)
    known = np.ones_like(targets, dtype=bool)
    known[3, :2] = False
    assert group_accuracy(probs, targets, known, vocab=VOCAB) == {"number": pytest.approx(2 / 3)}
    confidence, correct = decision_confidence(probs, targets, known, vocab=VOCAB)
    # Three group decisions, then four ungrouped ones.
    np.testing.assert_allclose(confidence[:3], [0.7, 0.8, 0.6])
    assert correct[:3].tolist() == [True, True, False]
    scored = effective_known(targets, known, vocab=VOCAB)
    assert scored[:, 0].tolist() == [True, True, True, False]
    metrics = evaluate_predictions(probs, targets, known, vocab=VOCAB)
    # One-vs-rest AP of "one" over the three decided clips: its positive ranks first.
    assert metrics["ap_per_tag"]["one"] == pytest.approx(1.0)


# --- thresholds and stop decisions --------------------------------------------------------------


def test_group_decisions_check_only_a_tag_that_beats_none() -> None:
    probs = np.array([[0.7, 0.1, 0], [0.2, 0.1, 0], [0.4, 0.5, 0], [0.45, 0.2, 0]])
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]], dtype=float)
    known = np.ones_like(targets, dtype=bool)
    scores, right, n_positives = group_decisions(probs, targets, known, groups=[NUMBER])
    # Clip 1's best tag (0.2) loses to none (0.7): never checked, but its positive is missed.
    np.testing.assert_allclose(scores, [0.7, 0.5, 0.45])
    assert right.tolist() == [True, False, False]
    assert n_positives == 3
    # At a cut of 0.6 only clip 0 is checked: F1 = 2 * 1 / (1 + 3).
    f1 = group_micro_f1(probs, targets, known, groups=[NUMBER], threshold=0.6)
    assert f1 == pytest.approx(0.5)


def test_group_threshold_is_fitted_with_none_clips() -> None:
    rng = np.random.default_rng(0)
    n = 200
    speaks = rng.random(n) < 0.7
    truth = rng.integers(0, 2, n)
    p_tag = np.where(speaks, rng.uniform(0.55, 0.95, n), rng.uniform(0.0, 0.3, n))
    probs = np.zeros((n, 3))
    probs[np.arange(n), truth] = p_tag
    probs[np.arange(n), 1 - truth] = (1 - p_tag) * 0.1
    targets = np.zeros((n, 3))
    targets[np.arange(n)[speaks], truth[speaks]] = 1.0
    known = np.ones((n, 3), dtype=bool)
    cut = fit_group_threshold(probs, targets, known, groups=[NUMBER])
    assert cut is not None
    assert group_micro_f1(probs, targets, known, groups=[NUMBER], threshold=cut) == 1.0


def test_stop_decisions_say_none() -> None:
    probs = np.array([[0.6, 0.3, 0.9], [0.1, 0.2, 0.1]])
    assert stop_decisions(probs, vocab=VOCAB).tolist() == [
        [True, False, True],
        [False, False, False],
    ]


# --- selection ----------------------------------------------------------------------------------


def test_selection_scores_the_none_mass() -> None:
    vocab = TagVocabulary.from_pairs([("one", "number"), ("two", "number")])
    probs = np.array(
        [
            [1 / 3, 1 / 3],  # tags and none all equally likely: most uncertain
            [0.0, 0.0],  # surely none: certain
            [1.0, 0.0],  # surely one: certain
            [0.5, 0.0],  # one or none
        ]
    )
    scores = score_pool(probs, vocab=vocab, strategy="entropy")
    np.testing.assert_allclose(scores[:3], [1.0, 0.0, 0.0], atol=1e-9)
    assert scores[3] == pytest.approx(math.log(2) / math.log(3))
    margin = score_pool(probs, vocab=vocab, strategy="margin")
    assert margin[3] == pytest.approx(1.0)  # one and none tie


def test_a_group_of_one_tag_is_a_yes_no_question() -> None:
    vocab = TagVocabulary.from_pairs([("speech", "voice")])
    scores = score_pool(np.array([[0.5], [1.0], [0.0]]), vocab=vocab, strategy="entropy")
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0], atol=1e-9)


def test_balanced_entropy_weighs_none_like_an_average_tag() -> None:
    vocab = TagVocabulary.from_pairs([("one", "number"), ("two", "number")])
    probs = np.array([[0.0, 0.0], [0.5, 0.0]])
    counts = np.array([0.0, 99.0])  # "one" rare (weight 1), "two" common (weight 0.1)
    scores = score_pool(probs, vocab=vocab, strategy="balanced_entropy", tag_counts=counts)
    assert scores[0] == 0.0
    # Entropy of (0.5, 0, 0.5) over 3 outcomes, weight 0.5 * 1 + 0.5 * mean(1, 0.1).
    expected = math.log(2) / math.log(3) * (0.5 + 0.5 * 0.55)
    assert scores[1] == pytest.approx(expected)


# --- suggestions, export and stored predictions ---------------------------------------------------


def test_stored_top_tags_carry_the_group_none() -> None:
    probs = np.array([0.2, 0.1, 0.9])
    items = top_tags(probs, VOCAB.tags, vocab=VOCAB)
    assert items[0] == {"tag": "loud", "p": 0.9}
    assert items[1] == {"tag": "one", "p": 0.2, "p_none": 0.7}
    assert items[2] == {"tag": "two", "p": 0.1, "p_none": 0.7}
    # Without the vocabulary: the old format.
    assert top_tags(probs, VOCAB.tags)[1] == {"tag": "one", "p": 0.2}


def test_suggestions_check_a_group_tag_only_when_it_beats_none() -> None:
    groups = {"one": "number", "two": "number", "loud": None}
    none_wins = [{"tag": "one", "p": 0.3, "p_none": 0.6}, {"tag": "loud", "p": 0.8}]
    assert prechecked_tags(none_wins, groups=groups, threshold=0.5, group_threshold=0.2) == ["loud"]
    tag_wins = [{"tag": "one", "p": 0.5, "p_none": 0.4}]
    assert prechecked_tags(tag_wins, groups=groups, threshold=0.5, group_threshold=0.2) == ["one"]
    # Stored before "none" existed: the group summed to 1, its P(none) is 0.
    old = [{"tag": "one", "p": 0.3}, {"tag": "two", "p": 0.7}]
    assert prechecked_tags(old, groups=groups, threshold=0.5, group_threshold=0.2) == ["two"]


def test_export_falls_back_to_a_tag_none_does_not_beat() -> None:
    groups = {"one": "number", "two": "number", "loud": None}
    silent = [{"tag": "one", "p": 0.3, "p_none": 0.6}, {"tag": "loud", "p": 0.2}]
    assert predicted_choices(silent, threshold=0.5, groups=groups) == ["loud"]
    only_group = [{"tag": "one", "p": 0.3, "p_none": 0.6}]
    assert predicted_choices(only_group, threshold=0.5, groups=groups) == []
    old = [{"tag": "one", "p": 0.3}]
    assert predicted_choices(old, threshold=0.5, groups=groups) == ["one"]
