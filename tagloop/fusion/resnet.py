"""ResNet-18 in plain torch with torchvision's parameter names, usable as the visual branch.

``ResNet18().state_dict()`` has exactly the keys and shapes of ``torchvision.models.resnet18()``
(``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``layer2.0.downsample.0``/``.1`` ... ``fc``), so a
``torch.save(torchvision_model.state_dict())`` file a user already has loads unchanged, and
torchvision is not needed (it is not a dependency; nothing is downloaded).

``ResNetVisualBranch`` is the same network without the ImageNet classifier (``fc``): the
checkpoint's ``fc.*`` are left out when it loads. It fuses after the last ``config.depth`` of
the four stages (layer2-4 at the default depth 3); see ``imagenet.ImageNetBranch``.
"""

from __future__ import annotations

import torch
from torch import nn

from tagloop.fusion.config import STAGE_CHANNELS, FusionConfig
from tagloop.fusion.imagenet import ImageNetBranch, init_like_torchvision

_CHANNELS = STAGE_CHANNELS["resnet18"]


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two conv3x3 + BN, a residual, a 1x1 downsample when the
    stride or width changes. ``(N, Cin, H, W) -> (N, Cout, ceil(H / stride), ...)``."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def add_resnet18_layers(net: nn.Module) -> None:
    """Register the stem and the four stages (two blocks each) on ``net``, named as in
    torchvision (the registration order is the state dict's order)."""
    net.conv1 = nn.Conv2d(3, _CHANNELS[0], 7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(_CHANNELS[0])
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    widths = (_CHANNELS[0], *_CHANNELS)
    for i in range(4):
        stage = nn.Sequential(
            BasicBlock(widths[i], widths[i + 1], stride=1 if i == 0 else 2),
            BasicBlock(widths[i + 1], widths[i + 1], stride=1),
        )
        net.add_module(f"layer{i + 1}", stage)
    init_like_torchvision(net)


def resnet18_stages(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """``(N, 3, H, W)`` normalised images -> layer1-4's outputs (strides 4, 8, 16, 32)."""
    for name in ("conv1", "bn1", "relu", "maxpool"):
        x = net.get_submodule(name)(x)
    out = []
    for i in range(1, 5):
        x = net.get_submodule(f"layer{i}")(x)
        out.append(x)
    return out


class ResNet18(nn.Module):
    """The whole torchvision ``resnet18`` (with ``fc``): ``(N, 3, H, W) -> (N, classes)``.
    Tests and tools use it to write a torchvision-layout checkpoint without torchvision."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        add_resnet18_layers(self)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(_CHANNELS[-1], num_classes)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return resnet18_stages(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.stages(x)[-1]).flatten(1))


class ResNetVisualBranch(ImageNetBranch):
    """ResNet-18 without ``fc`` as a drop-in for ``VisualBranch`` (see the module docstring)."""

    arch = "resnet18"

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        add_resnet18_layers(self)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return resnet18_stages(self, x)
