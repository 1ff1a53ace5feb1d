"""The two unimodal CNN branches; each returns one pooled feature vector per conv block.

``build_visual_branch`` picks the visual one by ``config.visual_arch``: this module's CNN
("conv") or a standard network that loads torchvision checkpoints (``resnet``, ``mobilenet``).

Blocks are a stride-2 conv3x3 -> GroupNorm -> ReLU. The strided conv replaces conv + max pool:
on 2 CPU cores it made a CentralNet training step about 3x cheaper. GroupNorm rather than
BatchNorm: it does not depend on the batch, so a sample's output does not change with its
batch mates, a masked sample cannot leak into others through batch statistics, and MC dropout
(BALD) can put the model in train mode without switching to noisy batch statistics.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from tagloop.fusion.base import VisualEncoder
from tagloop.fusion.config import FusionConfig
from tagloop.fusion.mobilenet import MobileNetV2VisualBranch
from tagloop.fusion.resnet import ResNetVisualBranch

# Fixed affine normalisation of uint8 frames; roughly centres natural images around 0.
_PIXEL_MEAN = 0.45
_PIXEL_STD = 0.25


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Stride-2 conv3x3 + GroupNorm + ReLU: ``(N, Cin, H, W) -> (N, Cout, H', W')``.

    ``H' = ceil(H / 2)``, ``W' = ceil(W / 2)``, so no size ever reaches 0.
    """
    groups = 8 if out_channels % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
    )


def build_visual_branch(config: FusionConfig) -> VisualEncoder:
    """The visual branch ``config.visual_arch`` names, freshly initialised."""
    if config.visual_arch == "resnet18":
        return ResNetVisualBranch(config)
    if config.visual_arch == "mobilenet_v2":
        return MobileNetV2VisualBranch(config)
    return VisualBranch(config)


class VisualBranch(VisualEncoder):
    """Per-frame 2D CNN, pooled over space (to a grid) and over time (mean).

    forward: frames ``(B, T, 3, H, W)`` uint8 -> list over blocks of ``(B, C_i * g * g)``.
    """

    arch = "conv"

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        channels = (3, *config.visual_channels)
        self.blocks = nn.ModuleList(
            conv_block(c_in, c_out) for c_in, c_out in itertools.pairwise(channels)
        )
        self.grid = config.visual_grid
        self.feature_dims = [c * self.grid * self.grid for c in config.visual_channels]

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        batch, steps = frames.shape[:2]
        x = frames.flatten(0, 1).float().div_(255.0).sub_(_PIXEL_MEAN).div_(_PIXEL_STD)
        pooled = []
        for block in self.blocks:
            x = block(x)
            # A map smaller than the grid (tiny frames, deep nets) is upsampled by the pool.
            grid = F.adaptive_avg_pool2d(x, self.grid)
            pooled.append(grid.flatten(1).view(batch, steps, -1).mean(dim=1))
        return pooled


class AudioBranch(nn.Module):
    """2D CNN over the log-mel, max-pooled over time, keeping the frequency axis.

    forward: logmel ``(B, n_mels, S)``, audio_mask ``(B,)`` bool -> list over blocks of
    ``(B, C_i * F_i)`` with ``F_i = ceil(n_mels / 2**(i+1))``. Pooling over frequency too would
    throw away which band carries the energy, which is most of what the audio says here.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        channels = (1, *config.audio_channels)
        self.blocks = nn.ModuleList(
            conv_block(c_in, c_out) for c_in, c_out in itertools.pairwise(channels)
        )
        self.std_floor = config.audio_std_floor
        bands = []
        height = config.n_mels
        for _ in config.audio_channels:
            height = (height + 1) // 2
            bands.append(height)
        self.feature_dims = [c * f for c, f in zip(config.audio_channels, bands, strict=True)]

    def forward(self, logmel: torch.Tensor, audio_mask: torch.Tensor) -> list[torch.Tensor]:
        # Clips without audio get an all-zero input, whatever their tensor holds (even NaN).
        x = torch.where(audio_mask[:, None, None], logmel.float(), 0.0)
        mean = x.mean(dim=(1, 2), keepdim=True)
        std = x.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(self.std_floor)
        x = ((x - mean) / std).unsqueeze(1)
        pooled = []
        for block in self.blocks:
            x = block(x)
            pooled.append(x.amax(dim=3).flatten(1))
        return pooled
