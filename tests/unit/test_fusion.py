"""Fusion models (tagloop.fusion) and the multi-task loss (tagloop.training.loss)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from tagloop.errors import InvalidInput
from tagloop.fusion import (
    MODEL_KINDS,
    FusionConfig,
    build_model,
    enable_mc_dropout,
    resize_heads,
)
from tagloop.fusion.base import masked_softmax_weights
from tagloop.fusion.centralnet import CentralNet
from tagloop.training.loss import fusion_loss, multitask_loss, probabilities
from tagloop.vocabulary import TagVocabulary

# Small sizes keep every test fast; the defaults are exercised once in test_default_config.
SMALL = FusionConfig(
    frames_per_clip=2,
    frame_size=16,
    n_mels=16,
    visual_channels=(8, 16),
    audio_channels=(8, 16),
    hidden_dim=32,
    dropout=0.1,
)
VOCAB = TagVocabulary.from_pairs(
    [("zero", "digit"), ("one", "digit"), ("two", "digit"), ("loud", None), ("outdoor", None)]
)
FUSED_KINDS = ("centralnet", "late", "concat")


def make_batch(
    batch: int, *, config: FusionConfig = SMALL, steps: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    size = config.frame_size
    frames = torch.randint(
        0, 256, (batch, config.frames_per_clip, 3, size, size), generator=gen, dtype=torch.uint8
    )
    logmel = torch.randn(batch, config.n_mels, steps, generator=gen)
    return frames, logmel, torch.ones(batch, dtype=torch.bool)


def make_targets(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    targets = torch.zeros(batch, len(VOCAB))
    targets[torch.arange(batch), torch.arange(batch) % 3] = 1.0
    targets[:, 3] = (torch.arange(batch) % 2).float()
    return targets, torch.ones(batch, len(VOCAB), dtype=torch.bool)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_output_shapes(kind: str) -> None:
    model = build_model(kind, vocab_size=len(VOCAB), config=SMALL).eval()
    frames, logmel, mask = make_batch(3)
    out = model(frames, logmel, mask)
    assert out.logits.shape == (3, len(VOCAB))
    assert out.embedding.shape == (3, SMALL.hidden_dim)
    expected = {"visual", "audio"} if kind in ("centralnet", "late", "probe") else set()
    assert set(out.modality_logits) == expected
    for logits in out.modality_logits.values():
        assert logits.shape == (3, len(VOCAB))
    assert model.kind == kind


def test_default_config_sizes() -> None:
    config = FusionConfig()
    model = build_model("centralnet", vocab_size=4, config=config).eval()
    frames, logmel, mask = make_batch(2, config=config, steps=130)
    out = model(frames, logmel, mask)
    assert out.logits.shape == (2, 4)
    assert torch.isfinite(out.logits).all()
    # Small enough for 2 CPU cores.
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_parameter_gets_a_gradient(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(kind, vocab_size=len(VOCAB), config=SMALL).train()
    frames, logmel, mask = make_batch(4)
    mask[1] = False
    targets, known = make_targets(4)
    out = model(frames, logmel, mask)
    loss = fusion_loss(out, targets, known, vocab=VOCAB, betas={"visual": 0.5, "audio": 0.5})
    loss.backward()
    # The probe's branches are frozen by design (only its heads are fitted).
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum()]
    assert missing == []
    if isinstance(model, CentralNet):
        assert all(p.grad is not None for p in model.alpha_scores)


@pytest.mark.parametrize("kind", FUSED_KINDS)
def test_masked_audio_is_ignored(kind: str) -> None:
    model = build_model(kind, vocab_size=len(VOCAB), config=SMALL).eval()
    frames, logmel, mask = make_batch(3)
    mask[0] = False
    before = model(frames, logmel, mask)
    changed = logmel.clone()
    changed[0] = float("nan")  # even garbage in a masked clip's tensor must not leak
    after = model(frames, changed, mask)
    assert torch.equal(before.logits, after.logits)
    assert torch.equal(before.embedding, after.embedding)
    # Unmasked, the same change does move the prediction: the audio is really used.
    mask_all = torch.ones(3, dtype=torch.bool)
    changed[0] = torch.randn(SMALL.n_mels, 20)
    moved = model(frames, changed, mask_all).logits[0]
    assert not torch.allclose(model(frames, logmel, mask_all).logits[0], moved)


def test_masked_softmax_weights_renormalise() -> None:
    theta = torch.tensor([0.3, -1.0, 2.0])
    present = torch.tensor([[True, True, True], [True, True, False]])
    weights = masked_softmax_weights(theta, present)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))
    assert weights[1, 2] == 0.0
    # The present terms keep their ratio.
    assert torch.allclose(weights[1, 0] / weights[1, 1], torch.exp(theta[0] - theta[1]))
    assert torch.allclose(weights[0], torch.softmax(theta, dim=0))


def test_centralnet_mixes_with_renormalised_alphas() -> None:
    torch.manual_seed(0)
    model = build_model("centralnet", vocab_size=len(VOCAB), config=SMALL).eval()
    assert isinstance(model, CentralNet)
    with torch.no_grad():
        model.alpha_scores[1].copy_(torch.tensor([0.5, -0.2, 1.0]))
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.central[0].register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("central0", out)
        ),
        model.visual_proj[1].register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("visual1", out)
        ),
        model.audio_proj[1].register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("audio1", out)
        ),
        model.central[1].register_forward_hook(
            lambda _m, inputs, _o: seen.__setitem__("mixed1", inputs[0])
        ),
    ]
    frames, logmel, mask = make_batch(2)
    mask[1] = False
    model(frames, logmel, mask)
    for hook in hooks:
        hook.remove()
    # Each present term gets the floor, the softmax shares out the rest.
    floor = SMALL.alpha_floor
    full = floor + (1 - 3 * floor) * torch.softmax(torch.tensor([0.5, -0.2, 1.0]), dim=0)
    two = floor + (1 - 2 * floor) * torch.softmax(torch.tensor([0.5, -0.2]), dim=0)
    expected_full = (
        full[0] * seen["central0"][0] + full[1] * seen["visual1"][0] + full[2] * seen["audio1"][0]
    )
    expected_masked = two[0] * seen["central0"][1] + two[1] * seen["visual1"][1]
    assert torch.allclose(seen["mixed1"][0], expected_full, atol=1e-6)
    assert torch.allclose(seen["mixed1"][1], expected_masked, atol=1e-6)


def test_fusion_weights_exposed() -> None:
    central = build_model("centralnet", vocab_size=3, config=SMALL)
    weights = central.fusion_weights()
    assert len(weights) == SMALL.depth
    assert set(weights[0]) == {"visual", "audio"}
    assert set(weights[1]) == {"central", "visual", "audio"}
    assert all(math.isclose(sum(w.values()), 1.0, rel_tol=1e-6) for w in weights)
    json.dumps(weights)
    late = build_model("late", vocab_size=3, config=SMALL).fusion_weights()
    assert late == [{"visual": 0.5, "audio": 0.5}]
    assert build_model("concat", vocab_size=3, config=SMALL).fusion_weights() == []


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_resize_heads_keeps_old_outputs(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(kind, vocab_size=3, config=SMALL).eval()
    frames, logmel, mask = make_batch(3)
    mask[2] = False
    before = model(frames, logmel, mask)
    grown = resize_heads(model, old_vocab_size=3, new_vocab_size=5).eval()
    after = grown(frames, logmel, mask)
    assert after.logits.shape == (3, 5)
    # Equal up to float rounding (a wider matmul may sum in another order).
    torch.testing.assert_close(after.logits[:, :3], before.logits, rtol=0, atol=1e-6)
    assert torch.equal(after.logits[:, 3:], torch.zeros(3, 2))  # undecided about new tags
    assert torch.equal(after.embedding, before.embedding)
    for name, logits in before.modality_logits.items():
        torch.testing.assert_close(after.modality_logits[name][:, :3], logits, rtol=0, atol=1e-6)
    assert grown.vocab_size == 5
    assert model.vocab_size == 3 and model(frames, logmel, mask).logits.shape == (3, 3)


def test_resize_heads_refuses_bad_sizes() -> None:
    model = build_model("centralnet", vocab_size=3, config=SMALL)
    with pytest.raises(InvalidInput) as shrink:
        resize_heads(model, old_vocab_size=3, new_vocab_size=2)
    assert shrink.value.code == "vocab_shrink"
    with pytest.raises(InvalidInput) as mismatch:
        resize_heads(model, old_vocab_size=4, new_vocab_size=6)
    assert mismatch.value.code == "vocab_mismatch"


def test_config_round_trips_through_json() -> None:
    restored = FusionConfig.from_dict(json.loads(json.dumps(SMALL.to_dict())))
    assert restored == SMALL
    a = build_model("centralnet", vocab_size=3, config=SMALL)
    b = build_model("centralnet", vocab_size=3, config=restored)
    b.load_state_dict(a.state_dict())  # same architecture, so the weights fit
    with pytest.raises(InvalidInput):
        FusionConfig.from_dict({"hidden_dims": 3})
    with pytest.raises(InvalidInput):
        FusionConfig(dropout=1.5)
    with pytest.raises(InvalidInput):
        build_model("transformer", vocab_size=3, config=SMALL)


def test_inputs_are_checked() -> None:
    model = build_model("centralnet", vocab_size=3, config=SMALL)
    frames, logmel, mask = make_batch(2)
    with pytest.raises(InvalidInput) as bad_dtype:
        model(frames.float(), logmel, mask)
    assert bad_dtype.value.code == "bad_frames"
    with pytest.raises(InvalidInput):
        model(frames[..., :8, :8], logmel, mask)
    with pytest.raises(InvalidInput) as bad_mel:
        model(frames, logmel[:, :8], mask)
    assert bad_mel.value.code == "bad_logmel"
    with pytest.raises(InvalidInput):
        model(frames, logmel, mask.float())
    # A very short log-mel (one frame) and a missing mask (all present) are fine.
    out = model.eval()(frames, logmel[:, :, :1])
    assert torch.isfinite(out.logits).all()


def test_mc_dropout_samples_differ() -> None:
    torch.manual_seed(0)
    model = enable_mc_dropout(build_model("centralnet", vocab_size=3, config=SMALL))
    assert any(isinstance(m, nn.Dropout) and m.training for m in model.modules())
    assert not model.training
    frames, logmel, mask = make_batch(2)
    first, second = model(frames, logmel, mask).logits, model(frames, logmel, mask).logits
    assert not torch.allclose(first, second)


# --- loss -------------------------------------------------------------------------------


def test_loss_hand_value() -> None:
    logits = torch.zeros(1, len(VOCAB))
    targets = torch.tensor([[1.0, 0, 0, 1, 0]])
    known = torch.tensor([[True, True, True, True, False]])
    # One group decision (CE over 3 equal logits and the zero "none" logit = ln 4; was ln 3
    # before "none") and one ungrouped one (BCE(0) = ln 2).
    expected = (math.log(4) + math.log(2)) / 2
    loss = float(multitask_loss(logits, targets, known, vocab=VOCAB))
    assert math.isclose(loss, expected, rel_tol=1e-6)


def test_loss_ignores_unlabeled_entries() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, len(VOCAB), generator=gen)
    targets = torch.tensor([[0.0, 1, 0, 1, 0], [0.0, 0, 0, 1, 1]])
    known = torch.tensor([[True, True, True, True, False], [True, False, False, True, True]])
    base = multitask_loss(logits, targets, known, vocab=VOCAB)
    moved = logits.clone()
    moved[1, :3] += torch.tensor([5.0, -3.0, 2.0])  # sample 1: group known but no positive
    moved[0, 4] -= 7.0  # sample 0: "outdoor" not labeled
    assert torch.equal(multitask_loss(moved, targets, known, vocab=VOCAB), base)
    # Garbage in unlabeled targets neither changes the loss nor poisons the gradient.
    noisy = targets.clone()
    noisy[~known] = float("nan")
    leaf = logits.clone().requires_grad_(True)
    noisy_loss = multitask_loss(leaf, noisy, known, vocab=VOCAB)
    noisy_loss.backward()
    assert torch.equal(noisy_loss.detach(), base)
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    moved[0, 3] += 1.0  # a labeled entry does count
    assert not torch.equal(multitask_loss(moved, targets, known, vocab=VOCAB), base)


def test_loss_with_nothing_labeled_is_zero_with_graph() -> None:
    logits = torch.randn(2, len(VOCAB), requires_grad=True)
    loss = multitask_loss(
        logits,
        torch.zeros(2, len(VOCAB)),
        torch.zeros(2, len(VOCAB), dtype=torch.bool),
        vocab=VOCAB,
    )
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None


def test_loss_rejects_wrong_shapes() -> None:
    with pytest.raises(InvalidInput) as err:
        multitask_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4).bool(), vocab=VOCAB)
    assert err.value.code == "bad_loss_input"


def test_probabilities_follow_groups() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.0, -2.0]], requires_grad=True)
    probs = probabilities(logits, vocab=VOCAB)
    # The group's softmax includes the fixed zero "none" logit (was: over its tags alone).
    group = torch.softmax(torch.tensor([1.0, 2.0, 3.0, 0.0]), dim=0)
    assert torch.allclose(probs[0, :3], group[:3])
    assert torch.allclose(probs[0, 3:], torch.sigmoid(torch.tensor([0.0, -2.0])))
    probs.sum().backward()  # differentiable
    assert logits.grad is not None


def test_fusion_loss_adds_weighted_unimodal_terms() -> None:
    torch.manual_seed(0)
    model = build_model("centralnet", vocab_size=len(VOCAB), config=SMALL).eval()
    frames, logmel, mask = make_batch(4)
    mask[0] = False
    targets, known = make_targets(4)
    out = model(frames, logmel, mask)
    total = fusion_loss(out, targets, known, vocab=VOCAB, betas={"visual": 0.3, "audio": 0.7})
    central = multitask_loss(out.logits, targets, known, vocab=VOCAB)
    visual = multitask_loss(out.modality_logits["visual"], targets, known, vocab=VOCAB)
    # The clip without audio does not train the audio head.
    audio = multitask_loss(out.modality_logits["audio"][1:], targets[1:], known[1:], vocab=VOCAB)
    assert torch.allclose(total, central + 0.3 * visual + 0.7 * audio)
    # A baseline without unimodal heads: betas are skipped.
    concat = build_model("concat", vocab_size=len(VOCAB), config=SMALL).eval()
    out = concat(frames, logmel, mask)
    assert torch.equal(
        fusion_loss(out, targets, known, vocab=VOCAB, betas={"visual": 1.0}),
        multitask_loss(out.logits, targets, known, vocab=VOCAB),
    )


# --- learning -----------------------------------------------------------------------------


COMBO = TagVocabulary.from_pairs(
    [
        ("dark-low", "combo"),
        ("bright-low", "combo"),
        ("dark-high", "combo"),
        ("bright-high", "combo"),
        ("loud", None),
        ("outdoor", None),
    ]
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Two threads on a busy 2-core machine spin and stall; one is steady and fast enough.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_synthetic(n: int, *, seed: int) -> tuple[torch.Tensor, ...]:
    """Class ``bright + 2 * high``: "bright" shows only in the frames, "high" (tone in the
    upper or lower mel bands) only in the log-mel, so neither modality alone can exceed about
    50%. "loud" (ungrouped) is a strong tone; "outdoor" is never labeled."""
    gen = torch.Generator().manual_seed(seed)
    bright = torch.randint(0, 2, (n,), generator=gen)
    high = torch.randint(0, 2, (n,), generator=gen)
    loud = torch.rand(n, generator=gen) < 0.5
    size = (n, SMALL.frames_per_clip, 3, SMALL.frame_size, SMALL.frame_size)
    level = 70.0 + 110.0 * bright.float() + 20.0 * torch.randn(n, generator=gen)
    frames = level[:, None, None, None, None] + 30.0 * torch.randn(size, generator=gen)
    logmel = torch.randn(n, SMALL.n_mels, 20, generator=gen)
    half = SMALL.n_mels // 2
    for i in range(n):
        lo = int(high[i]) * half
        logmel[i, lo : lo + half] += 3.0 if loud[i] else 1.5
    labels = bright + 2 * high
    targets = torch.zeros(n, len(COMBO))
    targets[torch.arange(n), labels] = 1.0
    targets[:, 4] = loud.float()
    known = torch.ones(n, len(COMBO), dtype=torch.bool)
    known[:, 5] = False
    return frames.clamp(0, 255).to(torch.uint8), logmel, targets, known, labels, loud


def train_and_score(kind: str) -> tuple[float, float]:
    """Train ``kind`` for a few epochs on 192 clips; (combo accuracy, loud accuracy) on 200."""
    torch.manual_seed(0)
    frames, logmel, targets, known, _, _ = make_synthetic(192, seed=0)
    test_frames, test_logmel, _, _, test_labels, test_loud = make_synthetic(200, seed=1)
    model = build_model(kind, vocab_size=len(COMBO), config=SMALL)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    betas = {"visual": 0.5, "audio": 0.5}
    for _epoch in range(12):
        for batch in torch.randperm(192).split(32):
            out = model(frames[batch], logmel[batch], None)
            loss = fusion_loss(out, targets[batch], known[batch], vocab=COMBO, betas=betas)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        probs = probabilities(model(test_frames, test_logmel, None).logits, vocab=COMBO)
    accuracy = float((probs[:, :4].argmax(dim=1) == test_labels).float().mean())
    loud_accuracy = float(((probs[:, 4] > 0.5) == test_loud).float().mean())
    return accuracy, loud_accuracy


@pytest.mark.usefixtures("one_thread")
def test_centralnet_learns_what_needs_both_modalities() -> None:
    accuracy, loud_accuracy = train_and_score("centralnet")
    assert accuracy > 0.9  # chance 0.25; one modality alone about 0.5
    assert loud_accuracy > 0.8  # chance 0.5
    visual_accuracy, _ = train_and_score("visual")
    assert visual_accuracy < 0.65


def test_the_alpha_floor_keeps_every_present_term_in_the_mix() -> None:
    theta = torch.tensor([8.0, -8.0, -8.0])  # the softmax alone would give ~0 to two terms
    present = torch.tensor([[True, True, True], [True, True, False]])
    weights = masked_softmax_weights(theta, present, floor=0.1)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))
    assert bool((weights[present] >= 0.1 - 1e-6).all())
    assert weights[1, 2] == 0.0  # an absent term still gets nothing
    assert torch.equal(
        masked_softmax_weights(theta, present), masked_softmax_weights(theta, present, floor=0.0)
    )


def test_a_collapsed_centralnet_still_mixes_in_audio() -> None:
    model = build_model("centralnet", vocab_size=len(VOCAB), config=SMALL)
    assert isinstance(model, CentralNet)
    with torch.no_grad():
        for scores in model.alpha_scores:
            scores.copy_(torch.full_like(scores, -20.0))
            scores[-2] = 20.0  # all weight on the visual term, as in the collapsed version
    for depth in model.fusion_weights():
        assert depth["audio"] >= SMALL.alpha_floor - 1e-6
        assert abs(sum(depth.values()) - 1.0) < 1e-5


def test_a_config_stored_before_the_floor_loads_without_one() -> None:
    stored = SMALL.to_dict()
    del stored["alpha_floor"]
    assert FusionConfig.from_dict(stored).alpha_floor == 0.0
    assert FusionConfig().alpha_floor == 0.1
    with pytest.raises(InvalidInput):
        FusionConfig(alpha_floor=0.34)
