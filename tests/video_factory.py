"""Make real test videos with PyAV (for long or large inputs the shared data doesn't have)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_test_video(
    path: Path,
    *,
    seconds: float,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    audio: bool = True,
    sample_rate: int = 44_100,
    preset: str = "ultrafast",
) -> Path:
    """A moving gradient with a frame counter band and a sweeping tone; H.264 + AAC mp4."""
    n_frames = round(seconds * fps)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": preset, "tune": "zerolatency"}
        as_ = None
        if audio:
            as_ = out.add_stream("aac", rate=sample_rate)
            as_.layout = "stereo"
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        samples_per_frame = sample_rate // fps
        t0 = 0
        for i in range(n_frames):
            img = np.empty((height, width, 3), dtype=np.uint8)
            img[..., 0] = (x + 3 * i) % 256
            img[..., 1] = (y + 5 * i) % 256
            img[..., 2] = (i * 7) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for pkt in vs.encode(frame):
                out.mux(pkt)
            if as_ is not None:
                t = (np.arange(samples_per_frame) + t0) / sample_rate
                t0 += samples_per_frame
                tone = 0.3 * np.sin(2 * np.pi * (300 + 20 * (i % 50)) * t).astype(np.float32)
                af = av.AudioFrame.from_ndarray(
                    np.stack([tone, tone]), format="fltp", layout="stereo"
                )
                af.sample_rate = sample_rate
                af.pts = None
                af.time_base = Fraction(1, sample_rate)
                for pkt in as_.encode(af):
                    out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if as_ is not None:
            for pkt in as_.encode():
                out.mux(pkt)
    return path
