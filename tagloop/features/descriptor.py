"""Cheap clip descriptors for the seed round, before any model exists (pure torch/numpy)."""

from __future__ import annotations

import numpy as np
import torch

from tagloop.features.clip_tensor import ClipTensors

GRID = 4


def describe_clip(tensors: ClipTensors) -> np.ndarray:
    """``(3 * GRID * GRID + n_mels + 1,)`` float32: the mean frame's colour layout on a 4x4
    grid, the mean loudness per mel band, and whether there is audio at all."""
    frames = tensors.frames.float().mean(dim=0) / 255.0  # (3, H, W)
    layout = torch.nn.functional.adaptive_avg_pool2d(frames[None], GRID)[0].flatten()
    if tensors.audio_mask:
        bands = tensors.logmel.float().mean(dim=1)
    else:
        bands = torch.zeros(tensors.logmel.shape[0])
    has_audio = torch.tensor([1.0 if tensors.audio_mask else 0.0])
    return torch.cat([layout, bands, has_audio]).numpy().astype(np.float32)
