"""Write AV-digit samples as real mp4 files (H.264 yuv420p + AAC) with PyAV only.

The service ingests real video files, so the demo and the benchmark go through the same
decode path as user uploads: a still digit image for the length of its sound.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from tagloop.errors import InvalidInput, TagloopError

if TYPE_CHECKING:
    from tagloop.datasets.av_digits import AVSample

# AAC at 16 kHz is plenty for 8 kHz sources and what the feature pipeline resamples to anyway.
AUDIO_RATE = 16_000
_H264_ENCODERS = ("libx264", "libopenh264", "h264")
LABEL_COLUMNS = ("file", "digit", "split", "speaker")


@lru_cache(maxsize=1)
def find_h264_encoder() -> str:
    """Name of the first H.264 encoder this PyAV build can open (libx264 preferred)."""
    for name in _H264_ENCODERS:
        if name not in av.codecs_available:
            continue
        try:
            av.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue  # listed as a decoder only
        return name
    raise TagloopError(
        f"PyAV {av.__version__} has no H.264 encoder (tried {', '.join(_H264_ENCODERS)})",
        code="no_h264_encoder",
    )


def upscale_image(image: np.ndarray, *, size: int) -> np.ndarray:
    """Nearest-neighbour resize of uint8 ``(H, W)`` to uint8 ``(size, size)``: crisp pixels."""
    h, w = image.shape
    rows = np.arange(size) * h // size
    cols = np.arange(size) * w // size
    return np.ascontiguousarray(image[rows[:, None], cols[None, :]])


def write_av_video(sample: AVSample, path: Path, *, fps: int = 10, size: int = 64) -> None:
    """Write ``sample`` as an mp4: its image as H.264 video for the length of its audio.

    Args:
        sample: image uint8 ``(H, W)``, audio float32 ``(N,)`` at ``sample.sample_rate``.
        path: the ``.mp4`` to create (its folder must exist).
        fps: video frame rate; a still image needs few frames.
        size: output frame side in pixels; even (yuv420p halves the chroma planes).

    The audio is resampled to 16 kHz mono AAC; the video has ``ceil(seconds * fps)`` frames.
    """
    if size < 16 or size % 2 or fps < 1:
        raise InvalidInput(
            f"size must be even and >= 16, fps >= 1; got {size}, {fps}",
            code="invalid_video_options",
        )
    if sample.image.ndim != 2 or sample.audio.ndim != 1 or sample.audio.size == 0:
        raise InvalidInput(
            "sample needs an (H, W) image and a non-empty (N,) audio array",
            code="invalid_sample",
        )
    seconds = sample.audio.size / sample.sample_rate
    n_frames = max(1, int(np.ceil(seconds * fps - 1e-9)))
    luma = upscale_image(sample.image.astype(np.uint8), size=size)
    # Grey pixels: neutral chroma (128), so the yuv420p frame is built without a colour convert.
    chroma = np.full((size // 2, size), 128, dtype=np.uint8)
    yuv = np.concatenate([luma, chroma], axis=0)

    encoder = find_h264_encoder()
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream(encoder, rate=fps)
        if not isinstance(video, av.VideoStream):
            raise TagloopError(f"{encoder} did not open a video stream", code="no_h264_encoder")
        video.width = size
        video.height = size
        video.pix_fmt = "yuv420p"
        if encoder != "libopenh264":
            video.options = {"preset": "ultrafast", "tune": "stillimage"}
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")

        for index in range(n_frames):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))

        source = av.AudioFrame.from_ndarray(
            np.clip(sample.audio, -1.0, 1.0).astype(np.float32)[None, :],
            format="flt",
            layout="mono",
        )
        source.sample_rate = sample.sample_rate
        source.pts = 0
        source.time_base = Fraction(1, sample.sample_rate)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
        for resampled in [*resampler.resample(source), *resampler.resample(None)]:
            container.mux(audio.encode(resampled))
        container.mux(audio.encode(None))


def write_av_dataset(
    samples: Sequence[AVSample],
    out_dir: Path,
    *,
    workers: int = 1,
    fps: int = 10,
    size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write every sample to ``out_dir/videos/<id>.mp4`` and list them in ``out_dir/labels.csv``.

    Args:
        samples: the clips; ``<id>`` is ``{position:05d}_{digit}``.
        out_dir: created if missing; existing files of the same name are overwritten.
        workers: threads encoding in parallel; 1 encodes in the calling thread.
        fps, size: passed to :func:`write_av_video`.
        progress: called as ``progress(done, total)`` after each clip, in the calling thread.

    Returns:
        The path of ``labels.csv`` (columns file, digit, split, speaker; file relative to
        ``out_dir``), rows in sample order.
    """
    if workers < 1:
        raise InvalidInput(f"workers must be >= 1, got {workers}", code="invalid_video_options")
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    names = [f"videos/{position:05d}_{sample.digit}.mp4" for position, sample in enumerate(samples)]
    total = len(samples)
    if workers == 1 or total < 2:
        for done, (sample, name) in enumerate(zip(samples, names, strict=True), start=1):
            write_av_video(sample, out_dir / name, fps=fps, size=size)
            if progress is not None:
                progress(done, total)
    else:
        # Threads, not processes: PyAV encodes without the GIL, and threads need no pickling,
        # no __main__ guard and no fork of a caller that holds threads (torch, a web server).
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(write_av_video, sample, out_dir / name, fps=fps, size=size)
                for sample, name in zip(samples, names, strict=True)
            ]
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()  # re-raise a worker's error here
                if progress is not None:
                    progress(done, total)

    labels = out_dir / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        for sample, name in zip(samples, names, strict=True):
            writer.writerow([name, sample.digit, sample.split, sample.speaker or ""])
    return labels
