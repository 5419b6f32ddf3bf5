"""Learning-rate schedule: linear warmup, then step decay (multi-step) or cosine decay.

The rate at iteration `i` (0-based; the rate used for the i-th optimizer step) is
`lr_i = lr * warmup(i) * decay(i)` with
    warmup(i) = warmup_factor * (1 - i / warmup_iters) + i / warmup_iters
                for i < warmup_iters, else 1
    decay(i)  = gamma ** (number of steps s with s <= i)          (multistep)
    decay(i)  = f + (1 - f) * (1 + cos(pi * i / max_iter)) / 2    (cosine, f = final factor)
The value is computed in closed form from the iteration, so resuming needs only the iteration.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler


def lr_factor(
    i: int,
    *,
    method: str,
    max_iter: int,
    steps: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
    final_factor: float = 0.0,
) -> float:
    """The multiplier of the base rate at iteration `i` (see the module docstring)."""
    if method == "multistep":
        decay = gamma ** bisect.bisect_right(list(steps), i)
    elif method == "cosine":
        decay = final_factor + (1.0 - final_factor) * 0.5 * (
            1.0 + math.cos(math.pi * min(i, max_iter) / max_iter)
        )
    else:
        raise ValueError(f"unknown lr_scheduler {method!r} (expected 'multistep' or 'cosine')")
    if i < warmup_iters:
        alpha = i / warmup_iters
        decay *= warmup_factor * (1.0 - alpha) + alpha
    return decay


class WarmupSchedule(LRScheduler):
    """`lr_factor` applied to every param group's initial rate; call `step()` once per iteration.

    Its `state_dict()` holds only numbers, strings and lists (safe for `weights_only` loading).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        max_iter: int,
        method: str = "multistep",
        steps: Sequence[int] = (),
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_factor: float = 0.001,
        final_factor: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if any(s > max_iter for s in steps):
            raise ValueError(f"solver.steps {list(steps)} go past solver.max_iter={max_iter}")
        self.method, self.max_iter, self.steps, self.gamma = method, max_iter, list(steps), gamma
        self.warmup_iters, self.warmup_factor, self.final_factor = (
            warmup_iters,
            warmup_factor,
            final_factor,
        )
        lr_factor(0, method=method, max_iter=max_iter)  # reject an unknown method before any step
        super().__init__(optimizer, last_epoch)

    def factor(self, i: int) -> float:
        return lr_factor(
            i,
            method=self.method,
            max_iter=self.max_iter,
            steps=self.steps,
            gamma=self.gamma,
            warmup_iters=self.warmup_iters,
            warmup_factor=self.warmup_factor,
            final_factor=self.final_factor,
        )

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]
