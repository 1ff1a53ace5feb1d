"""The linear probe (tagloop.fusion.probe) and its convex fit (tagloop.training.probe_fit), on
synthetic clips built here: the class is which quadrant of the frame is bright and, in the
clips that have audio, which quarter of the mel bands is loud; both cues are noisy."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import ClipTensors
from tagloop.fusion import FusionConfig, FusionModel, LinearProbe, build_model, resize_heads
from tagloop.fusion.centralnet import CentralNet
from tagloop.training import probe_fit
from tagloop.training.artifact import load_artifact, save_artifact
from tagloop.training.backbone import Backbone
from tagloop.training.dataset import LabeledClip
from tagloop.training.loop import TrainOptions, TrainResult, train_model
from tagloop.training.predict import Predictions, predict_clips
from tagloop.training.probe_fit import DEFAULT_C, MIN_VAL_CLIPS
from tagloop.vocabulary import TagVocabulary

CONFIG = FusionConfig(
    frames_per_clip=4,
    frame_size=16,
    n_mels=16,
    visual_channels=(8, 16),
    audio_channels=(8, 16),
    hidden_dim=32,
    probe_visual="pixels",  # these tests check the fit on pixel cues; embeddings: see below
)
# cv_folds=0: these check the validation-split path and parity with scikit-learn at a fixed C;
# the cross-validated path is tests/unit/test_folds.py.
OPTIONS = TrainOptions(audio_frames=24, num_threads=1, cv_folds=0)
QUADRANTS = TagVocabulary.from_pairs((f"q{i}", "quadrant") for i in range(4))
COLUMNS = 30


def features_of(model: FusionModel, clips: list[LabeledClip]) -> np.ndarray:
    """The probe's standardised features of ``clips`` (what its central head reads)."""
    assert isinstance(model, LinearProbe)
    with torch.no_grad():
        return model.features(*batch_of(clips)).numpy()


def make_clips(n: int, *, seed: int, no_audio: float = 0.25) -> list[LabeledClip]:
    """``n`` clips of 4 classes; a fraction ``no_audio`` has no audio (and a NaN log-mel)."""
    gen = torch.Generator().manual_seed(seed)
    half, quarter = CONFIG.frame_size // 2, CONFIG.n_mels // 4
    clips = []
    for i in range(n):
        label = i % 4
        shape = (CONFIG.frames_per_clip, 3, CONFIG.frame_size, CONFIG.frame_size)
        frames = torch.normal(110.0, 50.0, shape, generator=gen)
        row, col = divmod(label, 2)
        frames[:, :, row * half : (row + 1) * half, col * half : (col + 1) * half] += 7.0
        logmel = torch.randn(CONFIG.n_mels, COLUMNS, generator=gen) * 2.0 - 5.0
        logmel[label * quarter : (label + 1) * quarter] += 0.7
        has_audio = bool(torch.rand((), generator=gen) >= no_audio)
        if not has_audio:
            logmel = torch.full_like(logmel, float("nan"))  # must never leak
        targets = np.zeros(4, np.float32)
        targets[label] = 1.0
        tensors = ClipTensors(
            frames=frames.round().clamp(0, 255).to(torch.uint8),
            logmel=logmel.to(torch.float16),
            audio_mask=has_audio,
        )
        clips.append(
            LabeledClip(clip_id=i, tensors=tensors, targets=targets, known=np.ones(4, bool))
        )
    return clips


def batch_of(clips: list[LabeledClip]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    frames = torch.stack([c.tensors.frames for c in clips])
    logmel = torch.stack([c.tensors.logmel for c in clips]).float()[:, :, : OPTIONS.audio_frames]
    mask = torch.tensor([c.tensors.audio_mask for c in clips])
    return frames, logmel, mask


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def accuracy(probs: np.ndarray, clips: list[LabeledClip]) -> float:
    labels = np.array([c.targets.argmax() for c in clips])
    return float((probs.argmax(axis=1) == labels).mean())


def predict(model: FusionModel, clips: list[LabeledClip], *, mc_passes: int = 0) -> Predictions:
    return predict_clips(
        model,
        [c.tensors for c in clips],
        vocab=QUADRANTS,
        mc_passes=mc_passes,
        audio_frames=OPTIONS.audio_frames,
    )


@pytest.fixture(scope="module")
def data() -> tuple[list[LabeledClip], list[LabeledClip], list[LabeledClip]]:
    """(train 40, val 40, test 200)."""
    return make_clips(40, seed=0), make_clips(40, seed=1), make_clips(200, seed=2)


@contextlib.contextmanager
def converged() -> Iterator[None]:
    """Fits run to a gradient of 1e-7, not the service's 1e-4, so they can be compared with
    scikit-learn's converged solution: the check is that the objective is the same."""
    saved = probe_fit._TOLERANCE_GRAD
    probe_fit._TOLERANCE_GRAD = 1e-7
    try:
        yield
    finally:
        probe_fit._TOLERANCE_GRAD = saved


@pytest.fixture(scope="module")
def fitted(data: tuple[list[LabeledClip], ...]) -> TrainResult:
    train, _, _ = data
    with converged():
        return train_model(
            kind="probe", vocab=QUADRANTS, config=CONFIG, train=train, val=[], options=OPTIONS
        )


def test_feature_layout_at_the_default_config() -> None:
    model = build_model("probe", vocab_size=3, config=FusionConfig())
    assert isinstance(model, LinearProbe) and model.uses_visual_embedding
    # The pretrained embedding (1280) by default.
    assert model.feature_dims() == {"visual": 1280, "audio": 1152}
    model = build_model("probe", vocab_size=3, config=FusionConfig(probe_visual="pixels"))
    assert isinstance(model, LinearProbe) and not model.uses_visual_embedding
    # 3 x 16 x 16 pooled pixels; 64 bands x (16 time bins + mean + std).
    assert model.feature_dims() == {"visual": 768, "audio": 1152}
    model.set_uses_branches(True)
    assert model.feature_dims() == {"visual": 768 + 64 * 2 * 2, "audio": 1152 + 64 * 8}
    assert model.head_parameters("central")[0].shape == (3, 768 + 256 + 1152 + 512)


def test_output_fields_and_shapes(data: tuple[list[LabeledClip], ...]) -> None:
    model = build_model("probe", vocab_size=4, config=CONFIG).eval()
    assert isinstance(model, LinearProbe)
    frames, logmel, mask = batch_of(data[0][:6])
    out = model(frames, logmel, mask)
    dims = model.feature_dims()
    assert out.logits.shape == (6, 4)
    assert set(out.modality_logits) == {"visual", "audio"}
    assert all(v.shape == (6, 4) for v in out.modality_logits.values())
    assert out.embedding.shape == (6, CONFIG.hidden_dim)  # stored per clip: kept small
    assert model.features(frames, logmel, mask).shape == (6, dims["visual"] + dims["audio"])
    assert torch.equal(out.modality_present["audio"], mask)
    assert bool(out.modality_present["visual"].all())
    assert model.fusion_weights() == []
    # Nothing of the probe trains by gradient: the branches are frozen, the heads are fitted.
    assert not any(p.requires_grad for n, p in model.named_parameters() if "heads" not in n)
    model.train()
    assert not model.visual.training and not model.audio.training


def test_nan_audio_of_a_clip_without_audio_does_not_leak(fitted: TrainResult) -> None:
    model = fitted.model
    assert isinstance(model, LinearProbe)
    frames, logmel, mask = batch_of(make_clips(4, seed=5, no_audio=0.0))
    mask[1] = False
    before = model(frames, logmel, mask)
    garbage = logmel.clone()
    garbage[1] = float("nan")
    after = model(frames, garbage, mask)
    for a, b in ((before.logits, after.logits), (before.embedding, after.embedding)):
        assert torch.isfinite(b).all() and torch.equal(a, b)
    features = model.features(frames, garbage, mask)
    assert torch.equal(before.modality_logits["audio"], after.modality_logits["audio"])
    # The masked clip's audio features are the training mean: its audio head is the bias.
    audio_dims = model.feature_dims()["audio"]
    assert torch.equal(features[1, -audio_dims:], torch.zeros(audio_dims))
    bias = model.head_parameters("audio")[1]
    assert torch.allclose(after.modality_logits["audio"][1], bias)


def test_learns_the_synthetic_task_and_matches_sklearn(
    fitted: TrainResult, data: tuple[list[LabeledClip], ...]
) -> None:
    train, _, test = data
    record = fitted.history[0]
    assert fitted.epochs_run == 1 and record["fusion_weights"] == []
    heads = record["probe"]["heads"]
    assert heads["central"]["chosen_by"] == "default" and heads["central"]["C"] == DEFAULT_C
    probe = predict(fitted.model, test)
    probe_acc = accuracy(probe.probs, test)
    # Same standardised features, same objective: sklearn's C * sum + |W|^2/2.
    sk = LogisticRegression(C=DEFAULT_C, max_iter=5000, tol=1e-8)
    sk.fit(features_of(fitted.model, train), [c.targets.argmax() for c in train])
    test_features = features_of(fitted.model, test)
    sk_acc = accuracy(sk.predict_proba(test_features), test)
    print(f"probe {probe_acc:.3f} sklearn {sk_acc:.3f}")
    assert probe_acc >= 0.9
    assert abs(probe_acc - sk_acc) <= 0.03
    np.testing.assert_allclose(probe.probs, sk.predict_proba(test_features), atol=2e-3)
    # Each view alone is weaker than both together, and the audio head saw audio clips only.
    assert accuracy(probe.modality_probs["visual"], test) < probe_acc


def test_validation_picks_c_and_metrics_have_the_loop_shape(
    data: tuple[list[LabeledClip], ...],
) -> None:
    train, val, _ = data
    assert len(val) >= MIN_VAL_CLIPS
    result = train_model(
        kind="probe", vocab=QUADRANTS, config=CONFIG, train=train, val=val, options=OPTIONS
    )
    heads = result.history[0]["probe"]["heads"]
    assert {h["chosen_by"] for h in heads.values()} == {"validation"}
    assert set(heads["central"]["scores"]) == {"0.01", "0.03", "0.1", "0.3", "1.0", "3.0"}
    assert result.metrics["score"] == result.history[0]["score"] >= 0.85
    assert "val_loss" in result.metrics and "mean_accuracy" in result.metrics
    again = train_model(
        kind="probe", vocab=QUADRANTS, config=CONFIG, train=train, val=val, options=OPTIONS
    )
    state, other = result.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(state[k], other[k]) for k in state)  # deterministic


def test_artifact_round_trip_predicts_the_same(
    fitted: TrainResult, data: tuple[list[LabeledClip], ...]
) -> None:
    test = data[2][:50]
    loaded = load_artifact(probe_artifact(fitted, judged=None))
    assert isinstance(loaded.model, LinearProbe)
    assert isinstance(fitted.model, LinearProbe)
    assert torch.equal(loaded.model.visual_std, fitted.model.visual_std)
    before, after = predict(fitted.model, test), predict(loaded.model, test)
    assert np.array_equal(before.probs, after.probs)
    assert np.array_equal(before.embedding, after.embedding)


def test_a_backbone_adds_frozen_branch_embeddings(
    tmp_path: Path, data: tuple[list[LabeledClip], ...]
) -> None:
    train, _, test = data
    torch.manual_seed(3)
    source = CentralNet(vocab_size=10, config=CONFIG)
    path = tmp_path / "pretrained.pt"
    torch.save(source.state_dict(), path)
    result = train_model(
        kind="probe",
        vocab=QUADRANTS,
        config=CONFIG,
        train=train,
        val=[],
        options=OPTIONS,
        backbone=Backbone(visual=path, audio=path),
    )
    model = result.model
    assert isinstance(model, LinearProbe) and bool(model.uses_branches)
    grown = model.feature_dims()
    base = LinearProbe(vocab_size=4, config=CONFIG).feature_dims()
    assert grown["visual"] == base["visual"] + source.visual.feature_dims[-1]
    assert grown["audio"] == base["audio"] + source.audio.feature_dims[-1]
    assert same_weights(model.visual, source.visual) and same_weights(model.audio, source.audio)
    preds = predict(model, test[:20])
    assert preds.embedding.shape == (20, CONFIG.hidden_dim)
    assert features_of(model, test[:20]).shape == (20, grown["visual"] + grown["audio"])
    assert result.history[0]["probe"]["uses_branches"] is True
    # A fresh probe built from the artifact takes the wider heads from the stored flag.
    loaded = load_artifact(
        save_artifact(
            model=model, kind="probe", vocab=QUADRANTS, config=CONFIG, options=OPTIONS, metrics={}
        )
    )
    assert np.array_equal(predict(loaded.model, test[:20]).probs, preds.probs)
    # Warm start from that state without a backbone keeps the (stored) branches.
    warm = train_model(
        kind="probe",
        vocab=QUADRANTS,
        config=CONFIG,
        train=train,
        val=[],
        options=OPTIONS,
        init_state=model.state_dict(),
    )
    assert isinstance(warm.model, LinearProbe) and bool(warm.model.uses_branches)


def test_resize_heads_and_mc_predictions(
    fitted: TrainResult, data: tuple[list[LabeledClip], ...]
) -> None:
    test = data[2][:30]
    before = predict(fitted.model, test, mc_passes=2)
    assert before.mc_probs is not None and before.mc_probs.shape == (2, 30, 4)
    assert np.array_equal(before.mc_probs[0], before.probs)  # no dropout: identical passes
    assert set(before.modality_probs) == {"visual", "audio"}
    frames, logmel, mask = batch_of(test)
    old = fitted.model(frames, logmel, mask)
    grown = resize_heads(fitted.model, old_vocab_size=4, new_vocab_size=6).eval()
    new = grown(frames, logmel, mask)
    torch.testing.assert_close(new.logits[:, :4], old.logits, rtol=0, atol=1e-5)
    assert torch.equal(new.logits[:, 4:], torch.zeros(30, 2))
    assert torch.equal(new.embedding, old.embedding)


def test_the_audio_head_stays_undecided_without_audio_clips() -> None:
    clips = make_clips(12, seed=7, no_audio=1.0)
    result = train_model(
        kind="probe", vocab=QUADRANTS, config=CONFIG, train=clips, val=[], options=OPTIONS
    )
    model = result.model
    assert isinstance(model, LinearProbe)
    assert result.history[0]["probe"]["heads"]["audio"] is None
    weight, bias = model.head_parameters("audio")
    assert not weight.any() and not bias.any()
    assert torch.isfinite(model.audio_std).all()


def test_ungrouped_tags_with_unknown_entries_match_per_tag_sklearn(
    data: tuple[list[LabeledClip], ...],
) -> None:
    """Sigmoid tags, some entries undecided: each tag is sklearn's binary model on the clips
    that decided it (the L2 scale follows the number of decisions, as C does there)."""
    vocab = TagVocabulary.from_pairs([("top", None), ("left", None)])
    gen = np.random.default_rng(0)
    clips = []
    for clip in data[0]:
        row, col = divmod(int(clip.targets.argmax()), 2)
        targets = np.array([row == 0, col == 0], np.float32)
        known = gen.random(2) < 0.8
        clips.append(LabeledClip(clip.clip_id, clip.tensors, targets, known))
    with converged():
        result = train_model(
            kind="probe", vocab=vocab, config=CONFIG, train=clips, val=[], options=OPTIONS
        )
    test = data[2][:100]
    preds = predict_clips(
        result.model, [c.tensors for c in test], vocab=vocab, audio_frames=OPTIONS.audio_frames
    )
    train_features = features_of(result.model, clips)
    test_features = features_of(result.model, test)
    for j in range(2):
        rows = np.array([c.known[j] for c in clips])
        labels = np.array([c.targets[j] for c in clips])[rows]
        sk = LogisticRegression(C=DEFAULT_C, max_iter=5000, tol=1e-8)
        sk.fit(train_features[rows], labels)
        np.testing.assert_allclose(
            preds.probs[:, j], sk.predict_proba(test_features)[:, 1], atol=2e-3
        )


def distinct(clips: list[LabeledClip]) -> list[LabeledClip]:
    """The clips under ids no ``make_clips`` training clip has (a round's split never repeats
    a clip; the fixture's sets all number from 0)."""
    from dataclasses import replace

    return [replace(c, clip_id=c.clip_id + 10_000) for c in clips]


def fit_with_validation(
    train: list[LabeledClip], val: list[LabeledClip], *, options: TrainOptions = OPTIONS
) -> TrainResult:
    return train_model(
        kind="probe", vocab=QUADRANTS, config=CONFIG, train=train, val=val, options=options
    )


@pytest.fixture(scope="module")
def refit(data: tuple[list[LabeledClip], ...]) -> TrainResult:
    """A probe fit on the 40 training clips with 40 other validation clips: refit on 80."""
    return fit_with_validation(data[0], distinct(data[1]))


def probe_artifact(result: TrainResult, *, judged: FusionModel | None) -> bytes:
    return save_artifact(
        model=result.model,
        kind="probe",
        vocab=QUADRANTS,
        config=CONFIG,
        options=OPTIONS,
        metrics=result.metrics,
        judged=judged,
    )


def test_the_served_probe_is_refit_on_validation_clips_too(
    refit: TrainResult, data: tuple[list[LabeledClip], ...]
) -> None:
    train, val, test = data[0], distinct(data[1]), data[2]
    assert refit.judged is not None and refit.validation_model is refit.judged
    record = refit.history[0]
    chosen = {name: info["C"] for name, info in record["probe"]["heads"].items()}
    assert record["refit"]["n_clips"] == len(train) + len(val)
    assert {name: info["C"] for name, info in record["refit"]["heads"].items()} == chosen
    assert {info["chosen_by"] for info in record["refit"]["heads"].values()} == {"given"}
    # The judged model is the validation fit: the same weights as a run without the refit,
    # and the metrics describe it.
    plain = fit_with_validation(
        train,
        val,
        options=TrainOptions(audio_frames=24, num_threads=1, refit_probe=False, cv_folds=0),
    )
    assert plain.judged is None and plain.validation_model is plain.model
    assert same_weights(refit.judged, plain.model)
    assert refit.metrics["score"] == plain.metrics["score"]
    # The served model learned from all 80 clips: it is the fit with C given on them.
    assert not same_weights(refit.model, refit.judged)
    direct = build_model("probe", vocab_size=len(QUADRANTS), config=CONFIG)
    assert isinstance(direct, LinearProbe)
    from tagloop.training.dataset import ClipDataset

    probe_fit.fit_probe(
        direct, ClipDataset(train + val), vocab=QUADRANTS, options=OPTIONS, val=None, c=chosen
    )
    fitted_state, served = direct.state_dict(), refit.model.state_dict()
    learned = [k for k in served if k.startswith("heads.") or k.endswith(("_mean", "_std"))]
    assert len(learned) >= 8  # three heads' weight and bias, two modalities' mean and std
    assert all(torch.equal(fitted_state[k], served[k]) for k in learned)
    assert accuracy(predict(refit.model, test).probs, test) >= 0.85


def test_no_refit_when_the_validation_clips_are_the_training_clips(
    data: tuple[list[LabeledClip], ...],
) -> None:
    result = fit_with_validation(data[0], data[0])
    assert result.judged is None and "refit" not in result.history[0]


def test_an_artifact_keeps_the_validation_fit_of_a_refit_probe(
    refit: TrainResult, data: tuple[list[LabeledClip], ...]
) -> None:
    test = data[2]
    assert refit.judged is not None
    loaded = load_artifact(probe_artifact(refit, judged=refit.judged))
    assert loaded.judged is not None and loaded.validation_model is loaded.judged
    assert np.array_equal(predict(loaded.model, test).probs, predict(refit.model, test).probs)
    assert np.array_equal(predict(loaded.judged, test).probs, predict(refit.judged, test).probs)
    # Only the tensors that differ are stored twice.
    assert len(probe_artifact(refit, judged=refit.judged)) > len(probe_artifact(refit, judged=None))
    bare = load_artifact(probe_artifact(refit, judged=None))
    assert bare.judged is None and bare.validation_model is bare.model


def test_promotion_on_validation_clips_asks_the_validation_fit(
    data: tuple[list[LabeledClip], ...],
) -> None:
    from tagloop.pipeline.training import _compare

    val = distinct(data[1])
    result = fit_with_validation(data[0][:16], val)
    old = load_artifact(probe_artifact(result, judged=result.judged))
    assert old.judged is not None

    def compare(new: FusionModel, on: str) -> float | None:
        return _compare(
            new, old, val, on=on, vocab=QUADRANTS, audio_frames=OPTIONS.audio_frames
        ).delta

    # The served fit learned these clips, so it scores higher on them than the validation fit.
    assert compare(old.model, "validation") != 0.0
    # On validation clips the promoted version is its validation fit; elsewhere, the served.
    assert compare(old.judged, "validation") == 0.0
    assert compare(old.model, "holdout") == 0.0


def test_a_version_stored_before_embeddings_reads_pixels() -> None:
    stored = FusionConfig(probe_visual="pixels").to_dict()
    del stored["probe_visual"]
    assert FusionConfig.from_dict(stored).probe_visual == "pixels"
    assert FusionConfig().probe_visual == "embedding"
    with pytest.raises(InvalidInput):
        FusionConfig(probe_visual="clip")


def _embedded_clips(n: int, *, seed: int) -> list[LabeledClip]:
    """Clips whose class is only in their stored embedding (the frames are noise): a probe
    that read pixels, or ignored the stored vector, would be at chance."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(4, 1280)).astype(np.float32)
    clips = []
    for i in range(n):
        label = i % 4
        vector = directions[label] + rng.normal(scale=2.0, size=1280).astype(np.float32)
        tensors = ClipTensors(
            frames=torch.from_numpy(rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)),
            logmel=torch.zeros(16, COLUMNS),
            audio_mask=False,
            visual_embedding=torch.from_numpy(vector),
        )
        targets, known = np.zeros(4, np.float32), np.ones(4, bool)
        targets[label] = 1.0
        clips.append(LabeledClip(clip_id=i, tensors=tensors, targets=targets, known=known))
    return clips


def test_probe_reads_the_stored_embedding_when_fitting_and_predicting() -> None:
    config = dataclasses.replace(CONFIG, probe_visual="embedding")
    clips = _embedded_clips(200, seed=5)
    train, test = clips[:120], clips[120:]
    result = train_model(
        kind="probe", vocab=QUADRANTS, config=config, train=train, val=[], options=OPTIONS
    )
    assert result.model.feature_dims()["visual"] == 1280
    preds = predict_clips(result.model, [c.tensors for c in test], vocab=QUADRANTS, audio_frames=24)
    truth = np.stack([c.targets for c in test]).argmax(axis=1)
    assert (preds.probs.argmax(axis=1) == truth).mean() > 0.9
    # The visual head alone reads the same vectors (no audio here).
    assert (preds.modality_probs["visual"].argmax(axis=1) == truth).mean() > 0.9
