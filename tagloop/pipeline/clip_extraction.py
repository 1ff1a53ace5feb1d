"""What the media worker stores for each clip of a video, without the storing.

``process_video`` (``pipeline.ingest``) decodes a video through :func:`iter_clip_tensors` and
writes each result to the blob store; a benchmark that needs service-identical clip tensors
from its own video files calls the same function, so the two cannot drift apart: the model
frames and log-mel of ``build_clip_tensors`` and the keyframe embedding of
``features.visual_embedding`` (``KEYFRAMES`` keyframes decoded from the source at
``EMBED_SIDE``), under the given settings.

Imports torch: the API imports ``pipeline.ingest`` for uploads, which imports this module only
inside ``process_video``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

import torch

from tagloop.config import Settings
from tagloop.features.clip_tensor import ClipTensors, build_clip_tensors
from tagloop.features.visual_embedding import (
    EMBED_SIDE,
    KEYFRAMES,
    embed_keyframes,
    visual_encoder,
)
from tagloop.media.extract import ClipMedia, iter_clip_media
from tagloop.media.probe import MediaInfo
from tagloop.media.source import MediaSource

if TYPE_CHECKING:
    from tagloop.fusion.efficientnet_lite import EfficientNetLite0


def load_ingest_encoder(settings: Settings) -> EfficientNetLite0 | None:
    """The visual encoder ingestion embeds keyframes with (loaded once per process), or None
    when ``settings.visual_encoder`` is ``"none"``. Raises MissingWeights."""
    if settings.visual_encoder == "none":
        return None
    return visual_encoder(weights=settings.visual_encoder_weights)


def iter_clip_tensors(
    source: MediaSource,
    *,
    info: MediaInfo,
    settings: Settings,
    encoder: EfficientNetLite0 | None,
    skip_indices: Collection[int] = (),
) -> Iterator[tuple[ClipMedia, ClipTensors]]:
    """Decode ``source`` once; per planned clip (in order, ``skip_indices`` passed over) its
    media (preview, thumbnail) and the tensors the service stores: frames ``(T, 3, S, S)``
    uint8, log-mel ``(n_mels, L)`` float16, audio mask and, with an ``encoder``, the
    ``(1280,)`` float32 embedding of its keyframes (else None). Raises what
    :func:`~tagloop.media.extract.iter_clip_media` raises."""
    for media in iter_clip_media(
        source,
        info=info,
        clip_seconds=settings.clip_seconds,
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        sample_rate=settings.sample_rate,
        preview_height=settings.preview_height,
        skip_indices=skip_indices,
        keyframes=KEYFRAMES if encoder is not None else 0,
        keyframe_size=EMBED_SIDE,
    ):
        if media.index in skip_indices:
            continue
        embedding = None
        if encoder is not None and media.keyframes is not None:
            vector = embed_keyframes(media.keyframes, encoder=encoder, side=EMBED_SIDE)
            embedding = torch.from_numpy(vector)
        tensors = build_clip_tensors(
            media,
            sample_rate=settings.sample_rate,
            n_mels=settings.n_mels,
            clip_seconds=settings.clip_seconds,
            visual_embedding=embedding,
        )
        yield media, tensors
