"""Branch weights from local files: loaded through the same code a round uses, frozen or
fine-tuned, and refused with a code naming the path when missing, unreadable or unfit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tagloop.errors import InvalidInput
from tagloop.fusion import build_model
from tagloop.fusion.mobilenet import MobileNetV2
from tagloop.fusion.resnet import ResNet18
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


RESNET_CONFIG = replace(CONFIG, visual_arch="resnet18")  # 16x16 frames; fuses after layer3-4


def resnet_source(seed: int, arch: str = "resnet18") -> ResNet18 | MobileNetV2:
    """A torchvision-layout network with non-trivial BN statistics, as a real checkpoint has."""
    torch.manual_seed(seed)
    net = ResNet18() if arch == "resnet18" else MobileNetV2()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(1000)
    return net.eval()


def visual_state_equal(model: torch.nn.Module, net: torch.nn.Module) -> bool:
    theirs = net.state_dict()
    ours = model.visual.state_dict()
    return all(torch.equal(v, theirs[k]) for k, v in ours.items())


@pytest.mark.parametrize(
    ("arch", "layout"),
    [
        ("resnet18", "torchvision"),
        ("resnet18", "data_parallel"),
        ("resnet18", "legacy"),
        ("mobilenet_v2", "torchvision"),
    ],
)
def test_a_torchvision_checkpoint_loads_and_gives_the_same_features(
    tmp_path: Path, arch: str, layout: str
) -> None:
    net = resnet_source(3, arch)
    state = net.state_dict()  # with fc.* / classifier.*: the ImageNet classifier, not used
    payload = {
        "torchvision": state,
        "data_parallel": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90},
        # Files from before BatchNorm counted batches (torchvision's own resnet18 weights).
        "legacy": {k: v for k, v in state.items() if "num_batches_tracked" not in k},
    }[layout]
    path = tmp_path / f"{arch}.pth"
    torch.save(payload, path)
    torch.manual_seed(4)
    model = build_model("centralnet", vocab_size=10, config=replace(CONFIG, visual_arch=arch))
    assert not visual_state_equal(model, net)
    apply_backbone(model, Backbone(visual=path), load=True)
    model.eval()
    frames = torch.randint(0, 256, (2, 4, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        got = model.visual(frames)
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        maps = net.stages((frames.flatten(0, 1).float() / 255.0 - mean) / std)[-2:]
    for feat, fmap in zip(got, maps, strict=True):
        pooled = torch.nn.functional.adaptive_avg_pool2d(fmap, 2).flatten(1)
        assert torch.equal(feat, pooled.view(2, 4, -1).mean(dim=1))
    for key, value in model.visual.state_dict().items():
        if layout != "legacy" or "num_batches_tracked" not in key:
            assert torch.equal(value, state[key]), key


def test_a_checkpoint_for_the_other_arch_fails_naming_the_path_and_the_arch(
    tmp_path: Path, source: torch.nn.Module
) -> None:
    conv_file = tmp_path / "conv-visual.pt"
    torch.save(source.visual.state_dict(), conv_file)
    resnet_model = build_model("visual", vocab_size=10, config=RESNET_CONFIG)
    with pytest.raises(InvalidInput) as err:
        apply_backbone(resnet_model, Backbone(visual=conv_file), load=True)
    message = err.value.message
    assert err.value.code == "weights_mismatch" and str(conv_file) in message
    assert "missing bn1.bias" in message and "visual_arch='conv'" in message
    resnet_file = tmp_path / "resnet18.pth"
    torch.save(resnet_source(0).state_dict(), resnet_file)
    conv_model = build_model("visual", vocab_size=10, config=CONFIG)
    with pytest.raises(InvalidInput) as err:
        apply_backbone(conv_model, Backbone(visual=resnet_file), load=True)
    message = err.value.message
    assert err.value.code == "weights_mismatch" and str(resnet_file) in message
    assert "missing blocks.0.0.weight" in message and "visual_arch='resnet18'" in message
    mobile_file = tmp_path / "mobilenet_v2.pth"
    torch.save(MobileNetV2().state_dict(), mobile_file)
    with pytest.raises(InvalidInput) as err:
        apply_backbone(resnet_model, Backbone(visual=mobile_file), load=True)
    assert (
        err.value.code == "weights_mismatch" and "visual_arch='mobilenet_v2'" in err.value.message
    )


def test_a_frozen_resnet_keeps_weights_and_bn_statistics_and_fine_tuning_moves_them(
    tmp_path: Path,
) -> None:
    net = resnet_source(5)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    train, _ = make_clips(n=16, seed=0)
    options = replace(OPTIONS, epochs=1, batch_size=8)  # two steps are enough to move
    runs = {
        freeze: train_model(
            kind="centralnet",
            vocab=DIGITS,
            config=RESNET_CONFIG,
            train=train,
            val=[],
            options=options,
            backbone=Backbone(visual=path, freeze=freeze),
        ).model
        for freeze in (True, False)
    }
    assert visual_state_equal(runs[True], net)  # weights and running mean/var alike
    tuned = runs[False].visual.state_dict()
    theirs = net.state_dict()
    assert not torch.equal(tuned["layer4.1.conv2.weight"], theirs["layer4.1.conv2.weight"])
    assert not torch.equal(tuned["layer3.0.bn1.running_mean"], theirs["layer3.0.bn1.running_mean"])
