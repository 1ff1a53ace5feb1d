"""Stored top tags are ranked among the tags the version was trained on (issue 22): after a
round on few labels of a large vocabulary every never-labeled tag scores about 0.5, and ranked
with the others they would fill the top five."""

from __future__ import annotations

import numpy as np
import pytest

from tagloop.none_outcome import none_probability
from tagloop.pipeline.scoring import TOP_TAGS, top_tags, trained_columns
from tagloop.vocabulary import TagVocabulary

# 1,000 independent tags and a two-tag group; "scene" is exclusive.
PAIRS = [(f"tag_{i:04d}", None) for i in range(1000)] + [("indoor", "scene"), ("outdoor", "scene")]
VOCAB = TagVocabulary.from_pairs(PAIRS)
INDOOR, OUTDOOR = VOCAB.tags.index("indoor"), VOCAB.tags.index("outdoor")


def _after_a_small_round(trained: dict[str, float]) -> np.ndarray:
    """Every untrained independent tag at 0.5 (what a round on few labels gives them), the
    trained ones at the given probabilities; the scene group leaves 0.2 to "none"."""
    probs = np.full(len(VOCAB), 0.5)
    probs[INDOOR], probs[OUTDOOR] = 0.45, 0.35
    for tag, p in trained.items():
        probs[VOCAB.tags.index(tag)] = p
    return probs


def test_top_tags_come_from_the_trained_tags_only() -> None:
    trained = {"tag_0007": 0.3, "tag_0500": 0.9}
    probs = _after_a_small_round(trained)
    columns = trained_columns(VOCAB.tags, {*trained, "indoor"})
    assert columns is not None and columns.tolist() == [7, 500, INDOOR]
    items = top_tags(probs, VOCAB.tags, vocab=VOCAB, columns=columns)
    # Fewer trained tags than k: all of them, best first, and nothing the model never saw.
    assert items == [
        {"tag": "tag_0500", "p": 0.9},
        {"tag": "indoor", "p": 0.45, "p_none": 0.2},  # P(none) over the whole group
        {"tag": "tag_0007", "p": 0.3},
    ]
    # Without the trained set (a version that did not record it) the 0.5s win, as before.
    old = top_tags(probs, VOCAB.tags, vocab=VOCAB)
    assert [i["tag"] for i in old] == ["tag_0500", "tag_0000", "tag_0001", "tag_0002", "tag_0003"]


def test_k_trained_tags_of_many_when_k_exist() -> None:
    rng = np.random.default_rng(0)
    names = [f"tag_{i:04d}" for i in rng.choice(1000, size=8, replace=False)]
    trained = {t: float(p) for t, p in zip(names, rng.uniform(0.01, 0.4, size=8), strict=True)}
    probs = _after_a_small_round(trained)
    items = top_tags(
        probs, VOCAB.tags, vocab=VOCAB, columns=trained_columns(VOCAB.tags, set(trained))
    )
    assert len(items) == TOP_TAGS
    best = sorted(trained, key=lambda t: -trained[t])[:TOP_TAGS]
    assert [i["tag"] for i in items] == best
    assert all(i["tag"] in trained for i in items)


def test_no_trained_tag_means_no_top_tags() -> None:
    probs = _after_a_small_round({})
    assert top_tags(probs, VOCAB.tags, columns=trained_columns(VOCAB.tags, set())) == []
    assert trained_columns(VOCAB.tags, None) is None


@pytest.mark.parametrize("k", [1, 5, 40, 2000])
def test_partial_ranking_matches_a_full_stable_sort(k: int) -> None:
    """The top k by partition is the top k of a stable sort of every column, ties by column."""
    rng = np.random.default_rng(k)
    probs = rng.choice([0.1, 0.25, 0.5, 0.75, 0.9], size=1002)  # many ties
    probs[[INDOOR, OUTDOOR]] = [0.5, 0.25]
    columns = np.sort(rng.choice(1002, size=300, replace=False))
    for cols in (None, columns):
        pool = np.arange(1002) if cols is None else cols
        expected = pool[np.argsort(-probs[pool], kind="stable")[:k]]
        got = top_tags(probs, VOCAB.tags, k=k, vocab=VOCAB, columns=cols)
        assert [i["tag"] for i in got] == [VOCAB.tags[j] for j in expected]
    scene = top_tags(probs, VOCAB.tags, k=1002, vocab=VOCAB)
    p_none = next(i["p_none"] for i in scene if i["tag"] == "indoor")
    assert p_none == round(float(none_probability(probs[[INDOOR, OUTDOOR]])), 4)
