"""`solver:` and `test:` sections: optimisation schedule and evaluation cadence."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SolverConfig:
    max_iter: int = 1000
    base_lr: float = 0.02
    ims_per_batch: int = 16
    checkpoint_period: int = 5000
    momentum: float = 0.9
    weight_decay: float = 1e-4
    steps: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_iters: int = 0


@dataclass
class TestConfig:
    eval_period: int = 0
