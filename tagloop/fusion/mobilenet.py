"""MobileNetV2 in plain torch with torchvision's parameter names, usable as the visual branch.

``MobileNetV2().state_dict()`` has the keys and shapes of ``torchvision.models.mobilenet_v2()``
(``features.0.0`` ... ``features.18.1``, ``classifier.1``), so a torchvision checkpoint loads
unchanged without torchvision. ``MobileNetV2VisualBranch`` leaves out the ImageNet classifier
and fuses after the last ``config.depth`` of four stages: the last block at each output
stride, ``features.3`` (24 channels, stride 4), ``.6`` (32, 8), ``.13`` (96, 16) and ``.18``
(1280, 32); see ``imagenet.ImageNetBranch``.
"""

from __future__ import annotations

import torch
from torch import nn

from tagloop.fusion.config import FusionConfig
from tagloop.fusion.imagenet import ImageNetBranch, init_like_torchvision

# torchvision's inverted residual settings: expansion t, channels c, repeats n, first stride s.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM, _LAST = 32, 1280
# Indices in ``features`` of each stage's last block (the tapped outputs); their widths are
# config.STAGE_CHANNELS["mobilenet_v2"].
_TAPS = (3, 6, 13, 18)


def conv_bn_relu6(
    in_channels: int, out_channels: int, *, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with ReLU6: keys ``0`` (conv), ``1`` (BN)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=(kernel - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """torchvision's block: 1x1 expand (skipped when t = 1), 3x3 depthwise, 1x1 linear
    projection + BN, all in ``self.conv``; a residual when shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2_features() -> nn.Sequential:
    """``features``: stem, 17 inverted residual blocks, the 1x1 conv to 1280 channels."""
    layers: list[nn.Module] = [conv_bn_relu6(3, _STEM, stride=2)]
    width = _STEM
    for expand, channels, repeats, stride in _SETTINGS:
        for i in range(repeats):
            layers.append(
                InvertedResidual(width, channels, stride=stride if i == 0 else 1, expand=expand)
            )
            width = channels
    layers.append(conv_bn_relu6(width, _LAST, kernel=1))
    return nn.Sequential(*layers)


def mobilenet_v2_stages(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """``(N, 3, H, W)`` normalised images -> the four tapped outputs (strides 4, 8, 16, 32)."""
    out = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in _TAPS:
            out.append(x)
    return out


class MobileNetV2(nn.Module):
    """The whole torchvision ``mobilenet_v2`` (with ``classifier``): ``(N, 3, H, W) ->
    (N, classes)``. Tests and tools use it to write a torchvision-layout checkpoint."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = mobilenet_v2_features()
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(_LAST, num_classes))
        init_like_torchvision(self)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return mobilenet_v2_stages(self.features, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(x)[-1].mean(dim=(2, 3)))


class MobileNetV2VisualBranch(ImageNetBranch):
    """MobileNetV2 without ``classifier`` as a drop-in for ``VisualBranch``."""

    arch = "mobilenet_v2"

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        self.features = mobilenet_v2_features()
        init_like_torchvision(self)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return mobilenet_v2_stages(self.features, x)
