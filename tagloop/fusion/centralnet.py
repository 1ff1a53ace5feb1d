"""CentralNet (Vielzeuf et al., ECCV-W 2018) over a visual and an audio CNN.

After conv block i of both branches, the central branch takes
``z_i = alpha_C[i] * h_C[i] + sum_m alpha_m[i] * P_m[i](pool(h_m[i]))`` and computes
``h_C[i+1] = MLP_i(z_i)``; there is no central state before the first block, so depth 0 mixes
the modalities only. The branches are CNNs of different shapes (frames vs. a spectrogram), so
the central branch works on vectors: ``P_m[i]`` is a linear projection of the pooled block
output to ``hidden_dim``.

The alphas are trainable scalars, parameterised as a softmax over per-depth scores so they stay
positive and sum to 1; for a clip without audio the softmax runs over the terms it has, which
is the renormalisation over present modalities. Each present term keeps at least
``config.alpha_floor`` of the mix: at a few hundred labels the picture branch learns first and
the audio alpha fell to 0.015 in a served model, which then ignored a modality that carries
signal; the floor keeps every branch in the central path so its projection can still grow.

Each modality keeps its own head (trained with
``beta_m`` in ``training.loss.fusion_loss``) and the central branch has the main head.
"""

from __future__ import annotations

import torch
from torch import nn

from tagloop.fusion.base import FusionModel, FusionOutput, masked_softmax_weights
from tagloop.fusion.branch import AudioBranch, build_visual_branch
from tagloop.fusion.config import FusionConfig


def projection_mlp(in_dim: int, out_dim: int, *, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout: ``(B, in_dim) -> (B, out_dim)``; dropout serves MC dropout."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))


class CentralNet(FusionModel):
    """See the module docstring. Heads: ``central``, ``visual``, ``audio``."""

    kind = "centralnet"

    def __init__(self, *, vocab_size: int, config: FusionConfig) -> None:
        super().__init__(vocab_size=vocab_size, config=config)
        dim = config.hidden_dim
        self.visual = build_visual_branch(config)
        self.audio = AudioBranch(config)
        self.visual_proj = nn.ModuleList(nn.Linear(d, dim) for d in self.visual.feature_dims)
        self.audio_proj = nn.ModuleList(nn.Linear(d, dim) for d in self.audio.feature_dims)
        self.central = nn.ModuleList(
            projection_mlp(dim, dim, dropout=config.dropout) for _ in range(config.depth)
        )
        # Scores behind the alphas: depth 0 mixes [visual, audio]; later depths mix
        # [central, visual, audio]. Zero init = equal weights.
        self.alpha_scores = nn.ParameterList(
            nn.Parameter(torch.zeros(2 if i == 0 else 3)) for i in range(config.depth)
        )
        self.visual_neck = projection_mlp(self.visual.feature_dims[-1], dim, dropout=config.dropout)
        self.audio_neck = projection_mlp(self.audio.feature_dims[-1], dim, dropout=config.dropout)
        self.heads["central"] = nn.Linear(dim, vocab_size)
        self.heads["visual"] = nn.Linear(dim, vocab_size)
        self.heads["audio"] = nn.Linear(dim, vocab_size)

    def _term_names(self, depth: int) -> list[str]:
        return ["visual", "audio"] if depth == 0 else ["central", "visual", "audio"]

    def fusion_weights(self) -> list[dict[str, float]]:
        """alphas per depth for a clip with both modalities, e.g. ``[{"visual": .5, ...}]``."""
        out = []
        with torch.no_grad():
            for i, scores in enumerate(self.alpha_scores):
                present = torch.ones(1, scores.shape[0], dtype=torch.bool)
                floor = self.config.alpha_floor
                weights = masked_softmax_weights(scores, present, floor=floor)[0].tolist()
                out.append(dict(zip(self._term_names(i), weights, strict=True)))
        return out

    def _audio_term(
        self, depth: int, audio_feats: list[torch.Tensor], audio_mask: torch.Tensor
    ) -> torch.Tensor:
        """``P_a[i](pool(h_a[i]))`` as ``(B, D)``, exactly zero for clips without audio."""
        # where(), not a product: a masked term must contribute nothing, even if not finite.
        return torch.where(audio_mask[:, None], self.audio_proj[depth](audio_feats[depth]), 0.0)

    def _mix(self, depth: int, terms: list[torch.Tensor], audio_mask: torch.Tensor) -> torch.Tensor:
        """``MLP_i(sum_k alpha_k[i] * term_k)``; terms ``(B, D)`` each, audio last."""
        present = torch.ones(
            audio_mask.shape[0], len(terms), dtype=torch.bool, device=audio_mask.device
        )
        present[:, -1] = audio_mask
        weights = masked_softmax_weights(
            self.alpha_scores[depth], present, floor=self.config.alpha_floor
        )
        mixed = (weights.unsqueeze(2) * torch.stack(terms, dim=1)).sum(dim=1)
        return self.central[depth](mixed)

    def fuse(
        self, frames: torch.Tensor, logmel: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        """frames ``(B, T, 3, H, W)`` uint8, logmel ``(B, n_mels, S)``, audio_mask ``(B,)``."""
        visual_feats = self.visual(frames)
        audio_feats = self.audio(logmel, audio_mask)
        visual_term = self.visual_proj[0](visual_feats[0])
        central = self._mix(
            0, [visual_term, self._audio_term(0, audio_feats, audio_mask)], audio_mask
        )
        for i in range(1, self.config.depth):
            visual_term = self.visual_proj[i](visual_feats[i])
            audio_term = self._audio_term(i, audio_feats, audio_mask)
            central = self._mix(i, [central, visual_term, audio_term], audio_mask)
        visual_hidden = self.visual_neck(visual_feats[-1])
        audio_hidden = self.audio_neck(audio_feats[-1])
        return FusionOutput(
            logits=self.heads["central"](central),
            modality_logits={
                "visual": self.heads["visual"](visual_hidden),
                "audio": self.heads["audio"](audio_hidden),
            },
            embedding=central,
            modality_present={"visual": torch.ones_like(audio_mask), "audio": audio_mask},
        )
