"""Checkpoints of the pytorch_resnet_cifar10 reproduction load into cifar_resnet and compute the
same function. The reference network is written here from the layout description (our own code):
basic blocks whose option-A shortcut pads zero channels on both sides of the subsampled input, a
`linear` classifier, a `{"state_dict": {"module." ...}, "best_prec1": ...}` file without
`num_batches_tracked`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.resnet import cifar_resnet
from backbones.spec import TORCHVISION_PIXELS
from backbones.weights import load_pretrained


class _PadBothSides(nn.Module):
    """Option A as the reference does it: subsample by 2, zero channels before and after."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.planes = planes

    def forward(self, x: Tensor) -> Tensor:
        q = self.planes // 4
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, q, q))


class _RefBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes = stride != 1 or in_planes != planes
        self.shortcut = _PadBothSides(planes) if changes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _RefCifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2))):
            blocks = []
            for b in range(n):
                blocks.append(_RefBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.shape[3]).flatten(1)
        return self.linear(out)


def _reference(depth: int, seed: int = 0) -> _RefCifarResNet:
    """A reference net with random weights and random (but valid) batch-norm statistics."""
    torch.manual_seed(seed)
    net = _RefCifarResNet(depth)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _save_reference(net: nn.Module, path) -> None:
    """Exactly the reproduction's file layout (its tensors were on CUDA; these are on the CPU)."""
    state = {
        f"module.{k}": v
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save({"state_dict": state, "best_prec1": 91.73}, path)


@pytest.mark.parametrize("depth", [20, 56])
def test_reference_checkpoint_gives_the_same_logits(depth, tmp_path, monkeypatch):
    ref = _reference(depth)
    path = tmp_path / f"resnet{depth}-0123abcd.th"
    _save_reference(ref, path)

    seen = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        seen.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    ours = cifar_resnet(depth).eval()  # built with the default placement, "end"
    assert ours.pad_placement == "end"
    report = load_pretrained(ours, path)
    assert seen == ["cpu"]  # CUDA-saved tensors land on the CPU, a GPU-less machine loads them
    assert report.source_format == "pytorch_resnet_cifar10" and report.pad_placement == "both"
    assert ours.pad_placement == "both" and ours.pixel_format == TORCHVISION_PIXELS
    assert report.classifier_not_loaded == [] and "fc.weight" in report.loaded

    x = torch.randn(4, 3, 32, 32)  # already normalised: the same tensor goes into both
    with torch.no_grad():
        want, got = ref(x), ours(x)["logits"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # under the other placement the same weights compute another function
    ours.set_pad_placement("end")
    with torch.no_grad():
        assert (ours(x)["logits"] - want).abs().max() > 1e-3


def test_pad_placement_is_a_documented_choice():
    x = torch.randn(2, 3, 32, 32)
    end, both = cifar_resnet(8).eval(), cifar_resnet(8, pad_placement="both").eval()
    both.load_state_dict(end.state_dict())
    with torch.no_grad():
        assert not torch.allclose(end(x)["logits"], both(x)["logits"])
    with pytest.raises(ValueError, match="end, both"):
        cifar_resnet(8, pad_placement="middle")


def test_reference_checkpoint_that_does_not_fit_lists_the_keys(tmp_path):
    path = tmp_path / "resnet20.th"
    _save_reference(_reference(20), path)
    net = cifar_resnet(32)
    with pytest.raises(ValueError, match=r"missing keys \(\d+\): layer1\.3\.conv1\.weight"):
        load_pretrained(net, path)
    assert net.pad_placement == "end"  # a failed load changes nothing
    ref = _reference(20)
    ref.extra = nn.Linear(2, 2)
    _save_reference(ref, path)
    with pytest.raises(ValueError, match=r"unexpected keys \(2\): extra\.weight, extra\.bias"):
        load_pretrained(cifar_resnet(20), path)
