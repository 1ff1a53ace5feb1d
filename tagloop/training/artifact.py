"""A trained model as bytes for the model registry: weights plus everything to rebuild it.

Format: ``torch.save({"format": 1, "metadata_json": str, "state_dict": {...}})``, and for a
refit probe ``"judged_state"``: the tensors in which the validation fit (the model promotion
compares on validation clips) differs from the served one. Only tensors and strings, so
:func:`load_artifact` reads it with ``weights_only=True`` and a stored artifact cannot run
code. The metadata holds the kind, the vocabulary (tags and groups, in column order), the
FusionConfig, the TrainOptions, the validation metrics and the learned fusion weights.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
from dataclasses import dataclass
from typing import Any

import torch

from tagloop.errors import InvalidInput
from tagloop.fusion import FusionConfig, FusionModel, build_model
from tagloop.training.loop import TrainOptions
from tagloop.vocabulary import TagVocabulary

ARTIFACT_FORMAT = 1


@dataclass
class LoadedModel:
    """model in eval mode; metadata: the whole stored metadata dict (options, metrics, ...).
    judged_state: the stored tensors in which a refit probe's validation fit differs from
    ``model`` (None: no such fit); ``judged`` builds that model on first use only, since
    scoring and prediction, which load every promoted artifact, never need it."""

    model: FusionModel
    kind: str
    vocab: TagVocabulary
    config: FusionConfig
    metadata: dict[str, Any]
    judged_state: dict[str, torch.Tensor] | None = None

    @functools.cached_property
    def judged(self) -> FusionModel | None:
        """The validation fit of a refit probe (``TrainResult.judged``), else None."""
        if self.judged_state is None:
            return None
        judged = build_model(self.kind, vocab_size=len(self.vocab), config=self.config)
        try:
            judged.load_state_dict({**self.model.state_dict(), **self.judged_state})
        except (RuntimeError, KeyError) as exc:
            raise InvalidInput(f"not a model artifact: {exc}", code="invalid_artifact") from exc
        return judged.eval()

    @property
    def validation_model(self) -> FusionModel:
        """The version's model that never saw its validation clips."""
        return self.judged if self.judged is not None else self.model


def save_artifact(
    *,
    model: FusionModel,
    kind: str,
    vocab: TagVocabulary,
    config: FusionConfig,
    options: TrainOptions,
    metrics: dict[str, Any],
    judged: FusionModel | None = None,
) -> bytes:
    """Serialise ``model`` with its metadata; ``metrics`` must be JSON-ready. ``judged``: the
    validation fit of a refit probe, stored as its difference from ``model``."""
    if model.vocab_size != len(vocab):
        raise InvalidInput(
            f"model has {model.vocab_size} outputs, vocabulary {len(vocab)}",
            code="vocab_mismatch",
        )
    metadata = {
        "kind": kind,
        "vocab": vocab.to_json(),
        "config": config.to_dict(),
        "options": options.to_dict(),
        "metrics": metrics,
        "fusion_weights": model.fusion_weights(),
        "torch_version": torch.__version__,
    }
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    payload: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "metadata_json": json.dumps(metadata),
        "state_dict": state,
    }
    if judged is not None:
        # Only what differs (heads, standardisation): the frozen branches are the same.
        payload["judged_state"] = {
            name: tensor.detach().cpu().contiguous()
            for name, tensor in judged.state_dict().items()
            if name not in state or not torch.equal(tensor.detach().cpu(), state[name])
        }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def load_artifact(data: bytes) -> LoadedModel:
    """Inverse of :func:`save_artifact`; InvalidInput(code="invalid_artifact") on bad bytes."""
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        if payload.get("format") != ARTIFACT_FORMAT:
            raise InvalidInput(
                f"unsupported artifact format {payload.get('format')!r}", code="invalid_artifact"
            )
        metadata = json.loads(payload["metadata_json"])
        kind = str(metadata["kind"])
        vocab = TagVocabulary.from_json(metadata["vocab"])
        config = FusionConfig.from_dict(metadata["config"])
        model = build_model(kind, vocab_size=len(vocab), config=config)
        model.load_state_dict(payload["state_dict"])
    except InvalidInput:
        raise
    except (
        pickle.UnpicklingError,
        RuntimeError,
        KeyError,
        TypeError,
        EOFError,
        ValueError,
        AttributeError,
    ) as exc:
        raise InvalidInput(f"not a model artifact: {exc}", code="invalid_artifact") from exc
    model.eval()
    return LoadedModel(
        model=model,
        kind=kind,
        vocab=vocab,
        config=config,
        metadata=metadata,
        judged_state=payload.get("judged_state"),
    )
