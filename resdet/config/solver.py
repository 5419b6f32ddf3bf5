"""`solver:` and `test:` sections: schedule, precision, parallelism, checkpoints, evaluation.

The schedule is counted in iterations (optimizer steps), as in the paper's recipes. One iteration
consumes `ims_per_batch` images in total: `ims_per_batch = world_size * grad_accum * images per rank
per forward`, so the same recipe runs on 1 or 8 GPUs with the same global batch.

Learning-rate scaling rule (Goyal et al., 2017, "linear scaling"): when `reference_batch` is set,
`base_lr` is the rate tuned for a global batch of `reference_batch` images, and the rate used is
`base_lr * ims_per_batch / reference_batch`. When it is `null`, `base_lr` is used as written.
Iteration counts (`max_iter`, `steps`, `warmup_iters`) are never rescaled with the batch: a recipe
that changes the batch states its own schedule.

Shortened (or lengthened) runs, detection and classification alike: a command-line override of
`solver.max_iter` alone (`key=value` in the overrides, not a change in the YAML) scales the file's
`solver.steps` and `solver.warmup_iters` by `new max_iter / file max_iter` (rounded down; a
positive step stays >= 1), and one line says so, e.g.
    configs/cls_resnet20_cifar10.yaml: solver.max_iter=20 overrides 64000: solver.steps scaled to
    [10, 15], solver.warmup_iters to 0
Each of `solver.steps` / `solver.warmup_iters` given on the command line too is taken as written,
and a schedule still inconsistent then (steps past `max_iter`) is an error naming both keys; so is
an inconsistent schedule in a YAML file.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass
class SolverConfig:
    #: keys that moved, with their new place (the loader's error names it)
    RENAMED: ClassVar[dict[str, str]] = {
        "channels_last": "model.input.channels_last (detection) or model.channels_last "
        "(classification)"
    }

    # schedule
    max_iter: int = 1000
    base_lr: float = 0.02
    ims_per_batch: int = 16
    reference_batch: int | None = None
    lr_scheduler: Literal["multistep", "cosine"] = "multistep"
    steps: list[int] = field(default_factory=list)
    gamma: float = 0.1
    #: cosine: the rate decays from 1 to `cosine_final_factor` x the scaled base rate at `max_iter`
    cosine_final_factor: float = 0.0
    warmup_iters: int = 0
    #: linear warmup starts at `warmup_factor * lr` and reaches `lr` at `warmup_iters`
    warmup_factor: float = 0.001
    # optimizer
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    #: weight decay for normalisation layers' weight and bias; null = same as `weight_decay`
    weight_decay_norm: float | None = None
    #: weight decay for every other bias; null = same as `weight_decay`
    weight_decay_bias: float | None = None
    # numerics
    amp: Literal["none", "bf16", "fp16"] = "none"
    grad_accum: int = 1
    #: clip the global gradient L2 norm to this value; null = no clipping
    clip_grad_norm: float | None = None
    #: a step whose gradients (unscaled, with fp16) hold a NaN or an infinity is skipped (no
    #: optimizer update; the iteration, schedule and data still advance, as in AMP's GradScaler)
    #: and counted (`skipped_steps` in metrics.jsonl); this many skipped in a row stop the run
    #: (resdet.engine.trainer)
    max_nonfinite_steps: int = 5
    # parallelism
    sync_bn: bool = False
    find_unused_parameters: bool = False
    #: seconds a rank waits in a collective before the run is declared failed
    dist_timeout_s: int = 1800
    # bookkeeping
    checkpoint_period: int = 5000
    #: periodic checkpoints kept on disk (model_final/model_best are never removed); 0 = all
    keep_last: int = 3
    log_period: int = 20

    def __post_init__(self) -> None:
        for name in (
            "max_iter",
            "ims_per_batch",
            "grad_accum",
            "checkpoint_period",
            "log_period",
            "max_nonfinite_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"solver.{name} must be >= 1, got {getattr(self, name)}")
        if self.reference_batch is not None and self.reference_batch < 1:
            raise ValueError(
                f"solver.reference_batch must be >= 1 or null, got {self.reference_batch}"
            )
        if list(self.steps) != sorted(self.steps):
            raise ValueError(f"solver.steps must be increasing, got {self.steps}")
        if self.steps and self.steps[-1] > self.max_iter:
            raise ValueError(
                f"solver.steps {list(self.steps)} go past solver.max_iter="
                f"{self.max_iter} (override solver.max_iter alone and the steps "
                "scale with it)"
            )
        if self.warmup_iters < 0 or self.keep_last < 0:
            raise ValueError("solver.warmup_iters and solver.keep_last must be >= 0")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(
                f"solver.clip_grad_norm must be > 0 or null, got {self.clip_grad_norm}"
            )

    @property
    def lr(self) -> float:
        """The learning rate after the scaling rule (see the module docstring)."""
        if self.reference_batch is None:
            return self.base_lr
        return self.base_lr * self.ims_per_batch / self.reference_batch


def scale_schedule(
    file_cfg: Any, data: dict[str, Any], overridden: Collection[str], source: str
) -> str | None:
    """Apply the shortened-run rule (module docstring) to `data`, the mapping after the overrides.

    `file_cfg` is the config the file alone gives (it has a `solver: SolverConfig`); `overridden`
    the dotted keys set on the command line. Returns the line printed (on rank 0), or None when
    nothing was scaled.
    """
    solver = data.get("solver")
    if "solver.max_iter" not in overridden or not isinstance(solver, dict):
        return None
    old, new = file_cfg.solver.max_iter, solver.get("max_iter")
    if not isinstance(new, int) or isinstance(new, bool) or new < 1 or new == old:
        return None  # a value of the wrong type is reported by the typed check

    done = []
    if "solver.steps" not in overridden and file_cfg.solver.steps:
        solver["steps"] = [max(1, s * new // old) if s > 0 else 0 for s in file_cfg.solver.steps]
        done.append(f"solver.steps scaled to {solver['steps']}")
    if "solver.warmup_iters" not in overridden and file_cfg.solver.warmup_iters:
        solver["warmup_iters"] = file_cfg.solver.warmup_iters * new // old
        done.append(f"solver.warmup_iters {'to' if done else 'scaled to'} {solver['warmup_iters']}")
    if not done:
        return None
    line = f"{source}: solver.max_iter={new} overrides {old}: {', '.join(done)}"
    if os.environ.get("RANK", "0") == "0":
        print(line, flush=True)
    return line


@dataclass
class TestConfig:
    #: evaluate every this many iterations (0 = only at the end)
    eval_period: int = 0
    #: key of the evaluation dict that decides `model_best.pth`; null = the first key returned
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "max"
    #: precise BN (`resdet.engine.precise_bn`): before each evaluation and the final checkpoint,
    #: the training batch norms' statistics become their average over this many training
    #: batches; 0 = off. detectron2's TEST.PRECISE_BN uses 200
    precise_bn_iters: int = 0
    #: what scores COCO boxes and masks (resdet.evaluation.coco_backends): `faster`
    #: (faster-coco-eval, its numbers made pycocotools' exactly; an error when not installed),
    #: `pycocotools` (the reference), `auto` = faster when installed and exact, else pycocotools
    coco_backend: Literal["auto", "faster", "pycocotools"] = "auto"

    def __post_init__(self) -> None:
        if self.eval_period < 0 or self.precise_bn_iters < 0:
            raise ValueError(
                "test.eval_period and test.precise_bn_iters must be >= 0, got "
                f"{self.eval_period} and {self.precise_bn_iters}"
            )
