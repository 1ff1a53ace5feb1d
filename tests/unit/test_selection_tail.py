"""Selection that sees the tail: class-balanced uncertainty, cluster-margin batches and the
typicality cold start, and their wiring into the service's scoring and the simulation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tagloop.config import Settings
from tagloop.db.models import Base, Label
from tagloop.errors import InvalidInput
from tagloop.fusion import FusionConfig
from tagloop.fusion.factory import build_model
from tagloop.pipeline.scoring import label_counts, trained_columns, uncertainty_of
from tagloop.pipeline.training import split_labeled
from tagloop.selection import (
    assemble_batch,
    class_balanced_weights,
    count_tag_labels,
    fit_kmeans,
    get_strategy,
    list_strategies,
    pick_cluster_round_robin,
    pick_typical,
    score_mean_binary_entropy,
    score_pool,
    seed_batch,
)
from tagloop.selection import cluster as cluster_module
from tagloop.simulation import SimulationOptions, round_columns, seed_rows, select_next
from tagloop.simulation_data import SimulationSet, load_demo_set
from tagloop.training.metrics import positives_per_tag
from tagloop.training.predict import Predictions, predict_clips
from tagloop.training.targets import build_targets
from tagloop.vocabulary import TagVocabulary

FREE = TagVocabulary.from_pairs([("common", None), ("rare", None), ("other", None)])
GROUPED = TagVocabulary.from_pairs(
    [("cat", "animal"), ("dog", "animal"), ("axolotl", "animal"), ("night", None)]
)


def blobs(
    rng: np.random.Generator, sizes: list[int], *, spread: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points (N, 2), cluster (N,), centers (C, 2))``: tight blobs far apart."""
    centers = np.array([[100.0 * c, -60.0 * (c % 3)] for c in range(len(sizes))])
    cluster = np.repeat(np.arange(len(sizes)), sizes)
    points = centers[cluster] + rng.normal(scale=spread, size=(cluster.size, 2))
    return points, cluster, centers


# --- class-balanced uncertainty -------------------------------------------------------------


def test_weights_favour_rare_tags_and_stay_in_unit_range() -> None:
    w = class_balanced_weights(np.array([99.0, 0.0, 3.0, 99.0]))
    assert w == pytest.approx([0.1, 1.0, 0.5, 0.1])  # sqrt(1 / (n + 1)) over the largest
    assert np.all((w > 0) & (w <= 1)) and w.max() == 1.0
    # No labels anywhere, or equal counts: every tag weighs the same.
    assert class_balanced_weights(np.zeros(3)) == pytest.approx(np.ones(3))
    assert class_balanced_weights(np.full(3, 7.0)) == pytest.approx(np.ones(3))
    assert class_balanced_weights(np.zeros(0)).shape == (0,)


def test_rare_tag_uncertainty_outranks_frequent_tag_uncertainty() -> None:
    # Each clip is torn on one tag and sure of the others: plain scores tie.
    probs = np.array([[0.5, 0.0, 1.0], [1.0, 0.5, 1.0]])
    counts = np.array([200.0, 2.0, 50.0])  # "common", "rare", "other"
    plain = score_pool(probs, vocab=FREE, strategy="mean_binary_entropy")
    assert plain[0] == pytest.approx(plain[1])
    balanced = score_pool(probs, vocab=FREE, strategy="balanced_entropy", tag_counts=counts)
    assert balanced[1] > balanced[0]
    assert balanced[1] == pytest.approx(1.0 / 3)  # weight 1, entropy 1, mean over 3 tags
    assert np.all((balanced >= 0) & (balanced <= 1))


def test_equal_counts_give_plain_mean_binary_entropy() -> None:
    p = np.random.default_rng(0).random((40, 3))
    for counts in (np.zeros(3), np.full(3, 12.0)):
        got = score_pool(p, vocab=FREE, strategy="balanced_entropy", tag_counts=counts)
        assert got == pytest.approx(score_mean_binary_entropy(p))
    # With groups: plain entropy on every unit.
    rng = np.random.default_rng(1)
    g = np.concatenate([rng.dirichlet(np.ones(3), size=20), rng.random((20, 1))], axis=1)
    got = score_pool(g, vocab=GROUPED, strategy="balanced_entropy", tag_counts=np.ones(4))
    assert got == pytest.approx(score_pool(g, vocab=GROUPED, strategy="entropy"))


def test_group_unit_weighs_the_class_the_clip_leans_to() -> None:
    # Same entropy, but the second clip is torn between a frequent class and a rare one.
    probs = np.array([[0.5, 0.5, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0]])
    counts = np.array([80.0, 80.0, 0.0, 10.0])
    s = score_pool(probs, vocab=GROUPED, strategy="balanced_entropy", tag_counts=counts)
    assert s[1] > s[0] > 0


def test_counts_from_targets() -> None:
    targets = np.stack([build_targets(t, vocab=GROUPED)[0] for t in (["cat"], ["cat", "night"])])
    assert count_tag_labels(targets).tolist() == [2.0, 0.0, 0.0, 1.0]
    assert count_tag_labels(np.zeros((0, 4))).tolist() == [0.0] * 4
    with pytest.raises(InvalidInput) as err:
        count_tag_labels(np.zeros(4))
    assert err.value.code == "invalid_counts"


@pytest.mark.parametrize(
    ("counts", "code"),
    [
        (None, "missing_input"),
        (np.ones(2), "invalid_counts"),
        (np.array([1.0, -1.0, 0.0]), "invalid_counts"),
        (np.array([1.0, np.nan, 0.0]), "invalid_counts"),
        (np.ones((3, 1)), "invalid_counts"),
    ],
)
def test_bad_counts_rejected(counts: np.ndarray | None, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        score_pool(np.full((2, 3), 0.5), vocab=FREE, strategy="balanced_entropy", tag_counts=counts)
    assert err.value.code == code


# --- k-means and cluster round robin --------------------------------------------------------


def test_kmeans_recovers_blobs_and_is_deterministic() -> None:
    rng = np.random.default_rng(2)
    points, cluster, _ = blobs(rng, [30, 5, 12, 40])
    codes = fit_kmeans(points, k=4, seed=3)
    # Same partition as the truth, up to the names of the clusters.
    assert len({(a, b) for a, b in zip(codes.tolist(), cluster.tolist(), strict=True)}) == 4
    assert np.array_equal(fit_kmeans(points, k=4, seed=3), codes)
    # More clusters than distinct points: no crash, codes in range.
    same = fit_kmeans(np.ones((5, 2)), k=4, seed=0)
    assert same.shape == (5,) and same.min() >= 0 and same.max() < 4


def test_kmeans_on_a_large_pool_fits_a_sample_and_assigns_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster_module, "KMEANS_FIT_ROWS", 60)
    rng = np.random.default_rng(12)
    points, cluster, _ = blobs(rng, [100, 100, 100])
    perm = rng.permutation(cluster.size)  # the first 60 rows: a random sample
    codes = fit_kmeans(points[perm], k=3, seed=0)
    assert codes.shape == (300,)
    pairs = {(a, b) for a, b in zip(codes.tolist(), cluster[perm].tolist(), strict=True)}
    assert len(pairs) == 3


def test_round_robin_covers_every_cluster_before_a_second_pick() -> None:
    rng = np.random.default_rng(4)
    sizes = [40, 6, 20, 3, 15]
    points, cluster, _ = blobs(rng, sizes)
    picks = pick_cluster_round_robin(points, k=10, n_clusters=5, seed=0)
    first, second = cluster[picks[:5]], cluster[picks[5:]]
    assert sorted(first.tolist()) == [0, 1, 2, 3, 4]
    assert sorted(second.tolist()) == [0, 1, 2, 3, 4]
    # Smallest cluster first; within each cluster the best (lowest) row first.
    assert first.tolist() == [3, 1, 4, 2, 0]
    for c in range(5):
        rows = picks[cluster[picks] == c]
        assert rows.tolist() == np.flatnonzero(cluster == c)[:2].tolist()


def test_cluster_margin_batch_takes_the_most_uncertain_of_each_cluster() -> None:
    rng = np.random.default_rng(5)
    points, cluster, _ = blobs(rng, [50, 30, 10, 8, 20])
    n = cluster.size
    scores = rng.random(n)
    scores[cluster == 0] += 1.0  # cluster 0 dominates the ranking
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    spec = get_strategy("cluster_margin")
    assert spec.batch == "cluster_round_robin"
    kwargs: dict[str, Any] = dict(batch_size=5, per_video_cap=1, top_m=n)
    picked = assemble_batch(
        clip_ids=ids,
        scores=scores,
        video_ids=np.arange(n),
        embeddings=points,
        batch_rule=spec.batch,
        **kwargs,
    )
    row = {int(c): i for i, c in enumerate(ids)}
    rows = np.asarray([row[int(c)] for c in picked])
    assert sorted(cluster[rows].tolist()) == [0, 1, 2, 3, 4]
    for r in rows:
        members = np.flatnonzero(cluster == cluster[r])
        assert scores[r] == scores[members].max()
    assert np.all(np.diff(scores[rows]) <= 0)  # returned in rank order
    # Another row order: the same batch.
    perm = rng.permutation(n)
    again = assemble_batch(
        clip_ids=ids[perm],
        scores=scores[perm],
        video_ids=np.arange(n)[perm],
        embeddings=points[perm],
        batch_rule=spec.batch,
        **kwargs,
    )
    assert np.array_equal(again, picked)


def test_cluster_round_robin_respects_the_video_cap_and_fills() -> None:
    rng = np.random.default_rng(6)
    points, cluster, _ = blobs(rng, [20, 20, 20])
    n = cluster.size
    videos = np.arange(n) % 4  # 4 videos, cap 2: at most 8 clips
    picked = assemble_batch(
        clip_ids=np.arange(n),
        scores=rng.random(n),
        video_ids=videos,
        batch_size=12,
        per_video_cap=2,
        embeddings=points,
        batch_rule="cluster_round_robin",
    )
    assert picked.size == 8 and len(set(picked.tolist())) == 8
    assert np.bincount(videos[picked]).max() == 2


# --- typicality cold start ------------------------------------------------------------------


def test_typical_picks_one_central_point_per_blob_not_an_outlier() -> None:
    rng = np.random.default_rng(7)
    sizes = [60, 25, 40, 15]
    points, cluster, centers = blobs(rng, sizes, spread=2.0)
    # Each blob gets a far-flung member: farthest-first would love it, typicality must not.
    outliers = centers + np.array([0.0, 25.0])
    points = np.concatenate([points, outliers])
    cluster = np.concatenate([cluster, np.arange(4)])
    picks = pick_typical(points, k=4, seed=0)
    assert sorted(cluster[picks].tolist()) == [0, 1, 2, 3]
    assert cluster[picks[0]] == 0  # largest cluster first
    dist = np.linalg.norm(points[picks] - centers[cluster[picks]], axis=1)
    assert np.all(dist < 2.0)  # within one spread of the centre
    assert not set(picks.tolist()) & set(range(cluster.size - 4, cluster.size))
    assert np.array_equal(pick_typical(points, k=4, seed=0), picks)


def test_seed_batch_typical_rule_is_central_deterministic_and_order_free() -> None:
    rng = np.random.default_rng(8)
    points, cluster, centers = blobs(rng, [80, 30, 30, 20, 20], spread=1.0)
    n = cluster.size
    ids = rng.permutation(n).astype(np.int64) + 1
    kwargs: dict[str, Any] = dict(video_ids=np.arange(n), batch_size=5, per_video_cap=1)
    typical = seed_batch(clip_ids=ids, descriptors=points, seed=3, rule="typical", **kwargs)
    row = {int(c): i for i, c in enumerate(ids)}
    rows = np.asarray([row[int(c)] for c in typical])
    assert sorted(cluster[rows].tolist()) == [0, 1, 2, 3, 4]
    typical_dist = np.linalg.norm(points[rows] - centers[cluster[rows]], axis=1)
    k_center = seed_batch(clip_ids=ids, descriptors=points, seed=3, **kwargs)
    kc_rows = np.asarray([row[int(c)] for c in k_center])
    kc_dist = np.linalg.norm(points[kc_rows] - centers[cluster[kc_rows]], axis=1)
    assert typical_dist.mean() < kc_dist.mean()  # central, where k-center goes to the rims
    perm = rng.permutation(n)
    again = seed_batch(
        clip_ids=ids[perm],
        descriptors=points[perm],
        seed=3,
        rule="typical",
        video_ids=np.arange(n)[perm],
        batch_size=5,
        per_video_cap=1,
    )
    assert np.array_equal(again, typical)


def test_typical_respects_the_video_cap() -> None:
    rng = np.random.default_rng(9)
    points, _, _ = blobs(rng, [30, 30])
    videos = np.repeat(np.arange(3), 20)
    picked = seed_batch(
        clip_ids=np.arange(60),
        descriptors=points,
        video_ids=videos,
        batch_size=10,
        per_video_cap=2,
        seed=0,
        rule="typical",
    )
    assert picked.size == 6 and np.bincount(videos[picked]).max() == 2


def test_rules_and_sizes_validated() -> None:
    ids = np.arange(4)
    common: dict[str, Any] = dict(clip_ids=ids, video_ids=ids, batch_size=2, per_video_cap=1)
    with pytest.raises(InvalidInput) as err:
        assemble_batch(scores=np.ones(4), batch_rule="spread_out", **common)  # type: ignore[arg-type]
    assert err.value.code == "invalid_argument"
    with pytest.raises(InvalidInput) as err:
        seed_batch(descriptors=np.ones((4, 2)), seed=0, rule="medoid", **common)  # type: ignore[arg-type]
    assert err.value.code == "invalid_argument"
    with pytest.raises(InvalidInput) as err:
        seed_batch(descriptors=np.ones((3, 2)), seed=0, rule="typical", **common)
    assert err.value.code == "invalid_embeddings"
    for fn in (pick_typical, fit_kmeans):
        with pytest.raises(InvalidInput) as err:
            fn(np.ones((4, 2)), k=0)
        assert err.value.code == "invalid_argument"
    with pytest.raises(InvalidInput) as err:
        pick_cluster_round_robin(np.ones((4, 2)), k=2, n_clusters=0)
    assert err.value.code == "invalid_argument"
    empty = np.empty((0, 2))
    assert pick_typical(empty, k=3).size == 0
    assert pick_cluster_round_robin(empty, k=3, n_clusters=2).size == 0
    none = np.empty(0, dtype=np.int64)
    assert (
        seed_batch(
            clip_ids=none,
            descriptors=empty,
            video_ids=none,
            batch_size=2,
            per_video_cap=1,
            seed=0,
            rule="typical",
        ).size
        == 0
    )
    with pytest.raises(ValueError):
        Settings(seed_batch_rule="medoid")  # type: ignore[arg-type]
    assert Settings().seed_batch_rule == "k_center"  # until the benchmark says otherwise


# --- registry -------------------------------------------------------------------------------


def test_new_strategies_are_registered_and_described() -> None:
    assert {"balanced_entropy", "cluster_margin"} <= set(list_strategies())
    balanced = get_strategy("balanced_entropy")
    assert balanced.requires == frozenset({"tag_counts"}) and balanced.description
    assert balanced.batch == "k_center"
    assert get_strategy("cluster_margin").description
    assert get_strategy("entropy").batch == "k_center"
    both = get_strategy("balanced_cluster")
    assert both.requires == frozenset({"tag_counts"})
    assert both.batch == "cluster_round_robin" and both.description


def test_balanced_cluster_scores_as_balanced_entropy() -> None:
    rng = np.random.default_rng(3)
    probs = np.hstack([rng.dirichlet(np.ones(3), size=50), rng.random((50, 1))])
    counts = np.array([0.0, 3.0, 40.0, 7.0])
    kwargs: dict[str, Any] = dict(vocab=GROUPED, tag_counts=counts)
    same = score_pool(probs, strategy="balanced_cluster", **kwargs)
    assert np.array_equal(same, score_pool(probs, strategy="balanced_entropy", **kwargs))
    assert not np.allclose(same, score_pool(probs, strategy="entropy", vocab=GROUPED))


def test_tag_balanced_cluster_weights_independent_tags_and_leaves_groups_plain() -> None:
    """Only the independent tag (night) is weighted by rarity; the animal group scores its
    plain entropy, however rare axolotl is."""
    rng = np.random.default_rng(4)
    probs = np.hstack([rng.dirichlet(np.ones(3), size=50), rng.random((50, 1))])
    got = score_pool(probs, vocab=GROUPED, strategy="tag_balanced_cluster", tag_counts=np.zeros(4))
    # With nobody labeled every weight is 1: plain entropy.
    assert np.allclose(got, score_pool(probs, vocab=GROUPED, strategy="entropy"))
    # axolotl unseen, cat frequent: the group score does not move; night's weight does.
    skewed = np.array([400.0, 3.0, 0.0, 0.0])
    frequent_night = np.array([400.0, 3.0, 0.0, 99.0])
    a = score_pool(probs, vocab=GROUPED, strategy="tag_balanced_cluster", tag_counts=skewed)
    b = score_pool(probs, vocab=GROUPED, strategy="tag_balanced_cluster", tag_counts=frequent_night)
    assert np.allclose(a, score_pool(probs, vocab=GROUPED, strategy="entropy"))
    assert np.all(b <= a + 1e-12) and not np.allclose(a, b)  # a frequent night weighs less
    # balanced_cluster does weight the group: its scores differ on the same counts.
    assert not np.allclose(
        a, score_pool(probs, vocab=GROUPED, strategy="balanced_cluster", tag_counts=skewed)
    )
    spec = get_strategy("tag_balanced_cluster")
    assert spec.batch == "cluster_round_robin" and spec.requires == frozenset({"tag_counts"})


# --- the service and the simulation agree ---------------------------------------------------


def _session_with_labels(tag_sets: list[list[str]]) -> Session:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    session = Session(engine)
    for clip_id, tags in enumerate(tag_sets, start=1):
        session.add(Label(clip_id=clip_id, annotator="a", tags=["dog"]))  # superseded
        session.add(Label(clip_id=clip_id, annotator="b", tags=tags))
    session.flush()
    return session


def test_service_counts_match_the_simulation_and_score_the_same() -> None:
    tag_sets = [["cat"], ["cat", "night"], ["cat"], ["axolotl"], ["night"], []]
    session = _session_with_labels(tag_sets)
    service = label_counts(session, GROUPED)
    oracle = count_tag_labels(np.stack([build_targets(t, vocab=GROUPED)[0] for t in tag_sets]))
    assert np.array_equal(service, oracle)
    assert service.tolist() == [3.0, 0.0, 1.0, 2.0]  # the latest label, not the "dog" one
    rng = np.random.default_rng(10)
    probs = np.concatenate([rng.dirichlet(np.ones(3), size=30), rng.random((30, 1))], axis=1)
    preds = Predictions(probs=probs, modality_probs={}, embedding=np.zeros((30, 2)), mc_probs=None)
    ids = np.arange(30)
    kwargs: dict[str, Any] = dict(vocab=GROUPED, strategy="balanced_entropy", clip_ids=ids)
    a = uncertainty_of(preds, tag_counts=service, **kwargs)
    b = uncertainty_of(preds, tag_counts=oracle, **kwargs)
    assert np.array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"))
    plain = uncertainty_of(preds, vocab=GROUPED, strategy="entropy", clip_ids=ids)
    assert not np.allclose(a, plain)  # the counts changed something


TINY = FusionConfig(
    frames_per_clip=2,
    frame_size=16,
    n_mels=32,
    visual_channels=(8, 16),
    audio_channels=(8, 16),
    hidden_dim=32,
)


@pytest.fixture(scope="module")
def demo() -> SimulationSet:
    return load_demo_set(n=60, seed=0, config=TINY, frames=2)


@pytest.mark.parametrize(
    "strategy", ["balanced_entropy", "cluster_margin", "balanced_cluster", "tag_balanced_cluster"]
)
def test_select_next_picks_as_the_service_would(demo: SimulationSet, strategy: str) -> None:
    """select_next == the service's path: predictions, label counts from the labels table,
    ``uncertainty_of``, and ``assemble_batch`` with the strategy's batch rule."""
    torch.manual_seed(0)
    model = build_model("centralnet", vocab_size=len(demo.vocab), config=TINY).eval()
    options = SimulationOptions(batch_size=6, per_video_cap=2, num_threads=1)
    labeled = np.arange(0, len(demo.pool), 3)
    unlabeled = np.setdiff1d(np.arange(len(demo.pool)), labeled)
    got = select_next(model, demo, unlabeled, strategy=strategy, options=options, rng_seed=0)
    assert got.size == 6 and set(got.tolist()) <= set(unlabeled.tolist())

    tag_sets = [
        [demo.vocab.tags[j] for j in np.flatnonzero(demo.pool[i].targets > 0.5)] for i in labeled
    ]
    counts = label_counts(_session_with_labels(tag_sets), demo.vocab)
    preds = predict_clips(
        model,
        [demo.pool[i].tensors for i in unlabeled],
        vocab=demo.vocab,
        audio_frames=options.audio_frames,
    )
    ids = np.asarray([demo.pool[i].clip_id for i in unlabeled], dtype=np.int64)
    scores = uncertainty_of(
        preds, vocab=demo.vocab, strategy=strategy, clip_ids=ids, tag_counts=counts
    )
    picked = assemble_batch(
        clip_ids=ids,
        scores=scores,
        video_ids=demo.pool_videos[unlabeled],
        batch_size=6,
        per_video_cap=2,
        embeddings=preds.embedding,
        top_m=min(ids.size, 5 * 6),
        batch_rule=get_strategy(strategy).batch,
    )
    row = {int(c): int(r) for c, r in zip(ids, unlabeled, strict=True)}
    assert got.tolist() == [row[int(c)] for c in picked]


def _with_extra_tags(data: SimulationSet, n: int = 40) -> SimulationSet:
    """``data`` with ``n`` more independent tags that no clip has (complete labels: known
    negatives), as a vocabulary far larger than what its labels cover."""
    vocab = data.vocab.extend((f"extra_{i:02d}", None) for i in range(n))

    def pad(clip: Any) -> Any:
        return replace(
            clip,
            targets=np.concatenate([clip.targets, np.zeros(n, dtype=clip.targets.dtype)]),
            known=np.concatenate([clip.known, np.ones(n, dtype=bool)]),
        )

    return replace(
        data, vocab=vocab, pool=[pad(c) for c in data.pool], test=[pad(c) for c in data.test]
    )


@pytest.mark.parametrize("strategy", ["entropy", "min_margin", "balanced_cluster"])
def test_select_next_scores_the_trained_tags_as_the_service_does(
    demo: SimulationSet, strategy: str
) -> None:
    """The simulation's trained columns are the service's (positives in the round's training
    split: ``split_labeled`` -> ``train_positives`` -> ``trained_columns``), and select_next
    measures uncertainty over them as the service's scoring does."""
    data = _with_extra_tags(demo)
    options = SimulationOptions(batch_size=6, per_video_cap=2, num_threads=1)
    rows = np.arange(0, len(data.pool), 3)
    labeled = [data.pool[i] for i in rows]
    columns = round_columns(data, labeled, options=options)
    train, _ = split_labeled(labeled, val_fraction=options.val_fraction)
    positives = positives_per_tag(
        np.stack([c.targets for c in train]), np.stack([c.known for c in train]), vocab=data.vocab
    )
    service = trained_columns(data.vocab.tags, {t for t, n in positives.items() if n > 0})
    assert service is not None and np.array_equal(columns, service)
    assert columns.size and columns.max() < 10  # digits only: no extra tag has a positive

    torch.manual_seed(0)
    model = build_model("centralnet", vocab_size=len(data.vocab), config=TINY).eval()
    unlabeled = np.setdiff1d(np.arange(len(data.pool)), rows)
    got = select_next(
        model, data, unlabeled, strategy=strategy, options=options, rng_seed=0, columns=columns
    )
    preds = predict_clips(
        model,
        [data.pool[i].tensors for i in unlabeled],
        vocab=data.vocab,
        audio_frames=options.audio_frames,
    )
    ids = np.asarray([data.pool[i].clip_id for i in unlabeled], dtype=np.int64)
    counts = count_tag_labels(np.stack([c.targets for c in labeled]))
    scores = uncertainty_of(
        preds,
        vocab=data.vocab,
        strategy=strategy,
        clip_ids=ids,
        tag_counts=counts if "tag_counts" in get_strategy(strategy).requires else None,
        columns=service,
    )
    picked = assemble_batch(
        clip_ids=ids,
        scores=scores,
        video_ids=data.pool_videos[unlabeled],
        batch_size=6,
        per_video_cap=2,
        embeddings=preds.embedding,
        top_m=min(ids.size, 5 * 6),
        batch_rule=get_strategy(strategy).batch,
    )
    row = {int(c): int(r) for c, r in zip(ids, unlabeled, strict=True)}
    assert got.tolist() == [row[int(c)] for c in picked]
    every = select_next(model, data, unlabeled, strategy=strategy, options=options, rng_seed=0)
    assert every.tolist() != got.tolist()  # the untrained extra tags would pick otherwise


def test_simulation_seed_round_follows_the_seed_rule(demo: SimulationSet) -> None:
    rng = np.random.default_rng(11)
    desc = rng.normal(size=(len(demo.pool), 4))
    typical = seed_rows(
        demo, desc, seed=0, options=SimulationOptions(seed_size=5, seed_rule="typical")
    )
    ids = np.asarray([c.clip_id for c in demo.pool], dtype=np.int64)
    want = seed_batch(
        clip_ids=ids,
        descriptors=desc,
        video_ids=demo.pool_videos,
        batch_size=5,
        per_video_cap=3,
        seed=0,
        rule="typical",
    )
    assert ids[typical].tolist() == want.tolist()
    k_center = seed_rows(demo, desc, seed=0, options=SimulationOptions(seed_size=5))
    assert k_center.size == 5 and k_center.tolist() != typical.tolist()
