"""Predictions of a trained model over clip tensors: probabilities, per-modality probabilities,
fused embeddings and, for BALD, Monte-Carlo dropout samples. Streams in batches, so a pool of
any size costs one batch of memory plus the outputs."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import ClipTensors
from tagloop.features.visual_embedding import ensure_visual_embeddings
from tagloop.fusion import FusionModel, enable_mc_dropout
from tagloop.training.dataset import crop_logmel
from tagloop.training.loss import probabilities
from tagloop.vocabulary import TagVocabulary


@dataclass(frozen=True)
class Predictions:
    """probs ``(N, K)`` float32; modality_probs: modality -> ``(N, K)`` (empty for models
    without unimodal heads); embedding ``(N, D)`` float32; mc_probs ``(P, N, K)`` float32 with
    dropout on (None when ``mc_passes == 0``)."""

    probs: np.ndarray
    modality_probs: dict[str, np.ndarray]
    embedding: np.ndarray
    mc_probs: np.ndarray | None


def _stack(
    chunk: list[ClipTensors], *, audio_frames: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    frames = torch.stack([t.frames for t in chunk])
    logmel = torch.stack([t.logmel for t in chunk]).float()
    mask = torch.tensor([bool(t.audio_mask) for t in chunk], dtype=torch.bool)
    return frames, crop_logmel(logmel, audio_frames=audio_frames), mask


def predict_clips(
    model: FusionModel,
    tensors: Iterable[ClipTensors],
    *,
    vocab: TagVocabulary,
    batch_size: int = 256,
    mc_passes: int = 0,
    audio_frames: int | None = None,
) -> Predictions:
    """Run ``model`` over ``tensors`` (a list or any iterator) in input order.

    ``audio_frames`` must match the training round's (``TrainOptions.audio_frames``): the
    leading window is used, as in validation. The model's train/eval mode is restored after.
    """
    if batch_size < 1 or mc_passes < 0:
        raise InvalidInput("batch_size must be >= 1 and mc_passes >= 0", code="bad_option")
    if model.vocab_size != len(vocab):
        raise InvalidInput(
            f"model has {model.vocab_size} outputs, vocabulary {len(vocab)}",
            code="vocab_mismatch",
        )
    was_training = model.training
    probs: list[torch.Tensor] = []
    modality: dict[str, list[torch.Tensor]] = {}
    embeddings: list[torch.Tensor] = []
    mc: list[torch.Tensor] = []
    iterator = iter(tensors)
    try:
        with torch.no_grad():
            while chunk := list(itertools.islice(iterator, batch_size)):
                frames, logmel, mask = _stack(chunk, audio_frames=audio_frames)
                embedding = None
                if model.uses_visual_embedding:
                    # A clip without a stored embedding gets one from its frames.
                    embedding = ensure_visual_embeddings(chunk)
                model.eval()
                out = model(frames, logmel, mask, visual_embedding=embedding)
                probs.append(probabilities(out.logits, vocab=vocab))
                for name, logits in out.modality_logits.items():
                    modality.setdefault(name, []).append(probabilities(logits, vocab=vocab))
                embeddings.append(out.embedding)
                if mc_passes:
                    enable_mc_dropout(model)
                    passes = [
                        probabilities(
                            model(frames, logmel, mask, visual_embedding=embedding).logits,
                            vocab=vocab,
                        )
                        for _ in range(mc_passes)
                    ]
                    mc.append(torch.stack(passes))  # (P, B, K)
    finally:
        model.train(was_training)
    if not probs:
        k = len(vocab)
        return Predictions(
            probs=np.zeros((0, k), np.float32),
            modality_probs={},
            embedding=np.zeros((0, 0), np.float32),
            mc_probs=np.zeros((mc_passes, 0, k), np.float32) if mc_passes else None,
        )
    return Predictions(
        probs=torch.cat(probs).float().numpy(),
        modality_probs={k: torch.cat(v).float().numpy() for k, v in modality.items()},
        embedding=torch.cat(embeddings).float().numpy(),
        mc_probs=torch.cat(mc, dim=1).float().numpy() if mc_passes else None,
    )
