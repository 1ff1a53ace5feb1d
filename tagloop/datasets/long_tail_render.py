"""Render long-tail clip specs (``long_tail_spec``) to pixels, sound, clip tensors and mp4 files.

A frame is a 64x64 canvas, a 2x2 grid of 32-px cells with one 28-px MNIST digit in each used
cell, shifted along the spec's travel for a moving clip, blurred, inverted and tinted as the
spec says. The sound is the spec's FSDD recordings (16 kHz, peak-normalised) at their onsets
over the spec's background noise at ``snr_db`` below the speech.

:func:`render_clip_tensors` goes straight to the model input with the service's own feature
code (``compute_logmel``, ``fit_logmel``; AREA downscaling like ``to_model_array``) and skips the
mp4 round trip: the AV-digits set exercises that path, and at 20,000 clips on 2 cores encoding
and decoding would cost several times the rendering. :func:`write_long_tail_videos` writes real
mp4 files for the few clips an ingestion test needs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from tagloop.datasets.av_writer import AUDIO_RATE, find_h264_encoder
from tagloop.datasets.degradation import blur_image
from tagloop.datasets.dtmf import synthesize_dtmf
from tagloop.datasets.fsdd import read_wav
from tagloop.datasets.long_tail_spec import CLIP_SECONDS, ClipSpec, FsddTable, read_fsdd_table
from tagloop.datasets.mnist import read_mnist_test
from tagloop.errors import InvalidInput, TagloopError
from tagloop.features.clip_tensor import ClipTensors, fit_logmel, logmel_frames_for
from tagloop.features.logmel import compute_logmel

CANVAS = 64
CELL = 32
BLUR_SIGMA = 1.5
SILENT_NOISE_RMS = 0.03  # noise level of a clip with no speech to set an SNR against
TINT_RGB = {
    "grey": (1.0, 1.0, 1.0),
    "red": (1.0, 0.3, 0.3),
    "green": (0.3, 1.0, 0.3),
    "blue": (0.3, 0.3, 1.0),
}


@dataclass(frozen=True, eq=False)
class LongTailSources:
    """What specs point at: MNIST test images uint8 ``(10000, 28, 28)`` and every FSDD
    recording as float32 at ``sample_rate``, in FSDD table order."""

    images: np.ndarray
    waves: tuple[np.ndarray, ...]
    sample_rate: int
    fsdd: FsddTable


def load_long_tail_sources(
    data_dir: Path, *, sample_rate: int = AUDIO_RATE, rows: Iterable[int] | None = None
) -> LongTailSources:
    """Read MNIST and the FSDD recordings (all 3,000, ~90 MB at 16 kHz, or only ``rows``; the
    others are left empty), resampled once with one cached kernel."""
    import torchaudio

    fsdd = read_fsdd_table(data_dir / "fsdd")
    images, _ = read_mnist_test(data_dir / "mnist")
    wanted = set(range(len(fsdd.files)) if rows is None else rows)
    resamplers: dict[int, torchaudio.transforms.Resample] = {}
    waves = []
    for row, file in enumerate(fsdd.files):
        if row not in wanted:
            waves.append(np.zeros(0, dtype=np.float32))
            continue
        audio, rate = read_wav(data_dir / "fsdd" / file)
        if rate != sample_rate:
            if rate not in resamplers:
                resamplers[rate] = torchaudio.transforms.Resample(rate, sample_rate)
            with torch.no_grad():
                audio = resamplers[rate](torch.from_numpy(audio)).numpy()
        waves.append(np.ascontiguousarray(audio, dtype=np.float32))
    return LongTailSources(images=images, waves=tuple(waves), sample_rate=sample_rate, fsdd=fsdd)


def render_frame(spec: ClipSpec, images: np.ndarray, *, t: float) -> np.ndarray:
    """uint8 ``(64, 64, 3)`` RGB at clip time fraction ``t`` in [0, 1]."""
    return render_frames(spec, images, times=[t])[0]


def render_frames(spec: ClipSpec, images: np.ndarray, *, times: Sequence[float]) -> np.ndarray:
    """uint8 ``(len(times), 64, 64, 3)``: the digit layer is drawn (and blurred) once, then
    shifted per frame, since motion is a pure translation."""
    layer = np.zeros((CANVAS, CANVAS), dtype=np.float64)
    pad = (CELL - 28) // 2
    for image, cell in zip(spec.images, spec.cells, strict=True):
        top, left = (cell // 2) * CELL + pad, (cell % 2) * CELL + pad
        block = layer[top : top + 28, left : left + 28]
        np.maximum(block, images[image], out=block)
    if spec.blurred:
        layer = blur_image(layer, sigma=BLUR_SIGMA)
    tint = np.asarray(TINT_RGB[spec.tint])
    out = np.empty((len(times), CANVAS, CANVAS, 3), dtype=np.uint8)
    for k, t in enumerate(times):
        dx, dy = (round(s * (2.0 * t - 1.0)) for s in spec.shift_px)
        frame = _shift(layer, dx=dx, dy=dy)
        if spec.inverted:
            frame = 255.0 - frame
        out[k] = np.clip(np.rint(frame[:, :, None] * tint), 0, 255).astype(np.uint8)
    return out


def _shift(layer: np.ndarray, *, dx: int, dy: int) -> np.ndarray:
    """Translate by (dx, dy) pixels; what enters from the border is background (0)."""
    out = np.zeros_like(layer)
    h, w = layer.shape
    src_y, dst_y = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    src_x, dst_x = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    out[dst_y, dst_x] = layer[src_y, src_x]
    return out


def synthesize_noise(
    kind: str, *, n: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """float64 ``(n,)`` background of one kind, RMS 1 over the samples where it sounds
    (so sparse beeps and clicks are as loud as a continuous noise while they last)."""
    if kind == "none":
        return np.zeros(n)
    if kind in ("white", "pink", "brown"):
        # Shape white noise's spectrum: amplitude ~ f^0 (white), f^-1/2 (pink), f^-1 (brown).
        power = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, d=1.0 / sample_rate)
        spectrum *= np.maximum(freqs, 20.0) ** -power
        noise = np.fft.irfft(spectrum, n)
    elif kind == "hum":
        base = rng.choice((50.0, 60.0)) * (1.0 + rng.uniform(-0.01, 0.01))
        t = np.arange(n) / sample_rate
        noise = sum(
            np.sin(2.0 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 6)
        )
    elif kind == "beeps":
        noise = np.zeros(n)
        for _ in range(int(rng.integers(2, 5))):
            length = round(rng.uniform(0.08, 0.2) * sample_rate)
            start = int(rng.integers(0, max(1, n - length)))
            digit = int(rng.integers(10))
            tone = synthesize_dtmf(
                digit, sample_rate=sample_rate, duration_s=length / sample_rate, rng=rng
            )
            noise[start : start + tone.size] += tone[: n - start]
    elif kind == "clicks":
        noise = np.zeros(n)
        length = round(0.003 * sample_rate)
        decay = np.exp(-np.arange(length) / (0.0006 * sample_rate))
        for start in rng.integers(0, n - length, size=int(rng.integers(4, 13))):
            noise[start : start + length] += rng.standard_normal(length) * decay
    else:
        raise InvalidInput(f"unknown noise kind {kind!r}", code="invalid_noise")
    active = noise[np.abs(noise) > 1e-9]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 0.0
    return noise / rms if rms > 0 else noise


def render_audio(spec: ClipSpec, sources: LongTailSources, *, clip_seconds: float) -> np.ndarray:
    """float32 ``(round(clip_seconds * sample_rate),)``, peak at most 0.99."""
    rate = sources.sample_rate
    n = round(clip_seconds * rate)
    speech = np.zeros(n)
    spoken = 0
    for row, onset in zip(spec.recordings, spec.onsets_s, strict=True):
        wave = sources.waves[row].astype(np.float64)
        wave = 0.5 * wave / max(float(np.max(np.abs(wave))), 1e-6)
        start = round(onset * rate)
        part = wave[: max(0, n - start)]
        speech[start : start + part.size] += part
        spoken += part.size
    rng = np.random.default_rng(spec.render_seed)
    noise = synthesize_noise(spec.noise, n=n, sample_rate=rate, rng=rng)
    if spoken:
        level = math.sqrt(float(np.sum(speech**2)) / spoken) * 10.0 ** (-spec.snr_db / 20.0)
    else:
        level = SILENT_NOISE_RMS
    mixed = speech + level * noise
    peak = float(np.max(np.abs(mixed)))
    if peak > 0.99:
        mixed *= 0.99 / peak
    return mixed.astype(np.float32)


def render_clip_tensors(
    spec: ClipSpec,
    sources: LongTailSources,
    *,
    frames_per_clip: int = 8,
    frame_size: int = 32,
    n_mels: int = 64,
    clip_seconds: float = CLIP_SECONDS,
) -> ClipTensors:
    """The model input of one clip: frames ``(T, 3, frame_size, frame_size)`` uint8 at the
    extractor's sample times, log-mel ``(n_mels, S)`` float16 of the mixed sound."""
    if frames_per_clip < 1 or frame_size < 1:
        raise InvalidInput("frames_per_clip and frame_size must be >= 1", code="invalid_option")
    # The extractor samples frames at the centres of T equal slices of the clip.
    times = [(k + 0.5) / frames_per_clip for k in range(frames_per_clip)]
    canvas = torch.from_numpy(render_frames(spec, sources.images, times=times))
    frames = canvas.permute(0, 3, 1, 2).float()
    if frame_size != CANVAS:
        frames = torch.nn.functional.interpolate(frames, size=(frame_size, frame_size), mode="area")
    frames = frames.round().clamp(0, 255).to(torch.uint8).contiguous()
    audio = render_audio(spec, sources, clip_seconds=clip_seconds)
    logmel = compute_logmel(audio, sample_rate=sources.sample_rate, n_mels=n_mels)
    n_frames = logmel_frames_for(clip_seconds, sample_rate=sources.sample_rate)
    logmel = fit_logmel(logmel, n_frames=n_frames).to(torch.float16)
    return ClipTensors(frames=frames, logmel=logmel, audio_mask=True)


def write_long_tail_video(
    spec: ClipSpec,
    sources: LongTailSources,
    path: Path,
    *,
    fps: int = 10,
    clip_seconds: float = CLIP_SECONDS,
) -> None:
    """One spec as an H.264 (yuv420p, 64x64) + AAC (16 kHz mono) mp4 of ``clip_seconds``."""
    if fps < 1:
        raise InvalidInput(f"fps must be >= 1, got {fps}", code="invalid_video_options")
    n_frames = max(1, math.ceil(clip_seconds * fps - 1e-9))
    frames = render_frames(
        spec, sources.images, times=[k / fps / clip_seconds for k in range(n_frames)]
    )
    audio = render_audio(spec, sources, clip_seconds=clip_seconds)
    encoder = find_h264_encoder()
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream(encoder, rate=fps)
        if not isinstance(video, av.VideoStream):
            raise TagloopError(f"{encoder} did not open a video stream", code="no_h264_encoder")
        video.width = video.height = CANVAS
        video.pix_fmt = "yuv420p"
        if encoder != "libopenh264":
            video.options = {"preset": "ultrafast"}
        stream = container.add_stream("aac", rate=sources.sample_rate, layout="mono")
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        source = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        source.sample_rate = sources.sample_rate
        source.pts = 0
        source.time_base = Fraction(1, sources.sample_rate)
        # AAC wants planar float in frames of its own size; the resampler does both.
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=sources.sample_rate)
        for chunk in [*resampler.resample(source), *resampler.resample(None)]:
            container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))


def write_long_tail_videos(
    specs: Sequence[ClipSpec], sources: LongTailSources, out_dir: Path, *, fps: int = 10
) -> Path:
    """Write ``out_dir/videos/<index>.mp4`` per spec and ``out_dir/labels.jsonl`` (one line per
    clip: file, split, speaker, tags); returns the labels path."""
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    labels = out_dir / "labels.jsonl"
    with labels.open("w") as handle:
        for spec in specs:
            name = f"videos/{spec.index:06d}.mp4"
            write_long_tail_video(spec, sources, out_dir / name, fps=fps)
            row = {"file": name, "split": spec.split, "speaker": spec.speaker, "tags": spec.tags}
            handle.write(json.dumps(row) + "\n")
    return labels
