"""Demux and decode streams in file order, mapping FFmpeg failures to InvalidMedia codes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import av
import av.container

from tagloop.errors import InvalidMedia

# A few damaged packets are normal in real files (FFmpeg conceals them); past this share of a
# stream's packets, or a stream that never decodes at all, the output would be garbage.
_TOLERATED_ERRORS = 8
_TOLERATED_ERROR_SHARE = 0.05


def iter_decoded_frames(
    container: av.container.InputContainer,
    streams: Sequence[av.stream.Stream],
    *,
    name: str,
) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Frames of ``streams`` in demux order, decoders flushed at the end.

    Raises InvalidMedia: ``truncated_media`` when the demuxer hits an unexpected end,
    ``unreadable_media`` on other read errors, ``undecodable_stream`` when too many packets
    of a stream fail to decode or a stream with packets yields no frame.
    """
    packets = {s.index: 0 for s in streams}
    errors = {s.index: 0 for s in streams}
    frames = {s.index: 0 for s in streams}
    demuxer = container.demux(*streams)
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            break
        except av.error.EOFError as exc:
            raise InvalidMedia(
                f"{name}: the file ends unexpectedly", code="truncated_media"
            ) from exc
        except (av.FFmpegError, OSError) as exc:
            raise InvalidMedia(f"{name}: read error: {exc}", code="unreadable_media") from exc
        index = packet.stream.index
        if packet.size:
            packets[index] += 1
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError as exc:
            errors[index] += 1
            limit = max(_TOLERATED_ERRORS, _TOLERATED_ERROR_SHARE * packets[index])
            if errors[index] > limit:
                raise _undecodable(packet.stream, errors[index], name=name) from exc
            continue
        except av.FFmpegError as exc:
            raise _undecodable(packet.stream, errors[index] + 1, name=name) from exc
        for frame in decoded:
            if isinstance(frame, av.VideoFrame | av.AudioFrame):
                frames[index] += 1
                yield frame
    for stream in streams:
        if packets[stream.index] and not frames[stream.index]:
            raise _undecodable(stream, errors[stream.index], name=name)


def _undecodable(stream: av.stream.Stream, n_errors: int, *, name: str) -> InvalidMedia:
    codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
    return InvalidMedia(
        f"{name}: the {stream.type} stream ({codec}) cannot be decoded ({n_errors} bad packets)",
        code="undecodable_stream",
    )
