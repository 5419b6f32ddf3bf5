"""FPN: identical to torchvision's FeaturePyramidNetwork (+ top blocks) with copied weights."""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import (
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)

from backbones.fpn import FPN
from backbones.resnet import ResNet, cifar_resnet


def _torchvision_to_ours(key: str) -> str:
    """torchvision ``BackboneWithFPN`` key -> our FPN key (the mapping documented in fpn.py)."""
    key = re.sub(r"^body\.", "bottom_up.", key)
    key = re.sub(r"^fpn\.inner_blocks\.", "lateral_convs.", key)
    key = re.sub(r"^fpn\.layer_blocks\.", "output_convs.", key)
    return re.sub(r"^fpn\.extra_blocks\.", "top_block.", key)


def _copy_from(theirs: nn.Module, ours: FPN, prefix: str = "fpn.") -> None:
    state = {_torchvision_to_ours(prefix + k): v for k, v in theirs.state_dict().items()}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("bottom_up.") for k in missing)


@pytest.mark.parametrize(
    "in_features, top, top_input, norm",
    [
        (("res2", "res3", "res4", "res5"), "maxpool", "p5", ""),
        (("res3", "res4", "res5"), "p6p7", "p5", ""),
        (("res3", "res4", "res5"), "p6p7", "c5", ""),
        (("res4", "res5"), None, "p5", "GN"),
    ],
)
def test_fpn_equals_torchvision(in_features, top, top_input, norm):
    torch.manual_seed(0)
    body = ResNet(18, out_features=in_features).eval()
    ours = FPN(
        body, in_features, out_channels=32, top_block=top, norm=norm, top_block_input=top_input
    ).eval()
    channels = [body.output_specs[f].channels for f in in_features]
    extra = {
        "maxpool": LastLevelMaxPool(),
        None: None,
        "p6p7": LastLevelP6P7(32 if top_input == "p5" else channels[-1], 32),
    }[top]
    theirs = FeaturePyramidNetwork(
        channels, 32, extra_blocks=extra, norm_layer=partial(nn.GroupNorm, 32) if norm else None
    ).eval()
    _copy_from(theirs, ours)
    x = torch.randn(1, 3, 75, 97)  # odd sizes exercise the size-matched upsampling
    with torch.no_grad():
        got = ours(x)
        want = theirs(OrderedDict((f, v) for f, v in body(x).items()))
    assert len(got) == len(want)
    for (name, a), b in zip(got.items(), want.values()):
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-6, name


def test_resnet50_fpn_equals_torchvision_detection_backbone(image, randomize_norms):
    theirs = randomize_norms(
        resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
    ).eval()
    ours = FPN(ResNet(50, norm="FrozenBN", freeze_at=2)).eval()
    state = {_torchvision_to_ours(k): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    trainable = {k for k, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {
        _torchvision_to_ours(k) for k, p in theirs.named_parameters() if p.requires_grad
    }
    with torch.no_grad():
        got, want = ours(image), theirs(image)
    assert list(got) == ["p2", "p3", "p4", "p5", "p6"]
    assert list(want) == ["0", "1", "2", "3", "pool"]
    for a, b in zip(got.values(), want.values()):
        assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "make",
    [
        lambda: FPN(ResNet(18)),
        lambda: FPN(ResNet(18, res5_dilation=2), ("res2", "res3", "res4"), top_block="p6p7"),
        lambda: FPN(
            ResNet(18, out_features=("res3", "res4", "res5")),
            ("res3", "res4", "res5"),
            top_block="p6p7",
            top_block_input="c5",
        ),
        lambda: FPN(ResNet(18), ("res3", "res4"), out_channels=8, top_block=None, norm="BN"),
        lambda: FPN(cifar_resnet(8, num_classes=None), ("res2", "res3", "res4")),
    ],
    ids=["r18", "r18-dc5-p6p7", "r18-c5-p6p7", "r18-two-levels-bn", "cifar"],
)
def test_fpn_output_specs_equal_real_outputs(make):
    fpn = make().eval()
    with torch.no_grad():
        out = fpn(torch.randn(1, 3, 64, 64))
    assert list(out) == list(fpn.output_specs)
    for name, spec in fpn.output_specs.items():
        assert out[name].shape[1] == spec.channels
        assert out[name].shape[-1] == -(-64 // spec.stride), name  # ceil: odd maps round up
    assert fpn.pixel_format is fpn.bottom_up.pixel_format


def test_fpn_bad_input():
    with pytest.raises(ValueError, match="res2, res3, res4, res5"):
        FPN(ResNet(18), ("res2", "res6"))
    with pytest.raises(ValueError, match="maxpool, p6p7"):
        FPN(ResNet(18), top_block="p7")
    with pytest.raises(ValueError, match="high to low"):
        FPN(ResNet(18), ("res4", "res3"))


def test_fpn_levels_are_named_by_stride_and_strides_must_double():
    fpn = FPN(ResNet(18))
    assert fpn.level_names == ("p2", "p3", "p4", "p5")
    assert {n: s.stride for n, s in fpn.output_specs.items()} == {
        f"p{k}": 2**k for k in range(2, 7)
    }
    cifar = FPN(cifar_resnet(8, num_classes=None), ("res2", "res3", "res4"))
    assert cifar.level_names == ("p0", "p1", "p2")  # strides 1, 2, 4
    dc5 = FPN(ResNet(18, res5_dilation=2), ("res3", "res4"))
    assert dc5.level_names == ("p3", "p4")
    with pytest.raises(ValueError, match="res4 at stride 16 then res5 at stride 16"):
        FPN(ResNet(18, res5_dilation=2))  # res5 is dilated: two levels at stride 16
    with pytest.raises(ValueError, match="double"):
        FPN(ResNet(18), ("res2", "res4"))
