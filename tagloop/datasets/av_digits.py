"""AV digits: a digit image paired with a sound of the same digit, degraded per modality.

Two sets (DESIGN section 8):

* the offline demo set: scikit-learn's bundled 8x8 handwritten digits with the digit's DTMF
  tone pair; needs no download;
* the FSDD+MNIST set, like AV-MNIST of the CentralNet paper: each real FSDD recording with an
  MNIST test image of the same digit; one speaker is held out as the test split.

Both are degraded so that each modality alone is unsure and the two together are not, which is
what a fusion model (and its active-learning loop) needs to show a gain. Builders are pure:
arrays in memory; :func:`write_av_dataset` turns them into real mp4 files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagloop.datasets.av_writer import write_av_dataset, write_av_video
from tagloop.datasets.degradation import (
    blur_image,
    fit_pca_basis,
    mix_white_noise,
    occlude_image,
    reconstruct_with_pca,
)
from tagloop.datasets.dtmf import synthesize_dtmf
from tagloop.datasets.fsdd import read_fsdd_labels, read_wav
from tagloop.datasets.mnist import read_mnist_test
from tagloop.errors import InvalidInput

__all__ = [
    "AVSample",
    "build_demo_samples",
    "build_fsdd_mnist_samples",
    "write_av_dataset",
    "write_av_video",
]


@dataclass(frozen=True, eq=False)
class AVSample:
    """One clip: a grayscale digit image shown for the length of its sound.

    Attributes:
        image: uint8 ``(H, W)``.
        audio: float32 ``(N,)`` mono in [-1, 1].
        sample_rate: of ``audio`` in Hz.
        digit: the label, 0-9.
        speaker: who spoke the digit (FSDD), ``None`` for synthetic tones.
        split: ``"train"`` or ``"test"``.
        source: where the sound came from (an FSDD file), ``None`` if synthetic.
    """

    image: np.ndarray
    audio: np.ndarray
    sample_rate: int
    digit: int
    speaker: str | None
    split: str
    source: str | None = None


def build_demo_samples(
    *,
    n: int,
    seed: int,
    test_fraction: float = 0.2,
    sample_rate: int = 8000,
    duration_s: float = 0.5,
    blur_sigma: float = 0.6,
    pixel_noise: float = 0.15,
    occlusion_size: int = 2,
    snr_db: float = -6.0,
    tone_dropout: float = 0.4,
    pitch_jitter: float = 0.02,
    onset_jitter_s: float = 0.15,
) -> list[AVSample]:
    """The offline demo set: sklearn's 8x8 digits with the digit's DTMF tone, both degraded.

    The image is blurred, gets Gaussian pixel noise and a random occluding square, so strokes
    that separate look-alike digits (3/5/8/9, 1/7, 4/9) are often gone. The tone loses, with
    probability ``tone_dropout``, its row or its column tone, so it only says "one of the three
    digits in this keypad row (column)", and sits in white noise at ``snr_db``. Those two kinds of
    confusion are independent, so image and sound together still name the digit.

    Args:
        n: number of samples; balanced over digits (the first ``n % 10`` digits get one more).
        seed: everything is deterministic for a seed.
        test_fraction: share of each digit's samples (and of its source images) that are test;
            test and train never share a source image.
        sample_rate, duration_s: of the tone clip.
        blur_sigma: Gaussian blur in pixels of the 8x8 image.
        pixel_noise: std of the added noise as a fraction of full scale.
        occlusion_size: side in pixels of the black square; 0 for none.
        snr_db: white-noise level relative to the tone.
        tone_dropout: probability that the row or the column tone is dropped.
        pitch_jitter, onset_jitter_s: passed to :func:`synthesize_dtmf`.

    Returns:
        ``n`` samples with uint8 ``(8, 8)`` images and float32 ``(sample_rate * duration_s,)``
        audio, sorted by digit then split.
    """
    if n < 1 or not 0.0 < test_fraction < 1.0 or not 0.0 <= tone_dropout <= 1.0:
        raise InvalidInput(
            f"need n >= 1, 0 < test_fraction < 1, 0 <= tone_dropout <= 1; got {n}, "
            f"{test_fraction}, {tone_dropout}",
            code="invalid_dataset_options",
        )
    # Imported here: scikit-learn is heavy and only this builder needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64) / 16.0  # (1797, 8, 8) in [0, 1]
    labels = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(seed)

    samples: list[AVSample] = []
    for digit in range(10):
        count = n // 10 + (1 if digit < n % 10 else 0)
        if count == 0:
            continue
        pool = rng.permutation(np.flatnonzero(labels == digit))
        n_test = round(count * test_fraction)
        pool_test = max(1, round(len(pool) * test_fraction))
        pools = {"test": pool[:pool_test], "train": pool[pool_test:]}
        for i in range(count):
            split = "test" if i < n_test else "train"
            # Cycle through the shuffled pool: distinct images first, repeats only if n is large.
            source = pools[split][(i if split == "test" else i - n_test) % len(pools[split])]
            image = _degrade_demo_image(
                images[source],
                rng=rng,
                blur_sigma=blur_sigma,
                pixel_noise=pixel_noise,
                occlusion_size=occlusion_size,
            )
            audio = _degrade_demo_tone(
                digit,
                rng=rng,
                sample_rate=sample_rate,
                duration_s=duration_s,
                snr_db=snr_db,
                tone_dropout=tone_dropout,
                pitch_jitter=pitch_jitter,
                onset_jitter_s=onset_jitter_s,
            )
            samples.append(
                AVSample(
                    image=image,
                    audio=audio,
                    sample_rate=sample_rate,
                    digit=digit,
                    speaker=None,
                    split=split,
                )
            )
    return samples


def _degrade_demo_image(
    image: np.ndarray,
    *,
    rng: np.random.Generator,
    blur_sigma: float,
    pixel_noise: float,
    occlusion_size: int,
) -> np.ndarray:
    """float ``(8, 8)`` in [0, 1] -> uint8 ``(8, 8)``: blurred, noisy, partly hidden."""
    out = blur_image(image, sigma=blur_sigma)
    out = occlude_image(out, rng=rng, size=occlusion_size)
    out = out + rng.normal(0.0, pixel_noise, size=out.shape)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _degrade_demo_tone(
    digit: int,
    *,
    rng: np.random.Generator,
    sample_rate: int,
    duration_s: float,
    snr_db: float,
    tone_dropout: float,
    pitch_jitter: float,
    onset_jitter_s: float,
) -> np.ndarray:
    """float32 ``(N,)``: the DTMF pair, maybe missing its row or column tone, in white noise."""
    gains = (1.0, 1.0)
    if rng.random() < tone_dropout:
        gains = (0.0, 1.0) if rng.random() < 0.5 else (1.0, 0.0)
    tone = synthesize_dtmf(
        digit,
        sample_rate=sample_rate,
        duration_s=duration_s,
        rng=rng,
        pitch_jitter=pitch_jitter,
        onset_jitter_s=onset_jitter_s,
        tone_gains=gains,
    )
    return mix_white_noise(tone, snr_db=snr_db, rng=rng)


def build_fsdd_mnist_samples(
    *,
    data_dir: Path,
    test_speaker: str = "theo",
    image_energy: float = 0.25,
    snr_db: float = 10.0,
    seed: int = 0,
    limit: int | None = None,
) -> list[AVSample]:
    """FSDD recordings paired with MNIST images of the same digit (AV-MNIST style).

    The image keeps only the principal components that explain ``image_energy`` of the MNIST
    pixel variance (CentralNet keeps 25%), which wipes out the detail between look-alike digits.
    The recording gets white noise at ``snr_db``, which hides quiet phonemes. Each alone is
    unsure; the two fail on different samples, so together they are not.

    Args:
        data_dir: the shared data folder holding ``fsdd/`` and ``mnist/``.
        test_speaker: the FSDD speaker whose recordings are the test split; all others train.
        image_energy: fraction of PCA variance kept, in (0, 1].
        snr_db: white-noise level relative to each recording's mean power.
        seed: pairing, noise and the ``limit`` subset are deterministic for a seed.
        limit: keep a random subset of this many recordings (kept in file order).

    Returns:
        One sample per kept recording: uint8 ``(28, 28)`` image, float32 8 kHz audio; each MNIST
        image is used at most once, so train and test never share one.
    """
    fsdd_dir = data_dir / "fsdd"
    records = read_fsdd_labels(fsdd_dir)
    speakers = sorted({record.speaker for record in records})
    if test_speaker not in speakers:
        raise InvalidInput(
            f"test speaker {test_speaker!r} is not one of {speakers}", code="unknown_speaker"
        )
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be >= 1, got {limit}", code="invalid_dataset_options")
    rng = np.random.default_rng(seed)
    if limit is not None and limit < len(records):
        keep = np.sort(rng.choice(len(records), size=limit, replace=False))
        records = [records[i] for i in keep]

    mnist_images, mnist_labels = read_mnist_test(data_dir / "mnist")
    # The basis is fit on all 10,000 images (labels unused), so it does not depend on `limit`.
    mean, components = fit_pca_basis(mnist_images, energy=image_energy)
    unused = {
        digit: list(rng.permutation(np.flatnonzero(mnist_labels == digit))) for digit in range(10)
    }
    chosen: list[int] = []
    for record in records:
        if not unused[record.digit]:
            raise InvalidInput(
                f"not enough MNIST images of digit {record.digit} to pair without reuse",
                code="invalid_dataset_options",
            )
        chosen.append(int(unused[record.digit].pop()))
    degraded = reconstruct_with_pca(
        mnist_images[np.asarray(chosen, dtype=np.int64)], mean=mean, components=components
    )

    samples: list[AVSample] = []
    for record, image in zip(records, degraded, strict=True):
        audio, rate = read_wav(fsdd_dir / record.file)
        samples.append(
            AVSample(
                image=image,
                audio=mix_white_noise(audio, snr_db=snr_db, rng=rng),
                sample_rate=rate,
                digit=record.digit,
                speaker=record.speaker,
                split="test" if record.speaker == test_speaker else "train",
                source=record.file,
            )
        )
    return samples
