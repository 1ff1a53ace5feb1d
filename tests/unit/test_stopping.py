"""The stopping rule's pure core (tagloop.training.stopping): Cohen's kappa against a hand
computation and sklearn, the stop-set decisions, the window rule, and the stored decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tagloop.errors import InvalidInput
from tagloop.pipeline.stopping import kappa_against
from tagloop.training.stopping import (
    cohens_kappa,
    first_stop,
    pack_decisions,
    should_stop,
    stop_decisions,
    stop_set_kappa,
    unpack_decisions,
)
from tagloop.vocabulary import TagVocabulary

VOCAB = TagVocabulary.from_pairs(
    [("cat", "animal"), ("dog", "animal"), ("bird", "animal"), ("music", None), ("speech", None)]
)


def test_kappa_hand_value() -> None:
    # 10 decisions: both True on 4, both False on 3, a True/b False on 2, a False/b True on 1.
    a = np.array([1, 1, 1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    b = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1], dtype=bool)
    # p_o = 0.7; a says True 6/10, b 5/10: p_e = 0.6*0.5 + 0.4*0.5 = 0.5; kappa = 0.2/0.5.
    assert math.isclose(cohens_kappa(a, b), 0.4)
    assert cohens_kappa(a, a) == 1.0
    # Total disagreement: p_o = 0, p_e = 0.6*0.4 + 0.4*0.6 = 0.48.
    assert math.isclose(cohens_kappa(a, ~a), -0.48 / 0.52)


@pytest.mark.parametrize("seed", range(5))
def test_kappa_matches_sklearn(seed: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    a = rng.random(200) < 0.3
    b = np.where(rng.random(200) < 0.8, a, rng.random(200) < 0.5)
    assert math.isclose(cohens_kappa(a, b), metrics.cohen_kappa_score(a, b), rel_tol=1e-12)


def test_kappa_degenerate_cases() -> None:
    zeros = np.zeros(6, dtype=bool)
    # Both constant and equal: chance agreement is 1 and kappa 0/0; defined as 1.0.
    assert cohens_kappa(zeros, zeros) == 1.0
    assert cohens_kappa(~zeros, ~zeros) == 1.0
    # Both constant and different: chance agreement 0, observed 0.
    assert cohens_kappa(zeros, ~zeros) == 0.0
    # One constant, the other not: kappa 0 (agreement no better than chance).
    one = zeros.copy()
    one[0] = True
    assert cohens_kappa(zeros, one) == 0.0
    with pytest.raises(InvalidInput) as err:
        cohens_kappa(np.zeros(0, bool), np.zeros(0, bool))
    assert err.value.code == "bad_kappa_input"
    with pytest.raises(InvalidInput):
        cohens_kappa(zeros, zeros[:3])


def test_stop_decisions_one_hot_per_group_and_threshold_per_tag() -> None:
    probs = np.array(
        [
            [0.2, 0.5, 0.3, 0.5, 0.49],
            [0.6, 0.3, 0.1, 0.9, 0.0],
        ]
    )
    decisions = stop_decisions(probs, vocab=VOCAB)
    assert decisions.tolist() == [
        [False, True, False, True, False],
        [True, False, False, True, False],
    ]
    with pytest.raises(InvalidInput):
        stop_decisions(probs[:, :4], vocab=VOCAB)


def test_stop_set_kappa_counts_every_decision() -> None:
    prev = np.array([[0.7, 0.2, 0.1, 0.9, 0.1], [0.1, 0.8, 0.1, 0.2, 0.6]])
    new = prev.copy()
    assert stop_set_kappa(prev, new, vocab=VOCAB) == 1.0
    new[1, 3] = 0.7  # one ungrouped decision flips: 9 of 10 agree
    a = stop_decisions(prev, vocab=VOCAB).ravel()
    b = stop_decisions(new, vocab=VOCAB).ravel()
    assert (a != b).sum() == 1
    assert math.isclose(stop_set_kappa(prev, new, vocab=VOCAB), cohens_kappa(a, b))
    assert stop_set_kappa(prev, new, vocab=VOCAB) < 1.0
    # A group's argmax moving flips two decisions (the old and the new winner).
    moved = prev.copy()
    moved[0, :3] = [0.1, 0.2, 0.7]
    flat = stop_decisions(moved, vocab=VOCAB).ravel()
    assert (stop_decisions(prev, vocab=VOCAB).ravel() != flat).sum() == 2


def test_should_stop_needs_the_last_window_all_above() -> None:
    assert not should_stop([], threshold=0.99, window=3)
    assert not should_stop([0.995, 0.999], threshold=0.99, window=3)
    assert should_stop([0.5, 0.995, 0.999, 0.99], threshold=0.99, window=3)
    assert not should_stop([0.995, 0.999, 0.99, 0.98], threshold=0.99, window=3)
    assert not should_stop([0.995, None, 0.999, 0.999], threshold=0.99, window=3)
    assert should_stop([0.9], threshold=0.8, window=1)
    assert should_stop([0.995, 0.999, 0.99])  # the paper's defaults
    with pytest.raises(InvalidInput):
        should_stop([1.0], threshold=0.99, window=0)


def test_first_stop_is_where_a_window_first_completes() -> None:
    kappas = [None, 0.9, 0.995, 0.999, 0.991, 0.5, 0.999]
    assert first_stop(kappas, threshold=0.99, window=3) == 4
    assert first_stop(kappas, threshold=0.99, window=4) is None
    assert first_stop(kappas, threshold=0.99, window=1) == 2


def test_decisions_round_trip_through_json_text() -> None:
    rng = np.random.default_rng(1)
    decisions = rng.random((13, 5)) < 0.4  # 65 bits: not a whole number of bytes
    packed = pack_decisions(decisions)
    assert isinstance(packed, str) and len(packed) <= 4 * math.ceil(65 / 8 / 3) + 4
    assert np.array_equal(unpack_decisions(packed, shape=(13, 5)), decisions)
    with pytest.raises(InvalidInput):
        unpack_decisions(packed, shape=(20, 5))


def test_kappa_against_a_stored_stop_set_on_shared_clips_and_old_tags() -> None:
    old_vocab = TagVocabulary.from_pairs([("cat", "animal"), ("dog", "animal"), ("music", None)])
    old_probs = np.array([[0.8, 0.2, 0.9], [0.3, 0.7, 0.1], [0.6, 0.4, 0.6]])
    stored = {
        "clip_ids": [5, 7, 9],
        "decisions": pack_decisions(stop_decisions(old_probs, vocab=old_vocab)),
    }
    # The pool grew (clip 2 entered, clip 9 left) and a tag joined the group: "bird" now wins
    # clip 5's argmax. The comparison looks at the old tags only; there, since a group has a
    # "none" outcome (issue 19 item 3), bird's mass is "none of cat/dog" (0.6 > cat's 0.35),
    # a changed decision (was: cat still won among the old tags, kappa 1).
    new_vocab = old_vocab.extend([("bird", "animal")])
    # Columns cat, dog, music, bird (new tags are appended); rows clips 2, 5, 7.
    new_probs = np.array([[0.3, 0.2, 0.9, 0.5], [0.35, 0.05, 0.9, 0.6], [0.2, 0.7, 0.2, 0.1]])
    assert stop_decisions(new_probs, vocab=new_vocab)[1].tolist() == [False, False, True, True]
    kappa = kappa_against(stored, old_vocab, clip_ids=[2, 5, 7], probs=new_probs, vocab=new_vocab)
    expected = cohens_kappa(
        stop_decisions(old_probs[:2], vocab=old_vocab),
        stop_decisions(new_probs[1:, :3], vocab=old_vocab),
    )
    assert kappa is not None and math.isclose(kappa, expected)
    assert stop_decisions(new_probs[1:2, :3], vocab=old_vocab).tolist() == [[False, False, True]]
    assert kappa < 1.0  # clip 5 changed (cat -> none of the old tags), clip 7 agrees
    # Reordered vocabulary or no shared clip: no comparison.
    swapped = TagVocabulary.from_pairs([("dog", "animal"), ("cat", "animal"), ("music", None)])
    assert (
        kappa_against(stored, old_vocab, clip_ids=[2, 5, 7], probs=new_probs[:, :3], vocab=swapped)
        is None
    )
    assert (
        kappa_against(stored, old_vocab, clip_ids=[1], probs=new_probs[:1], vocab=new_vocab) is None
    )
