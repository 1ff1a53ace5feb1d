"""Probe a video: duration, size, frame rate, codecs and whether it has sound.

The probe also decodes the first video frame, so a file that opens but cannot be decoded is
refused at upload time (``undecodable_stream``) instead of failing later in a worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container

from tagloop.errors import InvalidMedia
from tagloop.media.frames import display_size
from tagloop.media.source import (
    MediaSource,
    describe_source,
    open_container,
    select_audio_stream,
    select_video_stream,
)

# How many packets the probe reads looking for a first decodable video frame.
_MAX_PROBE_PACKETS = 2_000
_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class MediaInfo:
    """What a worker needs to plan clips, and what the video table stores.

    ``width`` and ``height`` are as displayed: a portrait phone video stored as 1920x1080
    with a 90-degree display matrix is 1080 wide and 1920 tall.
    """

    duration_s: float
    width: int
    height: int
    fps: float
    has_audio: bool
    video_codec: str
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None


def probe_media(source: MediaSource) -> MediaInfo:
    """Read the headers of ``source`` (a path or a seekable binary file object).

    Raises InvalidMedia with code ``missing_file``, ``empty_file``, ``truncated_media``,
    ``not_a_video``, ``unreadable_media``, ``undecodable_stream`` or ``unknown_duration``.
    """
    name = describe_source(source)
    with open_container(source) as container:
        video = select_video_stream(container, name=name)
        audio = select_audio_stream(container)
        first = _decode_first_frame(container, video, name=name)
        width, height = display_size(first)  # upright: phone videos carry a rotation
        duration = _find_duration(container, name=name)
        info = MediaInfo(
            duration_s=duration,
            width=width,
            height=height,
            fps=_find_fps(video, duration_s=duration),
            has_audio=audio is not None,
            video_codec=video.codec_context.codec.canonical_name,
            audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        )
    if hasattr(source, "seek"):
        source.seek(0)
    return info


def _decode_first_frame(
    container: av.container.InputContainer, video: av.video.stream.VideoStream, *, name: str
) -> av.VideoFrame:
    """Decode until the first video frame; refuse a stream that yields none."""
    # One frame: starting decoder threads would cost more than they save.
    video.codec_context.thread_count = 1
    errors = 0
    try:
        for n_packets, packet in enumerate(container.demux(video)):
            if n_packets >= _MAX_PROBE_PACKETS:
                break
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                errors += 1  # a damaged leading packet is not fatal yet
                continue
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    return frame
    except (av.FFmpegError, OSError) as exc:
        raise InvalidMedia(
            f"{name}: cannot read the video: {exc}", code="unreadable_media"
        ) from exc
    detail = f" ({errors} damaged packets)" if errors else ""
    raise InvalidMedia(
        f"{name}: the {video.codec_context.name} video stream has no decodable frame{detail}",
        code="undecodable_stream",
    )


def _find_duration(container: av.container.InputContainer, *, name: str) -> float:
    """Container duration, else the longest stream, else a Matroska tag, else a packet scan."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    candidates = [
        float(s.duration * s.time_base)
        for s in container.streams
        if s.duration is not None and s.duration > 0 and s.time_base is not None
    ]
    candidates += [_parse_duration_tag(s.metadata.get("DURATION", "")) for s in container.streams]
    best = max(candidates, default=0.0)
    if best > 0:
        return best
    best = _scan_packet_duration(container)
    if best <= 0:
        raise InvalidMedia(f"{name}: cannot determine the duration", code="unknown_duration")
    return best


def _parse_duration_tag(value: str) -> float:
    """Parse Matroska's ``HH:MM:SS.nnnnnnnnn`` stream tag; 0.0 when absent or malformed."""
    match = _DURATION_TAG.match(value.strip())
    if match is None:
        return 0.0
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _scan_packet_duration(container: av.container.InputContainer) -> float:
    """Demux (no decoding) to the end: last packet end minus first packet start."""
    container.seek(0)
    first: float | None = None
    last = 0.0
    streams = [s for s in container.streams if s.type in ("video", "audio")]
    for packet in container.demux(*streams):
        if packet.pts is None or packet.time_base is None:
            continue
        start = float(packet.pts * packet.time_base)
        end = start + float((packet.duration or 0) * packet.time_base)
        first = start if first is None else min(first, start)
        last = max(last, end)
    return 0.0 if first is None else last - first


def _find_fps(video: av.video.stream.VideoStream, *, duration_s: float) -> float:
    """Average frame rate, else FFmpeg's guess, else frames over duration."""
    for rate in (video.average_rate, video.guessed_rate, video.base_rate):
        if isinstance(rate, Fraction) and rate > 0 and float(rate) < 1000:
            return float(rate)
    if video.frames and duration_s > 0:
        return video.frames / duration_s
    return 0.0
