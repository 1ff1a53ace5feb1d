"""The suite's generators: AV-CIFAR and the second AV-digits generator (issue 19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagloop.datasets.av_cifar import (
    CIFAR_CLASSES,
    NUMBER_GROUP,
    OBJECT_GROUP,
    AVCifarSources,
    av_cifar_vocab,
    load_av_cifar_sources,
    plan_av_cifar,
    render_av_cifar,
)
from tagloop.datasets.av_clip import CodecSettings, coloured_noise, place_in_noise, write_av_clip
from tagloop.datasets.av_digits_alt import (
    CODEC,
    AltDigitSources,
    load_alt_digit_sources,
    plan_av_digits_alt,
    render_av_digit_alt,
)
from tagloop.errors import InvalidInput

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def cifar() -> AVCifarSources:
    return load_av_cifar_sources(DATA)


@pytest.fixture(scope="module")
def alt() -> AltDigitSources:
    return load_alt_digit_sources(DATA)


def test_av_cifar_vocab_has_two_exclusive_groups() -> None:
    vocab = av_cifar_vocab()
    assert len(vocab) == 20
    assert set(vocab.group_indices) == {OBJECT_GROUP, NUMBER_GROUP}
    assert vocab.ungrouped_indices.size == 0
    assert [vocab.tags[j] for j in vocab.group_indices[OBJECT_GROUP]] == [
        f"object_{c}" for c in CIFAR_CLASSES
    ]


def test_av_cifar_plan_splits_speakers_images_and_speech(cifar: AVCifarSources) -> None:
    specs = plan_av_cifar(labels=cifar.labels, fsdd=cifar.fsdd, n_pool=400, n_test=100, seed=3)
    pool = [s for s in specs if s.split == "train"]
    test = [s for s in specs if s.split == "test"]
    assert (len(pool), len(test)) == (400, 100)
    # Exactly 30% of each split has nobody speaking, and then no number tag.
    assert sum(s.digit is None for s in pool) == 120
    assert sum(s.digit is None for s in test) == 30
    for spec in specs:
        assert (spec.speaker is None) == (spec.digit is None) == (spec.recording is None)
        assert spec.tags[0] == f"object_{CIFAR_CLASSES[spec.label]}"
        assert cifar.labels[spec.image] == spec.label
        assert len(spec.tags) == (1 if spec.digit is None else 2)
        if spec.recording is not None:
            assert cifar.fsdd.digits[spec.recording] == spec.digit
            assert cifar.fsdd.seconds[spec.recording] <= 0.95
    # The held-out speaker is heard in test only; test photographs are never in the pool.
    assert {s.speaker for s in test if s.speaker} == {"george"}
    assert "george" not in {s.speaker for s in pool}
    assert not {s.image for s in pool} & {s.image for s in test}
    # Objects and digits balanced.
    assert np.bincount([s.label for s in pool], minlength=10).tolist() == [40] * 10
    assert (
        np.bincount([s.digit for s in pool if s.digit is not None], minlength=10).tolist()
        == [28] * 10
    )


def test_av_cifar_is_seeded(cifar: AVCifarSources) -> None:
    kwargs = {"labels": cifar.labels, "fsdd": cifar.fsdd, "n_pool": 50, "n_test": 20}
    first, again = plan_av_cifar(**kwargs, seed=1), plan_av_cifar(**kwargs, seed=1)
    assert first == again
    assert first != plan_av_cifar(**kwargs, seed=2)
    a, b = render_av_cifar(first[0], cifar), render_av_cifar(again[0], cifar)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)


def test_av_cifar_renders_a_drifting_photo(cifar: AVCifarSources) -> None:
    specs = plan_av_cifar(labels=cifar.labels, fsdd=cifar.fsdd, n_pool=30, n_test=10, seed=0)
    spec = next(s for s in specs if s.digit is not None and s.start != s.end)
    clip = render_av_cifar(spec, cifar)
    assert clip.frames.shape == (10, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (8000,) and clip.audio.dtype == np.float32
    assert clip.tags == spec.tags and clip.speaker == spec.speaker
    # The photograph sits at the planned corner on the first and the last frame.
    photo = cifar.images[spec.image].astype(float)
    for frame, (r, c) in ((clip.frames[0], spec.start), (clip.frames[-1], spec.end)):
        assert np.abs(frame[r : r + 32, c : c + 32] - photo).mean() < 10
    # Speech stands out of the noise; a noise-only clip is quieter.
    silent = render_av_cifar(next(s for s in specs if s.digit is None), cifar)
    assert np.abs(clip.audio).max() > 2 * np.abs(silent.audio).max()


def test_av_cifar_rejects_bad_options(cifar: AVCifarSources) -> None:
    with pytest.raises(InvalidInput):
        plan_av_cifar(labels=cifar.labels, fsdd=cifar.fsdd, n_pool=0, n_test=1, seed=0)
    with pytest.raises(InvalidInput):
        plan_av_cifar(
            labels=cifar.labels, fsdd=cifar.fsdd, n_pool=5, n_test=5, seed=0, test_speaker="x"
        )


def test_alt_digits_hold_out_a_speaker_and_use_each_image_once(alt: AltDigitSources) -> None:
    specs = plan_av_digits_alt(labels=alt.labels, fsdd=alt.fsdd, seed=0, limit=600)
    assert len(specs) == 600
    splits = [s.split for s in specs]
    assert splits == sorted(splits, reverse=True)  # pool first, then test
    assert {s.speaker for s in specs if s.split == "test"} == {"nicolas"}
    assert "nicolas" not in {s.speaker for s in specs if s.split == "train"}
    assert len({s.image for s in specs}) == 600
    for spec in specs:
        assert alt.labels[spec.image] == spec.digit == alt.fsdd.digits[spec.recording]
        assert spec.tags == (f"digit_{spec.digit}",)
    assert plan_av_digits_alt(labels=alt.labels, fsdd=alt.fsdd, seed=0, limit=600) == specs


def test_alt_digit_render_differs_from_the_first_generator(alt: AltDigitSources) -> None:
    spec = plan_av_digits_alt(labels=alt.labels, fsdd=alt.fsdd, seed=4, limit=20)[0]
    clip = render_av_digit_alt(spec, alt)
    again = render_av_digit_alt(spec, alt)
    assert clip.frames.shape == (18, 64, 64, 3) and clip.fps == 15
    assert clip.audio.shape == (9600,)
    assert np.array_equal(clip.frames, again.frames)
    # Colour: the channels differ (the first generator's frames are grey).
    assert np.abs(clip.frames[..., 0].astype(int) - clip.frames[..., 2]).mean() > 5
    assert CODEC.fps == 15 and CODEC.crf != CodecSettings().crf


def test_coloured_noise_tilts_its_spectrum() -> None:
    rng = np.random.default_rng(0)
    white = np.abs(np.fft.rfft(coloured_noise(8192, exponent=0.0, rng=rng))) ** 2
    brown = np.abs(np.fft.rfft(coloured_noise(8192, exponent=2.0, rng=rng))) ** 2
    low, high = slice(1, 200), slice(3000, 4000)
    assert white[low].mean() / white[high].mean() < 2
    assert brown[low].mean() / brown[high].mean() > 100


def test_place_in_noise_sets_the_snr() -> None:
    rng = np.random.default_rng(1)
    speech = np.sin(np.arange(800) / 5.0).astype(np.float32)
    noise = coloured_noise(4000, exponent=0.0, rng=rng)
    out = place_in_noise(speech, n_samples=4000, onset=1000, snr_db=6.0, noise=noise, level=0.01)
    added = out[1000:1800] - noise[1000:1800] * 0.01
    snr = 20 * np.log10(np.sqrt(np.mean(added**2)) / 0.01)
    assert abs(snr - 6.0) < 0.3
    assert np.allclose(out[:1000], noise[:1000] * 0.01, atol=1e-6)


def test_written_clips_go_through_the_ingestion_path(
    cifar: AVCifarSources, alt: AltDigitSources, tmp_path: Path
) -> None:
    from tagloop.features.clip_tensor import build_clip_tensors
    from tagloop.media.extract import iter_clip_media
    from tagloop.media.probe import probe_media

    spec = plan_av_cifar(labels=cifar.labels, fsdd=cifar.fsdd, n_pool=5, n_test=5, seed=0)[0]
    alt_spec = plan_av_digits_alt(labels=alt.labels, fsdd=alt.fsdd, seed=0, limit=5)[0]
    cases = [
        (render_av_cifar(spec, cifar), CodecSettings(fps=10), 1.0),
        (render_av_digit_alt(alt_spec, alt), CODEC, 1.2),
    ]
    for i, (clip, codec, seconds) in enumerate(cases):
        path = tmp_path / f"{i}.mp4"
        write_av_clip(clip, path, codec=codec)
        info = probe_media(str(path))
        assert info.has_audio and abs(info.duration_s - seconds) < 0.15
        media = list(
            iter_clip_media(
                str(path),
                info=info,
                clip_seconds=1.5,
                frames_per_clip=8,
                frame_size=32,
                sample_rate=16000,
                preview_height=32,
            )
        )
        assert len(media) == 1
        tensors = build_clip_tensors(media[0], sample_rate=16000, n_mels=64, clip_seconds=1.5)
        assert tuple(tensors.frames.shape) == (8, 3, 32, 32) and tensors.audio_mask
        assert tuple(tensors.logmel.shape) == (64, 151)
        # The decoded picture still shows colour (not a grey still).
        frames = tensors.frames.float()
        assert (frames[:, 0] - frames[:, 2]).abs().mean() > 5
