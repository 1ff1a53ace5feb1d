"""Clip tensors: the model input stored per clip (frames, log-mel, audio mask).

Every clip gets the same tensor shapes, whatever its length, so the training loop can stack
clips into batches without padding logic: ``T`` frames sampled evenly (the extractor does
that) and a log-mel of exactly ``S = 1 + round(clip_seconds * sample_rate) // hop`` columns.
A shorter clip (a video shorter than one clip) is padded with the log floor, which is what
its missing stretch really is: no sound. A longer clip (a merged short tail, up to 1.5 clips)
keeps evenly spaced columns, like the frames, so every part of the clip stays represented
(25 ms windows at <= 15 ms spacing still overlap).
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass

import torch

from tagloop.errors import InvalidInput
from tagloop.features.logmel import LOG_FLOOR, compute_logmel, n_logmel_frames
from tagloop.media.extract import ClipMedia

_STORED_LOGMEL_DTYPE = torch.float16  # log-mel values lie in about [-14, 15]: fp16 is exact enough


@dataclass
class ClipTensors:
    """``frames`` ``(T, 3, H, W)`` uint8; ``logmel`` ``(n_mels, S)`` float16 or float32.

    ``audio_mask`` is False when the clip has no audio: ``logmel`` is then all zeros and must
    be ignored (a mask, not zeros that look like silence). ``visual_embedding`` ``(1280,)``
    float32: the pretrained visual encoder's embedding of the clip's keyframes, computed once
    at ingest (``features.visual_embedding``); None for a clip stored before it existed or
    ingested with ``visual_encoder="none"`` (``ensure_visual_embeddings`` fills it in then).
    """

    frames: torch.Tensor
    logmel: torch.Tensor
    audio_mask: bool
    visual_embedding: torch.Tensor | None = None


def logmel_frames_for(clip_seconds: float, *, sample_rate: int) -> int:
    """``S``, the fixed number of log-mel columns of every clip."""
    if not math.isfinite(clip_seconds) or clip_seconds <= 0:
        raise InvalidInput(f"clip_seconds must be > 0, got {clip_seconds}", code="invalid_clip")
    return n_logmel_frames(round(clip_seconds * sample_rate), sample_rate=sample_rate)


def fit_logmel(logmel: torch.Tensor, *, n_frames: int) -> torch.Tensor:
    """``(n_mels, S_in)`` -> ``(n_mels, n_frames)``: pad with the log floor or keep even columns."""
    s_in = logmel.shape[1]
    if s_in == n_frames:
        return logmel
    if s_in < n_frames:
        return torch.nn.functional.pad(logmel, (0, n_frames - s_in), value=math.log(LOG_FLOOR))
    index = ((torch.arange(n_frames, dtype=torch.float64) + 0.5) * s_in / n_frames).long()
    return logmel[:, index.clamp_max(s_in - 1)]


def build_clip_tensors(
    clip: ClipMedia,
    *,
    sample_rate: int,
    n_mels: int,
    clip_seconds: float,
    visual_embedding: torch.Tensor | None = None,
) -> ClipTensors:
    """Turn decoded clip media into model input; see the module docstring for the shapes.
    ``visual_embedding`` ``(1280,)``: the clip's keyframe embedding, stored as given."""
    n_frames = logmel_frames_for(clip_seconds, sample_rate=sample_rate)
    frames = torch.from_numpy(clip.frames.copy())
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise InvalidInput(
            f"frames must be (T, 3, H, W) uint8, got {tuple(frames.shape)} {frames.dtype}",
            code="invalid_frames",
        )
    if clip.audio is None:
        logmel = torch.zeros((n_mels, n_frames), dtype=_STORED_LOGMEL_DTYPE)
        return ClipTensors(
            frames=frames, logmel=logmel, audio_mask=False, visual_embedding=visual_embedding
        )
    logmel = compute_logmel(clip.audio, sample_rate=sample_rate, n_mels=n_mels)
    logmel = fit_logmel(logmel, n_frames=n_frames).to(_STORED_LOGMEL_DTYPE)
    return ClipTensors(
        frames=frames, logmel=logmel, audio_mask=True, visual_embedding=visual_embedding
    )


def dump_clip_tensors(tensors: ClipTensors) -> bytes:
    """Serialise for the blob store (``torch.save``; load with :func:`load_clip_tensors`)."""
    buffer = io.BytesIO()
    payload: dict[str, torch.Tensor | bool] = {
        "frames": tensors.frames.contiguous(),
        "logmel": tensors.logmel.contiguous(),
        "audio_mask": bool(tensors.audio_mask),
    }
    if tensors.visual_embedding is not None:
        payload["visual_embedding"] = tensors.visual_embedding.float().contiguous()
    torch.save(payload, buffer)
    return buffer.getvalue()


def load_clip_tensors(data: bytes) -> ClipTensors:
    """Inverse of :func:`dump_clip_tensors`; ``weights_only`` so a blob cannot run code."""
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        return ClipTensors(
            frames=payload["frames"],
            logmel=payload["logmel"],
            audio_mask=bool(payload["audio_mask"]),
            visual_embedding=payload.get("visual_embedding"),  # absent in older blobs
        )
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, EOFError, ValueError) as exc:
        raise InvalidInput(f"not a clip tensor blob: {exc}", code="invalid_tensor_blob") from exc
