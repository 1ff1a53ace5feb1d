"""A clip's visual embedding: frozen ImageNet EfficientNet-Lite0 features of a few keyframes.

``embed_keyframes(keyframes)`` maps ``(K, 3, H, W)`` uint8 RGB to ``(1280,)`` float32: each
keyframe resized to ``EMBED_SIDE`` square (bilinear), scaled to [-1, 1] (what the weights were
trained on: ImageNet mean/std halved the ImageNet superclass probability on CIFAR photos),
the network's globally average-pooled head features, averaged over keyframes.
``embed_clips`` does the same for a batch of clips, ``(B, K, 3, H, W)`` -> ``(B, 1280)``.

The media worker embeds every clip once at ingest, from ``KEYFRAMES`` frames decoded from the
source video straight at ``EMBED_SIDE`` (short side scaled, centre crop; never from the small
model frames), and stores the vector in the clip tensor file. A clip stored before that
(or a rendered clip with no video behind it) gets it from its model frames instead
(:func:`keyframes_from_frames`): the same network, a blurrier input.

R and K, measured by ``tests/benchmarks/bench_embed.py`` (CIFAR-10 photos upscaled to 48 px
and panned across 1-s 64x64 H.264 clips; logistic regression on 400 train / 300 test clips;
clips/s of one thread through ``iter_clip_media`` (decode, 8 model frames, preview,
thumbnail, keyframes) plus the embedding, as CPU time of the process, then wall clock on a
2-core machine shared at load 7-12, which inflates the wall clock 3-5x):

    R    K   probe acc   clips/s CPU (wall)
    96   1   0.610       27.7 (6.1)
    96   2     -         23.0 (3.9)
    128  1   0.633       29.6 (10.3)
    128  2   0.640       22.6 (5.8)
    128  4     -         15.2 (5.3)
    160  1     -         25.0 (7.8)
    160  2     -         18.1 (7.1)
    224  1     -         19.7 (6.3)
    224  2     -         13.1 (5.4)     <- chosen
    224  4     -          7.6 (2.5)
    extraction alone     69.6 (21.0)

Those photos fill three quarters of the frame. On AV-CIFAR, where a 32-px photograph drifts
over a 64x64 frame (a small object, as in most real footage), the side matters more: object
accuracy of the same probe on 200 / 400 labelled pool clips, 400 test clips (seed 0, two
keyframes at 0.2 s and 0.7 s of the rendered clip, standardised, C=0.01): R=128 0.33 / 0.43,
R=160 0.38 / 0.48, R=224 0.42 / 0.50 (100 ms of CPU per clip at 224 against 30 at 128). The
side is 224, the network's own: seeing the object is worth the 3x embedding cost, which still
leaves a worker above 10 clips/s of CPU. Two keyframes cover a clip's change at 24% more cost
than one (on AV-CIFAR at 224: 0.42 with one, 0.42-0.45 with two, 0.46-0.48 with five).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from tagloop.errors import InvalidInput
from tagloop.fusion.efficientnet_lite import (
    EMBEDDING_DIM,
    ENCODER_NAME,
    EfficientNetLite0,
    load_efficientnet_lite0,
    locate_weights,
)

if TYPE_CHECKING:
    from tagloop.features.clip_tensor import ClipTensors

__all__ = [
    "EMBEDDING_DIM",
    "EMBED_SIDE",
    "ENCODER_NAME",
    "KEYFRAMES",
    "embed_clips",
    "embed_frames",
    "embed_keyframes",
    "ensure_visual_embeddings",
    "keyframes_from_frames",
    "visual_encoder",
]

EMBED_SIDE = 224
KEYFRAMES = 2
_BATCH_IMAGES = 64

# One network per process and weights file: a worker loads it on its first clip (about
# 0.3 s) and keeps it; 19 MB of weights.
_ENCODERS: dict[Path | None, EfficientNetLite0] = {}
_LOCK = threading.Lock()


def visual_encoder(*, weights: Path | None = None) -> EfficientNetLite0:
    """The EfficientNet-Lite0 to embed with, loaded once per process: ``weights`` (a user's
    own file) or the installed package's verified file. Raises MissingWeights."""
    with _LOCK:
        encoder = _ENCODERS.get(weights)
        if encoder is None:
            encoder = load_efficientnet_lite0(locate_weights(override=weights))
            _ENCODERS[weights] = encoder
        return encoder


def _check_keyframes(keyframes: torch.Tensor, *, ndim: int) -> None:
    if keyframes.dtype != torch.uint8 or keyframes.ndim != ndim or keyframes.shape[-3] != 3:
        shape = "(K, 3, H, W)" if ndim == 4 else "(B, K, 3, H, W)"
        raise InvalidInput(
            f"keyframes must be {shape} uint8, got {tuple(keyframes.shape)} {keyframes.dtype}",
            code="invalid_keyframes",
        )
    if keyframes.shape[-4] < 1 or keyframes.shape[-1] < 1 or keyframes.shape[-2] < 1:
        raise InvalidInput("keyframes must not be empty", code="invalid_keyframes")


def preprocess_images(images: torch.Tensor, *, side: int) -> torch.Tensor:
    """``(N, 3, H, W)`` uint8 -> ``(N, 3, side, side)`` float32 in [-1, 1] (bilinear, with
    antialiasing when shrinking)."""
    x = images.float()
    if x.shape[-2:] != (side, side):
        shrink = x.shape[-1] > side or x.shape[-2] > side
        x = F.interpolate(
            x, size=(side, side), mode="bilinear", align_corners=False, antialias=shrink
        )
    return x.div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)


def embed_clips(
    keyframes: torch.Tensor | np.ndarray,
    *,
    encoder: EfficientNetLite0 | None = None,
    side: int = EMBED_SIDE,
) -> np.ndarray:
    """``(B, K, 3, H, W)`` uint8 -> ``(B, 1280)`` float32, the mean embedding of each clip's
    keyframes. ``encoder`` defaults to the package weights (:func:`visual_encoder`)."""
    frames = torch.as_tensor(keyframes)
    _check_keyframes(frames, ndim=5)
    model = encoder if encoder is not None else visual_encoder()
    batch, count = frames.shape[:2]
    flat = frames.flatten(0, 1)
    out = []
    with torch.no_grad():
        for first in range(0, flat.shape[0], _BATCH_IMAGES):
            chunk = preprocess_images(flat[first : first + _BATCH_IMAGES], side=side)
            out.append(model.embed(chunk))
    if not out:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    vectors = torch.cat(out).view(batch, count, -1).mean(dim=1)
    return vectors.numpy().astype(np.float32, copy=False)


def embed_keyframes(
    keyframes: torch.Tensor | np.ndarray,
    *,
    encoder: EfficientNetLite0 | None = None,
    side: int = EMBED_SIDE,
) -> np.ndarray:
    """One clip: keyframes ``(K, 3, H, W)`` uint8 RGB -> ``(1280,)`` float32 (see the module
    docstring). ``encoder`` defaults to the package weights (:func:`visual_encoder`).

    Runs on one intra-op thread (what the media worker calls per clip): on K images the
    thread hand-offs cost more than they save, and OpenMP threads spin against the decoder
    and other processes. On the loaded 2-core machine (load 8) a demo clip's extraction
    with its embedding took 1.3-1.5 s wall (0.5 s CPU) with 2 threads, 0.13 s (0.05 s CPU)
    with one; ``make demo``'s ingest of 300 clips took 8.7 minutes with 2."""
    frames = torch.as_tensor(keyframes)
    _check_keyframes(frames, ndim=4)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return embed_clips(frames[None], encoder=encoder, side=side)[0]
    finally:
        torch.set_num_threads(previous)


def keyframes_from_frames(frames: torch.Tensor, *, count: int = KEYFRAMES) -> torch.Tensor:
    """``(T, 3, H, W)`` -> ``(min(count, T), 3, H, W)``: the frames nearest the centres of
    ``count`` equal slices of the clip, where the extractor takes its keyframes."""
    steps = frames.shape[0]
    count = max(1, min(count, steps))
    index = ((torch.arange(count, dtype=torch.float64) + 0.5) * steps / count).long()
    return frames[index.clamp_max(steps - 1)]


def embed_frames(
    frames: torch.Tensor,
    *,
    encoder: EfficientNetLite0 | None = None,
    count: int = KEYFRAMES,
    side: int = EMBED_SIDE,
) -> torch.Tensor:
    """The fallback for clips stored without an embedding: model frames ``(B, T, 3, H, W)``
    uint8 -> ``(B, 1280)`` float32 from ``count`` of them (:func:`keyframes_from_frames`)."""
    if frames.ndim != 5:
        raise InvalidInput(
            f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}", code="invalid_keyframes"
        )
    if frames.shape[0] == 0:
        return torch.zeros((0, EMBEDDING_DIM))
    steps = frames.shape[1]
    index = keyframes_from_frames(torch.arange(steps), count=count)
    return torch.from_numpy(embed_clips(frames[:, index], encoder=encoder, side=side))


def ensure_visual_embeddings(
    tensors: Sequence[ClipTensors], *, weights: Path | None = None
) -> torch.Tensor:
    """Every clip's ``visual_embedding`` stacked, ``(N, 1280)`` float32. A clip without one
    (stored before embeddings existed, or rendered without a video) gets it computed from
    its frames with ``weights`` (None: the package's) and kept on its ``ClipTensors``, so a
    clip reused round after round is embedded once."""
    missing = [t for t in tensors if t.visual_embedding is None]
    for first in range(0, len(missing), _BATCH_IMAGES):
        chunk = missing[first : first + _BATCH_IMAGES]
        vectors = embed_frames(
            torch.stack([t.frames for t in chunk]), encoder=visual_encoder(weights=weights)
        )
        for clip, vector in zip(chunk, vectors, strict=True):
            clip.visual_embedding = vector
    if not tensors:
        return torch.zeros((0, EMBEDDING_DIM))
    return torch.stack([t.visual_embedding for t in tensors if t.visual_embedding is not None])
