"""Selection scores only the units a model version knows (issue 22).

After a round on few labels a head scores every tag it was never trained on about 0.5 on
every clip. Read with the others, one such tag ties every clip under ``min_margin`` and a
thousand of them drown the mean of the entropy strategies. With ``columns`` (the version's
trained columns) a pool scores as if the vocabulary held only the units those columns make.
"""

from __future__ import annotations

import numpy as np
import pytest

from tagloop.errors import InvalidInput
from tagloop.none_outcome import with_none
from tagloop.selection import score_pool
from tagloop.vocabulary import TagVocabulary

N, T, U = 40, 6, 1000
MEAN_STRATEGIES = [
    "entropy",
    "mean_binary_entropy",
    "least_confidence",
    "margin",
    "cluster_margin",
    "balanced_entropy",
    "balanced_cluster",
    "tag_balanced_cluster",
]


def _free_pool(
    rng: np.random.Generator, *, jitter: float
) -> tuple[TagVocabulary, np.ndarray, np.ndarray, np.ndarray]:
    """(vocab of T + U independent tags, probs (N, T + U), trained columns (T,), counts):
    the trained columns sit at random places among U untrained ones at 0.5 (+ jitter, as a
    randomly initialised head gives)."""
    vocab = TagVocabulary.from_pairs([(f"t{j:04d}", None) for j in range(T + U)])
    columns = np.sort(rng.choice(T + U, size=T, replace=False))
    probs = np.clip(0.5 + rng.normal(scale=jitter, size=(N, T + U)), 0.0, 1.0)
    probs[:, columns] = rng.uniform(0.01, 0.99, size=(N, T))
    counts = np.zeros(T + U)
    counts[columns] = rng.integers(1, 60, size=T)
    return vocab, probs, columns, counts


def _alone(columns: np.ndarray) -> TagVocabulary:
    return TagVocabulary.from_pairs([(f"t{j:04d}", None) for j in columns])


def _ranking(scores: np.ndarray) -> list[int]:
    return np.argsort(-scores, kind="stable").tolist()


def test_min_margin_follows_the_trained_tags_not_one_untrained_tag() -> None:
    rng = np.random.default_rng(0)
    vocab, probs, columns, _ = _free_pool(rng, jitter=0.0)
    # Clip i's least sure trained tag is distance[i] from the threshold; the others are sure.
    distance = rng.permutation(np.linspace(0.05, 0.45, N))
    probs[:, columns] = 0.99
    probs[np.arange(N), columns[np.arange(N) % T]] = 0.5 + distance

    every = score_pool(probs, vocab=vocab, strategy="min_margin")
    assert np.all(every == 1.0)  # an untrained tag at 0.5 is every clip's least sure tag

    got = score_pool(probs, vocab=vocab, strategy="min_margin", columns=columns)
    assert got == pytest.approx(1.0 - 2.0 * distance)
    assert _ranking(got) == np.argsort(distance, kind="stable").tolist()
    alone = score_pool(probs[:, columns], vocab=_alone(columns), strategy="min_margin")
    assert np.array_equal(got, alone)


@pytest.mark.parametrize("strategy", MEAN_STRATEGIES)
def test_mean_strategies_rank_as_on_the_trained_tags_alone(strategy: str) -> None:
    rng = np.random.default_rng(1)
    vocab, probs, columns, counts = _free_pool(rng, jitter=0.03)
    got = score_pool(probs, vocab=vocab, strategy=strategy, tag_counts=counts, columns=columns)
    alone = score_pool(
        probs[:, columns], vocab=_alone(columns), strategy=strategy, tag_counts=counts[columns]
    )
    assert got == pytest.approx(alone, abs=1e-12)
    assert _ranking(got) == _ranking(alone)
    # Read over every column, the thousand untrained tags decide the order instead.
    every = score_pool(probs, vocab=vocab, strategy=strategy, tag_counts=counts)
    assert _ranking(every) != _ranking(alone)


def test_balanced_weights_are_relative_to_the_rarest_scored_tag() -> None:
    """With the untrained tags out, a rare trained tag weighs 1 (not an unscored tag with no
    labels): the scores keep their scale and only the ranking's inputs change."""
    rng = np.random.default_rng(2)
    vocab, probs, columns, counts = _free_pool(rng, jitter=0.0)
    counts[columns] = [1, 1, 50, 50, 50, 50]
    # Every clip torn on exactly one trained tag, the others sure: rare tags' clips first.
    probs[:, columns] = 1.0
    torn = np.arange(N) % T
    probs[np.arange(N), columns[torn]] = 0.5
    got = score_pool(
        probs, vocab=vocab, strategy="balanced_entropy", tag_counts=counts, columns=columns
    )
    assert set(np.flatnonzero(got >= np.sort(got)[-1] - 1e-12)) == set(np.flatnonzero(torn < 2))
    plain = score_pool(probs, vocab=vocab, strategy="mean_binary_entropy", columns=columns)
    assert got.max() == pytest.approx(plain.max())  # weight 1 on the rarest scored tag


GROUPED = TagVocabulary.from_pairs(
    [
        ("cat", "animal"),
        ("dog", "animal"),
        ("axolotl", "animal"),
        ("sun", "weather"),
        ("rain", "weather"),
        ("night", None),
        *[(f"free_{i:03d}", None) for i in range(200)],
    ]
)
# Units the trained columns make: the animal group (cat trained) and night.
KNOWN = TagVocabulary.from_pairs(
    [("cat", "animal"), ("dog", "animal"), ("axolotl", "animal"), ("night", None)]
)
KNOWN_COLUMNS = np.array([0, 1, 2, 5])


def _grouped_probs(rng: np.random.Generator) -> np.ndarray:
    animal = rng.dirichlet(np.ones(4), size=N)[:, :3]  # "none" is the fourth outcome
    weather = np.full((N, 2), 1.0 / 3.0)  # a group nobody decided: uniform with "none"
    free = np.clip(0.5 + rng.normal(scale=0.03, size=(N, 201)), 0.0, 1.0)
    free[:, 0] = rng.uniform(0.01, 0.99, size=N)  # night
    return np.concatenate([animal, weather, free], axis=1)


@pytest.mark.parametrize(
    "strategy", ["entropy", "margin", "min_margin", "balanced_entropy", "tag_balanced_cluster"]
)
def test_a_group_with_a_trained_tag_keeps_its_whole_distribution(strategy: str) -> None:
    rng = np.random.default_rng(3)
    probs = _grouped_probs(rng)
    counts = np.zeros(len(GROUPED))
    counts[[0, 5]] = [4, 9]
    columns = np.array([GROUPED.index["cat"], GROUPED.index["night"]])
    got = score_pool(probs, vocab=GROUPED, strategy=strategy, tag_counts=counts, columns=columns)
    alone = score_pool(
        probs[:, KNOWN_COLUMNS],
        vocab=KNOWN,
        strategy=strategy,
        tag_counts=counts[KNOWN_COLUMNS],
    )
    assert got == pytest.approx(alone, abs=1e-12)


def test_a_groups_none_is_what_all_its_columns_leave() -> None:
    """The animal group is scored over cat, dog, axolotl and none = 1 - all three: its
    untrained members' mass is not folded into "none"."""
    rng = np.random.default_rng(4)
    probs = _grouped_probs(rng)
    cat = np.array([GROUPED.index["cat"]])
    got = score_pool(probs, vocab=GROUPED, strategy="entropy", columns=cat)
    full = with_none(probs[:, :3])
    expected = -(full * np.log(np.where(full > 0, full, 1.0))).sum(axis=1) / np.log(4)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("strategy", ["bald", "disagreement"])
def test_stacked_strategies_score_the_trained_columns_alone(strategy: str) -> None:
    rng = np.random.default_rng(5)
    stack = np.stack([_grouped_probs(rng) for _ in range(3)])
    columns = np.array([GROUPED.index["cat"], GROUPED.index["night"]])
    key = "mc_probs" if strategy == "bald" else "modality_probs"
    got = score_pool(stack[0], vocab=GROUPED, strategy=strategy, columns=columns, **{key: stack})
    alone = score_pool(
        stack[0][:, KNOWN_COLUMNS],
        vocab=KNOWN,
        strategy=strategy,
        **{key: stack[:, :, KNOWN_COLUMNS]},
    )
    assert got == pytest.approx(alone, abs=1e-12)


def test_every_column_is_no_columns_and_none_is_no_units() -> None:
    rng = np.random.default_rng(6)
    probs = _grouped_probs(rng)
    everything = np.arange(len(GROUPED))
    for strategy in ("entropy", "min_margin"):
        assert np.array_equal(
            score_pool(probs, vocab=GROUPED, strategy=strategy, columns=everything),
            score_pool(probs, vocab=GROUPED, strategy=strategy),
        )
    empty = np.zeros(0, dtype=np.int64)
    assert np.array_equal(
        score_pool(probs, vocab=GROUPED, strategy="entropy", columns=empty), np.zeros(N)
    )
    # random ignores the predictions, and so the columns.
    ids = np.arange(N)
    assert np.array_equal(
        score_pool(probs, vocab=GROUPED, strategy="random", clip_ids=ids, rng=0, columns=empty),
        score_pool(probs, vocab=GROUPED, strategy="random", clip_ids=ids, rng=0),
    )


@pytest.mark.parametrize("bad", [np.array([0, len(GROUPED)]), np.array([-1]), np.array([0.5])])
def test_columns_outside_the_vocabulary_are_refused(bad: np.ndarray) -> None:
    probs = _grouped_probs(np.random.default_rng(7))
    with pytest.raises(InvalidInput) as err:
        score_pool(probs, vocab=GROUPED, strategy="entropy", columns=bad)
    assert err.value.code == "invalid_columns"
