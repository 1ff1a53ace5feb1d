"""Training-time augmentation, one kind per modality, applied to whole batches.

Frames get a random shift (zero pad, then a random crop back to the original size; the same
shift for every frame of a clip, as a camera offset would be). The log-mel gets SpecAugment
time and frequency masks (torchaudio). Evaluation batches are never augmented: callers apply
these only in training mode. Randomness comes from torch's global generator, so a run is
reproducible after ``torch.manual_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio

from tagloop.errors import InvalidInput


@dataclass(frozen=True)
class AugmentOptions:
    """frame_shift: max shift in pixels; time_mask / freq_mask: max width of each mask in
    log-mel columns / bands (0 disables); n_time_masks / n_freq_masks: masks per clip;
    freq_shift: max shift of the log-mel along the mel axis, in bands."""

    frame_shift: int = 2
    time_mask: int = 12
    freq_mask: int = 8
    n_time_masks: int = 1
    n_freq_masks: int = 1
    freq_shift: int = 0

    def __post_init__(self) -> None:
        values = (self.frame_shift, self.time_mask, self.freq_mask, self.freq_shift)
        if min(*values, self.n_time_masks, self.n_freq_masks) < 0:
            raise InvalidInput("augmentation sizes must be >= 0", code="bad_augment_options")


def shift_frames(frames: torch.Tensor, *, max_shift: int) -> torch.Tensor:
    """``(B, T, 3, H, W)`` uint8 -> same shape: each clip moved by up to ``max_shift`` pixels
    in x and y (zero pad + random crop)."""
    if max_shift == 0:
        return frames
    batch, _, _, height, width = frames.shape
    padded = torch.nn.functional.pad(frames, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2)).tolist()
    return torch.stack(
        [padded[b, :, :, dy : dy + height, dx : dx + width] for b, (dy, dx) in enumerate(offsets)]
    )


def shift_logmel(logmel: torch.Tensor, *, max_shift: int) -> torch.Tensor:
    """``(B, n_mels, S)`` -> same shape, each clip moved by up to ``max_shift`` mel bands
    (edge bands repeated). A cheap vocal-tract-length perturbation: another speaker says the
    same word with its formants a little higher or lower."""
    if max_shift == 0:
        return logmel
    batch, bands, columns = logmel.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 1))
    index = (torch.arange(bands)[None, :] - shifts).clamp(0, bands - 1)  # (B, n_mels)
    return torch.gather(logmel, 1, index[:, :, None].expand(-1, -1, columns))


def mask_logmel(logmel: torch.Tensor, *, options: AugmentOptions) -> torch.Tensor:
    """``(B, n_mels, S)`` float -> same shape with independent time/frequency masks per clip.

    Masked cells take the clip's mean, not 0: in log units 0 is a loud value, while the mean
    is neutral after the audio branch's per-clip standardisation.
    """
    mean = logmel.mean(dim=(1, 2), keepdim=True)
    x = (logmel - mean).unsqueeze(1)  # (B, 1, n_mels, S): iid masks need a channel axis
    time = torchaudio.transforms.TimeMasking(options.time_mask, iid_masks=True)
    freq = torchaudio.transforms.FrequencyMasking(options.freq_mask, iid_masks=True)
    for _ in range(options.n_time_masks if options.time_mask else 0):
        x = time(x)
    for _ in range(options.n_freq_masks if options.freq_mask else 0):
        x = freq(x)
    return x.squeeze(1) + mean


def augment_batch(
    frames: torch.Tensor,
    logmel: torch.Tensor,
    audio_mask: torch.Tensor,
    *,
    options: AugmentOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented ``(frames, logmel)``; clips without audio keep their (ignored) log-mel."""
    frames = shift_frames(frames, max_shift=options.frame_shift)
    shifted = shift_logmel(logmel.float(), max_shift=options.freq_shift)
    masked = mask_logmel(shifted, options=options)
    logmel = torch.where(audio_mask[:, None, None], masked, logmel.float())
    return frames, logmel
