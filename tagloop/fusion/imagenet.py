"""What the standard-network visual branches share (``resnet.py``, ``mobilenet.py``).

Each is a torchvision network rebuilt in plain torch under torchvision's parameter names, so a
checkpoint a user already has loads unchanged, minus its ImageNet classifier. This base gives
them the ImageNet input normalisation, the pooling to the fusion points, and BatchNorm that
stays in eval mode while the branch is frozen.
"""

from __future__ import annotations

from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from tagloop.fusion.base import VisualEncoder
from tagloop.fusion.config import STAGE_CHANNELS, FusionConfig

# The statistics torchvision's ImageNet weights were trained to expect (RGB, [0, 1] input).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetBranch(VisualEncoder):
    """A standard network as the visual branch; a subclass registers its layers under
    torchvision's names and implements :meth:`stages`.

    forward: frames ``(B, T, 3, H, W)`` uint8 RGB -> list over the last ``config.depth`` stages
    of ``(B, C_i * g * g)``, each stage average-pooled to the ``visual_grid`` and over time as
    ``VisualBranch`` does. A map smaller than the grid (layer4 of a ResNet at 32x32 frames is
    1x1) is repeated over it: these networks were trained on 224x224 images, so a larger
    ``frame_size`` suits them.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        channels = STAGE_CHANNELS[self.arch]
        self.depth = config.depth
        self.grid = config.visual_grid
        exposed = channels[len(channels) - self.depth :]
        self.feature_dims = [c * self.grid * self.grid for c in exposed]
        # Not persistent: the state dict holds torchvision's keys and nothing else.
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("pixel_std", std, persistent=False)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` normalised images -> the output of every stage, shallow first."""
        raise NotImplementedError

    @property
    def frozen(self) -> bool:
        """True when no parameter trains (``training.backbone.apply_backbone`` froze it)."""
        return not any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> Self:
        """As ``nn.Module.train``, but a frozen branch keeps its BatchNorm in eval mode.

        A pretrained checkpoint carries BN running statistics that belong to its weights. In
        train mode BN would normalise with the batch's statistics and overwrite the running
        ones, so a "frozen" branch would still drift, and every later ``model.train()`` (each
        epoch; anything that switches the whole model to train mode, e.g. for MC dropout)
        would do it again. Fine-tuned, BN trains as usual.
        """
        super().train(mode)
        if mode and self.frozen:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        batch, steps = frames.shape[:2]
        x = frames.flatten(0, 1).float().div_(255.0)
        x = (x - self.pixel_mean) / self.pixel_std
        pooled = []
        for feature_map in self.stages(x)[-self.depth :]:
            grid = F.adaptive_avg_pool2d(feature_map, self.grid)
            pooled.append(grid.flatten(1).view(batch, steps, -1).mean(dim=1))
        return pooled


def init_like_torchvision(net: nn.Module) -> None:
    """torchvision's conv initialisation, so training from scratch behaves as it would there
    (BatchNorm's default, weight 1 and bias 0, is already theirs)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
