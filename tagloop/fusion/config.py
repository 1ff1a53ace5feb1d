"""FusionConfig: every size a fusion model is built from, JSON round-trippable.

A model version stores ``config.to_dict()`` next to its weights; ``FusionConfig.from_dict`` plus
``build_model(kind, vocab_size=..., config=...)`` rebuilds the same architecture. The defaults
are sized for 2 CPU cores: 8 frames of 32x32, a 64-band log-mel, 16-32-64 channel CNNs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from tagloop.errors import InvalidInput

MODALITIES: tuple[str, ...] = ("visual", "audio")
MODEL_KINDS: tuple[str, ...] = ("centralnet", "visual", "audio", "concat", "late", "probe")
# Visual branch architectures: tagloop's own small CNN, or a standard network laid out like
# torchvision's so a checkpoint a user already has loads unchanged (resnet.py, mobilenet.py).
VISUAL_ARCHS: tuple[str, ...] = ("conv", "resnet18", "mobilenet_v2")
# Output channels of each stage of the standard networks; a config exposes the last ``depth``.
# What the linear probe reads as its visual features: the stored pretrained embedding of each
# clip (features/visual_embedding.py) or the pooled pixels (the fixed-features floor).
PROBE_VISUALS: tuple[str, ...] = ("embedding", "pixels")
PROBE_AUDIOS: tuple[str, ...] = ("bins", "stats")
STAGE_CHANNELS: dict[str, tuple[int, ...]] = {
    "resnet18": (64, 128, 256, 512),
    "mobilenet_v2": (24, 32, 96, 1280),
}


@dataclass(frozen=True)
class FusionConfig:
    """Architecture and input sizes of a fusion model.

    frames_per_clip, frame_size and n_mels describe the clip tensors the model was trained on
    (frames ``(B, T, 3, frame_size, frame_size)``, log-mel ``(B, n_mels, S)``); frame_size and
    n_mels are checked on every forward, T and S may vary (both are pooled away).
    """

    frames_per_clip: int = 8
    frame_size: int = 32
    n_mels: int = 64
    visual_channels: tuple[int, ...] = (16, 32, 64)
    audio_channels: tuple[int, ...] = (16, 32, 64)
    hidden_dim: int = 128
    dropout: float = 0.2
    # Visual maps are average-pooled to a grid x grid layout (not to 1x1) so where a stroke
    # sits in the frame survives pooling.
    visual_grid: int = 2
    # Per-clip log-mel standardisation divides by max(std, floor) so a silent clip stays flat
    # instead of having its noise floor blown up to unit variance.
    audio_std_floor: float = 1.0
    # CentralNet: the least weight any present term gets in each mix (see centralnet.py).
    alpha_floor: float = 0.1
    # One of VISUAL_ARCHS. For a standard network (resnet18, mobilenet_v2) ``visual_channels``
    # only sets how many of its stages feed the fusion (the last ``depth``, at most 4); it is
    # rewritten to those stages' widths so a stored config says what the model is. Such a
    # backbone was trained on 224x224 images: 32x32 frames work, a larger frame_size suits it.
    visual_arch: str = "conv"
    # The probe's visual features, one of PROBE_VISUALS (see fusion/probe.py); other kinds
    # ignore it.
    probe_visual: str = "embedding"
    # The probe's audio features, one of PROBE_AUDIOS: "bins" (log-mel pooled to time bins,
    # plus each band's mean and std) or "stats" (each band's mean, std, min and max: blind to
    # when in the clip a sound starts). Other kinds ignore it.
    probe_audio: str = "bins"

    def __post_init__(self) -> None:
        positive = {
            "frames_per_clip": self.frames_per_clip,
            "frame_size": self.frame_size,
            "n_mels": self.n_mels,
            "hidden_dim": self.hidden_dim,
            "visual_grid": self.visual_grid,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {value}", code="bad_fusion_config")
        if not self.visual_channels or not self.audio_channels:
            raise InvalidInput("channel lists must not be empty", code="bad_fusion_config")
        if len(self.visual_channels) != len(self.audio_channels):
            # CentralNet fuses after every block, so both branches need the same depth.
            raise InvalidInput(
                "visual_channels and audio_channels need the same length", code="bad_fusion_config"
            )
        if any(c < 1 for c in (*self.visual_channels, *self.audio_channels)):
            raise InvalidInput("channel counts must be >= 1", code="bad_fusion_config")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInput(
                f"dropout must be in [0, 1), got {self.dropout}", code="bad_fusion_config"
            )
        if not 0.0 <= self.alpha_floor < 1.0 / 3.0:
            # Up to three terms per mix: three floors must leave the softmax something.
            raise InvalidInput("alpha_floor must be in [0, 1/3)", code="bad_fusion_config")
        if self.audio_std_floor <= 0.0:
            raise InvalidInput("audio_std_floor must be > 0", code="bad_fusion_config")
        if self.visual_arch not in VISUAL_ARCHS:
            raise InvalidInput(
                f"visual_arch must be one of {', '.join(VISUAL_ARCHS)}, got {self.visual_arch!r}",
                code="bad_fusion_config",
            )
        if self.probe_audio not in PROBE_AUDIOS:
            raise InvalidInput(
                f"probe_audio must be one of {', '.join(PROBE_AUDIOS)}, got {self.probe_audio!r}",
                code="bad_fusion_config",
            )
        if self.probe_visual not in PROBE_VISUALS:
            raise InvalidInput(
                f"probe_visual must be one of {', '.join(PROBE_VISUALS)}, got "
                f"{self.probe_visual!r}",
                code="bad_fusion_config",
            )
        stages = STAGE_CHANNELS.get(self.visual_arch)
        if stages is not None:
            if self.depth > len(stages):
                raise InvalidInput(
                    f"{self.visual_arch} has {len(stages)} stages to fuse after, so the branches"
                    f" can be at most {len(stages)} blocks deep, got {self.depth}",
                    code="bad_fusion_config",
                )
            # Frozen dataclass: __post_init__ is the one place it may set a field.
            object.__setattr__(self, "visual_channels", stages[len(stages) - self.depth :])

    @property
    def depth(self) -> int:
        """Number of conv blocks per branch, i.e. of CentralNet fusion points."""
        return len(self.visual_channels)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        out["visual_channels"] = list(self.visual_channels)
        out["audio_channels"] = list(self.audio_channels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionConfig:
        """Inverse of ``to_dict``; missing keys take their defaults, unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"unknown FusionConfig keys: {', '.join(unknown)}", code="bad_fusion_config"
            )
        values = dict(data)
        # Versions stored before the floor existed were trained (and must predict) without it.
        values.setdefault("alpha_floor", 0.0)
        # ... and probes stored before the pretrained embedding read pixels.
        values.setdefault("probe_visual", "pixels")
        for key in ("visual_channels", "audio_channels"):
            if key in values:
                values[key] = tuple(int(c) for c in values[key])
        return cls(**values)
