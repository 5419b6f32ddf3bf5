"""Normalisation layers selectable by name, and the conversion that freezes them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

#: Accepted values of every ``norm=`` argument in this package.
NORMS = ("BN", "FrozenBN", "GN", "SyncBN")
_GN_GROUPS = 32


def check_norm(norm: str) -> None:
    """Raise ValueError naming the allowed values when ``norm`` is not one of :data:`NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")


def make_norm(norm: str, channels: int) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps (N, C, H, W).

    ``FrozenBN`` uses eps 1e-5 like torchvision's detection backbones. ``GN`` uses 32 groups, or
    gcd(32, channels) when ``channels`` is not a multiple of 32 (the 16-channel CIFAR stages).
    """
    check_norm(norm)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=1e-5)
    return nn.GroupNorm(math.gcd(_GN_GROUPS, channels), channels)


def freeze(module: nn.Module) -> nn.Module:
    """Stop ``module`` from learning: no parameter takes a gradient and batch norms become frozen.

    Every ``BatchNorm2d``/``SyncBatchNorm`` inside is replaced by a ``FrozenBatchNorm2d`` holding
    the same affine parameters and running statistics, so the function in eval mode is unchanged
    and ``train()`` no longer updates statistics (detectron2's semantics). Returns ``module``
    itself, or the replacement when ``module`` is a batch norm.
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        replacement = freeze(child)
        if replacement is not child:
            setattr(module, name, replacement)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def fold_frozen_norms(module: nn.Module, enabled: bool = True) -> int:
    """Let every ``FrozenBatchNorm2d`` in ``module`` be folded into its convolution
    by :func:`conv_norm`.

    Off by default: folding is the same function up to float rounding (relative ~1e-6), which is
    enough to reorder near-tied proposal scores, so bit-for-bit parity with torchvision needs it
    off. Returns how many norms were switched.
    """
    count = 0
    for m in module.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.fold_into_conv = enabled
            count += 1
    return count


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(conv(x))`` for (N, Cin, H, W) -> (N, C, H', W'), with a frozen batch norm folded in
    when :func:`fold_frozen_norms` switched it on.

    A ``FrozenBatchNorm2d`` is an affine map per channel, so it becomes the convolution's weight
    (scaled per output channel) and bias: one pass over the output instead of three, forward and
    backward, with the same function and gradients flowing to ``conv.weight``. When no gradient
    can reach the weight, the folded tensors are computed once and reused until any of the
    tensors they come from changes (``load_state_dict``, an optimizer step, ``.to()``).
    """
    if not getattr(norm, "fold_into_conv", False) or conv.bias is not None:
        return norm(conv(x))
    sources = (conv.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    needs_grad = torch.is_grad_enabled() and conv.weight.requires_grad
    # inference-mode tensors keep no version counter, so nothing could tell a stale cache
    if needs_grad or torch.compiler.is_compiling() or any(t.is_inference() for t in sources):
        weight, bias = _fold(conv, norm)
    else:
        key = tuple((id(t), t.data_ptr(), t._version) for t in sources)
        cached = getattr(norm, "_folded", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, *_fold(conv, norm))
            norm._folded = cached
        weight, bias = cached[1], cached[2]
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _fold(conv: nn.Conv2d, norm: FrozenBatchNorm2d) -> tuple[Tensor, Tensor]:
    """(C, Cin, k, k) weight * scale, and bias - mean * scale, as
    FrozenBatchNorm2d computes them."""
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    return conv.weight * scale[:, None, None, None], norm.bias - norm.running_mean * scale
