"""Active-learning simulation with an oracle: how many labels each strategy needs.

A labeled set stands in for annotators. Its training split is the pool; its test split is
never labeled and measures accuracy after each round. Every round runs the service's own
code: ``train_model`` (warm-started from the previous round, validation split by clip id as
in ``pipeline.training``), ``predict_clips`` + ``score_pool`` + ``assemble_batch`` (embeddings,
per-video cap) to pick the next batch, and ``seed_batch`` on ``describe_clip`` descriptors for
the seed round. The oracle then reveals the picked clips' labels.

``random`` is the reference: the top of a random ranking under the per-video cap, with no
k-center step, i.e. uniform sampling as in the active-learning literature. All strategies of
one seed share that seed's seed batch, so curves differ only by what they pick afterwards.

The labeled sets live in ``tagloop.simulation_data``; the reports (CSV, PNG, the
labels-to-match table) in ``tagloop.simulation_report``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from tagloop.errors import InvalidInput
from tagloop.fusion import FusionModel
from tagloop.simulation_data import SimulationSet, describe_pool
from tagloop.training.dataset import LabeledClip

if TYPE_CHECKING:
    from tagloop.training.backbone import Backbone

REFERENCE = "random"
# The service's refill_queue lets k-center choose among this many candidates per batch slot.
TOP_M_FACTOR = 5


@dataclass(frozen=True)
class SimulationOptions:
    """How the simulation runs.

    seed_size: labels of the seed round; batch_size: labels added per later round; rounds:
    later rounds (the curve has ``rounds + 1`` points). seeds: 0 .. seeds-1; a seed fixes the
    seed batch, the training seed and the random ranking. epochs: per warm-started round;
    seed_epochs: the seed round, trained from scratch. min_steps: a round trains at least
    this many optimiser steps (with few labels an epoch is one or two steps). patience: early
    stopping (None: off; the best validation epoch is kept either way, and a validation split
    of a few clips would stop a fresh model before it learns anything). mc_passes: MC-dropout
    passes for strategies that need them (``bald``). candidates: score only this many
    unlabeled clips per round, drawn at random (None: the whole pool, as the service does).
    diversity: k-center over the top ``TOP_M_FACTOR * batch_size`` (the service's batch
    assembly, or the strategy's own batch rule); random never uses it. seed_rule: the seed
    round's rule, as the service's ``seed_batch_rule`` (``"k_center"`` or ``"typical"``).
    """

    strategies: tuple[str, ...] = (REFERENCE, "entropy")
    seed_size: int = 50
    batch_size: int = 50
    rounds: int = 8
    seeds: int = 3
    epochs: int = 4
    seed_epochs: int = 30
    train_batch_size: int = 16
    min_steps: int = 150
    patience: int | None = None
    lr: float = 5e-3
    kind: str = "centralnet"
    # Below this many labels a round trains the linear probe, as the service does
    # (``training.capacity``); 0 always trains ``kind``.
    probe_below: int = 0
    val_fraction: float = 0.2
    per_video_cap: int = 3
    mc_passes: int = 4
    candidates: int | None = None
    diversity: bool = True
    audio_frames: int | None = 128
    num_threads: int = 2
    seed_rule: Literal["k_center", "typical"] = "k_center"

    def __post_init__(self) -> None:
        counts = {
            "seed_size": self.seed_size,
            "batch_size": self.batch_size,
            "seeds": self.seeds,
            "epochs": self.epochs,
            "seed_epochs": self.seed_epochs,
            "per_video_cap": self.per_video_cap,
            "num_threads": self.num_threads,
        }
        bad = [name for name, value in counts.items() if value < 1]
        if self.rounds < 0 or self.mc_passes < 0 or (self.patience or 1) < 1:
            bad.append("rounds/mc_passes")
        if self.candidates is not None and self.candidates < self.batch_size:
            bad.append("candidates")
        if bad:
            raise InvalidInput(f"invalid simulation options: {bad}", code="bad_simulation_options")
        if not self.strategies:
            raise InvalidInput("no strategies to simulate", code="bad_simulation_options")


@dataclass(frozen=True)
class RoundRecord:
    """One point of a learning curve: test accuracy after training on ``n_labels`` labels.

    accuracy: ``selection_score`` of the test metrics (mean group accuracy, else mAP), or the
    headline figure of the curve's ``Measure``; extra: that measure's other figures.
    """

    strategy: str
    seed: int
    round: int
    n_labels: int
    accuracy: float
    epochs_run: int
    train_seconds: float
    select_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


RoundProgress = Callable[[RoundRecord], None]
# A curve's own test measure, called after every round with the model and the labeled clips:
# (headline figure, other figures). Stateful measures (agreement with the previous round's
# predictions) get a fresh one per curve from a ``MeasureFactory(strategy, seed)``.
Measure = Callable[[FusionModel, list[LabeledClip]], tuple[float, dict[str, Any]]]
MeasureFactory = Callable[[str, int], Measure]


def _split_round(
    labeled: list[LabeledClip], *, options: SimulationOptions
) -> tuple[list[LabeledClip], list[LabeledClip]]:
    """(train, val) of a round, by clip id as ``pipeline.training.split_labeled`` splits."""
    from tagloop.training.split import assign_splits

    ids = np.asarray([c.clip_id for c in labeled], dtype=np.int64)
    is_val = assign_splits(ids, val_fraction=options.val_fraction)
    train = [c for c, v in zip(labeled, is_val, strict=True) if not v]
    val = [c for c, v in zip(labeled, is_val, strict=True) if v]
    if not train or not val:
        train = val = labeled  # as the service does with too few labels for a split
    return train, val


def round_columns(
    data: SimulationSet, labeled: list[LabeledClip], *, options: SimulationOptions
) -> np.ndarray:
    """``(T,)`` the columns a round on ``labeled`` is trained on, as the service records them:
    the tags with a known positive in the round's training split (``metrics.train_positives``
    -> ``trained_tags`` -> ``trained_columns``). Selection scores only their units."""
    from tagloop.training.metrics import positives_per_tag

    train, _ = _split_round(labeled, options=options)
    positives = positives_per_tag(
        np.stack([c.targets for c in train]), np.stack([c.known for c in train]), vocab=data.vocab
    )
    return np.flatnonzero([positives[t] > 0 for t in data.vocab.tags]).astype(np.int64)


def _train_round(
    data: SimulationSet,
    labeled: list[LabeledClip],
    *,
    options: SimulationOptions,
    seed: int,
    epochs: int,
    init_state: dict[str, torch.Tensor] | None,
    init_kind: str | None = None,
    backbone: Backbone | None = None,
) -> tuple[FusionModel, int]:
    """Train on the labeled clips as ``pipeline.training.train_round`` does; (model, epochs).

    backbone: branch weights to start from (a pretraining run), as the round's ``_backbone``
    passes them: a fresh model loads them, a warm-started one keeps its own (a probe always
    reloads its frozen ones).
    """
    from tagloop.training.capacity import model_kind_for
    from tagloop.training.loop import TrainOptions, train_model

    train, val = _split_round(labeled, options=options)
    steps_per_epoch = math.ceil(len(train) / options.train_batch_size)
    epochs = max(epochs, math.ceil(options.min_steps / steps_per_epoch))
    kind = model_kind_for(len(labeled), full_kind=options.kind, probe_below=options.probe_below)
    if init_kind != kind:
        init_state = None  # the capacity switch: the new kind starts fresh, as in the service
    result = train_model(
        kind=kind,
        vocab=data.vocab,
        config=data.config,
        train=train,
        val=val,
        options=TrainOptions(
            epochs=epochs,
            batch_size=options.train_batch_size,
            lr=options.lr,
            patience=options.patience or epochs,
            seed=seed,
            num_threads=options.num_threads,
            audio_frames=options.audio_frames,
        ),
        init_state=init_state,
        init_vocab=data.vocab if init_state is not None else None,
        backbone=backbone,
    )
    return result.model, result.epochs_run


def measure_accuracy(
    model: FusionModel, data: SimulationSet, *, options: SimulationOptions
) -> float:
    """``selection_score`` of the model on the held-out clips (accuracy for one group)."""
    from tagloop.training.loop import selection_score
    from tagloop.training.metrics import evaluate_predictions
    from tagloop.training.predict import predict_clips

    preds = predict_clips(
        model,
        [c.tensors for c in data.test],
        vocab=data.vocab,
        audio_frames=options.audio_frames,
    )
    targets = np.stack([c.targets for c in data.test])
    known = np.stack([c.known for c in data.test])
    score = selection_score(evaluate_predictions(preds.probs, targets, known, vocab=data.vocab))
    if score is None:
        raise InvalidInput("the test clips have no known labels", code="bad_simulation_set")
    return float(score)


def select_next(
    model: FusionModel | None,
    data: SimulationSet,
    unlabeled: np.ndarray,
    *,
    strategy: str,
    options: SimulationOptions,
    rng_seed: int,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """Pool row indices ``(<= batch_size,)`` to label next, as the service's scoring and
    refill would pick them among the ``unlabeled (U,)`` pool rows. columns: the model's
    trained columns (:func:`round_columns`), the only units its uncertainty is measured on,
    as the service's scoring does; None: every column."""
    from tagloop.pipeline.scoring import uncertainty_of
    from tagloop.selection import assemble_batch, count_tag_labels, get_strategy, score_pool
    from tagloop.selection.strategy import hash_uniform
    from tagloop.training.predict import predict_clips

    ids = np.asarray([data.pool[i].clip_id for i in unlabeled], dtype=np.int64)
    rows = unlabeled
    if options.candidates is not None and rows.size > options.candidates:
        keep = np.sort(np.argsort(hash_uniform(ids, seed=rng_seed))[: options.candidates])
        rows, ids = rows[keep], ids[keep]
    videos = data.pool_videos[rows]
    spec = get_strategy(strategy)
    if spec.score_unit is None or model is None:
        # Random needs no predictions: its scores are a hash of (seed, clip id).
        scores = score_pool(
            np.zeros((rows.size, len(data.vocab))),
            vocab=data.vocab,
            strategy=REFERENCE,
            clip_ids=ids,
            rng=rng_seed,
        )
        embeddings = None
    else:
        torch.manual_seed(rng_seed)  # MC dropout masks
        preds = predict_clips(
            model,
            [data.pool[i].tensors for i in rows],
            vocab=data.vocab,
            mc_passes=options.mc_passes if "mc_probs" in spec.requires else 0,
            audio_frames=options.audio_frames,
        )
        counts = None
        if "tag_counts" in spec.requires:
            # The oracle's labeled rows: every pool row not offered as unlabeled.
            labeled = np.setdiff1d(np.arange(len(data.pool)), unlabeled)
            targets = [data.pool[i].targets for i in labeled]
            counts = count_tag_labels(
                np.stack(targets) if targets else np.zeros((0, len(data.vocab)))
            )
        scores = uncertainty_of(
            preds,
            vocab=data.vocab,
            strategy=strategy,
            clip_ids=ids,
            tag_counts=counts,
            columns=columns,
        )
        embeddings = preds.embedding if options.diversity else None
    picked = assemble_batch(
        clip_ids=ids,
        scores=scores,
        video_ids=videos,
        batch_size=options.batch_size,
        per_video_cap=options.per_video_cap,
        embeddings=embeddings,
        top_m=min(ids.size, TOP_M_FACTOR * options.batch_size),
        batch_rule=spec.batch,
    )
    position = {int(c): int(r) for c, r in zip(ids, rows, strict=True)}
    return np.asarray([position[int(c)] for c in picked], dtype=np.int64)


def seed_rows(
    data: SimulationSet, descriptors: np.ndarray, *, seed: int, options: SimulationOptions
) -> np.ndarray:
    """Pool row indices of the seed batch: ``seed_batch`` (``options.seed_rule``) on the
    descriptors."""
    from tagloop.selection import seed_batch

    ids = np.asarray([c.clip_id for c in data.pool], dtype=np.int64)
    picked = seed_batch(
        clip_ids=ids,
        descriptors=descriptors,
        video_ids=data.pool_videos,
        batch_size=options.seed_size,
        per_video_cap=options.per_video_cap,
        seed=seed,
        rule=options.seed_rule,
    )
    position = {int(c): r for r, c in enumerate(ids.tolist())}
    return np.asarray([position[int(c)] for c in picked], dtype=np.int64)


def simulate_curve(
    data: SimulationSet,
    *,
    strategy: str,
    seed: int,
    options: SimulationOptions,
    descriptors: np.ndarray | None = None,
    progress: RoundProgress | None = None,
    backbone: Backbone | None = None,
    measure: Measure | None = None,
) -> list[RoundRecord]:
    """One learning curve: the seed round, then ``options.rounds`` rounds of ``strategy``.

    descriptors: ``(len(pool), D)`` from :func:`describe_pool` (computed if None).
    backbone: pretrained branch weights every round starts from (None: scratch).
    measure: the test measure (None: :func:`measure_accuracy`).
    """
    torch.set_num_threads(options.num_threads)
    if descriptors is None:
        descriptors = describe_pool(data)
    labeled_mask = np.zeros(len(data.pool), dtype=bool)
    start = time.perf_counter()
    picked = seed_rows(data, descriptors, seed=seed, options=options)
    records: list[RoundRecord] = []
    model: FusionModel | None = None
    for round_no in range(options.rounds + 1):
        select_seconds = time.perf_counter() - start
        if picked.size == 0:
            break  # the pool is exhausted
        labeled_mask[picked] = True
        # The oracle answers; each clip keeps its video, so folds hold whole videos as in the
        # service.
        labeled = [
            replace(data.pool[i], group=int(data.pool_videos[i]))
            for i in np.flatnonzero(labeled_mask)
        ]
        start = time.perf_counter()
        state = None if model is None else model.state_dict()
        model, epochs_run = _train_round(
            data,
            labeled,
            options=options,
            seed=seed,
            epochs=options.seed_epochs if state is None else options.epochs,
            init_state=state,
            init_kind=None if model is None else model.kind,
            backbone=backbone,
        )
        train_seconds = time.perf_counter() - start
        extra: dict[str, Any] = {}
        if measure is None:
            score = measure_accuracy(model, data, options=options)
        else:
            score, extra = measure(model, labeled)
        record = RoundRecord(
            strategy=strategy,
            seed=seed,
            round=round_no,
            n_labels=int(labeled_mask.sum()),
            accuracy=score,
            epochs_run=epochs_run,
            train_seconds=train_seconds,
            select_seconds=select_seconds,
            extra=extra,
        )
        records.append(record)
        if progress is not None:
            progress(record)
        if round_no == options.rounds:
            break
        start = time.perf_counter()
        picked = select_next(
            model,
            data,
            np.flatnonzero(~labeled_mask),
            strategy=strategy,
            options=options,
            rng_seed=seed * 1000 + round_no,
            columns=round_columns(data, labeled, options=options),
        )
    return records


def run_simulation(
    data: SimulationSet,
    *,
    options: SimulationOptions,
    progress: RoundProgress | None = None,
    backbone: Backbone | None = None,
    measures: MeasureFactory | None = None,
) -> list[RoundRecord]:
    """Every curve: ``random`` plus ``options.strategies``, for seeds 0 .. seeds-1; every
    round starts its branches from ``backbone`` when given (see :func:`_train_round`);
    ``measures`` gives each curve its test measure (None: :func:`measure_accuracy`)."""
    from tagloop.selection import get_strategy

    strategies = [REFERENCE, *[s for s in options.strategies if s != REFERENCE]]
    for name in strategies:
        get_strategy(name)  # fail on a typo before hours of training
    descriptors = describe_pool(data)
    records: list[RoundRecord] = []
    for seed in range(options.seeds):
        for strategy in strategies:
            records.extend(
                simulate_curve(
                    data,
                    strategy=strategy,
                    seed=seed,
                    options=options,
                    descriptors=descriptors,
                    progress=progress,
                    backbone=backbone,
                    measure=None if measures is None else measures(strategy, seed),
                )
            )
    return records
