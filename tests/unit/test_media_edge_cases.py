"""Edge cases of tagloop.media: trailing bytes after an MP4, box names in errors, and previews
of videos with extreme aspect ratios."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest

from tagloop.errors import InvalidMedia
from tagloop.media.extract import iter_clip_media
from tagloop.media.preview import preview_size
from tagloop.media.probe import probe_media
from tagloop.media.structure import find_truncation
from tests.unit.media_helpers import PREVIEW_HEIGHT, SAMPLE_RATE, VIDEOS, extract
from tests.video_factory import write_test_video

CARPHONE = "carphone_qcif_noaudio.mp4"  # ftyp, free, mdat, moov (moov last)
# The preview rule: each side at least 16 px, the long side at most 4x the preview height.
MIN_SIDE = 16
LONG_SIDE_FACTOR = 4


def _box(kind: bytes, payload: bytes = b"", *, size: int | None = None) -> bytes:
    declared = 8 + len(payload) if size is None else size
    return declared.to_bytes(4, "big") + kind + payload


def _with_tail(tmp_path: Path, tail: bytes, *, name: str = CARPHONE) -> Path:
    path = tmp_path / name
    path.write_bytes((VIDEOS / name).read_bytes() + tail)
    return path


def _video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _extract(path: Path) -> list:
    return list(
        iter_clip_media(
            path,
            info=probe_media(path),
            clip_seconds=2.0,
            frames_per_clip=4,
            frame_size=16,
            sample_rate=SAMPLE_RATE,
            preview_height=64,
        )
    )


# --- trailing bytes after the last top-level box ------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x00\xffab\x01\x02\x03", id="7-bytes"),
        pytest.param(b"\n", id="1-byte"),
        pytest.param(b"\x7f\xff\xff\xff\x00\xffabjunk", id="header-impossible-size"),
        pytest.param(_box(b"free", b"junk", size=1 << 20), id="free-box-past-eof"),
        pytest.param(b"\x00\x00\x00\x01wide\x00\x00", id="cut-64-bit-header"),
    ],
)
def test_trailing_garbage_after_a_complete_mp4_is_tolerated(tmp_path: Path, tail: bytes) -> None:
    path = _with_tail(tmp_path, tail)
    original = probe_media(VIDEOS / CARPHONE)
    assert probe_media(path) == original
    assert _video_frames(path) == _video_frames(VIDEOS / CARPHONE)  # FFmpeg reads it all
    clips, clean = _extract(path), _extract(VIDEOS / CARPHONE)
    assert [(c.start_s, c.end_s) for c in clips] == [(c.start_s, c.end_s) for c in clean]
    assert all((a.frames == b.frames).all() for a, b in zip(clips, clean, strict=True))


def test_file_cut_inside_mdat_is_still_truncated(tmp_path: Path) -> None:
    data = (VIDEOS / CARPHONE).read_bytes()
    path = tmp_path / CARPHONE
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "truncated_media"
    assert "'mdat'" in str(err.value)


def test_file_cut_inside_moov_is_still_truncated(tmp_path: Path) -> None:
    data = (VIDEOS / CARPHONE).read_bytes()
    path = tmp_path / CARPHONE
    path.write_bytes(data[:-100])
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "truncated_media"
    assert "'moov'" in str(err.value)


def test_faststart_file_cut_inside_mdat_is_still_truncated(tmp_path: Path) -> None:
    data = extract(CARPHONE)[0].preview_mp4  # moov, then mdat
    cut = data[: len(data) - 500]
    path = tmp_path / "faststart.mp4"
    path.write_bytes(cut)
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "truncated_media"
    # Garbage after a cut mdat is still a cut mdat.
    path.write_bytes(cut + b"\x00\xffab\x01\x02\x03")
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "truncated_media"


def test_garbage_without_a_complete_moov_and_mdat_is_not_forgiven() -> None:
    # Only ftyp and mdat: trailing garbage can't be told apart from a cut moov.
    data = _box(b"ftyp", b"isom\x00\x00\x02\x00") + _box(b"mdat", b"\x00" * 64) + b"\x00\x01"
    assert find_truncation(io.BytesIO(data), size=len(data)) is not None


def test_a_cut_box_after_moov_and_mdat_that_carries_media_is_truncation() -> None:
    # A fragmented MP4 cut inside a later fragment.
    data = (
        _box(b"ftyp", b"iso5\x00\x00\x02\x00")
        + _box(b"moov", b"\x00" * 32)
        + _box(b"moof", b"\x00" * 16)
        + _box(b"mdat", b"\x00" * 64)
        + _box(b"moof", b"\x00" * 16, size=400)
    )
    reason = find_truncation(io.BytesIO(data), size=len(data))
    assert reason is not None and "'moof'" in reason


# --- box names in messages -------------------------------------------------------------------


def test_box_names_in_messages_are_printable_ascii() -> None:
    data = _box(b"ftyp", b"isom\x00\x00\x02\x00") + _box(b"\x00\xffab", b"xx", size=1000)
    reason = find_truncation(io.BytesIO(data), size=len(data))
    assert reason is not None
    assert reason.isascii() and reason.isprintable()
    assert "0x00ff6162" in reason
    assert "\xff" not in reason and "\\x00" not in reason


# --- previews of extreme aspect ratios -------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_height", "expected"),
    [
        ((16, 2000), 240, (16, 240)),  # was (2, 240)
        ((2000, 16), 240, (960, 16)),  # was (2000, 16): the long side is capped
        ((4, 6), 240, (16, 24)),  # a tiny source is brought up to the floor, aspect kept
        ((6, 4), 240, (24, 16)),
        ((16, 2000), 8, (8, 8)),  # the floor never exceeds the requested height
        ((3840, 1080), 240, (854, 240)),  # 32:9 is left alone
    ],
)
def test_preview_size_keeps_a_floor_and_a_cap(
    size: tuple[int, int], max_height: int, expected: tuple[int, int]
) -> None:
    assert preview_size(*size, max_height=max_height) == expected


@pytest.mark.parametrize(("width", "height"), [(16, 2000), (2000, 16)])
def test_previews_of_extreme_aspect_ratios_stay_watchable(
    tmp_path: Path, width: int, height: int
) -> None:
    path = write_test_video(
        tmp_path / f"{width}x{height}.mp4",
        seconds=0.4,
        width=width,
        height=height,
        fps=10,
        audio=False,
    )
    clips = list(
        iter_clip_media(
            path,
            info=probe_media(path),
            clip_seconds=10.0,
            frames_per_clip=2,
            frame_size=16,
            sample_rate=SAMPLE_RATE,
            preview_height=PREVIEW_HEIGHT,
        )
    )
    assert len(clips) == 1
    with av.open(io.BytesIO(clips[0].preview_mp4)) as container:
        frame = next(container.decode(video=0))
    short, long = sorted((frame.width, frame.height))
    assert short >= MIN_SIDE
    assert long <= LONG_SIDE_FACTOR * PREVIEW_HEIGHT
    assert frame.width % 2 == 0 and frame.height % 2 == 0
    assert (frame.width > frame.height) is (width > height)  # still the same orientation
