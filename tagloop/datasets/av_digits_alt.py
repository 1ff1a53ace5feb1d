"""AV digits, made a second way: written apart from ``av_digits`` so a model tuned on one
generator's habits is caught on the other (issue 19).

What differs from ``build_fsdd_mnist_samples`` + ``write_av_video``:

* picture: the full-detail MNIST digit (no PCA) enlarged to 48 px, in a random bright colour,
  drifting across a 64x64 frame tinted a random dark colour, with strong per-frame colour
  noise (std 0.12 of full scale per channel), instead of a still grey 28 px image upscaled;
* sound: the FSDD recording placed at a random onset in a 1.2 s clip, at -3 dB SNR in
  brown-ish (1/f^1.5) noise, instead of white noise at 20 dB over the recording's own length;
* video: 15 fps, H.264 CRF 32 preset ``veryfast`` instead of 10 fps ``ultrafast``/``stillimage``;
* the held-out test speaker is ``nicolas``, not ``theo``.

One clip per FSDD recording that fits the clip; the tag group is ``digit`` as in the AV digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagloop.datasets.av_clip import (
    AVClip,
    CodecSettings,
    coloured_noise,
    drift_offsets,
    place_in_noise,
)
from tagloop.datasets.fsdd import read_wav
from tagloop.datasets.long_tail_spec import FsddTable, read_fsdd_table
from tagloop.datasets.mnist import read_mnist_test
from tagloop.errors import InvalidInput

FRAME_SIZE = 64
DIGIT_SIZE = 48
FPS = 15
DURATION_S = 1.2
SAMPLE_RATE = 8000
TEST_SPEAKER = "nicolas"
SNR_DB = -3.0
NOISE_EXPONENT = 1.5
CODEC = CodecSettings(fps=FPS, crf=32, preset="veryfast")
_MARGIN_S = 0.05
_NOISE_RMS = 0.05
_PIXEL_NOISE = 0.12


@dataclass(frozen=True)
class AltDigitSpec:
    """One clip: MNIST row ``image`` of ``digit``, FSDD row ``recording`` of the same digit,
    the digit's top-left corner at the first and last frame, its colour and the background
    tint (RGB in [0, 1]), the speech onset and the noise seed."""

    image: int
    recording: int
    digit: int
    speaker: str
    split: str
    start: tuple[int, int]
    end: tuple[int, int]
    colour: tuple[float, float, float]
    tint: tuple[float, float, float]
    onset_s: float
    render_seed: int

    @property
    def tags(self) -> tuple[str, ...]:
        return (f"digit_{self.digit}",)


@dataclass(frozen=True)
class AltDigitSources:
    """MNIST test images uint8 ``(10000, 28, 28)`` and labels, the FSDD table and folder."""

    images: np.ndarray
    labels: np.ndarray
    fsdd: FsddTable
    fsdd_dir: Path


def load_alt_digit_sources(data_dir: Path) -> AltDigitSources:
    images, labels = read_mnist_test(data_dir / "mnist")
    return AltDigitSources(
        images=images,
        labels=labels,
        fsdd=read_fsdd_table(data_dir / "fsdd"),
        fsdd_dir=data_dir / "fsdd",
    )


def plan_av_digits_alt(
    *,
    labels: np.ndarray,
    fsdd: FsddTable,
    seed: int,
    test_speaker: str = TEST_SPEAKER,
    limit: int | None = None,
) -> list[AltDigitSpec]:
    """One spec per FSDD recording that fits in the clip (pool speakers first, then the
    held-out speaker as ``"test"``), each with an MNIST image of its digit used once.

    limit: keep a seeded random subset of this many recordings (order kept).
    """
    if test_speaker not in set(fsdd.speakers):
        raise InvalidInput(f"unknown test speaker {test_speaker!r}", code="unknown_speaker")
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(fsdd.seconds <= DURATION_S - _MARGIN_S)
    if limit is not None:
        if limit < 1:
            raise InvalidInput(f"limit must be >= 1, got {limit}", code="invalid_dataset_options")
        rows = np.sort(rng.choice(rows, size=min(limit, rows.size), replace=False))
    is_test = np.asarray([fsdd.speakers[r] == test_speaker for r in rows])
    rows = np.concatenate([rows[~is_test], rows[is_test]])
    unused = {d: list(rng.permutation(np.flatnonzero(labels == d))) for d in range(10)}
    span = FRAME_SIZE - DIGIT_SIZE
    specs: list[AltDigitSpec] = []
    for row in rows:
        digit = int(fsdd.digits[row])
        if not unused[digit]:
            raise InvalidInput(f"MNIST has too few {digit}s", code="invalid_dataset_options")
        hue = rng.uniform(0.55, 1.0, size=3)
        hue[rng.integers(0, 3)] = 1.0  # one channel full: a bright colour
        room = DURATION_S - _MARGIN_S - float(fsdd.seconds[row])
        specs.append(
            AltDigitSpec(
                image=int(unused[digit].pop()),
                recording=int(row),
                digit=digit,
                speaker=fsdd.speakers[row],
                split="test" if fsdd.speakers[row] == test_speaker else "train",
                start=(int(rng.integers(0, span + 1)), int(rng.integers(0, span + 1))),
                end=(int(rng.integers(0, span + 1)), int(rng.integers(0, span + 1))),
                colour=tuple(float(v) for v in hue),  # type: ignore[arg-type]
                tint=tuple(float(v) for v in rng.uniform(0.0, 0.35, size=3)),  # type: ignore[arg-type]
                onset_s=float(rng.uniform(0.0, max(room, 0.0))),
                render_seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    return specs


def enlarge_bilinear(image: np.ndarray, *, size: int) -> np.ndarray:
    """float ``(H, W)`` -> ``(size, size)`` by bilinear interpolation (pixel centres aligned)."""
    h, w = image.shape
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return np.asarray(top * (1 - fy) + bottom * fy)


def render_av_digit_alt(spec: AltDigitSpec, sources: AltDigitSources) -> AVClip:
    """``(18, 64, 64, 3)`` frames at 15 fps and 1.2 s of 8 kHz audio."""
    rng = np.random.default_rng(spec.render_seed)
    n_frames = round(FPS * DURATION_S)
    alpha = enlarge_bilinear(sources.images[spec.image] / 255.0, size=DIGIT_SIZE)[..., None]
    ink = alpha * np.asarray(spec.colour)
    tint = np.asarray(spec.tint)
    frames = np.empty((n_frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for t, (row, col) in enumerate(
        drift_offsets(n_frames=n_frames, start=spec.start, end=spec.end)
    ):
        frame = np.broadcast_to(tint, (FRAME_SIZE, FRAME_SIZE, 3)).copy()
        window = frame[row : row + DIGIT_SIZE, col : col + DIGIT_SIZE]
        frame[row : row + DIGIT_SIZE, col : col + DIGIT_SIZE] = window * (1 - alpha) + ink
        frame += rng.normal(0.0, _PIXEL_NOISE, size=frame.shape)
        frames[t] = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)

    speech, rate = read_wav(sources.fsdd_dir / sources.fsdd.files[spec.recording])
    if rate != SAMPLE_RATE:
        raise InvalidInput(f"FSDD rate {rate} != {SAMPLE_RATE}", code="invalid_dataset")
    n_samples = round(SAMPLE_RATE * DURATION_S)
    audio = place_in_noise(
        speech,
        n_samples=n_samples,
        onset=round(spec.onset_s * SAMPLE_RATE),
        snr_db=SNR_DB,
        noise=coloured_noise(n_samples, exponent=NOISE_EXPONENT, rng=rng),
        level=_NOISE_RMS,
    )
    return AVClip(
        frames=frames,
        audio=audio,
        sample_rate=SAMPLE_RATE,
        fps=FPS,
        tags=spec.tags,
        speaker=spec.speaker,
        split=spec.split,
    )
