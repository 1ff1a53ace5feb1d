"""tagloop.features: log-mel spectrograms and clip tensors built from real clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import (
    ClipTensors,
    build_clip_tensors,
    dump_clip_tensors,
    fit_logmel,
    load_clip_tensors,
    logmel_frames_for,
)
from tagloop.features.logmel import LOG_FLOOR, compute_logmel
from tests.unit.media_helpers import CLIP_SECONDS, FRAME_SIZE, FRAMES_PER_CLIP, SAMPLE_RATE, extract

N_MELS = 64


def _tone(freq: float, *, seconds: float = 1.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("n_samples", [0, 1, 100, 399, 16_000, 160_000])
def test_logmel_shape_and_finite(n_samples: int) -> None:
    audio = np.random.default_rng(0).normal(0, 0.1, n_samples).astype(np.float32)
    logmel = compute_logmel(audio, sample_rate=SAMPLE_RATE, n_mels=N_MELS)
    assert logmel.dtype == torch.float32
    assert logmel.shape == (N_MELS, 1 + n_samples // 160)  # 10 ms hop at 16 kHz
    assert torch.isfinite(logmel).all()


def test_logmel_of_silence_is_the_log_floor() -> None:
    logmel = compute_logmel(torch.zeros(16_000), sample_rate=SAMPLE_RATE, n_mels=N_MELS)
    assert torch.allclose(logmel, torch.full_like(logmel, math.log(LOG_FLOOR)))


def test_logmel_puts_a_higher_tone_in_a_higher_band() -> None:
    low = compute_logmel(_tone(300.0), sample_rate=SAMPLE_RATE, n_mels=N_MELS)
    high = compute_logmel(_tone(4_000.0), sample_rate=SAMPLE_RATE, n_mels=N_MELS)
    low_band, high_band = int(low.mean(dim=1).argmax()), int(high.mean(dim=1).argmax())
    assert low_band < 20 < high_band


def test_logmel_works_at_other_rates() -> None:
    logmel = compute_logmel(_tone(440.0, rate=8_000), sample_rate=8_000, n_mels=40)
    assert logmel.shape == (40, 1 + 8_000 // 80)


def test_logmel_rejects_multichannel_audio() -> None:
    with pytest.raises(InvalidInput):
        compute_logmel(np.zeros((2, 1000), np.float32), sample_rate=SAMPLE_RATE, n_mels=N_MELS)


def test_fit_logmel_pads_short_clips_with_silence_and_thins_long_ones() -> None:
    ramp = torch.arange(10, dtype=torch.float32).expand(3, 10)
    padded = fit_logmel(ramp, n_frames=14)
    assert padded.shape == (3, 14)
    assert torch.equal(padded[:, :10], ramp)
    assert torch.allclose(padded[:, 10:], torch.full((3, 4), math.log(LOG_FLOOR)))
    thinned = fit_logmel(ramp, n_frames=5)
    assert thinned[0].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]  # evenly spread over the clip


def _tensors(name: str) -> list[ClipTensors]:
    return [
        build_clip_tensors(clip, sample_rate=SAMPLE_RATE, n_mels=N_MELS, clip_seconds=CLIP_SECONDS)
        for clip in extract(name)
    ]


def test_clip_tensors_have_one_shape_for_every_clip() -> None:
    # pancake: clips of 4, 4 and 2.38 s; carphone (no audio): one clip of 4.004 s.
    n_frames = logmel_frames_for(CLIP_SECONDS, sample_rate=SAMPLE_RATE)
    assert n_frames == 401
    for tensors in _tensors("pancake_h264_opus.mkv") + _tensors("carphone_qcif_noaudio.mp4"):
        assert tensors.frames.shape == (FRAMES_PER_CLIP, 3, FRAME_SIZE, FRAME_SIZE)
        assert tensors.frames.dtype == torch.uint8
        assert tensors.logmel.shape == (N_MELS, n_frames)
        assert tensors.logmel.dtype == torch.float16


def test_clip_with_audio_has_a_real_logmel() -> None:
    for tensors in _tensors("pancake_h264_opus.mkv"):
        assert tensors.audio_mask is True
        assert torch.isfinite(tensors.logmel).all()
        assert float(tensors.logmel.float().std()) > 0.5


def test_clip_without_audio_is_masked_not_silent() -> None:
    (tensors,) = _tensors("kinetics_style_noaudio.mp4")[:1]
    assert tensors.audio_mask is False
    assert not tensors.logmel.any()  # zeros, which no real log-mel ever is (silence is the floor)
    silence = compute_logmel(np.zeros(16_000, np.float32), sample_rate=SAMPLE_RATE, n_mels=N_MELS)
    assert not torch.equal(tensors.logmel[:, :10].float(), silence[:, :10])


def test_six_channel_clip_logmel_is_not_silent() -> None:
    (tensors,) = _tensors("bbb_h264_aac_6ch.mp4")
    assert tensors.audio_mask is True
    assert float(tensors.logmel.float().max()) > math.log(LOG_FLOOR) + 5


@pytest.mark.parametrize("name", ["pancake_h264_opus.mkv", "carphone_qcif_noaudio.mp4"])
def test_dump_load_roundtrip(name: str) -> None:
    original = _tensors(name)[0]
    data = dump_clip_tensors(original)
    assert len(data) < 100_000  # small enough to store one per clip
    loaded = load_clip_tensors(data)
    assert torch.equal(loaded.frames, original.frames)
    assert torch.equal(loaded.logmel, original.logmel)
    assert loaded.logmel.dtype == original.logmel.dtype
    assert loaded.audio_mask is original.audio_mask


def test_load_refuses_bytes_that_are_not_clip_tensors() -> None:
    with pytest.raises(InvalidInput) as err:
        load_clip_tensors(b"definitely not a torch archive")
    assert err.value.code == "invalid_tensor_blob"


def test_build_rejects_a_non_positive_clip_length() -> None:
    clip = extract("carphone_qcif_noaudio.mp4")[0]
    with pytest.raises(InvalidInput):
        build_clip_tensors(clip, sample_rate=SAMPLE_RATE, n_mels=N_MELS, clip_seconds=0.0)
