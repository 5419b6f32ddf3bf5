"""The engine's `Trainer`, specialised for classification: checkpoints of kind "classifier" that name
their classes, a constant warm-up option, and the training top-1 error in every log line."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from resdet.classification.objective import ClassificationObjective
from resdet.config.cls import ClsConfig
from resdet.config.loader import to_dict
from resdet.engine.checkpoint import Checkpointer
from resdet.engine.lr_schedule import WarmupSchedule, lr_factor
from resdet.engine.optim import build_optimizer
from resdet.engine.setup import images_per_rank
from resdet.engine.trainer import Trainer, unwrap
from resdet.utils.dist import DistInfo


class ConstantWarmupSchedule(WarmupSchedule):
    """`warmup_factor * lr` for the first `warmup_iters` iterations, then the step/cosine decay."""

    def factor(self, i: int) -> float:
        decay = lr_factor(i, method=self.method, max_iter=self.max_iter, steps=self.steps, gamma=self.gamma,
                          final_factor=self.final_factor)
        return decay * self.warmup_factor if i < self.warmup_iters else decay


class ClassificationTrainer(Trainer):
    """`Trainer` over a `ClassificationObjective`; adds `train_error` (top-1, %) to each step's record
    and writes checkpoints `{"format": "resdet", "kind": "classifier", "classes": [...], ...}` whose
    `model` is the plain network's state dict (loadable by `backbones.weights.load_pretrained`)."""

    def __init__(self, *args: Any, classes: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.classes = list(classes)

    def _run_step(self, data: Iterator) -> dict[str, float]:
        record = super()._run_step(data)
        record["train_error"] = unwrap(self.model).pop_train_error()
        return record

    def _weights_state(self) -> dict[str, Any]:
        return {**super()._weights_state(), "kind": "classifier", "classes": self.classes}


def build_classification_trainer(cfg: ClsConfig, model: ClassificationObjective | Any, data_loader: Iterable,
                                 dist: DistInfo, *, classes: list[str],
                                 evaluate_fn: Callable[[], dict[str, float]] | None = None,
                                 progress: bool = True) -> ClassificationTrainer:
    """A `ClassificationTrainer` for `model` (prepared by `resdet.engine.prepare_model`) following
    `cfg.solver` and `cfg.test`; the optimizer's rate is `cfg.solver.lr` (after the scaling rule)."""
    s = cfg.solver
    images_per_rank(s, dist.world_size)
    optimizer = build_optimizer(unwrap(model), lr=s.lr, optimizer=s.optimizer, momentum=s.momentum,
                                nesterov=s.nesterov, weight_decay=s.weight_decay,
                                weight_decay_norm=s.weight_decay_norm, weight_decay_bias=s.weight_decay_bias)
    schedule = ConstantWarmupSchedule if s.warmup_method == "constant" else WarmupSchedule
    scheduler = schedule(optimizer, max_iter=s.max_iter, method=s.lr_scheduler, steps=s.steps, gamma=s.gamma,
                         warmup_iters=s.warmup_iters, warmup_factor=s.warmup_factor,
                         final_factor=s.cosine_final_factor)
    checkpointer = Checkpointer(cfg.output_dir, keep_last=s.keep_last, is_main=dist.is_main)
    return ClassificationTrainer(
        model, data_loader, optimizer, scheduler, checkpointer, max_iter=s.max_iter, output_dir=cfg.output_dir,
        evaluate_fn=evaluate_fn, eval_period=cfg.test.eval_period, best_metric=cfg.test.best_metric,
        best_mode=cfg.test.best_mode, checkpoint_period=s.checkpoint_period, log_period=s.log_period,
        amp=s.amp, grad_accum=s.grad_accum, clip_grad_norm=s.clip_grad_norm, config=to_dict(cfg),
        pixel_format=unwrap(model).pixel_format.to_dict(), device=dist.device,
        progress=progress and dist.is_main, classes=classes)
