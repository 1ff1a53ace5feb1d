"""Moving-picture AV clips and their mp4 writer, shared by the suite's generators.

The AV digits (``av_digits``) are a still grey image for the length of a sound. The suite's
other sets (``av_cifar``, ``av_digits_alt``) are made differently on purpose: a colour picture
drifting over a frame, a sound placed inside a clip of fixed length, noise of other colours.
This module holds what they share: the clip record, the drift path, coloured noise, mixing at
a signal-to-noise ratio, and a writer with its codec settings exposed (H.264 + AAC via PyAV).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tagloop.datasets.av_writer import AUDIO_RATE, find_h264_encoder
from tagloop.errors import InvalidInput, TagloopError


@dataclass(frozen=True, eq=False)
class AVClip:
    """One rendered clip.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB video frames at ``fps``.
        audio: float32 ``(N,)`` mono in [-1, 1] at ``sample_rate``; ``N / sample_rate`` is the
            clip's length and ``T = round(length * fps)``.
        tags: the clip's tag names (one per group that applies).
        speaker: who speaks in the clip; None when no one does.
        split: ``"train"`` (the pool) or ``"test"``.
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: int
    tags: tuple[str, ...]
    speaker: str | None
    split: str


@dataclass(frozen=True)
class CodecSettings:
    """How a clip is encoded: frame rate, H.264 constant-rate factor and preset."""

    fps: int = 10
    crf: int = 23
    preset: str = "ultrafast"


def drift_offsets(
    *, n_frames: int, start: tuple[int, int], end: tuple[int, int]
) -> list[tuple[int, int]]:
    """``n_frames`` (row, col) top-left offsets on the straight line from ``start`` to ``end``."""
    if n_frames < 1:
        raise InvalidInput(f"n_frames must be >= 1, got {n_frames}", code="invalid_clip")
    steps = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    return [
        (round(start[0] + s * (end[0] - start[0])), round(start[1] + s * (end[1] - start[1])))
        for s in steps
    ]


def coloured_noise(n: int, *, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """float64 ``(n,)`` Gaussian noise with power spectrum ``1 / f**exponent``, unit RMS.

    0 is white, 1 pink, 2 brown: most energy at low frequencies, where speech formants are.
    """
    if n < 1:
        raise InvalidInput(f"n must be >= 1, got {n}", code="invalid_clip")
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0  # no infinite gain at DC
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2.0), n=n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def place_in_noise(
    speech: np.ndarray | None,
    *,
    n_samples: int,
    onset: int,
    snr_db: float,
    noise: np.ndarray,
    level: float,
) -> np.ndarray:
    """float32 ``(n_samples,)``: ``noise`` (unit RMS) scaled to RMS ``level``, with ``speech``
    added from sample ``onset`` at ``snr_db`` relative to that noise (by the speech's own RMS
    over its non-silent part). ``speech=None``: the noise alone. Peaks above 1 are scaled down."""
    out = noise[:n_samples].astype(np.float64) * level
    if speech is not None and speech.size:
        clip = speech[: max(0, n_samples - onset)].astype(np.float64)
        active = clip[np.abs(clip) > 0.1 * np.abs(clip).max()] if np.any(clip) else clip
        rms = float(np.sqrt(np.mean(active**2))) if active.size else 0.0
        if rms > 0:
            gain = level * 10.0 ** (snr_db / 20.0) / rms
            out[onset : onset + clip.size] += gain * clip
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)


def resample_linear(audio: np.ndarray, *, rate_in: int, rate_out: int) -> np.ndarray:
    """float32 ``(N,)`` -> ``(round(N * rate_out / rate_in),)`` by linear interpolation."""
    if rate_in == rate_out:
        return audio.astype(np.float32)
    n_out = max(1, round(audio.size * rate_out / rate_in))
    t = np.arange(n_out) * (rate_in / rate_out)
    return np.interp(t, np.arange(audio.size), audio).astype(np.float32)


def write_av_clip(clip: AVClip, path: Path, *, codec: CodecSettings | None = None) -> None:
    """Write ``clip`` as an mp4 (H.264 yuv420p, AAC 16 kHz mono) at ``path``.

    ``codec.fps`` must equal ``clip.fps`` (the frames were rendered for that rate).
    """
    codec = codec or CodecSettings(fps=clip.fps)
    if codec.fps != clip.fps:
        raise InvalidInput(
            f"codec fps {codec.fps} differs from the clip's {clip.fps}",
            code="invalid_video_options",
        )
    frames = clip.frames
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidInput(
            f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}",
            code="invalid_sample",
        )
    height, width = frames.shape[1:3]
    if height % 2 or width % 2 or clip.audio.ndim != 1 or clip.audio.size == 0:
        raise InvalidInput(
            "frames need even sides and the audio must be a non-empty (N,) array",
            code="invalid_sample",
        )
    encoder = find_h264_encoder()
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream(encoder, rate=codec.fps)
        if not isinstance(video, av.VideoStream):
            raise TagloopError(f"{encoder} did not open a video stream", code="no_h264_encoder")
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        if encoder == "libx264":
            video.options = {"preset": codec.preset, "crf": str(codec.crf)}
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, codec.fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))

        source = av.AudioFrame.from_ndarray(
            np.clip(clip.audio, -1.0, 1.0).astype(np.float32)[None, :], format="flt", layout="mono"
        )
        source.sample_rate = clip.sample_rate
        source.pts = 0
        source.time_base = Fraction(1, clip.sample_rate)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
        for resampled in [*resampler.resample(source), *resampler.resample(None)]:
            container.mux(audio.encode(resampled))
        container.mux(audio.encode(None))


def write_av_clips(
    render: Callable[[int], AVClip],
    n: int,
    out_dir: Path,
    *,
    codec: CodecSettings,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Render clip ``i`` for ``i < n`` one at a time (a clip set does not fit in memory as
    frames) and write it to ``out_dir/videos/{i:05d}.mp4``; the paths in order."""
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i in range(n):
        path = videos / f"{i:05d}.mp4"
        write_av_clip(render(i), path, codec=codec)
        paths.append(path)
        if progress is not None:
            progress(i + 1, n)
    return paths
