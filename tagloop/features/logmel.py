"""Log-mel spectrograms with torchaudio (25 ms windows, 10 ms hop)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
import torchaudio

from tagloop.errors import InvalidInput

WINDOW_S = 0.025
HOP_S = 0.010
# log(0) is -inf; this floor (-13.8 in log units) is far below any recorded sound.
LOG_FLOOR = 1e-6


def hop_length(sample_rate: int) -> int:
    """Samples per 10 ms hop."""
    return round(sample_rate * HOP_S)


def n_logmel_frames(n_samples: int, *, sample_rate: int) -> int:
    """``S`` for ``n_samples`` of audio (centred frames, as torchaudio computes them)."""
    return 1 + max(0, n_samples) // hop_length(sample_rate)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run a small op on one intra-op thread.

    A 10 s clip's log-mel takes ~5 ms on one thread but 60-70 ms with two OpenMP threads
    that compete with FFmpeg's decoder threads or with other worker processes (measured on
    a loaded 2-core machine); the same reason DataLoader workers run single-threaded.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@lru_cache(maxsize=8)
def _mel_transform(sample_rate: int, n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    """One transform per (sample_rate, n_mels): building the filterbank is not free."""
    win_length = round(sample_rate * WINDOW_S)
    n_fft = 1 << (win_length - 1).bit_length()  # next power of two >= the window
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=n_fft,
        win_length=win_length,
        hop_length=hop_length(sample_rate),
        n_mels=n_mels,
        power=2.0,
    )


def compute_logmel(
    audio: np.ndarray | torch.Tensor, *, sample_rate: int, n_mels: int
) -> torch.Tensor:
    """``(N,)`` mono float audio -> ``(n_mels, S)`` float32 log-mel, ``S = 1 + N // hop``.

    Runs on a single intra-op thread (see :func:`_one_thread`).
    """
    if sample_rate < 1 or n_mels < 1:
        raise InvalidInput("sample_rate and n_mels must be >= 1", code="invalid_option")
    wave = torch.as_tensor(audio, dtype=torch.float32)
    if wave.ndim != 1:
        raise InvalidInput(f"audio must be 1-D (N,), got {tuple(wave.shape)}", code="invalid_audio")
    transform = _mel_transform(sample_rate, n_mels)
    n_frames = n_logmel_frames(wave.shape[0], sample_rate=sample_rate)
    # Centred framing reflect-pads by n_fft // 2, which needs more samples than that.
    min_len = transform.n_fft // 2 + 1
    if wave.shape[0] < min_len:
        wave = torch.nn.functional.pad(wave, (0, min_len - wave.shape[0]))
    with torch.no_grad(), _one_thread():
        mel = transform(wave)[:, :n_frames]
    return torch.log(mel.clamp_min(LOG_FLOOR))
