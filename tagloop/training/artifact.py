"""A trained model as bytes for the model registry: weights plus everything to rebuild it.

Format: ``torch.save({"format": 1, "metadata_json": str, "state_dict": {...}})``. Only tensors
and strings, so :func:`load_artifact` reads it with ``weights_only=True`` and a stored artifact
cannot run code. The metadata holds the kind, the vocabulary (tags and groups, in column order),
the FusionConfig, the TrainOptions, the validation metrics and the learned fusion weights.
"""

from __future__ import annotations

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
    """model in eval mode; metadata: the whole stored metadata dict (options, metrics, ...)."""

    model: FusionModel
    kind: str
    vocab: TagVocabulary
    config: FusionConfig
    metadata: dict[str, Any]


def save_artifact(
    *,
    model: FusionModel,
    kind: str,
    vocab: TagVocabulary,
    config: FusionConfig,
    options: TrainOptions,
    metrics: dict[str, Any],
) -> bytes:
    """Serialise ``model`` with its metadata; ``metrics`` must be JSON-ready."""
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
    buffer = io.BytesIO()
    torch.save(
        {"format": ARTIFACT_FORMAT, "metadata_json": json.dumps(metadata), "state_dict": state},
        buffer,
    )
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
    return LoadedModel(model=model, kind=kind, vocab=vocab, config=config, metadata=metadata)
