"""Detection losses, kept apart from the networks. Each returns a summed or averaged scalar."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def smooth_l1(pred: Tensor, target: Tensor, beta: float) -> Tensor:
    """Summed smooth-L1 (Huber/beta): 0.5 x^2 / beta for |x| < beta, |x| - 0.5 beta beyond;
    beta 0 is L1."""
    if beta < 1e-5:
        return l1(pred, target)
    diff = (pred - target).abs()
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta).sum()


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Summed L1 distance."""
    return (pred - target).abs().sum()


def box_regression_loss(
    pred: Tensor, target: Tensor, *, kind: Literal["smooth_l1", "l1"], beta: float
) -> Tensor:
    """Summed box loss over (K, 4) deltas; exactly 0 (with a graph) when K == 0."""
    return smooth_l1(pred, target, beta) if kind == "smooth_l1" else l1(pred, target)


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross entropy: (K, C) logits, (K,) int64 labels; 0 when K == 0."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels)


def binary_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Summed sigmoid cross entropy: (K,) logits, (K,) float targets in {0, 1}."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
