"""A linear probe: logistic-regression heads over fixed, parameter-free clip features.

At a few dozen labels a CentralNet overfits, while a regularised linear model on fixed features
is already useful (``tagloop.training.capacity`` picks this kind below a label count). The
features never train; ``tagloop.training.probe_fit.fit_probe`` computes them once, fits the
standardisation buffers and then the heads to convergence (L-BFGS, L2), like scikit-learn's
``LogisticRegression``.

Features per clip (sizes at the default FusionConfig: 32x32 frames, 64 mel bands):

- visual, ``config.probe_visual == "embedding"`` (the default): the clip's ``(1280,)``
  embedding by the frozen ImageNet EfficientNet-Lite0 (``features.visual_embedding``),
  computed once at ingest from keyframes decoded at the encoder's input size and passed in as
  ``visual_embedding``. On CIFAR-10 photos in 64x64 clips a probe on it reached 0.64
  accuracy where one on pixels reached 0.28 (tests/benchmarks/bench_embed.py, 400 labels).
  A clip without a stored embedding gets one from its model frames (``keyframes_from_frames``).
- visual, ``probe_visual == "pixels"`` (the fixed-features floor) ``(3 * s * s,)``: the
  frames averaged over time, area-pooled per channel to ``s x s``
  with ``s = min(16, ceil(frame_size / 2))`` (768 at 32x32). A 2x2 area pool keeps the layout
  of a stroke (a digit is legible at 14x14) and smooths one-pixel jitter, while it cuts the
  feature count 4x, which a model fit on 40 labels and the k-center embedding both need.
- audio ``(n_mels * (4 + 2),)``: the log-mel standardised per clip as ``AudioBranch`` does, then
  mean-pooled on time to 16 bins (8 columns, 80 ms each at the default 128-column window:
  a spoken word's syllables stay apart), plus each band's mean and std over time (spectral
  envelope and its variation): 1152 at 64 bands. Zero for clips without audio. On the AV
  digits, 16 bins against 4 gave 0.90 against 0.86 at 320 labels and 0.72 against 0.75 at 80.
- optional frozen branch embeddings (``uses_branches``): the last block's pooled output of
  ``self.visual`` / ``self.audio`` appended to their modality (+256 visual, +512 audio by
  default). The branches keep the attribute names of CentralNet so
  ``training.backbone.apply_backbone`` loads pretrained weights into them; they never train.

Each modality's features are standardised with buffers fitted on the training clips (part of
the state_dict, so a reloaded model predicts the same). Heads: ``central`` on both modalities'
standardised features, ``visual`` and ``audio`` on their own; the embedding is a fixed random
projection of the concatenated standardised features to ``hidden_dim``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn

from tagloop.errors import InvalidInput
from tagloop.fusion.base import FusionModel, FusionOutput, check_inputs
from tagloop.fusion.branch import AudioBranch, build_visual_branch
from tagloop.fusion.config import FusionConfig
from tagloop.fusion.efficientnet_lite import EMBEDDING_DIM

_VISUAL_MAX_SIDE = 16
_AUDIO_TIME_BINS = 16
# A feature that hardly varies on the training clips (an always-black corner pixel) is not
# blown up to unit variance: its std is floored at this fraction of the modality's mean std,
# so it cannot dominate the embedding distances on a clip where it does vary.
_RELATIVE_STD_FLOOR = 0.1


@functools.cache
def random_projection(in_dim: int, out_dim: int) -> torch.Tensor:
    """A fixed Gaussian map ``(in_dim, out_dim)`` (seeded, the same in every process), scaled
    so distances are kept in expectation (Johnson-Lindenstrauss). The pool's embeddings are
    stored for every clip and version, so the probe stores ``hidden_dim`` floats per clip as
    CentralNet does, not its 1,000-2,000 features; k-center only needs the distances."""
    generator = torch.Generator().manual_seed(in_dim * 7919 + out_dim)
    return torch.randn(in_dim, out_dim, generator=generator) / math.sqrt(out_dim)


def visual_side(config: FusionConfig) -> int:
    """Side of the pooled frame grid: 2x2 area pooling, at most 16x16."""
    return min(_VISUAL_MAX_SIDE, math.ceil(config.frame_size / 2))


def fixed_visual_features(frames: torch.Tensor, *, side: int) -> torch.Tensor:
    """frames ``(B, T, 3, H, W)`` uint8 -> ``(B, 3 * side * side)`` float in [0, 1]."""
    mean = frames.float().mean(dim=1).div_(255.0)  # (B, 3, H, W)
    return F.adaptive_avg_pool2d(mean, side).flatten(1)


def fixed_audio_features(
    logmel: torch.Tensor, audio_mask: torch.Tensor, *, std_floor: float, layout: str = "bins"
) -> torch.Tensor:
    """logmel ``(B, n_mels, S)``, audio_mask ``(B,)`` -> ``(B, audio_feature_count(...))``.

    ``layout="bins"``: time bins ``(n_mels, bins)`` flattened band-major, then band means, then
    band stds. ``"stats"``: band means, stds, minima and maxima (where in the clip a sound
    starts does not matter). Exactly zero for clips without audio, whatever their log-mel holds
    (even NaN).
    """
    x = torch.where(audio_mask[:, None, None], logmel.float(), 0.0)
    mean = x.mean(dim=(1, 2), keepdim=True)
    std = x.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(std_floor)
    z = (x - mean) / std
    stats = [z.mean(dim=2), z.std(dim=2, unbiased=False)]
    if layout == "stats":
        features = torch.cat([*stats, z.amin(dim=2), z.amax(dim=2)], dim=1)
    else:
        features = torch.cat([F.adaptive_avg_pool1d(z, _AUDIO_TIME_BINS).flatten(1), *stats], 1)
    return torch.where(audio_mask[:, None], features, 0.0)


def audio_feature_count(n_mels: int, *, layout: str) -> int:
    """Width of :func:`fixed_audio_features` for ``layout``."""
    return n_mels * (4 if layout == "stats" else _AUDIO_TIME_BINS + 2)


def _floored_std(std: torch.Tensor) -> torch.Tensor:
    scale = float(std.mean()) if std.numel() else 0.0
    return std.clamp_min(_RELATIVE_STD_FLOOR * scale if scale > 0 else 1.0)


class LinearProbe(FusionModel):
    """See the module docstring. Heads: ``central``, ``visual``, ``audio``."""

    kind = "probe"
    uses_branches: torch.Tensor
    visual_mean: torch.Tensor
    visual_std: torch.Tensor
    audio_mean: torch.Tensor
    audio_std: torch.Tensor

    def __init__(self, *, vocab_size: int, config: FusionConfig) -> None:
        super().__init__(vocab_size=vocab_size, config=config)
        self.side = visual_side(config)
        self.visual = build_visual_branch(config)
        self.audio = AudioBranch(config)
        for param in (*self.visual.parameters(), *self.audio.parameters()):
            param.requires_grad_(False)
        self.visual.eval()
        self.audio.eval()
        self.register_buffer("uses_branches", torch.tensor(False))
        self._rebuild()

    @property
    def uses_visual_embedding(self) -> bool:
        return self.config.probe_visual == "embedding"

    def feature_dims(self) -> dict[str, int]:
        """Feature count per modality with the current ``uses_branches``."""
        visual = EMBEDDING_DIM if self.uses_visual_embedding else 3 * self.side * self.side
        audio = audio_feature_count(self.config.n_mels, layout=self.config.probe_audio)
        if bool(self.uses_branches):
            visual += self.visual.feature_dims[-1]
            audio += self.audio.feature_dims[-1]
        return {"visual": visual, "audio": audio}

    def _rebuild(self) -> None:
        """Heads (zero: undecided until fitted) and identity standardisation for the dims."""
        dims = self.feature_dims()
        device = self.uses_branches.device
        for name in ("visual", "audio"):
            self.register_buffer(f"{name}_mean", torch.zeros(dims[name], device=device))
            self.register_buffer(f"{name}_std", torch.ones(dims[name], device=device))
        inputs = {"central": dims["visual"] + dims["audio"], **dims}
        for name, width in inputs.items():
            head = nn.Linear(width, self.vocab_size, device=device)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
            self.heads[name] = head

    def head_parameters(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (K, D), bias (K,))`` of head ``name``, for the fit to write into."""
        head = self.heads[name]
        if not isinstance(head, nn.Linear):
            raise InvalidInput(f"head {name!r} is not nn.Linear", code="bad_head")
        return head.weight, head.bias

    def set_uses_branches(self, enabled: bool) -> None:
        """Append (or drop) the frozen branch embeddings; heads and standardisation restart,
        so the probe must be fitted again."""
        if bool(self.uses_branches) == enabled:
            return
        self.uses_branches.fill_(enabled)
        self._rebuild()

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The head and buffer widths depend on uses_branches: take the stored flag first, so a
        # probe fitted with branch embeddings loads into a freshly built one. Runs before the
        # children (the heads) load.
        flag = state_dict.get(prefix + "uses_branches")
        if isinstance(flag, torch.Tensor) and flag.numel() == 1:
            self.set_uses_branches(bool(flag))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def train(self, mode: bool = True) -> Self:
        """The branches stay in eval mode: they are fixed feature extractors."""
        super().train(mode)
        self.visual.eval()
        self.audio.eval()
        return self

    def forward(
        self,
        frames: torch.Tensor,
        logmel: torch.Tensor,
        audio_mask: torch.Tensor | None = None,
        *,
        visual_embedding: torch.Tensor | None = None,
    ) -> FusionOutput:
        """As ``FusionModel.forward``; ``visual_embedding`` ``(B, 1280)`` is read when
        ``uses_visual_embedding`` (None: computed from ``frames``, see the module docstring)."""
        mask = check_inputs(frames, logmel, audio_mask, config=self.config)
        raw = self._raw_features(frames, logmel, mask, visual_embedding)
        return self._fuse_raw(*raw, mask)

    def clip_features(
        self,
        frames: torch.Tensor,
        logmel: torch.Tensor,
        audio_mask: torch.Tensor | None = None,
        *,
        visual_embedding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw (unstandardised) features: visual ``(B, D_v)``, audio ``(B, D_a)`` (zero without
        audio), and the checked audio mask ``(B,)`` bool."""
        mask = check_inputs(frames, logmel, audio_mask, config=self.config)
        visual, audio = self._raw_features(frames, logmel, mask, visual_embedding)
        return visual, audio, mask

    def _visual_base(
        self, frames: torch.Tensor, visual_embedding: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.uses_visual_embedding:
            return fixed_visual_features(frames, side=self.side)
        if visual_embedding is None:
            # Imported here: only a caller without stored embeddings loads the encoder.
            from tagloop.features.visual_embedding import embed_frames

            visual_embedding = embed_frames(frames)
        if visual_embedding.shape != (frames.shape[0], EMBEDDING_DIM):
            raise InvalidInput(
                f"visual_embedding must be ({frames.shape[0]}, {EMBEDDING_DIM}), got "
                f"{tuple(visual_embedding.shape)}",
                code="bad_visual_embedding",
            )
        return visual_embedding.to(device=frames.device, dtype=torch.float32)

    def _raw_features(
        self,
        frames: torch.Tensor,
        logmel: torch.Tensor,
        audio_mask: torch.Tensor,
        visual_embedding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        visual = self._visual_base(frames, visual_embedding)
        audio = fixed_audio_features(
            logmel,
            audio_mask,
            std_floor=self.config.audio_std_floor,
            layout=self.config.probe_audio,
        )
        if bool(self.uses_branches):
            visual = torch.cat([visual, self.visual(frames)[-1]], dim=1)
            embedded = torch.where(audio_mask[:, None], self.audio(logmel, audio_mask)[-1], 0.0)
            audio = torch.cat([audio, embedded], dim=1)
        return visual, audio

    @torch.no_grad()
    def fit_standardisation(
        self, visual: torch.Tensor, audio: torch.Tensor, audio_mask: torch.Tensor
    ) -> None:
        """Set the buffers from raw training features ``(N, D_v)``, ``(N, D_a)``; the audio
        statistics come from clips with audio only (identity when there are none)."""
        self.visual_mean.copy_(visual.mean(dim=0))
        self.visual_std.copy_(_floored_std(visual.std(dim=0, unbiased=False)))
        present = audio[audio_mask]
        if present.shape[0]:
            self.audio_mean.copy_(present.mean(dim=0))
            self.audio_std.copy_(_floored_std(present.std(dim=0, unbiased=False)))
        else:
            self.audio_mean.zero_()
            self.audio_std.fill_(1.0)

    def standardise(
        self, visual: torch.Tensor, audio: torch.Tensor, audio_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised features; a clip without audio gets all-zero audio features (the
        training mean), so it adds nothing to the central logits but the visual evidence."""
        visual = (visual - self.visual_mean) / self.visual_std
        audio = torch.where(audio_mask[:, None], (audio - self.audio_mean) / self.audio_std, 0.0)
        return visual, audio

    def features(
        self,
        frames: torch.Tensor,
        logmel: torch.Tensor,
        audio_mask: torch.Tensor,
        *,
        visual_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The standardised features the central head reads, ``(B, D_v + D_a)``."""
        visual, audio = self.standardise(
            *self._raw_features(frames, logmel, audio_mask, visual_embedding), audio_mask
        )
        return torch.cat([visual, audio], dim=1)

    def fuse(
        self, frames: torch.Tensor, logmel: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        """frames ``(B, T, 3, H, W)`` uint8, logmel ``(B, n_mels, S)``, audio_mask ``(B,)``."""
        raw = self._raw_features(frames, logmel, audio_mask)
        return self._fuse_raw(*raw, audio_mask)

    def _fuse_raw(
        self, raw_visual: torch.Tensor, raw_audio: torch.Tensor, audio_mask: torch.Tensor
    ) -> FusionOutput:
        visual, audio = self.standardise(raw_visual, raw_audio, audio_mask)
        features = torch.cat([visual, audio], dim=1)
        return FusionOutput(
            logits=self.heads["central"](features),
            modality_logits={
                "visual": self.heads["visual"](visual),
                "audio": self.heads["audio"](audio),
            },
            embedding=features @ random_projection(features.shape[1], self.config.hidden_dim),
            modality_present={"visual": torch.ones_like(audio_mask), "audio": audio_mask},
        )
