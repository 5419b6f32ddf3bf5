"""Normalisation layers selectable by name, and the conversion that freezes them."""
from __future__ import annotations

import math

import torch
from torch import nn
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
    and ``train()`` no longer updates statistics (detectron2's semantics). Returns ``module`` itself, or
    the replacement when ``module`` is a batch norm.
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
