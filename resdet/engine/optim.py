"""Optimizer with per-parameter weight decay: normalisation layers and biases can be exempted."""

from __future__ import annotations

import torch
from torch import nn

#: module types whose weight and bias count as normalisation parameters
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def param_groups(
    model: nn.Module,
    weight_decay: float,
    weight_decay_norm: float | None = None,
    weight_decay_bias: float | None = None,
) -> list[dict]:
    """Split trainable parameters into groups by weight decay.

    Norm-layer parameters get `weight_decay_norm`, other biases `weight_decay_bias`, the rest
    `weight_decay`; `None` means "same as `weight_decay`". Frozen and shared parameters are handled
    (each trainable tensor appears once). Returns `[{"params": [...], "weight_decay": wd}, ...]`.
    """
    wd_norm = weight_decay if weight_decay_norm is None else weight_decay_norm
    wd_bias = weight_decay if weight_decay_bias is None else weight_decay_bias
    seen: set[int] = set()
    groups: dict[float, list[nn.Parameter]] = {}
    for module in model.modules():
        is_norm = isinstance(module, NORM_TYPES)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            wd = wd_norm if is_norm else wd_bias if name == "bias" else weight_decay
            groups.setdefault(wd, []).append(p)
    return [{"params": ps, "weight_decay": wd} for wd, ps in groups.items()]


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 1e-4,
    weight_decay_norm: float | None = None,
    weight_decay_bias: float | None = None,
) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW, whose betas are `(momentum, 0.999)`) over
    `param_groups(model)`."""
    groups = param_groups(model, weight_decay, weight_decay_norm, weight_decay_bias)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise ValueError(f"unknown optimizer {optimizer!r} (expected 'sgd' or 'adamw')")
