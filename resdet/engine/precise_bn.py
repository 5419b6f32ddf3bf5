"""Precise BN (Wu & He 2018, Sec. 6; detectron2's `TEST.PRECISE_BN`): before a model is evaluated
or saved, replace the running statistics of its training batch norms by their plain average over a
number of training batches, computed with the weights fixed.

During training the running statistics are an exponential average of batch statistics taken while
the weights moved, so they lag the final weights; with small per-GPU batches they are also noisy.
Averaging over many batches of the final weights removes both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def training_batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The batch norms of `model` that update statistics in train mode (FrozenBN is not one)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def recompute_bn_stats(model: nn.Module, forward_one: Callable[[], None], num_batches: int) -> int:
    """Reset every training batch norm of `model` and run `forward_one()` (one training batch
    through `model`, in train mode, whatever it returns) `num_batches` times without gradients:
    afterwards each norm's `running_mean` / `running_var` are the equal-weight mean of the batch
    means / unbiased batch variances it saw. Momentum and train/eval mode are restored. Returns
    how many norms were updated (0 = nothing to do, and `forward_one` is not called).
    """
    norms = training_batch_norms(model)
    if not norms or num_batches <= 0:
        return 0
    momenta = [bn.momentum for bn in norms]
    was_training = model.training
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # PyTorch's cumulative average: 1 / batches seen
    model.train()
    try:
        with torch.no_grad():
            for _ in range(num_batches):
                forward_one()
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return len(norms)
