"""Opening media sources (a path or a binary file object) with errors mapped to codes.

Every failure to read bytes as a video becomes :class:`~tagloop.errors.InvalidMedia` with a
code a person can act on: ``missing_file``, ``empty_file``, ``truncated_media``,
``not_a_video`` or ``unreadable_media``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import av
import av.container

from tagloop.errors import InvalidMedia
from tagloop.media.structure import find_truncation

MediaSource = str | Path | BinaryIO

# FFmpeg demuxers that read single images (a JPEG renamed .mp4 opens as a one-frame video).
_IMAGE_FORMAT_SUFFIX = "_pipe"
_IMAGE_FORMATS = {"image2", "apng", "gif", "webp"}


def describe_source(source: MediaSource) -> str:
    """A short name for error messages."""
    if isinstance(source, str | Path):
        return Path(source).name
    return str(getattr(source, "name", "<stream>"))


def check_source(source: MediaSource) -> int:
    """Return the size in bytes; raise InvalidMedia for missing, empty or truncated input."""
    name = describe_source(source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InvalidMedia(f"{name}: no such file", code="missing_file")
        try:
            size = path.stat().st_size
            if size == 0:
                raise InvalidMedia(f"{name}: the file is empty (0 bytes)", code="empty_file")
            with path.open("rb") as fh:
                reason = find_truncation(fh, size=size)
        except OSError as exc:
            raise InvalidMedia(f"{name}: cannot read: {exc}", code="unreadable_media") from exc
    else:
        try:
            size = source.seek(0, os.SEEK_END)
            if size == 0:
                raise InvalidMedia(f"{name}: the file is empty (0 bytes)", code="empty_file")
            reason = find_truncation(source, size=size)
            source.seek(0)
        except OSError as exc:
            raise InvalidMedia(f"{name}: cannot read: {exc}", code="unreadable_media") from exc
    if reason is not None:
        raise InvalidMedia(f"{name}: the file is truncated ({reason})", code="truncated_media")
    return size


@contextmanager
def open_container(source: MediaSource) -> Iterator[av.container.InputContainer]:
    """Open ``source`` for demuxing after :func:`check_source`; close it on exit."""
    check_source(source)
    name = describe_source(source)
    target: str | BinaryIO = str(source) if isinstance(source, str | Path) else source
    try:
        container = av.open(target, mode="r")
    except av.error.InvalidDataError as exc:
        raise InvalidMedia(f"{name}: not a video file we can read", code="not_a_video") from exc
    except (av.FFmpegError, OSError) as exc:
        raise InvalidMedia(f"{name}: cannot open: {exc}", code="unreadable_media") from exc
    try:
        format_name = container.format.name
        if format_name.endswith(_IMAGE_FORMAT_SUFFIX) or format_name in _IMAGE_FORMATS:
            raise InvalidMedia(f"{name}: an image ({format_name}), not a video", code="not_a_video")
        yield container
    finally:
        container.close()


def select_video_stream(
    container: av.container.InputContainer, *, name: str
) -> av.video.stream.VideoStream:
    """The first real video stream (cover art in audio files is not a video)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise InvalidMedia(f"{name}: the file has no video stream", code="not_a_video")


def select_audio_stream(
    container: av.container.InputContainer,
) -> av.audio.stream.AudioStream | None:
    """The first audio stream with at least one channel, or None."""
    for stream in container.streams.audio:
        if stream.codec_context.channels > 0:
            return stream
    return None
