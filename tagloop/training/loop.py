"""One training round: a fusion model fit on labeled clips, early-stopped on a validation set.

Pure ML: clips in, a trained model and its metrics out (the caller stores the artifact and the
model version). Warm start: ``init_state`` (the promoted model's ``state_dict``) is loaded
first; when the vocabulary grew since, the heads get new rows for the new tags
(``resize_heads``) and everything else starts from the old weights, so a round after a few new
labels converges in a few epochs instead of from scratch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from tagloop.errors import InvalidInput
from tagloop.fusion import FusionConfig, FusionModel, LinearProbe, build_model, resize_heads
from tagloop.training.augment import AugmentOptions, augment_batch
from tagloop.training.backbone import Backbone, apply_backbone
from tagloop.training.capacity import PROBE_KIND
from tagloop.training.dataset import ClipBatch, ClipDataset, LabeledClip, crop_logmel
from tagloop.training.loss import fusion_loss, multitask_loss, probabilities
from tagloop.training.metrics import evaluate_predictions
from tagloop.vocabulary import TagVocabulary

_EVAL_BATCH = 256  # no gradients: larger batches are cheaper per clip

Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class TrainOptions:
    """How a round trains; stored with each model version (``to_dict``).

    alpha_lr: learning rate of the fusion weights (CentralNet alphas, late-fusion weights);
        with the shared rate they barely move from their initial values.
    patience: epochs without a better validation score before stopping; the best epoch's
        weights are kept.
    betas: weight of each unimodal head's loss (CentralNet); ignored by models without one.
    audio_frames: log-mel columns the model sees (None: all); max_audio_shift: random start
        offset of that window in training (columns).
    refit_probe: a probe, once each head's C is chosen on the validation clips, is fit again
        with that C on the training and validation clips together, and that fit is served:
        at 100 labels the validation fifth is 20 labels the served model would otherwise
        never learn from. The validation fit is kept (``TrainResult.judged``) for the scores
        and the promotion check, which must not see clips the model trained on.
    cv_folds: a probe chooses each head's C by this many cross-validation folds over its
        training clips, whole videos per fold, and is calibrated on the out-of-fold logits
        (``probe_fit.fit_head_by_folds``); 0, or too few videos for two folds: C on the
        validation clips as before.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    alpha_lr: float = 5e-2
    weight_decay: float = 1e-4
    patience: int = 6
    betas: dict[str, float] = field(default_factory=lambda: {"visual": 1.0, "audio": 1.0})
    seed: int = 0
    num_threads: int = 2
    audio_frames: int | None = 128
    max_audio_shift: int = 8
    grad_clip: float = 5.0
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    refit_probe: bool = True
    cv_folds: int = 5

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.num_threads < 1 or self.patience < 1:
            raise InvalidInput(
                "epochs, batch_size, num_threads and patience must be >= 1",
                code="bad_train_options",
            )
        if self.cv_folds < 0 or self.cv_folds == 1:
            raise InvalidInput("cv_folds must be 0 (off) or >= 2", code="bad_train_options")
        if not (self.lr > 0 and self.alpha_lr > 0 and self.weight_decay >= 0):
            raise InvalidInput("learning rates must be > 0", code="bad_train_options")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """Inverse of ``to_dict``; missing keys take their defaults, unknown ones are refused."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(f"unknown TrainOptions keys: {unknown}", code="bad_train_options")
        values = dict(data)
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentOptions(**values["augment"])
        if "betas" in values:
            values["betas"] = {str(k): float(v) for k, v in values["betas"].items()}
        return cls(**values)


@dataclass
class TrainResult:
    """model: the best epoch's weights, in eval mode: what is served. metrics: validation
    metrics (``evaluate_predictions``) plus ``val_loss`` and ``score`` (None without a
    validation set). history: one dict per epoch. judged: when ``model`` also trained on the
    validation clips (a refit probe), the model fit without them, which ``metrics`` describe
    and which promotion compares on those clips; None when ``model`` is that model."""

    model: FusionModel
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    epochs_run: int
    seconds: float
    judged: FusionModel | None = None

    @property
    def validation_model(self) -> FusionModel:
        """The model that never saw the validation clips."""
        return self.judged if self.judged is not None else self.model


def is_prefix(old: TagVocabulary, new: TagVocabulary) -> bool:
    """True when ``new`` is ``old`` with tags appended (same names and groups in order)."""
    n = len(old)
    return len(new) >= n and new.tags[:n] == old.tags and new.groups[:n] == old.groups


def init_model(
    *,
    kind: str,
    vocab: TagVocabulary,
    config: FusionConfig,
    init_state: dict[str, torch.Tensor] | None,
    init_vocab: TagVocabulary | None,
) -> FusionModel:
    """A fresh model, or one warm-started from ``init_state`` (heads grown if needed)."""
    if init_state is None:
        return build_model(kind, vocab_size=len(vocab), config=config)
    old_vocab = vocab if init_vocab is None else init_vocab
    if not is_prefix(old_vocab, vocab):
        raise InvalidInput(
            "the warm-start vocabulary is not a prefix of the current one",
            code="vocab_mismatch",
        )
    model = build_model(kind, vocab_size=len(old_vocab), config=config)
    try:
        model.load_state_dict(init_state)
    except RuntimeError as exc:
        raise InvalidInput(
            f"init_state does not fit a {kind} model: {exc}", code="bad_init_state"
        ) from exc
    if len(old_vocab) < len(vocab):
        model = resize_heads(model, old_vocab_size=len(old_vocab), new_vocab_size=len(vocab))
    return model


def build_optimizer(model: nn.Module, *, options: TrainOptions) -> torch.optim.Optimizer:
    """AdamW; fusion weights get ``alpha_lr`` and no decay (decay would pull them to equal)."""
    fusion: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        (fusion if "alpha_scores" in name or "weight_scores" in name else rest).append(param)
    groups: list[dict[str, Any]] = [
        {"params": rest, "lr": options.lr, "weight_decay": options.weight_decay}
    ]
    if fusion:
        groups.append({"params": fusion, "lr": options.alpha_lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups)


def selection_score(metrics: dict[str, Any]) -> float | None:
    """The single promotion score: the mean over the vocabulary's decisions, each tag group
    counting by its accuracy and each ungrouped tag by its AP. One group: its accuracy; only
    ungrouped tags: mAP. A mixed vocabulary (a ``noise`` group beside 30 independent tags) is
    judged on all of it, not on its groups alone, which would ignore every rare ungrouped tag.
    Metrics stored before ``map_tags`` existed keep their old rule (groups, else mAP)."""
    groups = [v for v in (metrics.get("accuracy") or {}).values() if v is not None]
    tag_map, n_tags = metrics.get("map"), metrics.get("map_tags")
    if n_tags is None:
        value = metrics.get("mean_accuracy")
        return value if value is not None else tag_map
    if tag_map is None or n_tags == 0:
        return float(np.mean(groups)) if groups else None
    return float((sum(groups) + tag_map * n_tags) / (len(groups) + n_tags))


def evaluate_model(
    model: FusionModel,
    data: ClipDataset,
    *,
    vocab: TagVocabulary,
    options: TrainOptions,
) -> dict[str, Any]:
    """Validation metrics of ``model`` (eval mode, no augmentation, leading log-mel window)."""
    model.eval()
    if model.uses_visual_embedding:
        data.ensure_visual_embedding()
    logits, losses, weights = [], [], []
    with torch.no_grad():
        for start in range(0, len(data), _EVAL_BATCH):
            batch = data.batch(torch.arange(start, min(start + _EVAL_BATCH, len(data))))
            logmel = crop_logmel(batch.logmel, audio_frames=options.audio_frames)
            out = model(
                batch.frames, logmel, batch.audio_mask, visual_embedding=batch.visual_embedding
            )
            logits.append(out.logits)
            losses.append(
                float(multitask_loss(out.logits, batch.targets, batch.known, vocab=vocab))
            )
            weights.append(len(batch.targets))
    probs = probabilities(torch.cat(logits), vocab=vocab).numpy()
    metrics = evaluate_predictions(probs, data.targets.numpy(), data.known.numpy(), vocab=vocab)
    metrics["val_loss"] = float(np.average(losses, weights=weights))
    metrics["score"] = selection_score(metrics)
    return metrics


def train_step(
    model: FusionModel,
    batch: ClipBatch,
    *,
    optimizer: torch.optim.Optimizer,
    vocab: TagVocabulary,
    options: TrainOptions,
) -> float:
    """One augmented optimisation step; returns the batch loss."""
    logmel = crop_logmel(
        batch.logmel, audio_frames=options.audio_frames, max_shift=options.max_audio_shift
    )
    frames, logmel = augment_batch(batch.frames, logmel, batch.audio_mask, options=options.augment)
    out = model(frames, logmel, batch.audio_mask)
    loss = fusion_loss(out, batch.targets, batch.known, vocab=vocab, betas=options.betas)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
    optimizer.step()
    return float(loss.detach())


def train_probe(
    model: LinearProbe,
    train: ClipDataset,
    val: ClipDataset | None,
    *,
    vocab: TagVocabulary,
    options: TrainOptions,
    progress: Progress | None = None,
    refit_on: ClipDataset | None = None,
) -> TrainResult:
    """A probe round: one convex fit (``probe_fit.fit_probe``) instead of epochs; the result
    has the epoch loop's shape, with one history record. ``refit_on`` (training and validation
    clips together): fit again there with the C each head chose, and serve that fit (see
    ``TrainOptions.refit_probe``)."""
    # Imported here: probe_fit builds on this module (TrainOptions, selection_score).
    from tagloop.training.probe_fit import fit_probe

    start_time = time.perf_counter()
    from tagloop.training.folds import grouped_folds

    folds = (
        grouped_folds(train.groups, k=options.cv_folds, seed=options.seed)
        if options.cv_folds
        else None
    )
    fit = fit_probe(model, train, vocab=vocab, options=options, val=val, folds=folds)
    metrics: dict[str, Any] = {"val_loss": None, "score": None}
    record: dict[str, Any] = {"epoch": 1, "train_loss": fit["train_loss"], "probe": fit}
    if val is not None:
        metrics = evaluate_model(model, val, vocab=vocab, options=options)
        record.update(val_loss=metrics["val_loss"], score=metrics["score"])
    judged = None
    if refit_on is not None:
        judged = copy.deepcopy(model).eval()
        chosen = {name: info["C"] for name, info in fit["heads"].items() if info}
        temperatures = {
            name: info["temperature"]
            for name, info in fit["heads"].items()
            if info and "temperature" in info
        }
        refit = fit_probe(
            model,
            refit_on,
            vocab=vocab,
            options=options,
            val=None,
            c=chosen,
            temperature=temperatures,
        )
        record["refit"] = {"n_clips": len(refit_on), "heads": refit["heads"]}
    record["fusion_weights"] = model.fusion_weights()
    record["seconds"] = time.perf_counter() - start_time
    if progress is not None:
        progress(1, 1, record)
    model.eval()
    return TrainResult(
        model=model,
        metrics=metrics,
        history=[record],
        epochs_run=1,
        seconds=record["seconds"],
        judged=judged,
    )


def _init_probe(
    config: FusionConfig,
    *,
    vocab: TagVocabulary,
    init: tuple[dict[str, torch.Tensor] | None, TagVocabulary | None] | None,
) -> FusionModel:
    """A probe for ``config``, warm-started from ``init`` when its shapes fit. The fit starts
    its heads from zero anyway; what a warm start carries is the frozen branch weights of a
    pretraining run. A state of another candidate's features (the promoted probe was the
    floor) does not fit: that candidate starts fresh."""
    state, state_vocab = init if init is not None else (None, None)
    if state is not None:
        try:
            return init_model(
                kind=PROBE_KIND,
                vocab=vocab,
                config=config,
                init_state=state,
                init_vocab=state_vocab,
            )
        except InvalidInput:
            pass
    return init_model(kind=PROBE_KIND, vocab=vocab, config=config, init_state=None, init_vocab=None)


def _candidate_probe(
    config: FusionConfig,
    *,
    vocab: TagVocabulary,
    backbone: Backbone | None,
    init: tuple[dict[str, torch.Tensor] | None, TagVocabulary | None] | None = None,
) -> LinearProbe:
    """A probe for ``config`` (warm-started from ``init`` where it fits: ``_init_probe``), on
    the backbone's frozen branches when there is one (a probe always reloads them: its warm
    start may predate the backbone)."""
    model = _init_probe(config, vocab=vocab, init=init)
    if not isinstance(model, LinearProbe):
        raise InvalidInput("a probe candidate must build a LinearProbe", code="bad_model_kind")
    if backbone:
        apply_backbone(model, backbone, load=True)
        model.set_uses_branches(True)
    return model


def train_probe_candidates(
    train: ClipDataset,
    val: ClipDataset | None,
    *,
    refit_on: ClipDataset | None,
    vocab: TagVocabulary,
    config: FusionConfig,
    options: TrainOptions,
    init: tuple[dict[str, torch.Tensor] | None, TagVocabulary | None] = (None, None),
    backbone: Backbone | None,
    progress: Progress | None,
) -> TrainResult:
    """Fit every probe candidate (``candidates.probe_candidates``) and keep the one whose
    out-of-fold predictions score best; its record lists them all (``history[0]
    ["candidates"]``, ``metrics["candidates"]``). Without folds (too few videos) only the
    configured probe is fit: nothing could tell the candidates apart."""
    # Imported here: probe_fit builds on this module (TrainOptions, selection_score).
    from tagloop.training.candidates import candidate_key, describe_candidate, probe_candidates
    from tagloop.training.folds import grouped_folds
    from tagloop.training.probe_fit import CANDIDATE_C_GRID, fit_probe

    folds = grouped_folds(train.groups, k=options.cv_folds, seed=options.seed)
    candidates = probe_candidates(config) if options.cv_folds and folds is not None else []
    # Pass 1: each candidate's central head by the folds (the head served and judged); the
    # modality heads are fit for the winner only, in pass 2.
    best: tuple[tuple[float, float], FusionConfig] | None = None
    described = []
    for name, candidate in candidates if len(candidates) > 1 else []:
        fit = fit_probe(
            _candidate_probe(candidate, vocab=vocab, backbone=backbone),
            train,
            vocab=vocab,
            options=options,
            val=None,
            folds=folds,
            fit_heads=("central",),
            grid=CANDIDATE_C_GRID,
        )
        described.append(describe_candidate(name, candidate, fit))
        key = candidate_key(fit)
        if best is None or key > best[0]:  # ties keep the earlier (configured first)
            best = (key, candidate)
    chosen = config if best is None else best[1]
    model = _candidate_probe(
        chosen, vocab=vocab, backbone=backbone, init=init if chosen == config else None
    )
    result = train_probe(
        model, train, val, vocab=vocab, options=options, progress=None, refit_on=refit_on
    )
    if not described:  # one candidate: its record is the served fit's
        described = [describe_candidate("configured", config, result.history[0]["probe"])]
    for record in described:
        record["chosen"] = (record["visual"], record["audio"]) == (
            chosen.probe_visual,
            chosen.probe_audio,
        )
    result.history[0]["candidates"] = described
    result.metrics = {**result.metrics, "candidates": described}
    if progress is not None:
        progress(1, 1, result.history[0])
    return result


def train_model(
    *,
    kind: str,
    vocab: TagVocabulary,
    config: FusionConfig,
    train: list[LabeledClip],
    val: list[LabeledClip],
    options: TrainOptions,
    init_state: dict[str, torch.Tensor] | None = None,
    init_vocab: TagVocabulary | None = None,
    progress: Progress | None = None,
    backbone: Backbone | None = None,
) -> TrainResult:
    """Train ``kind`` on ``train``, early-stop on ``val``'s score; see :class:`TrainResult`.

    Deterministic for ``options.seed`` (and thread count). Without validation clips it runs
    every epoch and keeps the last weights. ``progress(epoch, epochs, record)`` is called
    after each epoch with that epoch's history record. A ``probe`` skips the epochs: see
    :func:`train_probe`.
    """
    start_time = time.perf_counter()
    torch.set_num_threads(options.num_threads)
    torch.manual_seed(options.seed)
    train_data = ClipDataset(train)
    val_data = ClipDataset(val) if val else None
    if train_data.targets.shape[1] != len(vocab):
        raise InvalidInput(
            f"targets have {train_data.targets.shape[1]} columns, vocabulary {len(vocab)}",
            code="vocab_mismatch",
        )
    if kind == PROBE_KIND:
        seen = {c.clip_id for c in train}
        held = [c for c in val if c.clip_id not in seen]
        return train_probe_candidates(
            train_data,
            val_data,
            refit_on=ClipDataset(train + held) if options.refit_probe and held else None,
            vocab=vocab,
            config=config,
            options=options,
            init=(init_state, init_vocab),
            backbone=backbone,
            progress=progress,
        )
    model = init_model(
        kind=kind, vocab=vocab, config=config, init_state=init_state, init_vocab=init_vocab
    )
    if backbone:
        # A warm start already carries the branch weights; freezing applies every round.
        apply_backbone(model, backbone, load=init_state is None)
    optimizer = build_optimizer(model, options=options)
    steps_per_epoch = math.ceil(len(train_data) / options.batch_size)
    # Cosine decay over the planned epochs: large steps early, fine ones when it settles.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            0.5 * (1 + math.cos(math.pi * min(step / (options.epochs * steps_per_epoch), 1)))
        ),
    )
    shuffle = torch.Generator().manual_seed(options.seed)
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_key = (-math.inf, -math.inf)
    best_metrics: dict[str, Any] = {"val_loss": None, "score": None}
    stale = 0
    for epoch in range(1, options.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_data), generator=shuffle)
        losses = []
        for first in range(0, len(order), options.batch_size):
            batch = train_data.batch(order[first : first + options.batch_size])
            losses.append(
                train_step(model, batch, optimizer=optimizer, vocab=vocab, options=options)
            )
            scheduler.step()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        if val_data is not None:
            metrics = evaluate_model(model, val_data, vocab=vocab, options=options)
            record.update(val_loss=metrics["val_loss"], score=metrics["score"])
            # Ties on the score (it saturates on easy validation sets) go to the lower loss.
            score = metrics["score"] if metrics["score"] is not None else -math.inf
            key = (score, -metrics["val_loss"])
            if key > best_key:
                best_key, best_metrics, stale = key, metrics, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        record["fusion_weights"] = model.fusion_weights()
        record["seconds"] = time.perf_counter() - epoch_start
        history.append(record)
        if progress is not None:
            progress(epoch, options.epochs, record)
        if stale >= options.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        metrics=best_metrics,
        history=history,
        epochs_run=len(history),
        seconds=time.perf_counter() - start_time,
    )
