"""Shared facts and cached extractions for the media and feature tests.

The durations below were verified by decoding every file to its end (the last audio sample,
or the last video frame plus its duration); the data README's figures are rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import numpy as np

from tagloop.media.extract import ClipMedia, iter_clip_media
from tagloop.media.probe import MediaInfo, probe_media

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VIDEOS = DATA / "videos"

# Options used for the cached extraction: 4 s clips give multi-clip files, merged tails and
# single short clips among the seven real files.
CLIP_SECONDS = 4.0
FRAMES_PER_CLIP = 8
FRAME_SIZE = 32
SAMPLE_RATE = 16_000
PREVIEW_HEIGHT = 240


@dataclass(frozen=True)
class VideoFacts:
    duration_s: float
    width: int
    height: int
    channels: int | None  # None: no audio
    sample_rate: int | None


FACTS: dict[str, VideoFacts] = {
    "ucf_style_mpeg4_mp3.avi": VideoFacts(6.56, 320, 240, 2, 44_100),
    "kinetics_style_noaudio.mp4": VideoFacts(10.0, 340, 256, None, None),
    "pancake_h264_opus.mkv": VideoFacts(10.38, 426, 240, 1, 48_000),
    "bbb_vp8_vorbis_1s.webm": VideoFacts(1.0, 1280, 720, 2, 44_100),
    "bbb_h264_aac_6ch.mp4": VideoFacts(5.31, 1280, 720, 6, 48_000),
    "carphone_qcif_noaudio.mp4": VideoFacts(4.0, 176, 144, None, None),
    "moviepy_audio_edge.mp4": VideoFacts(11.23, 640, 360, 2, 44_100),
}
NAMES = sorted(FACTS)


@cache
def probe(name: str) -> MediaInfo:
    return probe_media(VIDEOS / name)


@cache
def extract(name: str) -> tuple[ClipMedia, ...]:
    """All clips of a real file with the test options, decoded once per test session."""
    return tuple(
        iter_clip_media(
            VIDEOS / name,
            info=probe(name),
            clip_seconds=CLIP_SECONDS,
            frames_per_clip=FRAMES_PER_CLIP,
            frame_size=FRAME_SIZE,
            sample_rate=SAMPLE_RATE,
            preview_height=PREVIEW_HEIGHT,
        )
    )


def write_gray_video(
    path: Path, *, levels: list[int], fps: int = 10, size: tuple[int, int] = (64, 48)
) -> None:
    """A video whose frame ``i`` is solid gray ``levels[i]`` (to check which frames are sampled)."""
    width, height = size
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.qmax = 2
        for i, level in enumerate(levels):
            image = np.full((height, width, 3), level, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
