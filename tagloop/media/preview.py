"""Browser-friendly clip previews (H.264 + AAC in MP4) and JPEG thumbnails, encoded with PyAV.

Previews are encoded on the fly from the frames the extractor decoded, so the clip a person
labels is exactly the clip the model saw. The MP4 goes through a temporary file because
FFmpeg's ``+faststart`` (``moov`` before ``mdat``, so a browser can start playing and seek
over HTTP Range requests before the whole file has arrived) has to reread its own output.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from tagloop.errors import TagloopError
from tagloop.media.frames import scale_upright

# In order of preference; the PyAV wheels ship libx264, other FFmpeg builds may not.
_H264_ENCODERS = ("libx264", "libopenh264", "h264")
# ultrafast at a constant QP costs ~0.3 ms a 240p frame (crf: ~0.5 ms, veryfast: ~1.7 ms).
# One encoder thread: it already runs beside the decoder, more would compete with FFmpeg's.
_X264_OPTIONS = {"preset": "ultrafast", "qp": "30", "threads": "1"}
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_AAC_BITRATE = 64_000
# Previews are for a person choosing tags, not for watching: 15 fps, and mono sound at the
# model's rate (a person hears what the model heard; speech and most sounds stay clear),
# halve the encoding cost next to 30 fps stereo 48 kHz. 24 kHz is the fallback rate when the
# model's rate is not one AAC supports.
MAX_PREVIEW_FPS = 15.0
MAX_PREVIEW_AUDIO_RATE = 24_000
# Neither side of a preview below one H.264 macroblock (a 2 px wide picture shows nothing, and
# some decoders refuse it); the long side at most 4x the preview height (960 px at 240).
MIN_PREVIEW_SIDE = 16
MAX_PREVIEW_ASPECT = 4
# A fine time base so variable frame rates keep their exact timing.
_VIDEO_TIME_BASE = Fraction(1, 90_000)


@lru_cache(maxsize=1)
def pick_h264_encoder() -> str:
    """The first H.264 encoder in this FFmpeg build that opens; raise if there is none."""
    for name in _H264_ENCODERS:
        if name not in av.codecs_available:
            continue
        try:
            ctx = _video_encoder(name, width=64, height=64, pix_fmt="yuv420p")
            ctx.open()
        except (av.FFmpegError, TagloopError):
            continue
        return name
    # A deployment problem, not the video's fault: not InvalidMedia.
    raise TagloopError("this FFmpeg build has no H.264 encoder", code="no_h264_encoder")


def preview_size(width: int, height: int, *, max_height: int) -> tuple[int, int]:
    """``(width, height)`` of the preview, both even, with the source's aspect where it can.

    At most ``max_height`` tall and ``MAX_PREVIEW_ASPECT * max_height`` wide, not upscaled,
    except that neither side goes below ``MIN_PREVIEW_SIDE`` (or ``max_height`` when that is
    smaller): a 16x2000 strip becomes 16x240, a 2000x16 one 960x16, not 2x240 or 2000x16.
    """
    max_h = max(2, max_height - max_height % 2)
    max_w = MAX_PREVIEW_ASPECT * max_h
    floor = min(MIN_PREVIEW_SIDE, max_h)
    target_h = min(height, max_h, max_w * height // width)
    # Raise a short side below the floor, then let the caps clip the long side.
    target_h = max(target_h, floor, -(-floor * height // width))
    target_h = min(max_h, target_h - target_h % 2)
    target_w = round(width * target_h / height / 2) * 2
    return min(max_w, max(floor, target_w)), max(floor, target_h)


def preview_frame_step(fps: float) -> int:
    """Encode every ``step``-th frame so the preview runs at most ``MAX_PREVIEW_FPS``."""
    if fps <= 0:
        return 1
    return max(1, math.ceil(fps / MAX_PREVIEW_FPS - 1e-3))


def aac_supports(sample_rate: int) -> bool:
    """Whether AAC (and so every browser) takes ``sample_rate`` as it is."""
    return sample_rate in _AAC_RATES


def preview_audio_rate(source_rate: int) -> int:
    """The AAC rate for a preview track resampled from the source: at most 24 kHz."""
    rate = min(source_rate, MAX_PREVIEW_AUDIO_RATE)
    return max((r for r in _AAC_RATES if r <= rate), default=_AAC_RATES[0])


class PreviewWriter:
    """Encode one clip's preview MP4; feed frames in order, then call :meth:`finish`.

    Audio is ``(C, N)`` float32 planar at ``audio_rate`` with ``C`` = 1 (mono) or 2 (stereo).
    Use as a context manager so an abandoned clip still removes its temporary file.
    """

    def __init__(
        self,
        *,
        width: int,
        height: int,
        fps: float,
        start_s: float,
        audio_rate: int | None,
        audio_channels: int,
    ) -> None:
        self.width, self.height, self.start_s = width, height, start_s
        self._tmpdir = Path(tempfile.mkdtemp(prefix="tagloop-preview-"))
        self._path = self._tmpdir / "preview.mp4"
        try:
            self._out = av.open(str(self._path), mode="w", options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError):
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        video = self._out.add_stream(pick_h264_encoder(), rate=rate)
        if not isinstance(video, av.video.stream.VideoStream):
            raise TypeError(f"{video} is not a video stream")
        self._video = video
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._video.codec_context.time_base = _VIDEO_TIME_BASE
        # Keyframes every ~2 s so a browser can seek inside the clip.
        self._video.codec_context.gop_size = max(1, round(2 * float(rate)))
        self._video.codec_context.thread_count = 1  # see _X264_OPTIONS
        if self._video.codec_context.name == "libx264":
            self._video.codec_context.options = dict(_X264_OPTIONS)
        self._last_pts = -1
        self._scaler = VideoReformatter()  # keeps its scaling context from frame to frame
        self._audio: av.audio.stream.AudioStream | None = None
        self._audio_written = 0
        if audio_rate is not None:
            layout = "mono" if audio_channels == 1 else "stereo"
            self._audio = self._out.add_stream("aac", rate=audio_rate, layout=layout)
            self._audio.bit_rate = _AAC_BITRATE
            # The default two-loop coder costs as much as decoding; "fast" is plenty for a preview.
            self._audio.codec_context.options = {"aac_coder": "fast"}
        self._closed = False

    def __enter__(self) -> PreviewWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_video(self, frame: av.VideoFrame, *, time_s: float) -> None:
        """Scale ``frame`` (any size, format or rotation) to the preview and encode it."""
        small = scale_upright(
            frame, width=self.width, height=self.height, format="yuv420p", scaler=self._scaler
        )
        pts = round((time_s - self.start_s) / _VIDEO_TIME_BASE)
        pts = max(pts, self._last_pts + 1)  # the muxer needs strictly increasing timestamps
        self._last_pts = pts
        small.pts, small.time_base = pts, _VIDEO_TIME_BASE
        self._out.mux(self._video.encode(small))

    def add_audio(self, samples: np.ndarray) -> None:
        """Encode ``(C, N)`` float32 planar samples that follow the previous ones."""
        if self._audio is None or samples.shape[1] == 0:
            return
        layout = "mono" if samples.shape[0] == 1 else "stereo"
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=layout
        )
        rate = self._audio.codec_context.sample_rate
        frame.sample_rate = rate
        frame.pts, frame.time_base = self._audio_written, Fraction(1, rate)
        self._audio_written += samples.shape[1]
        self._out.mux(self._audio.encode(frame))

    def finish(self) -> bytes:
        """Flush the encoders, write the MP4 and return its bytes."""
        try:
            self._out.mux(self._video.encode(None))
            if self._audio is not None:
                self._out.mux(self._audio.encode(None))
            self._out.close()
            self._closed = True
            return self._path.read_bytes()
        finally:
            self.close()

    def close(self) -> None:
        """Drop the encoder and the temporary file (idempotent)."""
        if not self._closed:
            self._closed = True
            # An abandoned, half-written preview: nothing in it is worth an error.
            with contextlib.suppress(av.FFmpegError, OSError):
                self._out.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)


def encode_jpeg(frame: av.VideoFrame, *, width: int, height: int) -> bytes:
    """A baseline JPEG of ``frame``, upright, scaled to ``width x height``."""
    ctx = _video_encoder("mjpeg", width=width, height=height, pix_fmt="yuvj420p")
    small = scale_upright(frame, width=width, height=height, format="yuvj420p")
    small.pts = 0
    packets = list(ctx.encode(small)) + list(ctx.encode(None))
    return b"".join(bytes(p) for p in packets)


def _video_encoder(
    name: str, *, width: int, height: int, pix_fmt: str
) -> av.video.codeccontext.VideoCodecContext:
    """A standalone video encoder context (not attached to a container)."""
    ctx = av.CodecContext.create(name, "w")
    if not isinstance(ctx, av.video.codeccontext.VideoCodecContext):
        raise TagloopError(f"{name} is not a video encoder", code="no_video_encoder")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = Fraction(1, 25)
    # One small picture: starting encoder threads costs ~7 ms, encoding it ~0.2 ms.
    ctx.thread_count = 1
    return ctx
