"""Shared helpers for the backbone tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.weight.shape[0]
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


@pytest.fixture
def randomize_norms():
    """``randomize_norms(model, seed=0)`` gives every batch norm non-trivial affine parameters and
    running statistics (in place; returns the model), so loading errors in them change outputs."""
    return _randomize_norms


@pytest.fixture
def image() -> torch.Tensor:
    """A tiny random batch (1, 3, 40, 56): sizes that are not multiples of 32 on purpose."""
    return torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
