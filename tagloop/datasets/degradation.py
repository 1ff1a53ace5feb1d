"""Degradations that make one modality unsure on its own (pure numpy).

The AV-digits sets exist to show that fusing sound and image beats either alone. That only
holds when each modality loses information the other one still has, so every function here
removes information in a way that is independent of the other modality: blur, pixel noise and
occlusion or a low-energy PCA reconstruction for images; white noise at a low SNR for audio.
"""

from __future__ import annotations

import numpy as np

from tagloop.errors import InvalidInput


def blur_image(image: np.ndarray, *, sigma: float) -> np.ndarray:
    """Gaussian blur with edge padding; merges strokes so similar digits (3/5/8/9) look alike.

    Args:
        image: float ``(H, W)``.
        sigma: standard deviation in pixels; 0 returns a copy.

    Returns:
        float64 ``(H, W)``.
    """
    if sigma < 0:
        raise InvalidInput(f"blur sigma must be >= 0, got {sigma}", code="invalid_degradation")
    out = np.asarray(image, dtype=np.float64).copy()
    if sigma == 0:
        return out
    radius = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    # Separable: blur rows, then columns; edge padding keeps the border from darkening.
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        out = np.apply_along_axis(
            lambda line: np.convolve(line, kernel, mode="valid"), axis, padded
        )
    return out


def occlude_image(
    image: np.ndarray, *, rng: np.random.Generator, size: int, fill: float = 0.0
) -> np.ndarray:
    """Paint a ``size`` x ``size`` square at a random place; hides a stroke that tells digits apart.

    Args:
        image: float ``(H, W)``.
        rng: picks the square's top-left corner.
        size: side in pixels, clipped to the image; 0 returns a copy.
        fill: value painted into the square.

    Returns:
        float64 ``(H, W)``.
    """
    out = np.asarray(image, dtype=np.float64).copy()
    h, w = out.shape
    size = min(size, h, w)
    if size <= 0:
        return out
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    out[top : top + size, left : left + size] = fill
    return out


def fit_pca_basis(images: np.ndarray, *, energy: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the fewest principal axes that explain ``energy`` of the pixel variance.

    Args:
        images: ``(N, H, W)`` or ``(N, D)``, any numeric dtype.
        energy: fraction of variance to keep, in (0, 1].

    Returns:
        ``mean`` float64 ``(D,)`` and ``components`` float64 ``(K, D)`` (orthonormal rows).
    """
    if not 0.0 < energy <= 1.0:
        raise InvalidInput(f"energy must be in (0, 1], got {energy}", code="invalid_degradation")
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    mean = flat.mean(axis=0)
    centered = flat - mean
    # Eigen-decomposition of the D x D covariance is cheap for small images (D = 784 for MNIST).
    eigvals, eigvecs = np.linalg.eigh(centered.T @ centered)
    order = np.argsort(eigvals)[::-1]
    eigvals = np.clip(eigvals[order], 0.0, None)
    eigvecs = eigvecs[:, order]
    ratio = np.cumsum(eigvals) / max(float(eigvals.sum()), 1e-12)
    k = int(np.searchsorted(ratio, energy - 1e-9) + 1)
    return mean, eigvecs[:, : min(k, len(eigvals))].T


def reconstruct_with_pca(
    images: np.ndarray, *, mean: np.ndarray, components: np.ndarray
) -> np.ndarray:
    """Project onto the kept principal axes and back: the fine detail between digits is lost.

    Args:
        images: uint8 ``(N, H, W)``.
        mean: ``(H * W,)`` from :func:`fit_pca_basis`.
        components: ``(K, H * W)`` from :func:`fit_pca_basis`.

    Returns:
        uint8 ``(N, H, W)``, clipped to 0-255.
    """
    n, h, w = images.shape
    centered = images.reshape(n, h * w).astype(np.float64) - mean
    restored = centered @ components.T @ components + mean
    return np.clip(np.rint(restored), 0, 255).astype(np.uint8).reshape(n, h, w)


def mix_white_noise(audio: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian white noise at ``snr_db`` relative to the clip's mean power.

    Low SNR buries the weaker spectral cues (a quiet tone, a soft consonant), so the sound
    alone confuses some digits. The result is scaled down only if it would clip.

    Args:
        audio: float ``(N,)``.
        snr_db: signal-to-noise ratio in dB over the whole clip.
        rng: the noise source.

    Returns:
        float32 ``(N,)`` with peak at most 0.99.
    """
    signal = np.asarray(audio, dtype=np.float64)
    power = float(np.mean(signal**2)) if signal.size else 0.0
    if power == 0.0:
        # Silence has no level to set an SNR against: nothing to hide, so nothing is added.
        return signal.astype(np.float32)
    noise = rng.standard_normal(signal.shape) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    mixed = signal + noise
    peak = float(np.max(np.abs(mixed)))
    if peak > 0.99:
        mixed *= 0.99 / peak
    return mixed.astype(np.float32)
