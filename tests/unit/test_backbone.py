"""Branch weights from local files: loaded through the same code a round uses, frozen or
fine-tuned, and refused with a code naming the path when missing, unreadable or unfit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tagloop.errors import InvalidInput
from tagloop.fusion import build_model
from tagloop.training.backbone import Backbone, apply_backbone
from tagloop.training.loop import train_model
from tests.unit.test_training import CONFIG, DIGITS, OPTIONS, make_clips


def branch_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def source() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("centralnet", vocab_size=10, config=CONFIG)


@pytest.mark.parametrize("layout", ["branch", "whole_model", "state_dict"])
def test_a_checkpoint_in_any_common_layout_loads_into_its_branch(
    tmp_path: Path, source: torch.nn.Module, layout: str
) -> None:
    path = tmp_path / "visual.pt"
    state = {
        "branch": source.visual.state_dict(),
        "whole_model": source.state_dict(),
        "state_dict": {"state_dict": source.state_dict(), "epoch": 3},
    }[layout]
    torch.save(state, path)
    torch.manual_seed(2)
    model = build_model("centralnet", vocab_size=10, config=CONFIG)
    assert not branch_equal(model.visual, source.visual)
    apply_backbone(model, Backbone(visual=path), load=True)
    assert branch_equal(model.visual, source.visual)
    assert not branch_equal(model.audio, source.audio)  # only the branch that was named


def test_missing_unreadable_and_unfit_weights_fail_with_codes(
    tmp_path: Path, source: torch.nn.Module
) -> None:
    model = build_model("centralnet", vocab_size=10, config=CONFIG)
    missing = tmp_path / "nope.pt"
    with pytest.raises(InvalidInput) as err:
        apply_backbone(model, Backbone(visual=missing), load=True)
    assert err.value.code == "weights_not_found" and str(missing) in err.value.message
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInput) as err:
        apply_backbone(model, Backbone(audio=junk), load=True)
    assert err.value.code == "weights_unreadable" and str(junk) in err.value.message
    wider = build_model(
        "centralnet", vocab_size=10, config=replace(CONFIG, visual_channels=(8, 32))
    )
    unfit = tmp_path / "wider.pt"
    torch.save(wider.visual.state_dict(), unfit)
    with pytest.raises(InvalidInput) as err:
        apply_backbone(model, Backbone(visual=unfit), load=True)
    assert err.value.code == "weights_mismatch" and "shapes" in err.value.message
    audio_only = build_model("audio", vocab_size=10, config=CONFIG)
    good = tmp_path / "visual.pt"
    torch.save(source.visual.state_dict(), good)
    with pytest.raises(InvalidInput) as err:
        apply_backbone(audio_only, Backbone(visual=good), load=True)
    assert err.value.code == "no_such_branch"


def test_a_frozen_branch_keeps_its_weights_through_training(
    tmp_path: Path, source: torch.nn.Module
) -> None:
    path = tmp_path / "visual.pt"
    torch.save(source.visual.state_dict(), path)
    train, _ = make_clips(n=60, seed=0)
    options = replace(OPTIONS, epochs=2)
    frozen = train_model(
        kind="centralnet",
        vocab=DIGITS,
        config=CONFIG,
        train=train,
        val=[],
        options=options,
        backbone=Backbone(visual=path, freeze=True),
    )
    assert branch_equal(frozen.model.visual, source.visual)
    assert not branch_equal(frozen.model.audio, source.audio)  # the rest did train
    tuned = train_model(
        kind="centralnet",
        vocab=DIGITS,
        config=CONFIG,
        train=train,
        val=[],
        options=options,
        backbone=Backbone(visual=path, freeze=False),
    )
    assert not branch_equal(tuned.model.visual, source.visual)  # fine-tuned from them
    assert Backbone(visual=path, freeze=True).describe() == {
        "visual": str(path),
        "audio": None,
        "frozen": True,
    }
