"""Self-supervised audio-visual pretraining: packing the pool, learning what picture and sound
share, handing the branches to a fusion model, and refusing bad options.

Synthetic clips of 4 classes: class c lights up one quadrant of the frame and makes one band
of 4 mel bins loud, both by the same random amount; nuisances that the other modality does
not share (a colour cast, a bright square anywhere, a loud random band) sit on top. Only the
class and the shared amount link the two modalities, so that is what pretraining has to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import ClipTensors
from tagloop.fusion import FusionConfig, build_model
from tagloop.fusion.branch import VisualBranch
from tagloop.training.backbone import Backbone, apply_backbone, load_branch, read_branch_state
from tagloop.training.pretrain import (
    PretrainOptions,
    PretrainResult,
    init_branches,
    load_encoder_state,
    pack_pool,
    pretrain_encoders,
    save_encoder_state,
)

CONFIG = FusionConfig(
    frames_per_clip=4,
    frame_size=16,
    n_mels=16,
    visual_channels=(8, 16),
    audio_channels=(8, 16),
    hidden_dim=32,
)
# One thread: tiny tensors, and a loaded CI machine makes OpenMP hand-offs the bottleneck.
OPTIONS = PretrainOptions(
    epochs=6,
    batch_size=32,
    lr=3e-3,
    temperature=0.2,
    embed_dim=32,
    audio_frames=32,
    max_audio_shift=4,
    frame_shift=1,
    num_threads=1,
)
COLUMNS = 40


def make_clips(n: int, *, seed: int) -> tuple[list[ClipTensors], np.ndarray]:
    """``n`` clips (frames ``(4, 3, 16, 16)``, logmel ``(16, 40)``) and their classes."""
    gen = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, 4, (n,), generator=gen)
    clips = []
    for c in classes.tolist():
        amount = float(torch.rand(1, generator=gen))
        frames = torch.randint(0, 60, (4, 3, 16, 16), generator=gen).float()
        frames += torch.randint(0, 120, (1, 3, 1, 1), generator=gen).float()  # colour cast
        y, x = divmod(c, 2)
        frames[:, :, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8] += 30 + 80 * amount
        dy, dx = torch.randint(0, 12, (2,), generator=gen).tolist()
        frames[:, :, dy : dy + 5, dx : dx + 5] += float(torch.randint(50, 150, (1,), generator=gen))
        logmel = torch.randn(16, COLUMNS, generator=gen) - 5.0
        logmel[4 * c : 4 * c + 4] += 1.0 + 4.0 * amount
        logmel[int(torch.randint(0, 16, (1,), generator=gen))] += 4.0
        clips.append(
            ClipTensors(
                frames=frames.clamp(0, 255).to(torch.uint8),
                logmel=logmel.to(torch.float16),
                audio_mask=True,
            )
        )
    return clips, classes.numpy()


def silent(clip: ClipTensors) -> ClipTensors:
    return ClipTensors(frames=clip.frames, logmel=torch.zeros_like(clip.logmel), audio_mask=False)


@pytest.fixture(scope="module")
def trained() -> tuple[PretrainResult, list[ClipTensors], np.ndarray]:
    clips, classes = make_clips(480, seed=0)
    pool = pack_pool(iter(clips), config=CONFIG, options=OPTIONS)
    return pretrain_encoders(pool, config=CONFIG, options=OPTIONS), clips, classes


def visual_features(branch: VisualBranch, clips: list[ClipTensors]) -> np.ndarray:
    with torch.no_grad():
        return branch(torch.stack([c.frames for c in clips]))[-1].numpy()


def probe_accuracy(branch: VisualBranch, train: tuple, test: tuple) -> float:
    """Mean held-out accuracy of linear probes fit on one labeled clip per class."""
    x_train, x_test = visual_features(branch, train[0]), visual_features(branch, test[0])
    accuracies = []
    for draw in range(5):
        rng = np.random.default_rng(draw)
        rows = [rng.choice(np.flatnonzero(train[1] == c)) for c in range(4)]
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(x_train[rows], train[1][rows])
        accuracies.append(probe.score(x_test, test[1]))
    return float(np.mean(accuracies))


def branch_state(result: PretrainResult, name: str) -> dict[str, torch.Tensor]:
    return {k[len(name) + 1 :]: v for k, v in result.state.items() if k.startswith(f"{name}.")}


def test_pretraining_learns_what_picture_and_sound_share(trained: tuple) -> None:
    result, clips, classes = trained
    assert [r["epoch"] for r in result.history] == list(range(1, OPTIONS.epochs + 1))
    last = result.history[-1]
    assert last["retrieval_chance"] == pytest.approx(1 / 32)
    assert last["retrieval_top1"] >= 3 * last["retrieval_chance"]
    assert last["loss"] < result.history[0]["loss"]
    test = make_clips(400, seed=1)
    random_visual, _ = init_branches(CONFIG, seed=OPTIONS.seed)
    pretrained_visual = VisualBranch(CONFIG)
    pretrained_visual.load_state_dict(branch_state(result, "visual"))
    random_acc = probe_accuracy(random_visual, (clips, classes), test)
    pretrained_acc = probe_accuracy(pretrained_visual, (clips, classes), test)
    assert pretrained_acc >= random_acc + 0.05, (pretrained_acc, random_acc)
    assert pretrained_acc >= 0.8


def test_saved_encoders_load_into_a_centralnet_through_the_backbone_path(
    trained: tuple, tmp_path: Path
) -> None:
    result = trained[0]
    assert {k.split(".")[0] for k in result.state} == {"visual", "audio"}  # no heads
    path = tmp_path / "encoders.pt"
    path.write_bytes(save_encoder_state(result))
    model = build_model("centralnet", vocab_size=5, config=CONFIG)
    for name in ("visual", "audio"):
        load_branch(getattr(model, name), read_branch_state(path, branch=name), path=path)
        loaded = getattr(model, name).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in branch_state(result, name).items())
    fresh = build_model("centralnet", vocab_size=5, config=CONFIG)
    apply_backbone(fresh, Backbone(visual=path, audio=path, freeze=True), load=True)
    audio = fresh.get_submodule("audio")
    assert torch.equal(
        audio.state_dict()["blocks.0.0.weight"], result.state["audio.blocks.0.0.weight"]
    )
    assert not any(p.requires_grad for p in audio.parameters())  # frozen as asked
    back = load_encoder_state(path.read_bytes())
    assert back.config == CONFIG and back.options == OPTIONS and back.n_clips == result.n_clips
    assert back.history == result.history
    with pytest.raises(InvalidInput) as err:
        load_encoder_state(b"not a checkpoint")
    assert err.value.code == "bad_encoder_state"


def test_pack_keeps_clips_with_audio_few_frames_and_a_cropped_half_precision_logmel() -> None:
    clips, _ = make_clips(30, seed=2)
    stream = [silent(c) if i % 3 == 0 else c for i, c in enumerate(clips)]
    seen = []
    pool = pack_pool(
        (c for c in stream), config=CONFIG, options=OPTIONS, progress=lambda n, t: seen.append(n)
    )
    assert len(pool) == 20 and pool.n_seen == 30 and pool.n_without_audio == 10
    assert pool.source_index.tolist() == [i for i in range(30) if i % 3]
    assert pool.frames.shape == (20, 4, 3, 16, 16) and pool.frames.dtype == torch.uint8
    assert pool.logmel.shape == (20, 16, OPTIONS.audio_frames)
    assert pool.logmel.dtype == torch.float16
    assert torch.equal(pool.logmel[0], clips[1].logmel[:, : OPTIONS.audio_frames])
    assert seen[-1] == 30
    # More stored frames than the clip has: evenly spaced, repeated; a short log-mel is padded.
    eight = PretrainOptions(frames_used=8, audio_frames=64, num_threads=1)
    wide = pack_pool(iter(clips[:12]), config=CONFIG, options=eight, total=12)
    assert wide.frames.shape[1] == 8 and torch.equal(wide.frames[0, 1], clips[0].frames[0])
    assert wide.logmel.shape[2] == 64 and torch.equal(wide.logmel[0, :, :COLUMNS], clips[0].logmel)


def test_pack_bounds_the_pool_with_a_seeded_sample() -> None:
    clips, _ = make_clips(60, seed=3)
    small = PretrainOptions(max_clips=16, seed=4)
    pool = pack_pool(iter(clips), config=CONFIG, options=small)
    again = pack_pool(iter(clips), config=CONFIG, options=small, total=60)
    other = pack_pool(iter(clips), config=CONFIG, options=PretrainOptions(max_clips=16, seed=5))
    assert len(pool) == 16 and len(set(pool.source_index.tolist())) == 16
    assert torch.equal(pool.source_index, again.source_index)
    assert torch.equal(pool.frames, again.frames)
    assert not torch.equal(pool.source_index, other.source_index)
    assert max(pool.source_index.tolist()) >= 16  # the later clips had their chance too
    for row, source in enumerate(pool.source_index.tolist()):
        assert torch.equal(pool.frames[row], clips[source].frames)


def test_pretraining_is_deterministic_for_a_seed() -> None:
    clips, _ = make_clips(60, seed=6)
    quick = PretrainOptions(**{**OPTIONS.to_dict(), "epochs": 1, "batch_size": 16})
    pool = pack_pool(iter(clips), config=CONFIG, options=quick)
    runs = [pretrain_encoders(pool, config=CONFIG, options=quick) for _ in range(2)]
    other = pretrain_encoders(
        pool, config=CONFIG, options=PretrainOptions.from_dict({**quick.to_dict(), "seed": 1})
    )
    assert runs[0].state.keys() == runs[1].state.keys()
    assert all(torch.equal(runs[0].state[k], runs[1].state[k]) for k in runs[0].state)
    assert runs[0].history[0]["loss"] == runs[1].history[0]["loss"]
    assert not torch.equal(
        runs[0].state["visual.blocks.0.0.weight"], other.state["visual.blocks.0.0.weight"]
    )


@pytest.mark.parametrize(
    "values",
    [
        {"epochs": 0},
        {"batch_size": 1},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"temperature": 0.0},
        {"weight_decay": -1.0},
        {"frames_used": 0},
        {"audio_frames": 0},
        {"max_clips": 3},
        {"frame_shift": -1},
        {"num_threads": 0},
        {"colour": 1},
        {"epochs": "many"},
    ],
)
def test_bad_options_are_refused_with_a_code(values: dict) -> None:
    with pytest.raises(InvalidInput) as err:
        PretrainOptions.from_dict(values)
    assert err.value.code == "bad_pretrain_options"


def test_options_round_trip_and_pool_misfits_are_refused() -> None:
    assert PretrainOptions.from_dict(OPTIONS.to_dict()) == OPTIONS
    clips, _ = make_clips(12, seed=7)
    with pytest.raises(InvalidInput) as err:  # only silent clips: nothing to pretrain on
        pretrain_encoders(
            pack_pool(map(silent, clips), config=CONFIG, options=OPTIONS),
            config=CONFIG,
            options=OPTIONS,
        )
    assert err.value.code == "too_few_clips"
    wrong = FusionConfig(frame_size=32, n_mels=16)
    with pytest.raises(InvalidInput) as err:
        pack_pool(iter(clips), config=wrong, options=OPTIONS)
    assert err.value.code == "ragged_clips"
    pool = pack_pool(iter(clips), config=CONFIG, options=OPTIONS)
    with pytest.raises(InvalidInput) as err:
        pretrain_encoders(pool, config=wrong, options=OPTIONS)
    assert err.value.code == "ragged_clips"
