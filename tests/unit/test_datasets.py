"""AV-digits datasets: DTMF tones, the demo set, FSDD+MNIST pairing, mp4 writing, probes."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from tagloop.datasets.av_digits import (
    AVSample,
    build_demo_samples,
    build_fsdd_mnist_samples,
    write_av_dataset,
    write_av_video,
)
from tagloop.datasets.av_writer import upscale_image
from tagloop.datasets.degradation import fit_pca_basis, mix_white_noise, reconstruct_with_pca
from tagloop.datasets.dtmf import get_dtmf_frequencies, synthesize_dtmf
from tagloop.datasets.fsdd import read_wav
from tagloop.datasets.mnist import read_mnist_test
from tagloop.datasets.probe import score_modality_probes
from tagloop.errors import InvalidInput

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _spectrum_peaks(audio: np.ndarray, *, sample_rate: int, count: int) -> list[float]:
    """Frequencies of the ``count`` strongest spectral peaks, at least 40 Hz apart."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, d=1.0 / sample_rate)
    peaks: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[index] - p) > 40.0 for p in peaks):
            peaks.append(float(freqs[index]))
        if len(peaks) == count:
            break
    return peaks


# --- DTMF -------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", range(10))
def test_dtmf_dominant_peaks_are_the_digit_pair(digit: int) -> None:
    jitter = 0.02
    rng = np.random.default_rng(digit)
    audio = synthesize_dtmf(
        digit,
        sample_rate=8000,
        duration_s=0.5,
        rng=rng,
        pitch_jitter=jitter,
        onset_jitter_s=0.1,
    )
    assert audio.dtype == np.float32 and audio.shape == (4000,)
    assert np.max(np.abs(audio)) <= 0.9 + 1e-6
    low, high = get_dtmf_frequencies(digit)
    found = sorted(_spectrum_peaks(audio, sample_rate=8000, count=2))
    # Jitter plus one FFT bin (2 Hz at 0.5 s) plus a little leakage.
    assert abs(found[0] - low) <= low * jitter + 5.0
    assert abs(found[1] - high) <= high * jitter + 5.0


def test_dtmf_keypad_layout_and_onset() -> None:
    assert get_dtmf_frequencies(1) == (697.0, 1209.0)
    assert get_dtmf_frequencies(5) == (770.0, 1336.0)
    assert get_dtmf_frequencies(0) == (941.0, 1336.0)
    audio = synthesize_dtmf(
        3, sample_rate=8000, duration_s=1.0, rng=np.random.default_rng(0), onset_jitter_s=0.3
    )
    onset = int(np.flatnonzero(audio)[0])
    assert 0 <= onset <= 0.3 * 8000 + 1


def test_dtmf_dropped_tone_leaves_only_the_other() -> None:
    audio = synthesize_dtmf(
        9, sample_rate=8000, duration_s=0.5, rng=np.random.default_rng(1), tone_gains=(0.0, 1.0)
    )
    (peak,) = _spectrum_peaks(audio, sample_rate=8000, count=1)
    assert abs(peak - 1477.0) < 5.0
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(audio.size, d=1 / 8000)
    near_low = spectrum[np.abs(freqs - 852.0) < 20].max()
    assert near_low < 0.01 * spectrum.max()


def test_dtmf_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidInput) as bad_digit:
        synthesize_dtmf(10, sample_rate=8000, duration_s=0.1, rng=rng)
    assert bad_digit.value.code == "invalid_digit"
    with pytest.raises(InvalidInput) as low_rate:
        synthesize_dtmf(1, sample_rate=2000, duration_s=0.1, rng=rng)
    assert low_rate.value.code == "sample_rate_too_low"


# --- degradations -----------------------------------------------------------------------


def test_mix_white_noise_hits_the_snr() -> None:
    rng = np.random.default_rng(0)
    clean = (0.1 * np.sin(np.arange(80_000) * 0.05)).astype(np.float32)
    mixed = mix_white_noise(clean, snr_db=6.0, rng=rng)
    noise = mixed.astype(np.float64) - clean
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))
    assert abs(measured - 6.0) < 0.2


def test_pca_energy_controls_detail() -> None:
    images, _ = read_mnist_test(DATA / "mnist")
    subset = images[:2000]
    mean_all, full = fit_pca_basis(subset, energy=1.0)
    restored = reconstruct_with_pca(subset[:50], mean=mean_all, components=full)
    assert np.abs(restored.astype(int) - subset[:50]).max() <= 1
    mean, quarter = fit_pca_basis(subset, energy=0.25)
    assert 1 <= quarter.shape[0] <= 10
    blurred = reconstruct_with_pca(subset[:50], mean=mean, components=quarter)
    assert np.abs(blurred.astype(int) - subset[:50]).mean() > 20


# --- demo set ---------------------------------------------------------------------------


def test_demo_samples_are_balanced_typed_and_split() -> None:
    samples = build_demo_samples(n=203, seed=3)
    counts = Counter(s.digit for s in samples)
    assert counts == {d: 21 if d < 3 else 20 for d in range(10)}
    for digit in range(10):
        tests = [s for s in samples if s.digit == digit and s.split == "test"]
        assert len(tests) == 4
    first = samples[0]
    assert first.image.dtype == np.uint8 and first.image.shape == (8, 8)
    assert first.audio.dtype == np.float32 and first.audio.shape == (4000,)
    assert first.sample_rate == 8000 and first.speaker is None
    assert {s.split for s in samples} == {"train", "test"}


def test_demo_samples_are_deterministic_per_seed() -> None:
    a = build_demo_samples(n=40, seed=7)
    b = build_demo_samples(n=40, seed=7)
    c = build_demo_samples(n=40, seed=8)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.audio, y.audio)
        assert (x.digit, x.split) == (y.digit, y.split)
    assert any(not np.array_equal(x.audio, z.audio) for x, z in zip(a, c, strict=True))


def test_demo_set_is_unsure_per_modality_and_sure_together() -> None:
    # Measured with these arguments: image 0.69, audio 0.74, concat 0.93 (100 test samples).
    scores = score_modality_probes(build_demo_samples(n=500, seed=0))
    assert scores["image"] < 0.85
    assert scores["audio"] < 0.85
    assert scores["concat"] > 0.85
    assert scores["concat"] - max(scores["image"], scores["audio"]) > 0.1


# --- FSDD + MNIST -----------------------------------------------------------------------


def test_fsdd_mnist_pairs_same_digit_and_holds_out_speaker() -> None:
    images, labels = read_mnist_test(DATA / "mnist")
    # Energy 1.0 keeps every component, so each image is its MNIST original and can be found.
    label_of = {image.tobytes(): int(label) for image, label in zip(images, labels, strict=True)}
    samples = build_fsdd_mnist_samples(
        data_dir=DATA, test_speaker="lucas", image_energy=1.0, snr_db=20.0, seed=0, limit=240
    )
    assert len(samples) == 240
    assert all(s.image.shape == (28, 28) and s.image.dtype == np.uint8 for s in samples)
    assert all(label_of[s.image.tobytes()] == s.digit for s in samples)
    assert len({s.image.tobytes() for s in samples}) == len(samples)  # no MNIST image reused
    for s in samples:
        assert s.source is not None and Path(s.source).name.startswith(f"{s.digit}_{s.speaker}_")
        assert s.split == ("test" if s.speaker == "lucas" else "train")
    assert {s.split for s in samples} == {"train", "test"}


def test_fsdd_mnist_degrades_both_modalities() -> None:
    clean = build_fsdd_mnist_samples(
        data_dir=DATA, test_speaker="theo", image_energy=1.0, snr_db=60.0, seed=1, limit=20
    )
    noisy = build_fsdd_mnist_samples(
        data_dir=DATA, test_speaker="theo", image_energy=0.25, snr_db=0.0, seed=1, limit=20
    )
    for a, b in zip(clean, noisy, strict=True):
        assert a.source == b.source and a.digit == b.digit
        wav, rate = read_wav(DATA / "fsdd" / str(a.source))
        assert rate == a.sample_rate == 8000 and a.audio.shape == wav.shape
        assert np.corrcoef(a.audio, wav)[0, 1] > 0.99
        assert np.corrcoef(b.audio, wav)[0, 1] < 0.85  # 0 dB: half the power is noise
    changes = [
        np.abs(a.image.astype(int) - b.image).mean() for a, b in zip(clean, noisy, strict=True)
    ]
    assert np.mean(changes) > 20


def test_fsdd_mnist_rejects_unknown_speaker() -> None:
    with pytest.raises(InvalidInput) as error:
        build_fsdd_mnist_samples(
            data_dir=DATA, test_speaker="nobody", image_energy=0.25, snr_db=0.0, seed=0
        )
    assert error.value.code == "unknown_speaker"


# --- mp4 writing ------------------------------------------------------------------------


def test_written_mp4_has_h264_and_aac_of_the_audio_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
    audio = synthesize_dtmf(4, sample_rate=8000, duration_s=0.73, rng=rng)
    sample = AVSample(
        image=image, audio=audio, sample_rate=8000, digit=4, speaker=None, split="train"
    )
    path = tmp_path / "clip.mp4"
    write_av_video(sample, path, fps=10, size=64)

    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.codec_context.width, video.codec_context.height) == (64, 64)
        assert sound.codec_context.name == "aac" and sound.codec_context.sample_rate == 16_000
        assert container.duration is not None
        assert abs(container.duration / av.time_base - 0.73) <= 0.1 + 0.05
        frame = next(container.decode(video=0))
        luma = frame.to_ndarray(format="gray")
    # Lossy but close: the picture is the upscaled digit image.
    assert np.abs(luma.astype(int) - upscale_image(image, size=64)).mean() < 12

    with av.open(str(path)) as container:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert abs(decoded.size - 0.73 * 16_000) < 0.1 * 16_000
    (peak,) = _spectrum_peaks(decoded[2000:10000], sample_rate=16_000, count=1)
    assert min(abs(peak - 770.0), abs(peak - 1209.0)) < 10.0


def test_write_av_dataset_labels_match_files(tmp_path: Path) -> None:
    spoken = AVSample(
        image=np.zeros((28, 28), dtype=np.uint8),
        audio=np.full(1200, 0.1, dtype=np.float32),
        sample_rate=8000,
        digit=7,
        speaker="theo",
        split="test",
    )
    samples = [*build_demo_samples(n=11, seed=0), spoken]
    calls: list[tuple[int, int]] = []
    labels = write_av_dataset(
        samples, tmp_path, workers=2, progress=lambda done, total: calls.append((done, total))
    )
    assert labels == tmp_path / "labels.csv"
    assert calls[-1] == (12, 12) and len(calls) == 12
    with labels.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["file", "digit", "split", "speaker"]
        rows = list(reader)
    assert len(rows) == 12
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == sorted(
        Path(r["file"]).name for r in rows
    )
    for row, sample in zip(rows, samples, strict=True):
        assert (tmp_path / row["file"]).stat().st_size > 0
        assert int(row["digit"]) == sample.digit and row["split"] == sample.split
        assert row["speaker"] == (sample.speaker or "")
        with av.open(str(tmp_path / row["file"])) as container:
            assert container.streams.video[0].codec_context.name == "h264"
