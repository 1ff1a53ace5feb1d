"""Build a fusion model by kind, grow its vocabulary, switch on MC dropout."""

from __future__ import annotations

import copy

import torch
from torch import nn

from tagloop.errors import InvalidInput
from tagloop.fusion.base import FusionModel
from tagloop.fusion.baseline import AudioOnly, ConcatFusion, LateFusion, VisualOnly
from tagloop.fusion.centralnet import CentralNet
from tagloop.fusion.config import MODEL_KINDS, FusionConfig
from tagloop.fusion.probe import LinearProbe

_MODELS: dict[str, type[FusionModel]] = {
    "centralnet": CentralNet,
    "visual": VisualOnly,
    "audio": AudioOnly,
    "concat": ConcatFusion,
    "late": LateFusion,
    "probe": LinearProbe,
}


def build_model(kind: str, *, vocab_size: int, config: FusionConfig) -> FusionModel:
    """A fresh model of ``kind`` (one of MODEL_KINDS) with ``vocab_size`` output columns."""
    if kind not in _MODELS:
        raise InvalidInput(
            f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}",
            code="unknown_model_kind",
        )
    return _MODELS[kind](vocab_size=vocab_size, config=config)


def resize_heads(model: FusionModel, *, old_vocab_size: int, new_vocab_size: int) -> FusionModel:
    """A copy of ``model`` whose heads have ``new_vocab_size`` rows; ``model`` is untouched.

    Old rows and every other weight are copied, so old columns' logits are unchanged (up to float
    rounding: a wider matmul may sum in another order). New rows
    start at zero (weight and bias): a new tag starts with logit 0 everywhere, i.e. the model is
    undecided about it until it has labels. Caveat: a new tag that joins an existing group adds
    an entry to that group's softmax, so the old tags' logits stay but their probabilities
    shrink.
    """
    if model.vocab_size != old_vocab_size:
        raise InvalidInput(
            f"model has {model.vocab_size} tags, not {old_vocab_size}", code="vocab_mismatch"
        )
    if new_vocab_size < old_vocab_size:
        # Columns are positional (tagloop.vocabulary): dropping one would shift the rest.
        raise InvalidInput(
            f"the vocabulary can only grow ({old_vocab_size} -> {new_vocab_size})",
            code="vocab_shrink",
        )
    grown = copy.deepcopy(model)
    for name, head in model.heads.items():
        if not isinstance(head, nn.Linear):
            raise InvalidInput(f"head {name!r} is not nn.Linear", code="bad_head")
        new_head = nn.Linear(
            head.in_features, new_vocab_size, device=head.weight.device, dtype=head.weight.dtype
        )
        with torch.no_grad():
            new_head.weight.zero_()
            new_head.bias.zero_()
            new_head.weight[:old_vocab_size] = head.weight
            new_head.bias[:old_vocab_size] = head.bias
        grown.heads[name] = new_head
    grown.vocab_size = new_vocab_size
    return grown


def enable_mc_dropout(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode except its dropout layers, for MC-dropout sampling (BALD).

    Returns the same module (mode flags are state, not weights). The branches use GroupNorm,
    so plain ``model.train()`` would also be safe; this keeps any future batch-dependent layer
    in inference mode.
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.train()
    return model
