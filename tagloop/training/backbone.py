"""Branch weights from local files: start the visual or audio branch from a checkpoint a user
already has (a pretraining run, another tagloop model), frozen or fine-tuned.

Nothing is downloaded: a path that does not exist, a file torch cannot read, or weights that
do not fit the branch fail at once with an error naming the path and what did not fit.
A checkpoint may hold the branch's own keys (``blocks.0.0.weight``), a whole model's
(``visual.blocks.0.0.weight``), either under ``"state_dict"`` or ``"model"``, and with the
``module.`` prefix DataParallel adds. For ``visual_arch="resnet18"`` / ``"mobilenet_v2"`` that
includes a torchvision state dict as saved: its ImageNet classifier (``fc.*``, ``classifier.*``)
is not used, and files from before BatchNorm counted batches (no ``num_batches_tracked``) load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tagloop.errors import InvalidInput

BRANCHES = ("visual", "audio")
# A key only that visual_arch's checkpoints have: tells a user which arch a file is for.
_ARCH_SIGNATURES = {
    "conv": "blocks.0.0.weight",
    "resnet18": "layer1.0.conv1.weight",
    "mobilenet_v2": "features.1.conv.0.0.weight",
}
_DATA_PARALLEL = "module."


@dataclass(frozen=True)
class Backbone:
    """Local weight files per branch (None: from scratch) and whether they stay frozen."""

    visual: Path | None = None
    audio: Path | None = None
    freeze: bool = False
    # Set when both files are a local copy of a pretraining run's artifact: the version's
    # config then names the run, not a cache path that differs from machine to machine.
    pretrain_job: int | None = None

    def describe(self) -> dict[str, Any]:
        """What a version started from, for its config (the Models page shows it)."""
        if self.pretrain_job is not None:
            return {"pretrain_job": self.pretrain_job, "frozen": self.freeze}
        return {
            "visual": str(self.visual) if self.visual else None,
            "audio": str(self.audio) if self.audio else None,
            "frozen": self.freeze,
        }

    def __bool__(self) -> bool:
        return self.visual is not None or self.audio is not None


def read_branch_state(path: Path, *, branch: str) -> dict[str, torch.Tensor]:
    """The ``branch`` tensors of the checkpoint at ``path``."""
    if not path.is_file():
        raise InvalidInput(
            f"{branch} weights not found at {path} (a local file is needed; nothing is downloaded)",
            code="weights_not_found",
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise InvalidInput(
            f"cannot read {path} as a torch checkpoint: {type(exc).__name__}: {exc}"[:500],
            code="weights_unreadable",
        ) from exc
    for wrapper in ("state_dict", "model"):  # training scripts nest it next to their state
        if isinstance(payload, dict) and isinstance(payload.get(wrapper), dict):
            payload = payload[wrapper]
            break
    if not isinstance(payload, dict):
        raise InvalidInput(f"{path} holds no state dict", code="weights_unreadable")
    if payload and all(str(k).startswith(_DATA_PARALLEL) for k in payload):
        payload = {k[len(_DATA_PARALLEL) :]: v for k, v in payload.items()}
    prefix = f"{branch}."
    own = {k[len(prefix) :]: v for k, v in payload.items() if k.startswith(prefix)}
    return own or {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}


def checkpoint_arch(state: dict[str, torch.Tensor]) -> str | None:
    """The visual_arch whose layout ``state`` has, None when it has none of them."""
    return next((arch for arch, key in _ARCH_SIGNATURES.items() if key in state), None)


def load_branch(module: nn.Module, state: dict[str, torch.Tensor], *, path: Path) -> None:
    """Copy ``state`` into ``module``; ``weights_mismatch`` names missing keys and shapes, and
    for a visual branch the arch the file looks made for when that is another one.

    Keys the branch lacks (a classifier, the other branch, heads) are not used.
    """
    expected = module.state_dict()
    state = dict(state)
    for key, value in expected.items():
        # BatchNorm's batch counter only matters for momentum=None; old files lack it.
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = sorted(set(expected) - set(state))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    if missing or shapes:
        detail = "; ".join(
            ([f"missing {', '.join(missing[:5])}"] if missing else [])
            + ([f"shapes {', '.join(shapes[:5])}"] if shapes else [])
        )
        arch = getattr(module, "arch", None)
        found = checkpoint_arch(state)
        if arch and found and found != arch:
            detail += (
                f"; this branch is visual_arch={arch!r} but the file looks like a {found!r}"
                f" checkpoint: set visual_arch={found!r} (TAGLOOP_VISUAL_ARCH)"
            )
        raise InvalidInput(
            f"the weights in {path} do not fit this model's branch ({detail})",
            code="weights_mismatch",
        )
    module.load_state_dict({k: state[k] for k in expected})


def apply_backbone(model: nn.Module, backbone: Backbone, *, load: bool) -> None:
    """Load the branch weights (``load``: a fresh model, not a warm start, which already has
    them) and freeze those branches if asked."""
    for name in BRANCHES:
        path = getattr(backbone, name)
        if path is None:
            continue
        module = getattr(model, name, None)
        if not isinstance(module, nn.Module):
            raise InvalidInput(
                f"this model kind has no {name} branch for the weights in {path}",
                code="no_such_branch",
            )
        if load:
            load_branch(module, read_branch_state(path, branch=name), path=path)
        if backbone.freeze:
            for param in module.parameters():
                param.requires_grad_(False)
