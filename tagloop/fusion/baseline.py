"""Baselines behind the CentralNet interface: visual-only, audio-only, concat, late fusion.

They reuse the CentralNet branches so a comparison measures the fusion, not the encoders.
"""

from __future__ import annotations

import torch
from torch import nn

from tagloop.fusion.base import FusionModel, FusionOutput, masked_softmax_weights
from tagloop.fusion.branch import AudioBranch, build_visual_branch
from tagloop.fusion.centralnet import projection_mlp
from tagloop.fusion.config import FusionConfig


class VisualOnly(FusionModel):
    """Frames only; the log-mel and the audio mask are ignored. Head: ``fused``."""

    kind = "visual"

    def __init__(self, *, vocab_size: int, config: FusionConfig) -> None:
        super().__init__(vocab_size=vocab_size, config=config)
        self.visual = build_visual_branch(config)
        self.neck = projection_mlp(
            self.visual.feature_dims[-1], config.hidden_dim, dropout=config.dropout
        )
        self.heads["fused"] = nn.Linear(config.hidden_dim, vocab_size)

    def fuse(
        self, frames: torch.Tensor, logmel: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        hidden = self.neck(self.visual(frames)[-1])
        return FusionOutput(
            logits=self.heads["fused"](hidden),
            modality_logits={},
            embedding=hidden,
            modality_present={"visual": torch.ones_like(audio_mask)},
        )


class AudioOnly(FusionModel):
    """Log-mel only. A clip without audio sees an all-zero input and so gets the same
    prediction as every other clip without audio. Head: ``fused``."""

    kind = "audio"

    def __init__(self, *, vocab_size: int, config: FusionConfig) -> None:
        super().__init__(vocab_size=vocab_size, config=config)
        self.audio = AudioBranch(config)
        self.neck = projection_mlp(
            self.audio.feature_dims[-1], config.hidden_dim, dropout=config.dropout
        )
        self.heads["fused"] = nn.Linear(config.hidden_dim, vocab_size)

    def fuse(
        self, frames: torch.Tensor, logmel: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        hidden = self.neck(self.audio(logmel, audio_mask)[-1])
        return FusionOutput(
            logits=self.heads["fused"](hidden),
            modality_logits={},
            embedding=hidden,
            modality_present={"audio": audio_mask},
        )


class ConcatFusion(FusionModel):
    """Early fusion: concatenate the pooled last-block features (audio zeroed when missing,
    plus a has-audio flag so "missing" differs from "zero features"), then an MLP.
    Head: ``fused``."""

    kind = "concat"

    def __init__(self, *, vocab_size: int, config: FusionConfig) -> None:
        super().__init__(vocab_size=vocab_size, config=config)
        self.visual = build_visual_branch(config)
        self.audio = AudioBranch(config)
        width = self.visual.feature_dims[-1] + self.audio.feature_dims[-1] + 1
        self.neck = projection_mlp(width, config.hidden_dim, dropout=config.dropout)
        self.heads["fused"] = nn.Linear(config.hidden_dim, vocab_size)

    def fuse(
        self, frames: torch.Tensor, logmel: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        visual = self.visual(frames)[-1]
        audio = torch.where(audio_mask[:, None], self.audio(logmel, audio_mask)[-1], 0.0)
        flag = audio_mask.to(visual.dtype)[:, None]
        hidden = self.neck(torch.cat([visual, audio, flag], dim=1))
        return FusionOutput(
            logits=self.heads["fused"](hidden),
            modality_logits={},
            embedding=hidden,
            modality_present={"visual": torch.ones_like(audio_mask), "audio": audio_mask},
        )


class LateFusion(FusionModel):
    """Late fusion: a learned weighted mean of the unimodal logits.

    The two weights are a softmax over learned scores, renormalised per clip over the present
    modalities (a clip without audio uses the visual logits alone). The embedding is the same
    weighted mean of the two hidden vectors. Heads: ``visual``, ``audio``.
    """

    kind = "late"

    def __init__(self, *, vocab_size: int, config: FusionConfig) -> None:
        super().__init__(vocab_size=vocab_size, config=config)
        dim = config.hidden_dim
        self.visual = build_visual_branch(config)
        self.audio = AudioBranch(config)
        self.visual_neck = projection_mlp(self.visual.feature_dims[-1], dim, dropout=config.dropout)
        self.audio_neck = projection_mlp(self.audio.feature_dims[-1], dim, dropout=config.dropout)
        self.heads["visual"] = nn.Linear(dim, vocab_size)
        self.heads["audio"] = nn.Linear(dim, vocab_size)
        self.weight_scores = nn.Parameter(torch.zeros(2))

    def fusion_weights(self) -> list[dict[str, float]]:
        with torch.no_grad():
            weights = torch.softmax(self.weight_scores, dim=0).tolist()
        return [{"visual": weights[0], "audio": weights[1]}]

    def fuse(
        self, frames: torch.Tensor, logmel: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        visual_hidden = self.visual_neck(self.visual(frames)[-1])
        audio_hidden = self.audio_neck(self.audio(logmel, audio_mask)[-1])
        visual_logits = self.heads["visual"](visual_hidden)
        audio_logits = self.heads["audio"](audio_hidden)
        present = torch.stack([torch.ones_like(audio_mask), audio_mask], dim=1)
        weights = masked_softmax_weights(self.weight_scores, present)  # (B, 2)
        # where() keeps a masked clip's audio terms out entirely (0 * x is not 0 for x = inf).
        audio_w = weights[:, 1:]
        logits = weights[:, :1] * visual_logits + torch.where(
            audio_mask[:, None], audio_w * audio_logits, 0.0
        )
        embedding = weights[:, :1] * visual_hidden + torch.where(
            audio_mask[:, None], audio_w * audio_hidden, 0.0
        )
        return FusionOutput(
            logits=logits,
            modality_logits={"visual": visual_logits, "audio": audio_logits},
            embedding=embedding,
            modality_present={"visual": torch.ones_like(audio_mask), "audio": audio_mask},
        )
