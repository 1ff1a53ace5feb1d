"""What every fusion model shares: the output record, the base class, input checks.

All models take the same three tensors, ``frames (B, T, 3, H, W) uint8``, ``logmel (B, n_mels,
S) float`` and ``audio_mask (B,) bool`` (True where the clip has an audio track), and return a
``FusionOutput``. Heads are plain ``nn.Linear`` layers kept in ``model.heads`` so the vocabulary
can grow between rounds (see ``tagloop.fusion.factory.resize_heads``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tagloop.errors import InvalidInput
from tagloop.fusion.config import FusionConfig


@dataclass(frozen=True)
class FusionOutput:
    """One forward pass.

    logits: ``(B, K)`` the model's prediction (pre-softmax/sigmoid; see training.loss).
    modality_logits: modality name -> ``(B, K)`` unimodal head logits; empty for models
        without unimodal heads.
    embedding: ``(B, D)`` the fused representation (for diversity sampling).
    modality_present: modality name -> ``(B,)`` bool, which samples had that modality, so a
        loss on a unimodal head can skip clips that lacked its input.
    """

    logits: torch.Tensor
    modality_logits: dict[str, torch.Tensor]
    embedding: torch.Tensor
    modality_present: dict[str, torch.Tensor] = field(default_factory=dict)


class VisualEncoder(nn.Module):
    """What a fusion model needs of its visual branch, whatever the architecture.

    forward: frames ``(B, T, 3, H, W)`` uint8 -> list over fusion points of
    ``(B, feature_dims[i])``; there are ``config.depth`` of them, the audio branch's count,
    since CentralNet fuses the two after every block. ``arch`` is the ``FusionConfig.
    visual_arch`` it implements (named in weight-mismatch errors).
    """

    arch: str = ""
    feature_dims: list[int]

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


class FusionModel(nn.Module):
    """Base class: input checks, the heads dict and the (possibly empty) fusion weights."""

    kind: str = ""

    def __init__(self, *, vocab_size: int, config: FusionConfig) -> None:
        super().__init__()
        if vocab_size < 1:
            raise InvalidInput(f"vocab_size must be >= 1, got {vocab_size}", code="bad_vocab_size")
        self.vocab_size = vocab_size
        self.config = config
        self.heads = nn.ModuleDict()

    @property
    def uses_visual_embedding(self) -> bool:
        """True when forward reads ``visual_embedding`` (the probe on pretrained embeddings);
        callers then pass each clip's stored ``(B, 1280)`` embedding."""
        return False

    def fusion_weights(self) -> list[dict[str, float]]:
        """Learned mixing weights per fusion point (all modalities present); [] if none."""
        return []

    def forward(
        self,
        frames: torch.Tensor,
        logmel: torch.Tensor,
        audio_mask: torch.Tensor | None = None,
        *,
        visual_embedding: torch.Tensor | None = None,
    ) -> FusionOutput:
        """``visual_embedding`` ``(B, D)``: the clips' stored pretrained embeddings, read only
        by a model whose ``uses_visual_embedding`` is True."""
        del visual_embedding  # only the probe reads it (it overrides forward)
        mask = check_inputs(frames, logmel, audio_mask, config=self.config)
        return self.fuse(frames, logmel, mask)

    def fuse(
        self, frames: torch.Tensor, logmel: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        """The model proper, on inputs already checked; ``audio_mask (B,)`` bool."""
        raise NotImplementedError


def check_inputs(
    frames: torch.Tensor,
    logmel: torch.Tensor,
    audio_mask: torch.Tensor | None,
    *,
    config: FusionConfig,
) -> torch.Tensor:
    """Validate shapes/dtypes against the config; returns the audio mask ``(B,)`` bool."""
    if frames.dtype != torch.uint8:
        raise InvalidInput(f"frames must be uint8, got {frames.dtype}", code="bad_frames")
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise InvalidInput(
            f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}", code="bad_frames"
        )
    size = config.frame_size
    if frames.shape[3] != size or frames.shape[4] != size:
        raise InvalidInput(
            f"frames must be {size}x{size} for this model, got {tuple(frames.shape[3:])}",
            code="bad_frames",
        )
    batch = frames.shape[0]
    if not logmel.is_floating_point():
        raise InvalidInput(f"logmel must be floating point, got {logmel.dtype}", code="bad_logmel")
    if logmel.ndim != 3 or logmel.shape[0] != batch or logmel.shape[1] != config.n_mels:
        raise InvalidInput(
            f"logmel must be (B={batch}, n_mels={config.n_mels}, S), got {tuple(logmel.shape)}",
            code="bad_logmel",
        )
    if audio_mask is None:
        return torch.ones(batch, dtype=torch.bool, device=frames.device)
    if audio_mask.dtype != torch.bool or audio_mask.shape != (batch,):
        raise InvalidInput(
            f"audio_mask must be ({batch},) bool, got {tuple(audio_mask.shape)} {audio_mask.dtype}",
            code="bad_audio_mask",
        )
    return audio_mask


def masked_softmax_weights(
    theta: torch.Tensor, present: torch.Tensor, *, floor: float = 0.0
) -> torch.Tensor:
    """Mixing weights renormalised over the terms a sample has.

    theta: ``(M,)`` learned scores, one per term; present: ``(B, M)`` bool. Returns ``(B, M)``
    weights that sum to 1 over the present terms and are exactly 0 for absent ones. A
    softmax keeps the weights positive, so dropping a term never flips or blows up the sum.
    floor: every present term gets at least this weight (``floor * M < 1``); the softmax
    shares out the rest.
    """
    scores = theta.unsqueeze(0).expand(present.shape[0], -1)
    scores = scores.masked_fill(~present, float("-inf"))
    weights = torch.softmax(scores, dim=1)
    if floor <= 0.0:
        return weights
    n_present = present.sum(dim=1, keepdim=True).to(weights.dtype)
    return floor * present.to(weights.dtype) + (1.0 - floor * n_present) * weights
