"""tagloop.media on the seven real files in ../shared/data/videos and on broken inputs."""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagloop.errors import InvalidInput, InvalidMedia
from tagloop.media.audio import AudioTrack
from tagloop.media.extract import iter_clip_media
from tagloop.media.frames import to_model_array
from tagloop.media.preview import pick_h264_encoder, preview_size
from tagloop.media.probe import probe_media
from tagloop.media.segment import plan_clips
from tests.unit.media_helpers import (
    CLIP_SECONDS,
    DATA,
    FACTS,
    FRAME_SIZE,
    FRAMES_PER_CLIP,
    NAMES,
    PREVIEW_HEIGHT,
    SAMPLE_RATE,
    VIDEOS,
    extract,
    probe,
    write_gray_video,
)


def _extract_all(path: Path, **options: object) -> list:
    info = probe_media(path)
    kwargs: dict = dict(
        info=info,
        clip_seconds=CLIP_SECONDS,
        frames_per_clip=FRAMES_PER_CLIP,
        frame_size=FRAME_SIZE,
        sample_rate=SAMPLE_RATE,
        preview_height=PREVIEW_HEIGHT,
    )
    kwargs.update(options)
    return list(iter_clip_media(path, **kwargs))


def _top_level_boxes(data: bytes) -> list[bytes]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        boxes.append(data[pos + 4 : pos + 8])
        if size < 8:
            break
        pos += size
    return boxes


# --- probe ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_probe_matches_verified_facts(name: str) -> None:
    facts, info = FACTS[name], probe(name)
    assert abs(info.duration_s - facts.duration_s) < 0.2
    assert (info.width, info.height) == (facts.width, facts.height)
    assert info.has_audio is (facts.channels is not None)
    assert info.audio_channels == facts.channels
    assert info.audio_sample_rate == facts.sample_rate
    assert info.fps > 20
    assert info.video_codec in {"h264", "mpeg4", "vp8"}


def test_probe_reads_a_file_object_like_a_path() -> None:
    path = VIDEOS / "pancake_h264_opus.mkv"
    assert probe_media(io.BytesIO(path.read_bytes())) == probe_media(path)


def test_probe_falls_back_to_packets_when_the_container_has_no_duration(tmp_path: Path) -> None:
    class Unseekable:  # the Matroska muxer cannot go back to write the duration
        def __init__(self) -> None:
            self.buffer = io.BytesIO()

        def write(self, data: bytes) -> int:
            return self.buffer.write(data)

    sink = Unseekable()
    with av.open(sink, mode="w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 9, np.uint8), "rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    path = tmp_path / "live.mkv"
    path.write_bytes(sink.buffer.getvalue())
    with av.open(str(path)) as container:
        assert container.duration is None  # the premise of this test
    assert probe_media(path).duration_s == pytest.approx(2.5, abs=0.11)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "empty_file"


def test_text_renamed_mp4_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 50)
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "not_a_video"


def test_audio_only_file_is_not_a_video() -> None:
    with pytest.raises(InvalidMedia) as err:
        probe_media(DATA / "fsdd" / "recordings" / "0_george_0.wav")
    assert err.value.code == "not_a_video"


def test_image_renamed_mp4_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "photo.mp4"
    path.write_bytes(extract("carphone_qcif_noaudio.mp4")[0].thumbnail_jpeg)
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "not_a_video"


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidMedia) as err:
        probe_media(tmp_path / "nowhere.mp4")
    assert err.value.code == "missing_file"


@pytest.mark.parametrize("name", NAMES)
def test_truncated_copy_is_refused(name: str, tmp_path: Path) -> None:
    data = (VIDEOS / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "truncated_media"
    with pytest.raises(InvalidMedia) as err:
        _extract_all(path)
    assert err.value.code == "truncated_media"


def test_undecodable_video_stream_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "garbage.mkv"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            packet = av.Packet(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
            packet.pts = packet.dts = i
            packet.time_base, packet.stream = Fraction(1, 10), stream
            out.mux(packet)
    with pytest.raises(InvalidMedia) as err:
        probe_media(path)
    assert err.value.code == "undecodable_stream"


def test_decoding_that_stops_early_is_truncated_media() -> None:
    # Headers that promise 20 s over a 4 s stream: what a cut-off file looks like.
    path = VIDEOS / "carphone_qcif_noaudio.mp4"
    info = dataclasses.replace(probe_media(path), duration_s=20.0)
    with pytest.raises(InvalidMedia) as err:
        list(
            iter_clip_media(
                path,
                info=info,
                clip_seconds=CLIP_SECONDS,
                frames_per_clip=4,
                frame_size=16,
                sample_rate=SAMPLE_RATE,
                preview_height=120,
            )
        )
    assert err.value.code == "truncated_media"


# --- plan_clips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (0.5, [(0.0, 0.5)]),
        (9.99, [(0.0, 9.99)]),
        (10.0, [(0.0, 10.0)]),
        (14.9, [(0.0, 14.9)]),
        (15.0, [(0.0, 10.0), (10.0, 15.0)]),
        (20.0, [(0.0, 10.0), (10.0, 20.0)]),
        (24.0, [(0.0, 10.0), (10.0, 24.0)]),
        (26.0, [(0.0, 10.0), (10.0, 20.0), (20.0, 26.0)]),
    ],
)
def test_plan_clips_examples(duration: float, expected: list[tuple[float, float]]) -> None:
    assert plan_clips(duration, clip_seconds=10.0) == expected


@given(
    duration=st.floats(min_value=0.01, max_value=10_000.0),
    clip=st.floats(min_value=0.5, max_value=120.0),
)
def test_plan_clips_tiles_the_video_without_slivers(duration: float, clip: float) -> None:
    windows = plan_clips(duration, clip_seconds=clip)
    assert windows[0][0] == 0.0 and windows[-1][1] == duration
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end == start
    lengths = [end - start for start, end in windows]
    if len(windows) > 1:
        assert min(lengths) >= clip / 2 - 1e-6
    assert max(lengths) <= 1.5 * clip + 1e-6
    # Rounding half a clip up or down is a float-precision tie; both counts are right there.
    near = {max(1, math.floor(duration / clip + 0.5 + d)) for d in (-1e-6, 1e-6)}
    assert len(windows) in near


@pytest.mark.parametrize(("duration", "clip"), [(0.0, 10.0), (-1.0, 10.0), (5.0, 0.0)])
def test_plan_clips_rejects_bad_input(duration: float, clip: float) -> None:
    with pytest.raises(InvalidInput):
        plan_clips(duration, clip_seconds=clip)


# --- extraction on the real files -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_extraction_yields_the_planned_clips(name: str) -> None:
    clips, info = extract(name), probe(name)
    windows = plan_clips(info.duration_s, clip_seconds=CLIP_SECONDS)
    assert [c.index for c in clips] == list(range(len(windows)))
    for clip, (start, end) in zip(clips, windows, strict=True):
        assert (clip.start_s, clip.end_s) == (start, end)
        assert clip.frames.shape == (FRAMES_PER_CLIP, 3, FRAME_SIZE, FRAME_SIZE)
        assert clip.frames.dtype == np.uint8
        assert clip.frames.std() > 5  # real pictures, not a blank fill
        if info.has_audio:
            assert clip.audio is not None and clip.audio.dtype == np.float32
            assert clip.audio.shape == (round(end * SAMPLE_RATE) - round(start * SAMPLE_RATE),)
            assert np.isfinite(clip.audio).all()
        else:
            assert clip.audio is None
    if info.has_audio:  # moviepy_audio_edge.mp4 is digital silence after 4.7 s, so not per clip
        assert max(np.abs(c.audio).max() for c in clips if c.audio is not None) > 0.01


@pytest.mark.parametrize("name", NAMES)
def test_previews_are_browser_friendly_mp4(name: str) -> None:
    info = probe(name)
    for clip in extract(name):
        data = clip.preview_mp4
        boxes = _top_level_boxes(data)
        assert boxes.index(b"moov") < boxes.index(b"mdat")  # faststart: playable while loading
        with av.open(io.BytesIO(data)) as container:
            video = container.streams.video[0]
            ctx = video.codec_context
            assert ctx.name == "h264" and ctx.pix_fmt == "yuv420p"
            assert ctx.width % 2 == 0 and ctx.height % 2 == 0
            assert ctx.height <= min(PREVIEW_HEIGHT, info.height)
            assert abs(ctx.width / ctx.height - info.width / info.height) < 0.05
            n_frames = sum(1 for _ in container.decode(video))
            assert n_frames >= 10 * (clip.end_s - clip.start_s)
            assert container.duration is not None
            assert abs(container.duration / 1e6 - (clip.end_s - clip.start_s)) < 0.25
        with av.open(io.BytesIO(data)) as container:
            kinds = {s.type: s.codec_context.name for s in container.streams}
            assert ("audio" in kinds) is info.has_audio
            if info.has_audio:
                assert kinds["audio"] == "aac"
                audio_ctx = container.streams.audio[0].codec_context
                assert audio_ctx.channels == 1 and audio_ctx.sample_rate == SAMPLE_RATE
                assert sum(f.samples for f in container.decode(audio=0)) > 0


@pytest.mark.parametrize("name", NAMES)
def test_thumbnails_are_jpeg_at_preview_size(name: str) -> None:
    for clip in extract(name):
        assert clip.thumbnail_jpeg[:2] == b"\xff\xd8"
        with av.open(io.BytesIO(clip.thumbnail_jpeg)) as image:
            frame = next(image.decode(video=0))
        with av.open(io.BytesIO(clip.preview_mp4)) as preview:
            ctx = preview.streams.video[0].codec_context
            assert (frame.width, frame.height) == (ctx.width, ctx.height)


def test_six_channel_aac_is_downmixed_to_16k_mono() -> None:
    info = probe("bbb_h264_aac_6ch.mp4")
    assert info.audio_channels == 6
    audio = np.concatenate(
        [c.audio for c in extract("bbb_h264_aac_6ch.mp4") if c.audio is not None]
    )
    assert audio.ndim == 1
    assert abs(audio.shape[0] - info.duration_s * SAMPLE_RATE) <= 0.05 * SAMPLE_RATE
    assert float(np.sqrt(np.mean(audio**2))) > 0.01


def test_clip_audio_follows_the_timeline() -> None:
    # Per-clip audio, concatenated, is the whole track: nothing dropped or doubled at cuts.
    clips = extract("pancake_h264_opus.mkv")
    assert len(clips) == 3
    whole = _extract_all(VIDEOS / "pancake_h264_opus.mkv", clip_seconds=100.0)[0].audio
    assert whole is not None
    joined = np.concatenate([c.audio for c in clips if c.audio is not None])
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).max() < 1e-4


def test_skipped_clips_are_decoded_over_but_not_yielded() -> None:
    full = extract("pancake_h264_opus.mkv")
    resumed = _extract_all(VIDEOS / "pancake_h264_opus.mkv", skip_indices={0, 1})
    assert [c.index for c in resumed] == [2]
    assert np.array_equal(resumed[0].frames, full[2].frames)
    assert resumed[0].audio is not None and full[2].audio is not None
    assert np.allclose(resumed[0].audio, full[2].audio, atol=1e-5)


def test_extraction_reads_a_file_object() -> None:
    path = VIDEOS / "carphone_qcif_noaudio.mp4"
    info = probe_media(path)
    clips = list(
        iter_clip_media(
            io.BytesIO(path.read_bytes()),
            info=info,
            clip_seconds=CLIP_SECONDS,
            frames_per_clip=FRAMES_PER_CLIP,
            frame_size=FRAME_SIZE,
            sample_rate=SAMPLE_RATE,
            preview_height=PREVIEW_HEIGHT,
        )
    )
    assert np.array_equal(clips[0].frames, extract("carphone_qcif_noaudio.mp4")[0].frames)


def test_abandoned_extraction_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    clips = iter_clip_media(
        VIDEOS / "kinetics_style_noaudio.mp4",
        info=probe("kinetics_style_noaudio.mp4"),
        clip_seconds=2.0,
        frames_per_clip=2,
        frame_size=8,
        sample_rate=SAMPLE_RATE,
        preview_height=64,
    )
    next(clips)
    clips.close()
    assert list(scratch.iterdir()) == []


# --- frame sampling and sizes -----------------------------------------------------------------


def test_frames_are_the_ones_on_screen_at_the_sample_times(tmp_path: Path) -> None:
    # 40 frames at 10 fps, frame i solid gray 6*i; one 4 s clip, 4 samples at 0.5/1.5/2.5/3.5 s.
    path = tmp_path / "gray.mkv"
    write_gray_video(path, levels=[6 * i for i in range(40)])
    (clip,) = _extract_all(path, frames_per_clip=4, frame_size=8)
    indices = np.round(clip.frames.reshape(4, -1).mean(axis=1) / 6).astype(int)
    assert indices.tolist() == [5, 15, 25, 35]


def test_short_clip_repeats_frames(tmp_path: Path) -> None:
    path = tmp_path / "three.mkv"
    write_gray_video(path, levels=[0, 120, 240], fps=10)
    (clip,) = _extract_all(path, frames_per_clip=6, frame_size=8)
    indices = np.round(clip.frames.reshape(6, -1).mean(axis=1) / 120).astype(int)
    assert indices.tolist() == [0, 0, 1, 1, 2, 2]


def test_model_frames_are_short_side_resized_and_centre_cropped() -> None:
    image = np.zeros((30, 90, 3), dtype=np.uint8)
    image[:, :30, 0] = 255  # red | green | blue thirds: only green survives a centre crop
    image[:, 30:60, 1] = 255
    image[:, 60:, 2] = 255
    array = to_model_array(av.VideoFrame.from_ndarray(image, format="rgb24"), size=10)
    assert array.shape == (3, 10, 10)
    assert array[1].min() > 200 and array[0].max() < 60 and array[2].max() < 60


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1280, 720), (426, 240)),
        ((1920, 1080), (426, 240)),
        ((176, 144), (176, 144)),
        ((175, 143), (174, 142)),
        ((720, 1280), (136, 240)),
    ],
)
def test_preview_size_is_even_and_never_upscaled(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert preview_size(*size, max_height=240) == expected


def test_an_h264_encoder_is_available() -> None:
    assert pick_h264_encoder() in {"libx264", "libopenh264", "h264"}


# --- the audio timeline -------------------------------------------------------------------------


def _tone_frame(n: int, *, rate: int, value: float) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.full((1, n), value, np.float32), "fltp", "mono")
    frame.sample_rate = rate
    return frame


def test_audio_track_fills_gaps_and_late_starts_with_zeros() -> None:
    track = AudioTrack(rate=16_000, layout="mono")
    track.push(_tone_frame(8_000, rate=16_000, value=0.5), time_s=0.25)  # starts late
    track.push(_tone_frame(8_000, rate=16_000, value=0.5), time_s=1.25)  # 0.5 s gap
    track.flush()
    out = track.cut(0.0, 2.0)[0]
    assert out.shape == (32_000,)
    assert np.abs(out[:3_900]).max() == 0  # before the start
    assert out[5_000:11_000].min() > 0.4  # first frame
    assert np.abs(out[12_100:19_900]).max() < 1e-3  # the gap
    assert out[21_000:27_000].min() > 0.4  # second frame
    assert track.end_s == pytest.approx(1.75)


def test_audio_track_cut_forgets_what_it_returned() -> None:
    track = AudioTrack(rate=16_000, layout="mono")
    ramp = np.arange(16_000, dtype=np.float32)[None] / 16_000
    frame = av.AudioFrame.from_ndarray(ramp, "fltp", "mono")
    frame.sample_rate = 16_000
    track.push(frame, time_s=0.0)
    track.flush()
    first, second = track.cut(0.0, 0.5)[0], track.cut(0.5, 1.0)[0]
    assert np.allclose(np.concatenate([first, second]), ramp[0], atol=1e-6)
    assert not track.cut(0.0, 0.5).any()  # already handed out


def _rotate_mp4(data: bytes, matrix: tuple[int, ...]) -> bytes:
    """Rewrite the first track header's display matrix, as phones record portrait video."""
    out = bytearray(data)
    tkhd = out.index(b"tkhd")
    assert out[tkhd + 4] == 0  # version 0 header layout below
    start = tkhd + 4 + 4 + 20 + 8 + 8
    out[start : start + 36] = b"".join(v.to_bytes(4, "big", signed=True) for v in matrix)
    return bytes(out)


def test_rotated_phone_video_comes_out_upright(tmp_path: Path) -> None:
    original = VIDEOS / "carphone_qcif_noaudio.mp4"
    path = tmp_path / "portrait.mp4"
    # The matrix of a portrait iPhone recording: show the stored frame turned 90 deg clockwise.
    path.write_bytes(
        _rotate_mp4(original.read_bytes(), (0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30))
    )
    info = probe_media(path)
    assert (info.width, info.height) == (144, 176)
    (rotated,) = _extract_all(path)
    (upright,) = extract("carphone_qcif_noaudio.mp4")
    assert np.array_equal(rotated.frames, np.rot90(upright.frames, k=-1, axes=(2, 3)))
    with av.open(io.BytesIO(rotated.preview_mp4)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (144, 176) and frame.rotation == 0
