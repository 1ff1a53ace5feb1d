"""Linear probes that check an AV-digits set is "unsure per modality, sure together".

A logistic regression on image pixels alone, on audio spectra alone, and on both concatenated,
trained on the ``train`` split and scored on ``test``. A few seconds for a few hundred demo
samples (unit tests); a few minutes for the 3,000 FSDD+MNIST clips on 2 cores. A floor for
the fusion benchmark to beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tagloop.errors import InvalidInput

if TYPE_CHECKING:
    from tagloop.datasets.av_digits import AVSample


def compute_log_spectrogram(
    audio: np.ndarray, *, sample_rate: int, n_bands: int = 48, n_times: int = 8
) -> np.ndarray:
    """Log band energies on a fixed grid, whatever the clip length.

    Hann-windowed 32 ms frames, power summed into ``n_bands`` mel-spaced bands up to Nyquist,
    then linearly resampled over time to ``n_times`` columns (clips differ in length).

    Args:
        audio: float ``(N,)``.
        sample_rate: of ``audio`` in Hz.

    Returns:
        float32 ``(n_bands, n_times)``.
    """
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sample_rate)))
    hop = n_fft // 2
    signal = np.asarray(audio, dtype=np.float64)
    if signal.size < n_fft:
        signal = np.pad(signal, (0, n_fft - signal.size))
    n_frames = 1 + (signal.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[::hop][:n_frames]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2  # (T, n_fft // 2 + 1)

    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel = 2595.0 * np.log10(1.0 + freqs / 700.0)
    edges = np.linspace(0.0, mel[-1] + 1e-6, n_bands + 1)
    band = np.clip(np.searchsorted(edges, mel, side="right") - 1, 0, n_bands - 1)
    assign = np.eye(n_bands)[band]  # (n_fft // 2 + 1, n_bands): which band each bin feeds
    log_bands = np.log(power @ assign + 1e-8)  # (T, n_bands)

    positions = np.linspace(0.0, n_frames - 1, n_times)
    grid = np.stack(
        [np.interp(positions, np.arange(n_frames), log_bands[:, b]) for b in range(n_bands)]
    )
    return grid.astype(np.float32)


def extract_probe_features(
    samples: Sequence[AVSample],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flattened features per sample.

    Returns:
        ``image`` float32 ``(S, H * W)`` in [0, 1], ``audio`` float32 ``(S, 48 * 8)``,
        ``digit`` int64 ``(S,)`` and ``is_test`` bool ``(S,)``.
    """
    if not samples:
        raise InvalidInput("no samples to extract features from", code="empty_dataset")
    image = np.stack([s.image.reshape(-1).astype(np.float32) / 255.0 for s in samples])
    audio = np.stack(
        [compute_log_spectrogram(s.audio, sample_rate=s.sample_rate).reshape(-1) for s in samples]
    )
    digit = np.asarray([s.digit for s in samples], dtype=np.int64)
    is_test = np.asarray([s.split == "test" for s in samples], dtype=bool)
    return image, audio, digit, is_test


def score_modality_probes(samples: Sequence[AVSample], *, c: float = 0.1) -> dict[str, float]:
    """Test accuracy of logistic regression on image, audio, and both concatenated.

    Args:
        samples: needs train and test samples.
        c: inverse L2 strength of the logistic regression (features are standardised).

    Returns:
        ``{"image": acc, "audio": acc, "concat": acc}``, each in [0, 1].
    """
    # Imported here: scikit-learn is heavy and only the probes need it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    image, audio, digit, is_test = extract_probe_features(samples)
    if is_test.all() or not is_test.any():
        raise InvalidInput("probes need both train and test samples", code="missing_split")
    inputs = {"image": image, "audio": audio, "concat": np.concatenate([image, audio], axis=1)}
    scores: dict[str, float] = {}
    for name, features in inputs.items():
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(features[~is_test], digit[~is_test])
        scores[name] = float(model.score(features[is_test], digit[is_test]))
    return scores
