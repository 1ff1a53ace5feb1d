"""The standard-network visual branches (ResNet-18, MobileNetV2): torchvision's state-dict
layout (ResNet-18's written out here from the torchvision architecture, since torchvision is not
installed; parameter counts as torchvision documents them), ImageNet input normalisation, the
fusion points they expose, every model kind building them, and BatchNorm that stays put while
the branch is frozen."""

from __future__ import annotations

import pytest
import torch

from tagloop.errors import InvalidInput
from tagloop.fusion import FusionConfig, build_model, enable_mc_dropout
from tagloop.fusion.branch import VisualBranch, build_visual_branch
from tagloop.fusion.imagenet import IMAGENET_MEAN, IMAGENET_STD
from tagloop.fusion.mobilenet import MobileNetV2, MobileNetV2VisualBranch
from tagloop.fusion.resnet import ResNet18, ResNetVisualBranch

RESNET = FusionConfig(visual_arch="resnet18")


def torchvision_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18().state_dict(): name -> shape, in torchvision's order."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(name: str, width: int) -> None:
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{stat}"] = (width,)
        shapes[f"{name}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    width_in = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            block_in = width_in if block == 0 else width
            shapes[f"{prefix}.conv1.weight"] = (width, block_in, 3, 3)
            bn(f"{prefix}.bn1", width)
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{prefix}.bn2", width)
            if block_in != width:
                shapes[f"{prefix}.downsample.0.weight"] = (width, block_in, 1, 1)
                bn(f"{prefix}.downsample.1", width)
        width_in = width
    shapes["fc.weight"] = (1000, 512)
    shapes["fc.bias"] = (1000,)
    return shapes


def test_the_state_dict_has_torchvision_resnet18_keys_and_shapes() -> None:
    expected = torchvision_resnet18_shapes()
    assert len(expected) == 122  # 20 convs, 20 BNs x 5 tensors, fc weight and bias
    state = ResNet18().state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == list(expected.items())
    assert tuple(state["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(state["layer4.1.bn2.running_var"].shape) == (512,)
    assert "layer1.0.downsample.0.weight" not in state  # layer1 keeps width and stride
    # The branch is the same network without the ImageNet classifier and nothing else:
    # its normalisation constants are not in the state dict.
    branch = ResNetVisualBranch(RESNET).state_dict()
    assert list(branch) == [k for k in expected if not k.startswith("fc.")]


def test_parameter_counts_are_torchvisions() -> None:
    # torchvision's model docs: resnet18 11,689,512 parameters, mobilenet_v2 3,504,872.
    assert sum(p.numel() for p in ResNet18().parameters()) == 11_689_512
    net = MobileNetV2()
    assert sum(p.numel() for p in net.parameters()) == 3_504_872
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert len(shapes) == 314  # 52 convs, 52 BNs x 5 tensors, the classifier's weight and bias
    assert shapes["features.0.0.weight"] == (32, 3, 3, 3)
    assert shapes["features.1.conv.0.0.weight"] == (32, 1, 3, 3)  # t=1: no expansion conv
    assert shapes["features.1.conv.1.weight"] == (16, 32, 1, 1)
    assert shapes["features.2.conv.0.0.weight"] == (96, 16, 1, 1)
    assert shapes["features.2.conv.3.num_batches_tracked"] == ()
    assert shapes["features.18.0.weight"] == (1280, 320, 1, 1)
    assert shapes["classifier.1.weight"] == (1000, 1280)
    branch = MobileNetV2VisualBranch(FusionConfig(visual_arch="mobilenet_v2")).state_dict()
    assert list(branch) == [k for k in shapes if not k.startswith("classifier.")]


def test_it_fuses_after_the_last_depth_stages() -> None:
    assert RESNET.visual_channels == (128, 256, 512)  # the default depth 3: layer2-4
    branch = build_visual_branch(RESNET)
    assert isinstance(branch, ResNetVisualBranch) and branch.arch == "resnet18"
    assert branch.feature_dims == [128 * 4, 256 * 4, 512 * 4]  # 2x2 grid
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    branch.eval()
    feats = branch(frames)
    assert [tuple(f.shape) for f in feats] == [(2, d) for d in branch.feature_dims]
    deep = FusionConfig(visual_arch="resnet18", visual_channels=(1,) * 4, audio_channels=(8,) * 4)
    assert deep.visual_channels == (64, 128, 256, 512)
    assert isinstance(build_visual_branch(FusionConfig()), VisualBranch)
    mobile = build_visual_branch(FusionConfig(visual_arch="mobilenet_v2")).eval()
    assert isinstance(mobile, MobileNetV2VisualBranch)
    assert mobile.feature_dims == [32 * 4, 96 * 4, 1280 * 4]
    assert [tuple(f.shape) for f in mobile(frames)] == [(2, d) for d in mobile.feature_dims]


def test_a_bad_arch_or_depth_is_refused_and_old_configs_read_as_conv() -> None:
    with pytest.raises(InvalidInput) as err:
        FusionConfig(visual_arch="vgg16")
    assert err.value.code == "bad_fusion_config" and "vgg16" in err.value.message
    with pytest.raises(InvalidInput) as err:
        FusionConfig(visual_arch="resnet18", visual_channels=(8,) * 5, audio_channels=(8,) * 5)
    assert err.value.code == "bad_fusion_config" and "at most 4" in err.value.message
    stored = FusionConfig().to_dict()
    del stored["visual_arch"]  # a version stored before the setting existed
    assert FusionConfig.from_dict(stored).visual_arch == "conv"
    assert FusionConfig.from_dict(RESNET.to_dict()) == RESNET


def test_frames_are_normalised_with_imagenet_statistics() -> None:
    torch.manual_seed(0)
    reference = ResNet18().eval()
    branch = ResNetVisualBranch(RESNET).eval()
    branch.load_state_dict({k: v for k, v in reference.state_dict().items() if "fc." not in k})
    frames = torch.randint(0, 256, (2, 2, 3, 32, 32), dtype=torch.uint8)
    x = frames.flatten(0, 1).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        last = reference.stages(x)[-1]  # (4, 512, 1, 1) at 32x32
        want = torch.nn.functional.adaptive_avg_pool2d(last, 2).flatten(1).view(2, 2, -1).mean(1)
        got = branch(frames)[-1]
    torch.testing.assert_close(got, want)


BRANCH_CLASSES = {"resnet18": ResNetVisualBranch, "mobilenet_v2": MobileNetV2VisualBranch}


@pytest.mark.parametrize("arch", list(BRANCH_CLASSES))
@pytest.mark.parametrize("kind", ["centralnet", "visual", "concat", "late"])
def test_every_kind_with_a_visual_branch_builds_the_chosen_arch(kind: str, arch: str) -> None:
    config = FusionConfig(frames_per_clip=2, frame_size=32, n_mels=16, visual_arch=arch)
    model = build_model(kind, vocab_size=5, config=config).eval()
    assert isinstance(model.visual, BRANCH_CLASSES[arch])
    frames = torch.randint(0, 256, (3, 2, 3, 32, 32), dtype=torch.uint8)
    out = model(frames, torch.randn(3, 16, 20), torch.tensor([True, False, True]))
    assert out.logits.shape == (3, 5) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("arch", list(BRANCH_CLASSES))
def test_a_frozen_branch_keeps_batchnorm_in_eval_mode(arch: str) -> None:
    model = build_model("centralnet", vocab_size=5, config=FusionConfig(visual_arch=arch))
    bns = [m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.train()
    assert all(bn.training for bn in bns)  # fine-tuned: BN trains like the rest
    for param in model.visual.parameters():
        param.requires_grad_(False)
    model.train()
    assert model.visual.training and not any(bn.training for bn in bns)
    assert model.central.training  # the rest of the model still trains
    before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    frames = torch.randint(0, 256, (2, 2, 3, 32, 32), dtype=torch.uint8)
    model(frames, torch.randn(2, 64, 10))
    enable_mc_dropout(model)
    model(frames, torch.randn(2, 64, 10))
    model.train()  # e.g. restoring the mode after MC-dropout sampling
    model(frames, torch.randn(2, 64, 10))
    after = model.visual.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched
