"""The three models the suite judges on each set (``bench_suite``).

* served: what a training round of the service trains and serves on the labels -
  ``split_labeled`` + ``round_kind`` + ``round_options`` + ``train_model`` exactly as
  ``pipeline.training.train_round`` calls them under the default ``Settings`` (no pretraining
  run, no previous version to warm-start from: the first round on those labels);
* best linear: scikit-learn logistic regression on simple fixed clip features (mean decoded
  frame pixels, log-mel summary statistics per band), C chosen by inner cross-validation;
  it sees only what the service sees: the clip tensors and each clip's tags;
* pretrained probe: the same regression on the clips' ImageNet EfficientNet-Lite0 keyframe
  embeddings (``SuiteSet.visual_embedding``, the vectors the served probe reads too) plus the
  log-mel statistics.

The embeddings: where a set has videos behind it, what ingestion stores (keyframes decoded from
the source at 224 px, ``suite_tensors``); else what the service computes for a clip stored
without one (``ensure_visual_embeddings``: keyframes taken from the 32x32 model frames and
upscaled), once per set (:func:`frame_embeddings`).

All three return test probabilities ``(N_test, K)`` over the set's vocabulary, so the metrics
come from one function (``training.metrics.evaluate_predictions``), plus a speech-present
score per test clip where the set has clips without speech.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tagloop.vocabulary import TagVocabulary

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
INNER_FOLDS = 3
PIXEL_SIDE = 16


@dataclass(frozen=True)
class SuiteSet:
    """One set, stacked. frames ``(N, T, 3, H, W)`` uint8; logmel ``(N, M, S)``; audio_mask
    ``(N,)`` bool; targets ``(N, K)`` float32 and known ``(N, K)`` bool (``build_targets``);
    pool/test: row indices; speech ``(N,)`` bool or None when every clip has speech;
    visual_embedding ``(N, 1280)`` float32 (None: the served model embeds the frames itself)
    and embedding_source, where it came from: "keyframes" (decoded from the source video at
    ingest) or "frames" (the service's fallback from the 32x32 model frames); run_tag names
    the tensors in the run cache."""

    name: str
    frames: torch.Tensor
    logmel: torch.Tensor
    audio_mask: torch.Tensor
    targets: np.ndarray
    known: np.ndarray
    vocab: TagVocabulary
    pool: np.ndarray
    test: np.ndarray
    speech: np.ndarray | None = None
    visual_embedding: torch.Tensor | None = None
    embedding_source: str = "frames"
    run_tag: str = ""


@dataclass(frozen=True)
class Prediction:
    """probs ``(N_test, K)``; speech ``(N_test,)`` speech-present score or None; info: what
    was chosen (kind, C ...)."""

    probs: np.ndarray
    speech: np.ndarray | None
    info: dict[str, Any]


# ---------------------------------------------------------------- served


def labeled_clips(data: SuiteSet, rows: np.ndarray) -> list[Any]:
    from tagloop.features.clip_tensor import ClipTensors
    from tagloop.training.dataset import LabeledClip

    return [
        LabeledClip(
            clip_id=int(row),
            tensors=ClipTensors(
                frames=data.frames[row],
                logmel=data.logmel[row],
                audio_mask=bool(data.audio_mask[row]),
                visual_embedding=(
                    None if data.visual_embedding is None else data.visual_embedding[row]
                ),
            ),
            targets=data.targets[row].astype(np.float32),
            known=data.known[row],
        )
        for row in rows
    ]


def _group_present(probs: np.ndarray, vocab: TagVocabulary, group: str) -> np.ndarray:
    """``(N,)`` ``1 - P(none)`` of ``group``: the probability that one of its tags applies."""
    from tagloop.none_outcome import none_probability

    return 1.0 - none_probability(probs[:, vocab.group_indices[group]])


def predict_served(
    data: SuiteSet, rows: np.ndarray, *, speech_group: str | None = None
) -> Prediction:
    """Train as ``train_round`` does on the labeled ``rows`` and predict the test clips.

    A clip without speech names no ``number`` tag: a "none of these" label for the group
    (``training.targets``). Its speech-present score is ``1 - P(none)`` of the group; the cut
    used for accuracy is the best one on the labeled clips' own predictions, the only labels
    a service has for it.
    """
    from tagloop.config import Settings
    from tagloop.pipeline.training import round_config, round_kind, round_options, split_labeled
    from tagloop.training.loop import train_model
    from tagloop.training.predict import predict_clips

    settings = Settings()
    samples = labeled_clips(data, rows)
    train, val = split_labeled(samples, val_fraction=settings.val_fraction)
    config = round_config(settings)
    options = round_options(settings)
    kind, probe_below = round_kind(settings, len(samples), pretrained=False)
    result = train_model(
        kind=kind,
        vocab=data.vocab,
        config=config,
        train=train,
        val=val,
        options=options,
        init_state=None,
        init_vocab=None,
        backbone=None,
    )
    test = labeled_clips(data, data.test)
    preds = predict_clips(
        result.model, [c.tensors for c in test], vocab=data.vocab, audio_frames=options.audio_frames
    )
    info: dict[str, Any] = {"kind": kind, "probe_below": probe_below, "epochs": result.epochs_run}
    chosen = [c["name"] for c in result.metrics.get("candidates", []) if c.get("chosen")]
    if chosen:  # a probe round: the candidate the folds chose (training/candidates.py)
        info["candidate"] = chosen[0]
    speech = None
    if speech_group is not None and data.speech is not None:
        speech = _group_present(preds.probs, data.vocab, speech_group)
        own = predict_clips(
            result.model,
            [c.tensors for c in samples],
            vocab=data.vocab,
            audio_frames=options.audio_frames,
        )
        info["speech_cut"] = best_accuracy_cut(
            _group_present(own.probs, data.vocab, speech_group), data.speech[rows]
        )
    return Prediction(probs=np.asarray(preds.probs), speech=speech, info=info)


def best_accuracy_cut(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (midway between two scores) maximising accuracy of ``scores >= cut``."""
    ordered = np.unique(scores)
    cuts = np.r_[ordered[0] - 1e-6, (ordered[1:] + ordered[:-1]) / 2, ordered[-1] + 1e-6]
    accuracy = [float(np.mean((scores >= c) == labels)) for c in cuts]
    return float(cuts[int(np.argmax(accuracy))])


# ---------------------------------------------------------------- fixed features


def logmel_statistics(logmel: torch.Tensor, audio_mask: torch.Tensor) -> np.ndarray:
    """``(N, M, S)`` -> ``(N, 4 * M)``: per band mean, std, min and max over time (float64);
    zero for clips without audio."""
    x = logmel.double()
    stats = torch.cat([x.mean(2), x.std(2, unbiased=False), x.amin(2), x.amax(2)], dim=1)
    return torch.where(audio_mask[:, None], stats, 0.0).numpy()


def mean_pixels(frames: torch.Tensor, *, side: int = PIXEL_SIDE) -> np.ndarray:
    """``(N, T, 3, H, W)`` uint8 -> ``(N, 3 * side * side)``: the frames averaged over time,
    area-pooled to ``side x side``, in [0, 1]. 16x16 from the stored 32x32: a quarter of the
    features (a logistic fit on 640 labels with 3,300 features cost minutes per C on a loaded
    2-core machine) at the resolution a time-averaged drifting picture has anyway."""
    out = np.empty((frames.shape[0], 3 * side * side), dtype=np.float64)
    for start in range(0, frames.shape[0], 512):
        chunk = frames[start : start + 512].double().mean(dim=1).div(255.0)
        pooled = torch.nn.functional.adaptive_avg_pool2d(chunk, side)
        out[start : start + chunk.shape[0]] = pooled.flatten(1).numpy()
    return out


def linear_features(data: SuiteSet) -> np.ndarray:
    """``(N, 3 * 16 * 16 + 4 * M)`` fixed features of every clip of the set."""
    return np.concatenate(
        [mean_pixels(data.frames), logmel_statistics(data.logmel, data.audio_mask)], axis=1
    )


# ---------------------------------------------------------------- logistic regression


def _fit_lr(x: np.ndarray, y: np.ndarray, c: float, *, model: Any = None) -> Any:
    """A fitted LogisticRegression at ``c``; ``model``: refit that one from its current
    weights (warm start along the ascending C grid: same optimum, fewer iterations)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    if model is None:
        model = LogisticRegression(C=c, max_iter=300, tol=1e-3, warm_start=True)
    model.set_params(C=c)
    # One BLAS thread: the matrices are small, and threads on a shared 2-core box only wait.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # ConvergenceWarning at tol 1e-3 on tiny folds
        model.fit(x, y)
    return model


def _proba(model: Any, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(N, len(classes))`` probabilities in the order of ``classes`` (0 for unseen ones)."""
    out = np.zeros((x.shape[0], classes.size))
    position = {int(c): i for i, c in enumerate(classes)}
    probs = model.predict_proba(x)
    for j, c in enumerate(model.classes_):
        out[:, position[int(c)]] = probs[:, j]
    return out


def choose_c(x: np.ndarray, y: np.ndarray, *, seed: int) -> float:
    """C of ``C_GRID`` with the lowest mean held-out log loss over ``INNER_FOLDS`` shuffled
    folds (ties to the smaller C); classes absent from a training fold get probability 1e-3."""
    from sklearn.model_selection import KFold, StratifiedKFold

    classes = np.unique(y)
    if classes.size < 2:
        return 1.0
    counts = np.bincount(np.searchsorted(classes, y))
    folds = min(INNER_FOLDS, y.size)
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if counts.min() >= folds
        else KFold(folds, shuffle=True, random_state=seed)
    )
    losses = np.zeros(len(C_GRID))
    for train, held in splitter.split(x, y):
        if np.unique(y[train]).size < 2:
            continue
        model = None
        for i, c in enumerate(C_GRID):
            model = _fit_lr(x[train], y[train], c, model=model)
            p = _proba(model, x[held], classes)
            p = np.clip(p, 1e-3, 1.0)
            truth = np.searchsorted(classes, y[held])
            losses[i] += -np.log(p[np.arange(held.size), truth]).sum()
    return float(C_GRID[int(np.argmin(losses))])


def predict_linear(
    features: np.ndarray,
    data: SuiteSet,
    rows: np.ndarray,
    *,
    seed: int,
    speech_group: str | None = None,
) -> Prediction:
    """Logistic regression per decision the tags define, on standardised ``features``.

    A group: one multinomial model over its tags on the labeled clips; where some labeled clips
    name none of the group's tags (nobody speaks), "none" is one more class, and the group's
    tag probabilities leave it its share, as the served model's do (``none_outcome``; 1 -
    P(none) is the speech score). An ungrouped tag: one binary model, all ungrouped tags
    sharing the C chosen on their mean loss.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features[rows])
    x_train = scaler.transform(features[rows])
    x_test = scaler.transform(features[data.test])
    k = len(data.vocab)
    probs = np.full((data.test.size, k), 0.5)
    info: dict[str, Any] = {"C": {}}
    speech = None
    labeled = np.where(data.known[rows], data.targets[rows], 0.0)
    for group, columns in data.vocab.group_indices.items():
        has = labeled[:, columns].sum(axis=1) > 0
        y = np.where(has, labeled[:, columns].argmax(axis=1), columns.size)  # size = "none"
        c = choose_c(x_train, y, seed=seed)
        info["C"][group] = c
        classes = np.arange(columns.size + 1)
        if np.unique(y).size < 2:
            p = np.zeros((data.test.size, classes.size))
            p[:, int(y[0])] = 1.0
        else:
            p = _proba(_fit_lr(x_train, y, c), x_test, classes)
        p_none = p[:, -1]
        probs[:, columns] = p[:, :-1]
        if group == speech_group:
            speech = 1.0 - p_none
    ungrouped = data.vocab.ungrouped_indices
    if ungrouped.size:
        probs[:, ungrouped] = _fit_binary_tags(
            x_train, labeled[:, ungrouped] > 0.5, x_test, seed=seed, info=info
        )
    return Prediction(probs=probs, speech=speech, info=info)


def _fit_binary_tags(
    x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, *, seed: int, info: dict[str, Any]
) -> np.ndarray:
    """``(N_test, J)`` probabilities of J independent yes/no tags, one shared C chosen by
    inner CV on the tags' summed log loss (per-tag C on a handful of positives is noise)."""
    from sklearn.model_selection import KFold

    splitter = KFold(min(INNER_FOLDS, y.shape[0]), shuffle=True, random_state=seed)
    losses = np.zeros(len(C_GRID))
    for train, held in splitter.split(x_train):
        for j in range(y.shape[1]):
            yt = y[train, j]
            model = None
            for i, c in enumerate(C_GRID):
                if yt.all() or not yt.any():
                    p = np.full(held.size, float(yt.mean()))
                else:
                    model = _fit_lr(x_train[train], yt, c, model=model)
                    p = model.predict_proba(x_train[held])[:, 1]
                p = np.clip(p, 1e-3, 1 - 1e-3)
                yh = y[held, j]
                losses[i] += -(np.log(p[yh]).sum() + np.log(1 - p[~yh]).sum())
    c = float(C_GRID[int(np.argmin(losses))])
    info["C"]["ungrouped"] = c
    out = np.empty((x_test.shape[0], y.shape[1]))
    for j in range(y.shape[1]):
        if y[:, j].all() or not y[:, j].any():
            out[:, j] = float(y[:, j].mean())
        else:
            out[:, j] = _fit_lr(x_train, y[:, j], c).predict_proba(x_test)[:, 1]
    return out


# ---------------------------------------------------------------- pretrained probe


def frame_embeddings(frames: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
    """``(N, T, 3, H, W)`` uint8 -> ``(N, 1280)``: what the service computes for clips stored
    without an embedding (``ensure_visual_embeddings`` on the model frames)."""
    from tagloop.features.clip_tensor import ClipTensors
    from tagloop.features.visual_embedding import ensure_visual_embeddings

    empty = torch.zeros((1, 1))
    clips = [
        ClipTensors(frames=frames[row], logmel=empty, audio_mask=bool(audio_mask[row]))
        for row in range(frames.shape[0])
    ]
    return ensure_visual_embeddings(clips)


def pretrained_features(data: SuiteSet, *, rows: np.ndarray) -> np.ndarray | None:
    """``(len(rows), 1280 + 4 * M)``: the keyframe embedding of each clip and its log-mel
    statistics; None when the set carries no embeddings."""
    if data.visual_embedding is None:
        return None
    embeddings = data.visual_embedding[rows].double().numpy()
    audio = logmel_statistics(data.logmel[rows], data.audio_mask[rows])
    return np.concatenate([embeddings, audio], axis=1)
