"""The engine's `Trainer`, specialised for classification: checkpoints of kind "classifier" that
name their classes, a constant warm-up option, and the training top-1 error in every log line."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from resdet.classification.objective import ClassificationObjective
from resdet.config.classification import ClsConfig
from resdet.engine.build import build_trainer
from resdet.engine.lr_schedule import WarmupSchedule, lr_factor
from resdet.engine.trainer import Trainer, unwrap
from resdet.utils.dist import DistInfo


class ConstantWarmupSchedule(WarmupSchedule):
    """`warmup_factor * lr` for the first `warmup_iters` iterations, then the step/cosine decay."""

    def factor(self, i: int) -> float:
        decay = lr_factor(
            i,
            method=self.method,
            max_iter=self.max_iter,
            steps=self.steps,
            gamma=self.gamma,
            final_factor=self.final_factor,
        )
        return decay * self.warmup_factor if i < self.warmup_iters else decay


class ClassificationTrainer(Trainer):
    """`Trainer` over a `ClassificationObjective`; adds `train_error` (top-1, %) to each step's
    record and writes checkpoints `{"format": "resdet", "kind": "classifier", "classes": [...],
    ...}` whose `model` is the plain network's state dict (loadable by
    `backbones.weights.load_pretrained`)."""

    def __init__(self, *args: Any, classes: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.classes = list(classes)

    def _run_step(self, data: Iterator) -> dict[str, float]:
        record = super()._run_step(data)
        record["train_error"] = unwrap(self.model).pop_train_error()
        return record

    def _weights_state(self) -> dict[str, Any]:
        return {**super()._weights_state(), "kind": "classifier", "classes": self.classes}


def build_classification_trainer(
    cfg: ClsConfig,
    model: ClassificationObjective | Any,
    data_loader: Iterable | None,
    dist: DistInfo,
    *,
    classes: list[str],
    evaluate_fn: Callable[[], dict[str, float]] | None = None,
    progress: bool = True,
) -> ClassificationTrainer:
    """A `ClassificationTrainer` for `model` (prepared by `resdet.engine.prepare_model`) following
    `cfg.solver` and `cfg.test` (`resdet.engine.build_trainer`), with the constant warm-up when
    `solver.warmup_method` asks for it."""
    schedule = ConstantWarmupSchedule if cfg.solver.warmup_method == "constant" else WarmupSchedule
    return build_trainer(
        cfg,
        model,
        data_loader,
        dist,
        evaluate_fn=evaluate_fn,
        pixel_format=unwrap(model).pixel_format.to_dict(),
        progress=progress,
        trainer_cls=ClassificationTrainer,
        schedule_cls=schedule,
        classes=classes,
    )
