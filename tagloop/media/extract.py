"""Decode a video once, front to back, and yield each clip's model input and preview.

Memory stays bounded by one or two open clips: decoded frames are kept only as references to
the few frames on screen at the sampling times, preview frames are encoded as they arrive, and
audio is buffered only across the demuxer's interleaving skew. A two-hour 1080p file costs no
more memory than a two-minute one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

import av
import av.container
import numpy as np

from tagloop.errors import InvalidInput, InvalidMedia
from tagloop.media.audio import AudioTrack
from tagloop.media.background import SerialWorker
from tagloop.media.decode import iter_decoded_frames
from tagloop.media.frames import FramesAt, display_size, sample_times, stack_model_frames
from tagloop.media.preview import (
    PreviewWriter,
    aac_supports,
    encode_jpeg,
    preview_audio_rate,
    preview_frame_step,
    preview_size,
)
from tagloop.media.probe import MediaInfo
from tagloop.media.segment import plan_clips
from tagloop.media.source import (
    MediaSource,
    describe_source,
    open_container,
    select_audio_stream,
    select_video_stream,
)

# Audio lagging the video by more than this has ended or has a hole; stop waiting for it.
_MAX_AUDIO_LAG_S = 10.0
# Frames waiting for the preview encoder; each holds a decoded full-size picture.
_MAX_QUEUED_FRAMES = 16
# Decoding that stops this far before the probed end is a cut-off file, not rounding.
_TRUNCATION_MIN_S = 1.0
_TRUNCATION_FRACTION = 0.1


@dataclass(frozen=True)
class ClipMedia:
    """One clip, decoded.

    ``frames`` is ``(T, 3, S, S)`` uint8 RGB; ``audio`` is ``(N,)`` float32 mono at the
    requested sample rate (None when the video has no audio); ``preview_mp4`` is an H.264
    (+AAC) MP4 of exactly ``[start_s, end_s)``; ``thumbnail_jpeg`` is its middle frame.
    ``keyframes`` is ``(K, 3, R, R)`` uint8 RGB, K frames at the centres of equal slices of
    the clip converted from the decoded picture straight to ``R`` (for the visual encoder);
    None unless asked for.

    The preview is for a person deciding on tags: at most 15 fps, with the clip's model audio
    as mono AAC (see :mod:`tagloop.media.preview`), which halves its cost next to full rate.
    """

    index: int
    start_s: float
    end_s: float
    frames: np.ndarray
    audio: np.ndarray | None
    preview_mp4: bytes
    thumbnail_jpeg: bytes
    keyframes: np.ndarray | None = None


class _OpenClip:
    """A clip whose window the decoder has reached but that is not yielded yet."""

    def __init__(
        self, index: int, window: tuple[float, float], *, count: int, keep: bool, keyframes: int
    ):
        self.index = index
        self.start_s, self.end_s = window
        self.keep = keep  # False for skip_indices: decode passes over, nothing is encoded
        self.samples = FramesAt(sample_times(self.start_s, self.end_s, count=count))
        self.middle = FramesAt([(self.start_s + self.end_s) / 2])
        self.keyframes = (
            FramesAt(sample_times(self.start_s, self.end_s, count=keyframes))
            if keyframes and keep
            else None
        )
        self.writer: PreviewWriter | None = None
        self.video_done = False
        self.n_frames = 0  # frames decoded inside the window

    def offer(self, frame: av.VideoFrame, *, time_s: float) -> None:
        self.samples.offer(frame, time_s=time_s)
        if self.keep:
            self.middle.offer(frame, time_s=time_s)
        if self.keyframes is not None:
            self.keyframes.offer(frame, time_s=time_s)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _Extraction:
    """The state of one pass: open clips, audio tracks, and counters for the final checks."""

    def __init__(
        self,
        *,
        info: MediaInfo,
        windows: list[tuple[float, float]],
        frames_per_clip: int,
        frame_size: int,
        preview_height: int,
        skip: frozenset[int],
        keyframes: tuple[int, int],
        model_audio: AudioTrack | None,
        preview_audio: AudioTrack | None,
        preview_audio_rate: int | None,
    ) -> None:
        self.info, self.windows, self.skip = info, windows, skip
        self.frames_per_clip, self.frame_size = frames_per_clip, frame_size
        self.preview_height = preview_height
        self.keyframes, self.keyframe_size = keyframes
        self.model_audio, self.preview_audio = model_audio, preview_audio
        # None: no audio; with no preview track of its own, the preview reuses the model audio.
        self.preview_audio_rate = preview_audio_rate
        self.open: dict[int, _OpenClip] = {}
        self.video_clip = 0  # the clip the video frames currently fall into
        self.next_yield = 0
        self.last_frame: tuple[av.VideoFrame, float] | None = None
        self.n_video_frames = 0
        self.preview_step = preview_frame_step(info.fps)
        self.encoder = SerialWorker(max_pending=_MAX_QUEUED_FRAMES)

    def add_video(self, frame: av.VideoFrame, *, time_s: float) -> None:
        last = len(self.windows) - 1
        while self.video_clip < last and time_s >= self.windows[self.video_clip][1]:
            clip = self._clip(self.video_clip)
            if clip.samples.chosen() is None:  # a window with no frame of its own
                clip.offer(frame, time_s=time_s)
            clip.video_done = True
            self.video_clip += 1
        clip = self._clip(self.video_clip)
        clip.offer(frame, time_s=time_s)
        if clip.keep and clip.n_frames % self.preview_step == 0:
            writer = self._writer(clip, frame)
            self.encoder.submit(writer.add_video, frame, time_s=max(time_s, clip.start_s))
        clip.n_frames += 1
        self.last_frame = (frame, time_s)
        self.n_video_frames += 1

    def add_audio(self, frame: av.AudioFrame, *, time_s: float | None) -> None:
        if self.model_audio is not None:
            self.model_audio.push(frame, time_s=time_s)
        if self.preview_audio is not None:
            self.preview_audio.push(frame, time_s=time_s)

    def ready(self, *, at_end: bool) -> Iterator[ClipMedia]:
        """Yield, in order, every clip that has all its video and audio."""
        video_s = self.last_frame[1] if self.last_frame is not None else 0.0
        while self.next_yield < len(self.windows):
            index = self.next_yield
            if not at_end:
                clip = self.open.get(index)
                if clip is None or not clip.video_done:
                    return
                audio_behind = self.model_audio is not None and self.model_audio.end_s < clip.end_s
                if audio_behind and video_s - clip.end_s < _MAX_AUDIO_LAG_S:
                    return
            clip = self._clip(index)
            self.next_yield += 1
            result = self._finish_clip(clip)
            if result is not None:
                yield result

    def close(self) -> None:
        self.encoder.close()  # first: no writer may be in use when it is closed
        for clip in self.open.values():
            clip.close()
        self.open.clear()

    def _clip(self, index: int) -> _OpenClip:
        clip = self.open.get(index)
        if clip is None:
            clip = _OpenClip(
                index,
                self.windows[index],
                count=self.frames_per_clip,
                keep=index not in self.skip,
                keyframes=self.keyframes,
            )
            if self.last_frame is not None:  # the frame on screen at the start precedes it
                clip.offer(self.last_frame[0], time_s=self.last_frame[1])
            self.open[index] = clip
        return clip

    def _writer(self, clip: _OpenClip, frame: av.VideoFrame) -> PreviewWriter:
        if clip.writer is None:
            width, height = preview_size(*display_size(frame), max_height=self.preview_height)
            clip.writer = PreviewWriter(
                width=width,
                height=height,
                fps=self.info.fps,
                start_s=clip.start_s,
                audio_rate=self.preview_audio_rate,
                audio_channels=1,
            )
        return clip.writer

    def _finish_clip(self, clip: _OpenClip) -> ClipMedia | None:
        del self.open[clip.index]
        audio = None
        if self.model_audio is not None:
            audio = self.model_audio.cut(clip.start_s, clip.end_s)[0]
        preview_samples = None
        if self.preview_audio is not None:
            preview_samples = self.preview_audio.cut(clip.start_s, clip.end_s)
        elif audio is not None:
            preview_samples = audio[None, :]
        if not clip.keep:
            clip.close()
            return None
        chosen, middle = clip.samples.chosen(), clip.middle.chosen()
        if chosen is None or middle is None:
            raise InvalidMedia("no video frame was decoded", code="undecodable_stream")
        writer = clip.writer
        if writer is None:  # the video ended before this window: show the last frame, still
            writer = self._writer(clip, middle[0])
            self.encoder.submit(writer.add_video, middle[0], time_s=clip.start_s)
        if preview_samples is not None:
            self.encoder.submit(writer.add_audio, preview_samples)
        preview = self.encoder.call(writer.finish)
        keyframes = None
        if clip.keyframes is not None:
            keys = clip.keyframes.chosen()
            if keys is None:
                raise InvalidMedia("no video frame was decoded", code="undecodable_stream")
            keyframes = stack_model_frames(keys, size=self.keyframe_size)
        return ClipMedia(
            index=clip.index,
            start_s=clip.start_s,
            end_s=clip.end_s,
            frames=stack_model_frames(chosen, size=self.frame_size),
            audio=audio,
            preview_mp4=preview,
            thumbnail_jpeg=encode_jpeg(middle[0], width=writer.width, height=writer.height),
            keyframes=keyframes,
        )


def iter_clip_media(
    source: MediaSource,
    *,
    info: MediaInfo,
    clip_seconds: float,
    frames_per_clip: int,
    frame_size: int,
    sample_rate: int,
    preview_height: int,
    skip_indices: Collection[int] = (),
    keyframes: int = 0,
    keyframe_size: int = 0,
) -> Iterator[ClipMedia]:
    """Decode ``source`` once and yield a :class:`ClipMedia` per planned clip, in order.

    Clips are planned with :func:`plan_clips` on ``info.duration_s``. Indices in
    ``skip_indices`` are decoded over but not encoded and not yielded, so a redelivered task
    resumes where it stopped. ``keyframes`` > 0 also gives each clip that many frames at
    ``keyframe_size`` (``ClipMedia.keyframes``). Raises InvalidMedia: ``truncated_media``
    when decoding stops well before the probed duration, ``undecodable_stream`` when a
    stream cannot be decoded, plus the codes of :func:`~tagloop.media.source.open_container`.
    """
    _check_options(frames_per_clip, frame_size, sample_rate, preview_height)
    if keyframes < 0 or (keyframes and keyframe_size < 1):
        raise InvalidInput("keyframes must be >= 0, keyframe_size >= 1", code="invalid_option")
    windows = plan_clips(info.duration_s, clip_seconds=clip_seconds)
    skip = frozenset(skip_indices)
    name = describe_source(source)
    with open_container(source) as container:
        video = select_video_stream(container, name=name)
        video.thread_type = "AUTO"
        audio = select_audio_stream(container) if info.has_audio else None
        model_audio = preview_audio = None
        preview_rate: int | None = None
        if audio is not None:
            model_audio = AudioTrack(rate=sample_rate, layout="mono")
            preview_rate = sample_rate
            if not aac_supports(sample_rate):  # only then resample a second time
                preview_rate = preview_audio_rate(audio.codec_context.sample_rate)
                preview_audio = AudioTrack(rate=preview_rate, layout="mono")
        state = _Extraction(
            info=info,
            windows=windows,
            frames_per_clip=frames_per_clip,
            frame_size=frame_size,
            preview_height=preview_height,
            skip=skip,
            keyframes=(keyframes, keyframe_size),
            model_audio=model_audio,
            preview_audio=preview_audio,
            preview_audio_rate=preview_rate,
        )
        # Timestamps count from the container start (MPEG-TS files often start at 1.4 s).
        offset = max(0.0, (container.start_time or 0) / av.time_base)
        streams = [video] if audio is None else [video, audio]
        try:
            for frame in iter_decoded_frames(container, streams, name=name):
                time_s = None if frame.time is None else frame.time - offset
                if isinstance(frame, av.VideoFrame):
                    if time_s is None:  # no timestamp: assume the nominal frame rate
                        prev = state.last_frame[1] if state.last_frame else -1 / _fps(info)
                        time_s = prev + 1 / _fps(info)
                    state.add_video(frame, time_s=time_s)
                    yield from state.ready(at_end=False)
                elif isinstance(frame, av.AudioFrame):
                    state.add_audio(frame, time_s=time_s)
                    yield from state.ready(at_end=False)
            for track in (model_audio, preview_audio):
                if track is not None:
                    track.flush()
            _check_complete(state, info=info, name=name)
            yield from state.ready(at_end=True)
        finally:
            state.close()


def _fps(info: MediaInfo) -> float:
    return info.fps if info.fps > 0 else 25.0


def _check_complete(state: _Extraction, *, info: MediaInfo, name: str) -> None:
    """Refuse a pass that decoded no video or stopped well before the probed end."""
    if state.n_video_frames == 0:
        raise InvalidMedia(f"{name}: no video frame could be decoded", code="undecodable_stream")
    reached = state.last_frame[1] + 1 / _fps(info) if state.last_frame else 0.0
    if state.model_audio is not None:
        reached = max(reached, state.model_audio.end_s)
    missing = info.duration_s - reached
    if missing > max(_TRUNCATION_MIN_S, _TRUNCATION_FRACTION * info.duration_s):
        raise InvalidMedia(
            f"{name}: decoding stopped at {reached:.1f} s of {info.duration_s:.1f} s",
            code="truncated_media",
        )


def _check_options(frames_per_clip: int, frame_size: int, sample_rate: int, height: int) -> None:
    if frames_per_clip < 1:
        raise InvalidInput("frames_per_clip must be >= 1", code="invalid_option")
    if frame_size < 1:
        raise InvalidInput("frame_size must be >= 1", code="invalid_option")
    if sample_rate < 1:
        raise InvalidInput("sample_rate must be >= 1", code="invalid_option")
    if height < 2:
        raise InvalidInput("preview_height must be >= 2", code="invalid_option")
