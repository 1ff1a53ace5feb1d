"""The long-tailed multi-label AV set: specs (split, tags, frequencies), rendering, mp4 files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tagloop.datasets.long_tail_render import (
    CANVAS,
    LongTailSources,
    load_long_tail_sources,
    render_audio,
    render_clip_tensors,
    render_frames,
    synthesize_noise,
    write_long_tail_videos,
)
from tagloop.datasets.long_tail_spec import (
    CLIP_SECONDS,
    CROSS_MODAL_TAGS,
    NOISES,
    SPEECH_END_S,
    TEST_SPEAKER,
    ClipSpec,
    FsddTable,
    clip_tags,
    count_tags,
    generate_long_tail_specs,
    generate_specs,
    is_test_image,
    long_tail_vocab,
    read_fsdd_table,
    spec_targets,
)
from tagloop.datasets.mnist import read_idx_labels
from tagloop.errors import InvalidInput
from tagloop.training.targets import build_targets

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def fsdd() -> FsddTable:
    return read_fsdd_table(DATA / "fsdd")


@pytest.fixture(scope="module")
def mnist_labels() -> np.ndarray:
    return read_idx_labels(DATA / "mnist" / "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def full(fsdd: FsddTable, mnist_labels: np.ndarray) -> list[ClipSpec]:
    """The benchmark's size: 20,000 pool + 2,000 test specs (no audio or pixels: ~1.5 s)."""
    return generate_long_tail_specs(fsdd, mnist_labels, seed=0)


@pytest.fixture(scope="module")
def tiny(fsdd: FsddTable, mnist_labels: np.ndarray) -> list[ClipSpec]:
    return generate_long_tail_specs(fsdd, mnist_labels, seed=1, n_pool=32, n_test=8)


@pytest.fixture(scope="module")
def sources(tiny: list[ClipSpec]) -> LongTailSources:
    # Only the recordings the tiny set uses: resampling all 3,000 would dominate the test time.
    return load_long_tail_sources(DATA, rows={r for s in tiny for r in s.recordings})


def test_specs_are_deterministic_for_a_seed(fsdd: FsddTable, mnist_labels: np.ndarray) -> None:
    first = generate_long_tail_specs(fsdd, mnist_labels, seed=7, n_pool=300, n_test=50)
    again = generate_long_tail_specs(fsdd, mnist_labels, seed=7, n_pool=300, n_test=50)
    other = generate_long_tail_specs(fsdd, mnist_labels, seed=8, n_pool=300, n_test=50)
    assert first == again
    assert [s.tags for s in first] != [s.tags for s in other]
    assert [s.index for s in first] == list(range(350))


def test_test_split_holds_out_the_speaker_and_the_images(
    full: list[ClipSpec], fsdd: FsddTable
) -> None:
    pool = [s for s in full if s.split == "pool"]
    test = [s for s in full if s.split == "test"]
    assert (len(pool), len(test)) == (20_000, 2_000)
    for spec in pool:
        assert spec.speaker != TEST_SPEAKER
        assert not any(is_test_image(i) for i in spec.images)
        assert all(fsdd.speakers[r] == spec.speaker for r in spec.recordings)
    for spec in test:
        assert spec.speaker == TEST_SPEAKER
        assert all(is_test_image(i) for i in spec.images)
        assert all(fsdd.speakers[r] == TEST_SPEAKER for r in spec.recordings)
    pool_images = {i for s in pool for i in s.images}
    test_images = {i for s in test for i in s.images}
    assert not pool_images & test_images
    assert len(pool_images) > 5_000  # the pool draws on most of its 8,000 images


def test_specs_agree_with_their_sources(
    full: list[ClipSpec], fsdd: FsddTable, mnist_labels: np.ndarray
) -> None:
    for spec in full[:3000]:
        assert [int(mnist_labels[i]) for i in spec.images] == list(spec.seen)
        assert [int(fsdd.digits[r]) for r in spec.recordings] == list(spec.heard)
        assert len(set(spec.cells)) == len(spec.cells) and set(spec.cells) <= {0, 1, 2, 3}
        if spec.recordings:
            end = spec.onsets_s[-1] + fsdd.seconds[spec.recordings[-1]]
            assert end <= SPEECH_END_S + 1e-3  # inside the 128-column training window


def test_vocabulary_has_groups_the_service_accepts(full: list[ClipSpec]) -> None:
    vocab = long_tail_vocab()
    assert len(vocab) >= 30
    assert set(vocab.group_indices) == {"noise", "tint"}
    assert len(vocab.group_indices["noise"]) == len(NOISES)
    for spec in full[:2000]:
        targets, known = build_targets(spec.tags, vocab=vocab)
        assert known.all()  # every clip names exactly one tag of each group
        for columns in vocab.group_indices.values():
            assert targets[columns].sum() == 1.0
        assert targets.sum() == len(spec.tags)


def test_frequencies_are_long_tailed_and_every_tag_is_in_both_splits(
    full: list[ClipSpec],
) -> None:
    pool = count_tags([s for s in full if s.split == "pool"])
    test = count_tags([s for s in full if s.split == "test"])
    assert max(pool.values()) >= 50 * min(pool.values())
    # Not only a default tag against the tail: the ungrouped tags alone span the same range.
    free = [
        n for t, n in pool.items() if long_tail_vocab().groups[long_tail_vocab().index[t]] is None
    ]
    assert max(free) >= 50 * min(free)
    assert min(pool.values()) >= 100
    assert min(test.values()) >= 10, {t: n for t, n in test.items() if n < 10}


@pytest.mark.parametrize("seed", [1, 2])
def test_long_tail_holds_for_other_seeds(
    fsdd: FsddTable, mnist_labels: np.ndarray, seed: int
) -> None:
    specs = generate_long_tail_specs(fsdd, mnist_labels, seed=seed, n_test=0)
    counts = count_tags(specs)
    assert max(counts.values()) >= 50 * min(counts.values())
    assert min(counts.values()) >= 20


def test_clips_are_multi_label(full: list[ClipSpec]) -> None:
    targets = spec_targets(full)
    ungrouped = targets[:, long_tail_vocab().ungrouped_indices]
    assert ungrouped.sum(1).mean() > 2.0  # beyond the one noise and one tint tag
    assert (targets[:, :10].sum(1) >= 2).mean() > 0.4  # several digits on screen
    assert (targets[:, 10:20].sum(1) >= 2).mean() > 0.1  # several digits spoken


def test_cross_modal_tags_follow_from_both_modalities(full: list[ClipSpec]) -> None:
    for spec in full[:5000]:
        tags = set(spec.tags)
        assert ("match" in tags) == bool(set(spec.seen) & set(spec.heard))
        assert ("same_count" in tags) == (len(spec.seen) == len(spec.heard))
        above = bool(spec.heard) and max(spec.heard) > max(spec.seen)
        assert ("heard_above_seen" in tags) == above
        assert ("silent" in tags) == (not spec.heard)

    # Neither modality alone decides "match": the same screen with another sound flips it.
    def tags_of(seen: list[int], heard: list[int]) -> tuple[str, ...]:
        return clip_tags(
            seen=seen,
            heard=heard,
            noise="none",
            tint="grey",
            inverted=False,
            moving=False,
            blurred=False,
        )

    assert "match" in tags_of([3, 5], [5])
    assert "match" not in tags_of([3, 5], [4])
    assert "match" not in tags_of([3, 6], [5])
    assert set(CROSS_MODAL_TAGS) <= set(long_tail_vocab().tags)


def test_bad_split_or_speaker_is_refused(fsdd: FsddTable, mnist_labels: np.ndarray) -> None:
    with pytest.raises(InvalidInput):
        generate_specs(fsdd, mnist_labels, n=5, split="train", seed=0)
    with pytest.raises(InvalidInput):
        generate_specs(fsdd, mnist_labels, n=5, split="test", seed=0, test_speaker="nobody")


def test_frames_show_the_specs_digits(tiny: list[ClipSpec], sources: LongTailSources) -> None:
    spec = replace(tiny[0], inverted=False, blurred=False, tint="grey", shift_px=(0.0, 0.0))
    frame = render_frames(spec, sources.images, times=[0.5])[0]
    for image, cell in zip(spec.images, spec.cells, strict=True):
        top, left = (cell // 2) * 32 + 2, (cell % 2) * 32 + 2
        np.testing.assert_array_equal(
            frame[top : top + 28, left : left + 28, 0], sources.images[image]
        )
    assert frame[:, :, 0].sum() == sum(int(sources.images[i].sum()) for i in spec.images)
    red = render_frames(replace(spec, tint="red"), sources.images, times=[0.5])[0]
    assert red[:, :, 0].sum() > 2 * red[:, :, 1].sum()
    inverted = render_frames(replace(spec, inverted=True), sources.images, times=[0.5])[0]
    np.testing.assert_array_equal(inverted, 255 - frame)
    moving = render_frames(replace(spec, shift_px=(6.0, 0.0)), sources.images, times=[0.0, 1.0])
    assert not np.array_equal(moving[0], moving[1])


def test_sound_has_speech_where_the_spec_says(
    tiny: list[ClipSpec], sources: LongTailSources
) -> None:
    spoken = next(s for s in tiny if s.heard)
    quiet = replace(spoken, noise="none")
    audio = render_audio(quiet, sources, clip_seconds=CLIP_SECONDS)
    assert audio.shape == (round(CLIP_SECONDS * sources.sample_rate),)
    assert audio.dtype == np.float32 and np.abs(audio).max() <= 0.99
    start = round(quiet.onsets_s[0] * sources.sample_rate)
    assert np.all(audio[:start] == 0.0) and np.abs(audio[start:]).max() > 0.1
    silent = replace(spoken, heard=(), recordings=(), onsets_s=(), noise="none")
    assert not render_audio(silent, sources, clip_seconds=CLIP_SECONDS).any()
    for kind in NOISES[1:]:
        noise = synthesize_noise(kind, n=8000, sample_rate=16_000, rng=np.random.default_rng(0))
        assert np.sqrt(np.mean(noise[np.abs(noise) > 1e-9] ** 2)) == pytest.approx(1.0)


def test_tiny_build_feeds_the_training_code(tiny: list[ClipSpec], sources: LongTailSources) -> None:
    from tagloop.fusion import FusionConfig
    from tagloop.training.dataset import ClipDataset, LabeledClip
    from tagloop.training.loop import TrainOptions, train_model

    vocab = long_tail_vocab()
    clips = []
    for spec in tiny:
        tensors = render_clip_tensors(spec, sources)
        assert tensors.frames.shape == (8, 3, 32, 32) and tensors.frames.dtype == torch.uint8
        assert tensors.logmel.shape == (64, 151) and tensors.logmel.dtype == torch.float16
        targets, known = build_targets(spec.tags, vocab=vocab)
        clips.append(LabeledClip(clip_id=spec.index, tensors=tensors, targets=targets, known=known))
    again = render_clip_tensors(tiny[0], sources)
    assert torch.equal(again.frames, clips[0].tensors.frames)
    assert torch.equal(again.logmel, clips[0].tensors.logmel)
    dataset = ClipDataset(clips)
    assert dataset.targets.shape == (40, len(vocab))
    pool = [c for c, s in zip(clips, tiny, strict=True) if s.split == "pool"]
    result = train_model(
        kind="centralnet",
        vocab=vocab,
        config=FusionConfig(),
        train=pool[:24],
        val=pool[24:],
        options=TrainOptions(epochs=1, batch_size=8, num_threads=1),
    )
    assert result.epochs_run == 1


def test_mp4_files_ingest_like_the_direct_render(
    tiny: list[ClipSpec], sources: LongTailSources, tmp_path: Path
) -> None:
    from tagloop.features.clip_tensor import build_clip_tensors
    from tagloop.media.extract import iter_clip_media
    from tagloop.media.probe import probe_media

    specs = [s for s in tiny if s.heard][:2]
    labels = write_long_tail_videos(specs, sources, tmp_path)
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert [r["tags"] for r in rows] == [list(s.tags) for s in specs]
    for row, spec in zip(rows, specs, strict=True):
        path = str(tmp_path / row["file"])
        info = probe_media(path)
        assert info.has_audio and (info.width, info.height) == (CANVAS, CANVAS)
        (clip,) = iter_clip_media(
            path,
            info=info,
            clip_seconds=10.0,
            frames_per_clip=8,
            frame_size=32,
            sample_rate=16_000,
            preview_height=32,
        )
        ingested = build_clip_tensors(
            clip, sample_rate=16_000, n_mels=64, clip_seconds=CLIP_SECONDS
        )
        direct = render_clip_tensors(spec, sources)
        # Lossy H.264/AAC: close, not equal.
        pixels = (ingested.frames.float() - direct.frames.float()).abs().mean()
        assert pixels < 4.0  # measured 0.03-1.7 of 255
        a, b = ingested.logmel.float()[:, :140], direct.logmel.float()[:, :140]
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9  # 0.95-0.999
    with av.open(str(tmp_path / rows[0]["file"])) as container:
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(CLIP_SECONDS, abs=0.15)


def test_tensor_cache_round_trips_into_a_simulation_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsdd: FsddTable, mnist_labels: np.ndarray
) -> None:
    import tests.benchmarks.lt_tensors as lt

    monkeypatch.setattr(lt, "WORK", tmp_path)
    data = lt.load_lt_simulation_set(5, n_pool=12, n_test=4)
    assert lt.cache_path(seed=5, n_pool=12, n_test=4).is_file()
    assert (len(data.pool), len(data.test)) == (12, 4)
    assert data.vocab == long_tail_vocab()
    assert (data.config.frames_per_clip, data.config.frame_size, data.config.n_mels) == (8, 32, 64)
    specs = generate_long_tail_specs(fsdd, mnist_labels, seed=5, n_pool=12, n_test=4)
    for clip, spec in zip([*data.pool, *data.test], specs, strict=True):
        targets, known = build_targets(spec.tags, vocab=data.vocab)
        np.testing.assert_array_equal(clip.targets, targets)
        assert known.all() and clip.known.all()
        assert clip.tensors.logmel.shape == (64, 151)
    stats = lt.describe(lt.load_lt_tensors(5, n_pool=12, n_test=4))
    assert (stats["pool"], stats["test"], stats["tags"]) == (12, 4, 38)
