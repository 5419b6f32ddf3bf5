"""conv_norm folds a frozen batch norm into its convolution:
same outputs and gradients, fresh cache."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from backbones.norm import conv_norm, fold_frozen_norms
from backbones.resnet import ResNet


def _frozen_bn(channels: int, seed: int) -> FrozenBatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = FrozenBatchNorm2d(channels, eps=1e-5)
    bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
    bn.bias.copy_(torch.randn(channels, generator=g))
    bn.running_mean.copy_(torch.randn(channels, generator=g))
    bn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    fold_frozen_norms(bn)
    return bn


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_fused_output_and_gradients_equal_unfused(stride, padding):
    conv = nn.Conv2d(5, 7, 3, stride=stride, padding=padding, bias=False)
    bn = _frozen_bn(7, seed=1)
    x = torch.randn(2, 5, 11, 9, requires_grad=True)
    fused = conv_norm(conv, bn, x)
    (g_x_fused, g_w_fused) = torch.autograd.grad((fused**2).sum(), (x, conv.weight))
    ref = bn(conv(x))
    (g_x_ref, g_w_ref) = torch.autograd.grad((ref**2).sum(), (x, conv.weight))
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_x_fused, g_x_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_w_fused, g_w_ref, rtol=1e-4, atol=1e-4)


def test_cached_fold_follows_loaded_statistics_and_weight_updates():
    conv = nn.Conv2d(3, 4, 1, bias=False).requires_grad_(False)
    bn = _frozen_bn(4, seed=2)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(conv_norm(conv, bn, x), bn(conv(x)))
    bn.load_state_dict(_frozen_bn(4, seed=3).state_dict())  # new statistics in place
    torch.testing.assert_close(conv_norm(conv, bn, x), bn(conv(x)))
    with torch.no_grad():
        conv.weight.mul_(-2.0)  # what an optimizer step does to a trainable conv
    torch.testing.assert_close(conv_norm(conv, bn, x), bn(conv(x)))


def test_folding_is_off_by_default_and_switchable():
    conv = nn.Conv2d(3, 4, 3, bias=False)
    bn = _frozen_bn(4, seed=4)
    x = torch.randn(1, 3, 6, 6)
    assert fold_frozen_norms(bn, enabled=False) == 1
    assert torch.equal(conv_norm(conv, bn, x), bn(conv(x)))  # bit for bit: the same ops
    net = ResNet(18, norm="FrozenBN", freeze_at=2)
    assert (
        fold_frozen_norms(net) == sum(isinstance(m, FrozenBatchNorm2d) for m in net.modules()) > 0
    )


def test_other_norms_are_applied_unchanged():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(4).train()
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(
        conv_norm(conv, bn, x),
        nn.functional.batch_norm(conv(x), None, None, bn.weight, bn.bias, training=True),
    )


def test_frozen_resnet_matches_torchvision_features(randomize_norms):
    # torchvision's resnet50 with frozen BN applies the norm as a separate op: an
    # independent reference
    theirs = randomize_norms(torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)).eval()
    ours = ResNet(50, out_features=("res4",), norm="FrozenBN", freeze_at=2).eval()
    fold_frozen_norms(ours)
    ours.load_state_dict(
        {k: v for k, v in theirs.state_dict().items() if not k.startswith(("layer4", "fc"))}
    )
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    t = theirs
    with torch.no_grad():
        y_ours = ours(x)["res4"]
        y_theirs = t.layer3(t.layer2(t.layer1(t.maxpool(t.relu(t.bn1(t.conv1(x)))))))
    # float reassociation only: errors relative to the activations' scale
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-4, atol=1e-5 * y_theirs.abs().max().item())


def test_bottleneck_gradients_match_torchvision(randomize_norms):
    theirs = randomize_norms(torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)).layer2[0]
    ours = ResNet(50, out_features=("res3",), norm="FrozenBN").layer2[0]
    fold_frozen_norms(ours)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 256, 12, 12, generator=torch.Generator().manual_seed(0))
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-4, atol=1e-4)
    y_ours.square().mean().backward()
    y_theirs.square().mean().backward()
    for name in ("conv1.weight", "conv2.weight", "conv3.weight", "downsample.0.weight"):
        ref = theirs.get_parameter(name).grad
        torch.testing.assert_close(
            ours.get_parameter(name).grad, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item()
        )
