"""ResNet and CIFAR ResNet: sizes, FLOPs, equality with torchvision/timm, options, bad input."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis

from backbones.resnet import ResNet, cifar_resnet, resnet18, resnet50
from backbones.weights import load_pretrained

TORCHVISION_PARAMS = {
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
}
# torchvision's published GFLOPS (multiply-adds) and the paper's Table 1 (stride in the 1x1 conv).
TORCHVISION_GMAC = {18: 1.81, 34: 3.66, 50: 4.09, 101: 7.80, 152: 11.51}
PAPER_GFLOPS = {50: 3.8, 101: 7.6, 152: 11.3}
# Paper Table 6, in millions.
CIFAR_PARAMS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_param_count_and_names_match_torchvision(depth):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ours = ResNet(depth, num_classes=1000)
        theirs = getattr(torchvision.models, f"resnet{depth}")()
    assert _count(ours) == TORCHVISION_PARAMS[depth] == _count(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("depth", sorted(CIFAR_PARAMS))
def test_cifar_param_count_matches_paper_table6(depth):
    with torch.device("meta"):
        n = _count(cifar_resnet(depth)) / 1e6
    assert round(n, 2 if n < 1 else 1) == CIFAR_PARAMS[depth]


def _uninitialised(depth: int, **kwargs) -> ResNet:
    """A ResNet whose tensors are allocated but never written: cheap to build, fit for counting
    FLOPs or for a strict ``load_state_dict`` that overwrites every value."""
    with torch.device("meta"):
        net = ResNet(depth, **kwargs)
    return net.to_empty(device="cpu")


def _fvcore_gmac(model: torch.nn.Module, size: int) -> dict[str, float]:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    flops = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, size, size))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return {op: n / 1e9 for op, n in flops.by_operator().items()}


def _gmac_at_224(model: torch.nn.Module) -> float:
    """fvcore's count at 224x224, measured at 32x32 to keep the test cheap.

    From 224 and from 32 every stride-2 layer halves the map exactly (224/32 = 7 at every
    stage), so every per-pixel operator count scales by 7^2 and only the classifier is fixed.
    ``test_flop_count_scales_exactly`` checks this on a real 224x224 count.
    """
    ops = _fvcore_gmac(model, 32)
    return sum(n * (1 if op == "linear" else 49) for op, n in ops.items())


def test_flop_count_scales_exactly():
    net = ResNet(18, num_classes=1000)
    direct = sum(_fvcore_gmac(net, 224).values())
    assert abs(direct - _gmac_at_224(net)) < 1e-9
    assert abs(direct - TORCHVISION_GMAC[18]) / TORCHVISION_GMAC[18] < 0.03


@pytest.mark.parametrize("depth", sorted(TORCHVISION_GMAC))
def test_flops_match_published(depth):
    got = _gmac_at_224(_uninitialised(depth, num_classes=1000))
    assert abs(got - TORCHVISION_GMAC[depth]) / TORCHVISION_GMAC[depth] < 0.03
    if depth in PAPER_GFLOPS:
        got = _gmac_at_224(_uninitialised(depth, num_classes=1000, stride_in_1x1=True))
        assert abs(got - PAPER_GFLOPS[depth]) / PAPER_GFLOPS[depth] < 0.05


def _stages(net: torch.nn.Module, x: torch.Tensor, act: str = "relu") -> list[torch.Tensor]:
    x = net.maxpool(getattr(net, act)(net.bn1(net.conv1(x))))
    outs = []
    for i in range(1, 5):
        x = getattr(net, f"layer{i}")(x)
        outs.append(x)
    return outs


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_torchvision_state_dict_gives_identical_features(depth, randomize_norms):
    theirs = randomize_norms(getattr(torchvision.models, f"resnet{depth}")(), seed=depth).eval()
    ours = _uninitialised(depth, num_classes=1000).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names, nothing renamed
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        got = ours(x)
        want = _stages(theirs, x)
        want.append(theirs.fc(torch.flatten(theirs.avgpool(want[-1]), 1)))
    assert list(got) == ["res2", "res3", "res4", "res5", "logits"]
    for name, ref in zip(got, want):
        assert (got[name] - ref).abs().max() <= 1e-5, name


def test_load_pretrained_torchvision_file_into_backbone(tmp_path, randomize_norms):
    theirs = randomize_norms(torchvision.models.resnet18()).eval()
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = ResNet(18).eval()
    report = load_pretrained(ours, tmp_path / "w.pth")
    assert report.skipped == ["fc.weight", "fc.bias"] and report.classifier_not_loaded == []
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        got = ours(x)
        want = _stages(theirs, x)
    for name, ref in zip(got, want):
        assert (got[name] - ref).abs().max() <= 1e-5, name


def test_timm_state_dict_gives_identical_features(tmp_path, randomize_norms):
    theirs = randomize_norms(timm.create_model("resnet50", pretrained=False)).eval()
    torch.save(theirs.state_dict(), tmp_path / "timm.pth")
    ours = ResNet(50, num_classes=1000).eval()
    load_pretrained(ours, tmp_path / "timm.pth")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        got = ours(x)
        want = _stages(theirs, x, act="act1")
        logits = theirs.forward_head(want[-1])
    for name, ref in zip(("res2", "res3", "res4", "res5"), want):
        assert (got[name] - ref).abs().max() <= 1e-5, name
    assert (got["logits"] - logits).abs().max() <= 1e-4


def test_only_requested_stages_are_built_and_run():
    net = ResNet(50, out_features=("res3",))
    assert not hasattr(net, "layer3") and not hasattr(net, "fc")
    assert list(net(torch.zeros(1, 3, 32, 32))) == ["res3"]


# One parametrised check of the declared outputs against real ones, over every depth and option.
VARIANTS = {
    **{f"r{d}": (lambda d=d: ResNet(d)) for d in TORCHVISION_PARAMS},
    "r50-all+logits": lambda: ResNet(
        50, out_features=("stem", "res2", "res3", "res4", "res5"), num_classes=7
    ),
    "r50-stride1x1": lambda: ResNet(50, stride_in_1x1=True),
    "r50-dc5": lambda: ResNet(50, res5_dilation=2),
    "r18-dc5": lambda: ResNet(18, res5_dilation=2, out_features=("res4", "res5")),
    "r50-A": lambda: ResNet(50, shortcut="A"),
    "r34-A": lambda: ResNet(34, shortcut="A"),
    "r18-C": lambda: ResNet(18, shortcut="C"),
    "r50-C": lambda: ResNet(50, shortcut="C"),
    "r18-plain": lambda: ResNet(18, plain=True),
    "r50-plain": lambda: ResNet(50, plain=True),
    "r50-GN": lambda: ResNet(50, norm="GN"),
    "r50-SyncBN": lambda: ResNet(50, norm="SyncBN"),
    "r50-frozen": lambda: ResNet(50, norm="FrozenBN", freeze_at=2, out_features=("res4",)),
    "r18-stem": lambda: resnet18(out_features=("stem",)),
    "cifar20": lambda: cifar_resnet(20, out_features=("stem", "res2", "res3", "res4")),
    "cifar20-B": lambda: cifar_resnet(20, shortcut="B"),
    "cifar20-C-GN": lambda: cifar_resnet(20, shortcut="C", norm="GN"),
    "cifar20-plain": lambda: cifar_resnet(20, plain=True, num_classes=None),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_output_specs_equal_real_outputs(variant):
    # On the meta device every kernel runs its real shape logic without computing values.
    with torch.device("meta"):
        net = VARIANTS[variant]().eval()
        h, w = 32, 64
        out = net(torch.zeros(1, 3, h, w))
    names = [k for k in out if k != "logits"]
    assert names == list(net.output_specs) == list(net.out_features)
    strides = [net.output_specs[k].stride for k in names]
    assert strides == sorted(strides), "highest resolution first"
    for name in names:
        spec = net.output_specs[name]
        assert out[name].shape == (1, spec.channels, h // spec.stride, w // spec.stride), name
    if net.num_classes is not None:
        assert out["logits"].shape == (1, net.num_classes)


def test_shortcut_options_differ_as_described():
    def n(**kw):
        return _count(ResNet(18, **kw))

    # A adds no parameters over plain; B adds the 3 downsampling projections; C one per block.
    assert n(shortcut="A") == n(plain=True)

    def projection(cin, cout):
        return cin * cout + 2 * cout  # 1x1 conv + norm

    b_extra = projection(64, 128) + projection(128, 256) + projection(256, 512)
    assert n(shortcut="B") - n(shortcut="A") == b_extra
    c_extra = (
        b_extra
        + 2 * projection(64, 64)
        + projection(128, 128)
        + projection(256, 256)
        + projection(512, 512)
    )
    assert n(shortcut="C") - n(shortcut="A") == c_extra


def test_option_a_shortcut_is_identity_with_zero_channels():
    torch.manual_seed(0)
    net = ResNet(18, shortcut="A", out_features=("res3",)).eval()
    block = net.layer2[0]
    with torch.no_grad():  # kill the residual branch: output = relu(shortcut(x))
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
        x = torch.randn(1, 64, 8, 8).relu()
        y = block(x)
    assert torch.equal(y[:, :64], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 64:]) == 0


def test_plain_net_has_no_shortcut():
    net = ResNet(18, plain=True, out_features=("res2",)).eval()
    block = net.layer1[0]
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
        assert torch.count_nonzero(block(torch.rand(1, 64, 8, 8))) == 0


def test_zero_init_residual_makes_blocks_identity_maps():
    net = ResNet(50, zero_init_residual=True, out_features=("res2",)).eval()
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in net.layer1)
    with torch.no_grad():
        x = torch.rand(1, 256, 8, 8)
        assert torch.equal(net.layer1[1](x), x)


def test_stride_in_1x1_moves_the_stride():
    net = ResNet(50, stride_in_1x1=True, out_features=("res3",))
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)
    net = ResNet(50, out_features=("res3",))
    assert net.layer2[0].conv1.stride == (1, 1) and net.layer2[0].conv2.stride == (2, 2)


def test_freeze_at_stops_gradients_and_statistics():
    torch.manual_seed(0)
    net = ResNet(18, freeze_at=2, num_classes=4).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = net(torch.randn(2, 3, 32, 32))["logits"].logsumexp(1).mean()
    loss.backward()
    opt.step()
    frozen = ("conv1.", "bn1.", "layer1.")
    for name, p in net.named_parameters():
        assert (p.grad is None) == name.startswith(frozen), name
    after = net.state_dict()
    for k in after:
        if k.startswith(frozen):
            assert torch.equal(after[k], before[k]), k
    assert not torch.equal(after["layer2.0.bn1.running_mean"], before["layer2.0.bn1.running_mean"])
    assert not torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])


def test_freeze_keeps_function_and_frozen_bn_equals_bn_eval(image, randomize_norms):
    bn = randomize_norms(ResNet(18)).eval()
    for kwargs in ({"norm": "FrozenBN"}, {"freeze_at": 5}):
        frozen = ResNet(18, **kwargs)
        frozen.load_state_dict(bn.state_dict(), strict=False)
        frozen.train()  # frozen norms ignore the mode
        with torch.no_grad():
            a, b = bn(image), frozen(image)
        for k in a:
            assert (a[k] - b[k]).abs().max() <= 1e-5 * max(1.0, float(a[k].abs().max())), k
    assert not any(p.requires_grad for p in ResNet(18, freeze_at=5).parameters())


def test_take_stage_moves_res5_out_with_its_state(image):
    body = ResNet(18, out_features=("res4", "res5"), norm="FrozenBN", freeze_at=2).eval()
    with torch.no_grad():
        want = body(image)
    res5 = body.take_stage("res5")
    assert not hasattr(body, "layer4") and body.out_features == ("res4",)
    assert list(body.output_specs) == ["res4"]
    assert all(p.requires_grad for p in res5.parameters())
    with torch.no_grad():
        got = body(image)
        assert list(got) == ["res4"] and torch.equal(got["res4"], want["res4"])
        assert torch.equal(res5(got["res4"]), want["res5"])
    with pytest.raises(ValueError, match="deepest"):
        ResNet(18, out_features=("res4", "res5")).take_stage("res4")
    with pytest.raises(ValueError, match="no output feature"):
        ResNet(18, out_features=("res5",)).take_stage("res5")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ResNet(42), "18, 34, 50, 101, 152"),
        (lambda: ResNet(50, norm="LN"), "BN, FrozenBN, GN, SyncBN"),
        (lambda: ResNet(50, shortcut="D"), "A, B, C"),
        (lambda: ResNet(50, out_features=("res6",)), "stem, res2, res3, res4, res5"),
        (lambda: ResNet(50, res5_dilation=4), "1 or 2"),
        (lambda: ResNet(50, freeze_at=7), "0..5"),
        (lambda: cifar_resnet(21), "6n\\+2"),
        (lambda: cifar_resnet(20, out_features=("res5",)), "stem, res2, res3, res4"),
        (lambda: resnet50(norm="bn"), "allowed"),
    ],
)
def test_bad_input_names_allowed_values(make, match):
    with pytest.raises(ValueError, match=match):
        make()
