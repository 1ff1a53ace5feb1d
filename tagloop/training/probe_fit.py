"""Fit a LinearProbe: fixed features once, then each head to convergence, like scikit-learn's
``LogisticRegression(C=...)``.

Each head minimises ``multitask_loss + l2 / 2 * ||W||^2`` (biases not penalised) by full-batch
L-BFGS in float64 from zero, so the fit is deterministic and convex. ``multitask_loss`` is a
mean over labeled decisions, so ``l2 = 1 / (C * n_decisions)`` gives exactly scikit-learn's
objective ``C * sum(loss) + ||W||^2 / 2`` (per group a multinomial model, per ungrouped tag a
binary one), and ``C`` keeps its usual meaning whatever the label count.

C is chosen per head on the validation clips when there are at least ``MIN_VAL_CLIPS`` of them
(best ``selection_score``, ties to the lower validation loss, then to the smaller C); with
fewer, the score of a handful of clips is noise, and ``DEFAULT_C`` is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tagloop.fusion.probe import LinearProbe
from tagloop.training.dataset import ClipDataset, crop_logmel
from tagloop.training.folds import fit_temperature
from tagloop.training.loop import TrainOptions, selection_score
from tagloop.training.loss import group_decided, multitask_loss, probabilities
from tagloop.training.metrics import evaluate_predictions
from tagloop.vocabulary import TagVocabulary

C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
# The grid a round compares its candidates on: every candidate is fit once per fold and C, so
# a coarser grid (a factor of 10 between steps) keeps a round's cost down; the winner's served
# head is then chosen on the full grid.
CANDIDATE_C_GRID: tuple[float, ...] = (0.03, 0.3, 3.0)
DEFAULT_C = 1.0
MIN_VAL_CLIPS = 20
_BATCH = 256
_MAX_ITER = 500
# Stop when no gradient entry of the (mean) objective exceeds this. 1e-7 ran every fit to the
# 500-iteration cap; 1e-4 fits 3-4x faster with the same held-out macro-AP on the long-tailed
# set (100 labels: 0.370 either way; 400: 0.537 against 0.525), ending within about 1e-2 of the
# optimum in predicted probability. tests/unit/test_probe.py fits to 1e-7 to check the
# objective against scikit-learn's converged solution.
_TOLERANCE_GRAD = 1e-4


@dataclass(frozen=True)
class _Features:
    """Standardised features of a dataset, float64: visual ``(N, D_v)``, audio ``(N, D_a)``,
    audio_mask ``(N,)``, targets ``(N, K)``, known ``(N, K)``."""

    visual: torch.Tensor
    audio: torch.Tensor
    audio_mask: torch.Tensor
    targets: torch.Tensor
    known: torch.Tensor

    def head_data(self, head: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, targets, known) of ``head``; the audio head sees clips with audio only."""
        if head == "central":
            return torch.cat([self.visual, self.audio], dim=1), self.targets, self.known
        if head == "visual":
            return self.visual, self.targets, self.known
        rows = self.audio_mask
        return self.audio[rows], self.targets[rows], self.known[rows]

    def head_folds(self, head: str, folds: np.ndarray | None) -> np.ndarray | None:
        """The fold of each row ``head_data(head)`` returns (the audio head's rows are the
        clips with audio)."""
        if folds is None or head != "audio":
            return folds
        return folds[self.audio_mask.numpy()]


def raw_features(
    model: LinearProbe, data: ClipDataset, *, audio_frames: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unstandardised features of every clip (batched, no grad, leading log-mel window); a
    probe on embeddings reads the clips' stored ones (computed from frames where missing)."""
    model.eval()
    if model.uses_visual_embedding:
        data.ensure_visual_embedding()
    visual, audio, masks = [], [], []
    with torch.no_grad():
        for start in range(0, len(data), _BATCH):
            batch = data.batch(torch.arange(start, min(start + _BATCH, len(data))))
            logmel = crop_logmel(batch.logmel, audio_frames=audio_frames)
            v, a, m = model.clip_features(
                batch.frames, logmel, batch.audio_mask, visual_embedding=batch.visual_embedding
            )
            visual.append(v)
            audio.append(a)
            masks.append(m)
    return torch.cat(visual), torch.cat(audio), torch.cat(masks)


def _standardised(
    model: LinearProbe, data: ClipDataset, raw: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> _Features:
    visual, audio, mask = raw
    with torch.no_grad():
        visual, audio = model.standardise(visual, audio, mask)
    return _Features(
        visual=visual.double(),
        audio=audio.double(),
        audio_mask=mask,
        targets=data.targets.double(),
        known=data.known,
    )


def count_decisions(targets: torch.Tensor, known: torch.Tensor, *, vocab: TagVocabulary) -> int:
    """Labeled decisions as ``multitask_loss`` counts them: per group, clips where it is
    decided (``loss.group_decided``); per ungrouped tag, known entries."""
    labeled = torch.where(known, targets, 0.0)
    total = 0
    for columns in vocab.group_indices.values():
        ix = torch.as_tensor(columns)
        total += int(group_decided(known, labeled[:, ix], ix).sum())
    ungrouped = vocab.ungrouped_indices
    if ungrouped.size:
        total += int(known[:, torch.as_tensor(ungrouped)].sum())
    return total


def fit_linear(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    known: torch.Tensor,
    *,
    vocab: TagVocabulary,
    l2: float,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-penalised multi-task logistic regression: inputs ``(N, D)`` -> weight ``(K, D)``,
    bias ``(K,)`` in the inputs' dtype. ``init`` warm-starts along a C path (same optimum,
    fewer iterations)."""
    k, d = targets.shape[1], inputs.shape[1]
    if init is None:
        weight = inputs.new_zeros(k, d)
        bias = inputs.new_zeros(k)
    else:
        weight, bias = (t.detach().clone() for t in init)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=_MAX_ITER,
        tolerance_grad=_TOLERANCE_GRAD,
        tolerance_change=1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = multitask_loss(inputs @ weight.T + bias, targets, known, vocab=vocab)
        loss = loss + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    # The tensors are tiny: thread hand-offs cost more than they save (20x slower per step
    # with 2 threads on a busy 2-core machine), and one thread keeps the sums' order fixed.
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            optimizer.step(closure)
    finally:
        torch.set_num_threads(threads)
    return weight.detach(), bias.detach()


def _validation_key(
    solution: tuple[torch.Tensor, torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    vocab: TagVocabulary,
) -> tuple[float, float]:
    """(score, -loss) of a head on validation data; larger is better."""
    inputs, targets, known = data
    logits = inputs @ solution[0].T + solution[1]
    probs = probabilities(logits, vocab=vocab).numpy()
    metrics = evaluate_predictions(probs, targets.numpy(), known.numpy(), vocab=vocab)
    score = selection_score(metrics)
    loss = float(multitask_loss(logits, targets, known, vocab=vocab))
    return (score if score is not None else -math.inf, -loss)


def fit_head(
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    *,
    vocab: TagVocabulary,
    c: float | None = None,
    folds: np.ndarray | None = None,
    grid: tuple[float, ...] = C_GRID,
) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]] | None:
    """The fitted ``(weight, bias)`` of one head and how its C was chosen; None without
    labels. ``c`` given: that C (a refit); else ``folds`` (a fold per training row, whole
    videos per fold): C by cross-validation and the head calibrated (:func:`fit_head_by_folds`);
    else the grid is searched when ``val`` has at least ``MIN_VAL_CLIPS`` labeled clips."""
    inputs, targets, known = train
    n_decisions = count_decisions(targets, known, vocab=vocab)
    if n_decisions == 0:
        return None
    if c is not None:
        l2 = 1.0 / (c * n_decisions)
        solution = fit_linear(inputs, targets, known, vocab=vocab, l2=l2)
        return solution, {"C": c, "l2": l2, "chosen_by": "given"}
    if folds is not None and len(np.unique(folds)) >= 2:
        return fit_head_by_folds(train, folds, vocab=vocab, grid=grid)
    if val is None or count_labeled_clips(val[1], val[2], vocab=vocab) < MIN_VAL_CLIPS:
        l2 = 1.0 / (DEFAULT_C * n_decisions)
        solution = fit_linear(inputs, targets, known, vocab=vocab, l2=l2)
        return solution, {"C": DEFAULT_C, "l2": l2, "chosen_by": "default"}
    candidates = []
    previous = None
    for rank, c in enumerate(C_GRID):  # ascending: each fit starts from the previous optimum
        previous = fit_linear(
            inputs, targets, known, vocab=vocab, l2=1.0 / (c * n_decisions), init=previous
        )
        # Ties on score and loss go to the smaller C (the stronger prior).
        candidates.append((_validation_key(previous, val, vocab=vocab), -rank, c, previous))
    _, _, best_c, solution = max(candidates, key=lambda item: item[:2])
    # None, not -inf, where a head has no score: the record must stay plain JSON.
    scores = {str(c): key[0] if math.isfinite(key[0]) else None for key, _, c, _ in candidates}
    l2 = 1.0 / (best_c * n_decisions)
    info = {"C": best_c, "l2": l2, "chosen_by": "validation", "scores": scores}
    return solution, info


def fit_head_by_folds(
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    folds: np.ndarray,
    *,
    vocab: TagVocabulary,
    grid: tuple[float, ...] = C_GRID,
) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]] | None:
    """C by k-fold cross-validation, then the head refit on every row and calibrated.

    For each C of ``grid`` (ascending) every fold is predicted by a fit on the others
    (warm-started along the C path), so each labeled row gets one out-of-fold prediction;
    the C whose pooled out-of-fold predictions score best wins (ties: lower loss, then
    smaller C). A temperature fitted on those out-of-fold logits
    (:func:`folds.fit_temperature`) is folded into the refit's weight and bias (``W x + b``
    over T), so a served probe is calibrated at no cost.
    """
    inputs, targets, known = train
    n_decisions = count_decisions(targets, known, vocab=vocab)
    if n_decisions == 0:
        return None
    fold_ids = np.unique(folds)
    masks = [torch.from_numpy(folds == f) for f in fold_ids]
    previous: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(fold_ids)
    candidates = []
    for rank, c in enumerate(grid):
        oof = inputs.new_zeros(targets.shape)
        for i, held in enumerate(masks):
            fit_rows = ~held
            n_fit = count_decisions(targets[fit_rows], known[fit_rows], vocab=vocab)
            if n_fit == 0:
                continue  # this fold's rest has no label: its rows stay undecided (logit 0)
            weight, bias = fit_linear(
                inputs[fit_rows],
                targets[fit_rows],
                known[fit_rows],
                vocab=vocab,
                l2=1.0 / (c * n_fit),
                init=previous[i],
            )
            previous[i] = (weight, bias)
            oof[held] = inputs[held] @ weight.T + bias
        probs = probabilities(oof, vocab=vocab).numpy()
        metrics = evaluate_predictions(probs, targets.numpy(), known.numpy(), vocab=vocab)
        score = selection_score(metrics)
        loss = float(multitask_loss(oof, targets, known, vocab=vocab))
        key = (score if score is not None else -math.inf, -loss)
        candidates.append((key, -rank, c, oof))
    (best_score, _), _, best_c, best_oof = max(candidates, key=lambda item: item[:2])
    l2 = 1.0 / (best_c * n_decisions)
    weight, bias = fit_linear(inputs, targets, known, vocab=vocab, l2=l2)
    temperature, loss_calibrated, loss_raw = fit_temperature(
        best_oof, lambda z: multitask_loss(z, targets, known, vocab=vocab)
    )
    info = {
        "C": best_c,
        "l2": l2,
        "chosen_by": "folds",
        "folds": len(fold_ids),
        "scores": {
            str(c): key[0] if math.isfinite(key[0]) else None for key, _, c, _ in candidates
        },
        "oof_score": best_score if math.isfinite(best_score) else None,
        "oof_loss": loss_raw,
        "temperature": temperature,
        "oof_loss_calibrated": loss_calibrated,
    }
    return (weight / temperature, bias / temperature), info


def count_labeled_clips(targets: torch.Tensor, known: torch.Tensor, *, vocab: TagVocabulary) -> int:
    """Clips with at least one labeled decision."""
    labeled = torch.where(known, targets, 0.0)
    has = torch.zeros(targets.shape[0], dtype=torch.bool)
    for columns in vocab.group_indices.values():
        ix = torch.as_tensor(columns)
        has |= group_decided(known, labeled[:, ix], ix)
    ungrouped = vocab.ungrouped_indices
    if ungrouped.size:
        has |= known[:, torch.as_tensor(ungrouped)].any(dim=1)
    return int(has.sum())


def fit_probe(
    model: LinearProbe,
    train: ClipDataset,
    *,
    vocab: TagVocabulary,
    options: TrainOptions,
    val: ClipDataset | None,
    c: dict[str, float] | None = None,
    temperature: dict[str, float] | None = None,
    folds: np.ndarray | None = None,
    fit_heads: tuple[str, ...] = ("central", "visual", "audio"),
    grid: tuple[float, ...] = C_GRID,
) -> dict[str, Any]:
    """Fit ``model``'s standardisation buffers and its three heads on ``train``; ``c``: a
    head named there is fit with that C (no search; the others as usual), divided by its
    ``temperature`` if one is given; ``folds (N,)``: C by cross-validation over them;
    ``fit_heads``: the heads to fit (the others stay zero, undecided, reported as None);
    ``grid``: the Cs the folds choose among. With folds, the modality heads (read by the
    modality-disagreement strategy and the dashboard, never served alone) take the central
    head's C instead of folds of their own: a third of the round's fits.

    Returns (JSON-ready) ``{"heads": {head: {"C", "l2", "chosen_by", ["scores"]} or None},
    "train_loss": float, "feature_dims": {...}, "uses_branches": bool}``. A head without
    labeled training clips (the audio head when no clip has audio) stays at zero: undecided.
    """
    raw = raw_features(model, train, audio_frames=options.audio_frames)
    model.fit_standardisation(*raw)
    train_features = _standardised(model, train, raw)
    val_features = (
        None
        if val is None
        else _standardised(model, val, raw_features(model, val, audio_frames=options.audio_frames))
    )
    heads: dict[str, Any] = {}
    for name in ("central", "visual", "audio"):
        head_c = (c or {}).get(name)
        central = heads.get("central")
        if head_c is None and folds is not None and name != "central" and central:
            head_c = central["C"]
        fitted = (
            None
            if name not in fit_heads
            else fit_head(
                train_features.head_data(name),
                None if val_features is None else val_features.head_data(name),
                vocab=vocab,
                c=head_c,
                folds=train_features.head_folds(name, folds),
                grid=grid,
            )
        )
        t = (temperature or {}).get(name)
        if fitted is not None and t is not None:
            fitted = ((fitted[0][0] / t, fitted[0][1] / t), {**fitted[1], "temperature": t})
        weight, bias = model.head_parameters(name)
        with torch.no_grad():
            if fitted is None:
                weight.zero_()
                bias.zero_()
                heads[name] = None
                continue
            weight.copy_(fitted[0][0])
            bias.copy_(fitted[0][1])
        info = fitted[1]
        heads[name] = info
    model.eval()
    inputs, targets, known = train_features.head_data("central")
    with torch.no_grad():
        logits = model.heads["central"](inputs.float())
        train_loss = float(multitask_loss(logits, targets.float(), known, vocab=vocab))
    return {
        "heads": heads,
        "train_loss": train_loss,
        "feature_dims": model.feature_dims(),
        "uses_branches": bool(model.uses_branches),
    }
