"""Fusion models: CentralNet and its baselines. nn.Module code only (no I/O).

``build_model(kind, vocab_size=..., config=FusionConfig())`` gives any of MODEL_KINDS; every
model maps ``frames (B, T, 3, H, W) uint8, logmel (B, n_mels, S), audio_mask (B,) bool`` to a
``FusionOutput``.
"""

from tagloop.fusion.base import FusionModel, FusionOutput
from tagloop.fusion.config import MODALITIES, MODEL_KINDS, FusionConfig
from tagloop.fusion.factory import build_model, enable_mc_dropout, resize_heads
from tagloop.fusion.probe import LinearProbe

__all__ = [
    "MODALITIES",
    "MODEL_KINDS",
    "FusionConfig",
    "FusionModel",
    "FusionOutput",
    "LinearProbe",
    "build_model",
    "enable_mc_dropout",
    "resize_heads",
]
