"""Labeled clips in memory, as a torch Dataset and as stacked batches.

The training loop stacks every clip once (``ClipDataset``) and slices batches by index; that
is many times cheaper than collating item by item, and gives the same tensors as
``collate_clips`` over the items (the DataLoader path). All clips share one shape, which the
feature store guarantees (see ``tagloop.features.clip_tensor``).

The log-mel may be cropped on its time axis to ``audio_frames`` columns, which keeps a round
fast: a short recording's sound sits at the start of its clip. Evaluation takes the leading
columns; training takes a window that starts at a random offset of up to ``max_audio_shift``
columns, a small time jitter that still keeps the start of the sound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import ClipTensors, fit_logmel, logmel_frames_for
from tagloop.features.logmel import LOG_FLOOR, compute_logmel

if TYPE_CHECKING:
    from tagloop.datasets.av_digits import AVSample


@dataclass(frozen=True, eq=False)
class LabeledClip:
    """One labeled clip: ``targets (K,)`` float32 multi-hot, ``known (K,)`` bool (decided).
    ``group``: its video, so cross-validation keeps a video's clips in one fold (None: the
    clip is a group of its own)."""

    clip_id: int
    tensors: ClipTensors
    targets: np.ndarray
    known: np.ndarray
    group: int | None = None


@dataclass(frozen=True)
class ClipBatch:
    """frames ``(B, T, 3, H, W)`` uint8, logmel ``(B, n_mels, S)`` float32, audio_mask ``(B,)``
    bool, targets ``(B, K)`` float32, known ``(B, K)`` bool; visual_embedding ``(B, 1280)``
    float32 once the dataset has them (``ClipDataset.ensure_visual_embedding``), else None."""

    frames: torch.Tensor
    logmel: torch.Tensor
    audio_mask: torch.Tensor
    targets: torch.Tensor
    known: torch.Tensor
    visual_embedding: torch.Tensor | None = None


def crop_logmel(
    logmel: torch.Tensor, *, audio_frames: int | None, max_shift: int = 0
) -> torch.Tensor:
    """``(B, n_mels, S)`` -> ``(B, n_mels, audio_frames)``; None keeps every column.

    Each clip's window starts at a random offset in ``[0, min(max_shift, S - audio_frames)]``
    (0 with ``max_shift=0``: the leading columns). A log-mel shorter than the window is padded
    with the log floor (silence).
    """
    if audio_frames is None:
        return logmel
    if audio_frames < 1:
        raise InvalidInput(f"audio_frames must be >= 1, got {audio_frames}", code="bad_option")
    columns = logmel.shape[2]
    if columns <= audio_frames:
        pad = audio_frames - columns
        return torch.nn.functional.pad(logmel, (0, pad), value=math.log(LOG_FLOOR))
    top = min(max_shift, columns - audio_frames)
    if top <= 0:
        return logmel[:, :, :audio_frames]
    starts = torch.randint(0, top + 1, (logmel.shape[0],))
    index = starts[:, None] + torch.arange(audio_frames)[None, :]  # (B, audio_frames)
    return torch.gather(logmel, 2, index[:, None, :].expand(-1, logmel.shape[1], -1))


def _check_clips(clips: list[LabeledClip]) -> None:
    if not clips:
        raise InvalidInput("no labeled clips", code="no_training_data")
    first = clips[0]
    for clip in clips:
        same = (
            clip.tensors.frames.shape == first.tensors.frames.shape
            and clip.tensors.logmel.shape == first.tensors.logmel.shape
            and clip.targets.shape == first.targets.shape == clip.known.shape
        )
        if not same:
            raise InvalidInput(
                f"clip {clip.clip_id} has other tensor or target shapes than clip {first.clip_id}",
                code="ragged_clips",
            )


class ClipDataset(Dataset[tuple[torch.Tensor, ...]]):
    """Labeled clips stacked into tensors; items are ``(frames, logmel, audio_mask, targets,
    known)`` for :func:`collate_clips`, :meth:`batch` gives a whole batch at once."""

    def __init__(self, clips: list[LabeledClip]) -> None:
        _check_clips(clips)
        self.clip_ids = [clip.clip_id for clip in clips]
        # A clip without a video is its own group: a negative id no video id can equal.
        self.groups = np.array(
            [clip.group if clip.group is not None else -1 - clip.clip_id for clip in clips],
            dtype=np.int64,
        )
        self.frames = torch.stack([clip.tensors.frames for clip in clips])
        # float16 at rest (half the memory); float32 per batch.
        self.logmel = torch.stack([clip.tensors.logmel.to(torch.float16) for clip in clips])
        self.audio_mask = torch.tensor([bool(clip.tensors.audio_mask) for clip in clips])
        self.targets = torch.from_numpy(np.stack([clip.targets for clip in clips])).float()
        self.known = torch.from_numpy(np.stack([clip.known for clip in clips]).astype(bool))
        self._tensors = [clip.tensors for clip in clips]
        self.visual_embedding: torch.Tensor | None = None
        if all(t.visual_embedding is not None for t in self._tensors):
            self.visual_embedding = torch.stack(
                [t.visual_embedding for t in self._tensors if t.visual_embedding is not None]
            ).float()

    def ensure_visual_embedding(self, *, weights: Path | None = None) -> torch.Tensor:
        """``(N, 1280)``: the clips' stored visual embeddings, those missing computed from
        their frames (``features.visual_embedding.ensure_visual_embeddings``)."""
        if self.visual_embedding is None:
            from tagloop.features.visual_embedding import ensure_visual_embeddings

            stacked = ensure_visual_embeddings(self._tensors, weights=weights)
            self.visual_embedding = stacked.float()
        return self.visual_embedding

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return (
            self.frames[index],
            self.logmel[index],
            self.audio_mask[index],
            self.targets[index],
            self.known[index],
        )

    def batch(self, indices: torch.Tensor) -> ClipBatch:
        """The clips at ``indices (B,)`` as a batch; equal to collating the items."""
        return ClipBatch(
            frames=self.frames[indices],
            logmel=self.logmel[indices].float(),
            audio_mask=self.audio_mask[indices],
            targets=self.targets[indices],
            known=self.known[indices],
            visual_embedding=(
                None if self.visual_embedding is None else self.visual_embedding[indices]
            ),
        )


def collate_clips(items: list[tuple[torch.Tensor, ...]]) -> ClipBatch:
    """Stack dataset items into a :class:`ClipBatch` (a DataLoader ``collate_fn``)."""
    columns = list(zip(*items, strict=True))
    frames, logmel, audio_mask, targets, known = (torch.stack(list(x)) for x in columns)
    return ClipBatch(
        frames=frames, logmel=logmel.float(), audio_mask=audio_mask, targets=targets, known=known
    )


def render_av_sample(
    sample: AVSample,
    *,
    frames_per_clip: int,
    frame_size: int,
    n_mels: int,
    sample_rate: int,
    clip_seconds: float,
) -> ClipTensors:
    """An AV-digits sample straight to model input, without encoding an mp4 (for tests).

    The grey image is resized (bilinear) to ``frame_size``, copied to RGB and repeated for
    every frame; the audio is resampled to ``sample_rate`` and fit to the clip's log-mel width
    as the extractor would: frames ``(T, 3, S, S)`` uint8, logmel ``(n_mels, S')`` float16.
    """
    import torchaudio.functional

    image = torch.from_numpy(np.ascontiguousarray(sample.image)).float()[None, None]
    image = torch.nn.functional.interpolate(
        image, size=(frame_size, frame_size), mode="bilinear", align_corners=False
    )
    frame = image.round().clamp(0, 255).to(torch.uint8).expand(3, -1, -1, -1).squeeze(1)
    frames = frame[None].expand(frames_per_clip, -1, -1, -1).contiguous()
    audio = torch.from_numpy(np.asarray(sample.audio, dtype=np.float32))
    if sample.sample_rate != sample_rate:
        audio = torchaudio.functional.resample(audio, sample.sample_rate, sample_rate)
    logmel = compute_logmel(audio, sample_rate=sample_rate, n_mels=n_mels)
    n_frames = logmel_frames_for(clip_seconds, sample_rate=sample_rate)
    logmel = fit_logmel(logmel, n_frames=n_frames).to(torch.float16)
    return ClipTensors(frames=frames, logmel=logmel, audio_mask=True)
