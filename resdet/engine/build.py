"""From a resolved `Config` (or `ClsConfig`) to a ready `Trainer`: device, SyncBN, memory layout,
DDP (`prepare_model`), then optimizer, schedule and checkpointer (`build_trainer`). The run
functions (`resdet.runs.detection.train_detector`, `resdet.runs.pretraining.pretrain`) call
`init_distributed`, build the model, `prepare_model`, the data loader, then `build_trainer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from resdet.config import Config
from resdet.config.classification import ClsConfig
from resdet.config.loader import to_dict
from resdet.config.solver import SolverConfig
from resdet.engine.lr_schedule import WarmupSchedule
from resdet.engine.optim import build_optimizer
from resdet.engine.trainer import Trainer, unwrap
from resdet.io.checkpoints import Checkpointer
from resdet.utils.dist import DistInfo


def images_per_rank(solver: SolverConfig, world_size: int) -> int:
    """Images each rank feeds per forward pass: `ims_per_batch / (world_size * grad_accum)`."""
    parts = world_size * solver.grad_accum
    if solver.ims_per_batch % parts:
        raise ValueError(
            f"solver.ims_per_batch={solver.ims_per_batch} is not divisible by "
            f"world_size ({world_size}) * solver.grad_accum ({solver.grad_accum})"
        )
    return solver.ims_per_batch // parts


def prepare_model(
    model: nn.Module, solver: SolverConfig, dist: DistInfo, *, channels_last: bool = False
) -> nn.Module:
    """Move `model` to `dist.device`, apply `solver.sync_bn`, lay its 4-D weights out channels-last
    when `channels_last`, and wrap it in DDP when distributed.

    `channels_last` is true when the model trains channels-last (detectors:
    `model.input.channels_last: true`; classifiers: `model.channels_last`): the batch arrives NHWC,
    and weights in the same layout spare every convolution a conversion.
    """
    if solver.sync_bn and dist.distributed:
        if dist.device.type != "cuda":  # torch's SyncBatchNorm has no CPU kernel
            raise ValueError(
                f"solver.sync_bn needs CUDA devices, got {dist.device}; set it to false on CPU"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(dist.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist.distributed:
        device_ids = [dist.local_rank] if dist.device.type == "cuda" else None
        model = DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=solver.find_unused_parameters
        )
    return model


def build_trainer(
    cfg: Config | ClsConfig,
    model: nn.Module,
    data_loader: Iterable | Callable[[int], Iterable] | None,
    dist: DistInfo,
    *,
    evaluate_fn: Callable[[], dict[str, float]] | None = None,
    pixel_format: dict[str, Any] | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    trainer_cls: type[Trainer] = Trainer,
    schedule_cls: type[WarmupSchedule] = WarmupSchedule,
    **trainer_kwargs: Any,
) -> Trainer:
    """A `trainer_cls` for `model` (prepared by `prepare_model`) following `cfg.solver`/`cfg.test`.

    The optimizer's rate is `cfg.solver.lr` (the scaling rule of `resdet.config.solver`); the
    schedule is a `schedule_cls`; `trainer_kwargs` go to `trainer_cls` as they are.
    """
    s = cfg.solver
    images_per_rank(s, dist.world_size)
    optimizer = build_optimizer(
        unwrap(model),
        lr=s.lr,
        optimizer=s.optimizer,
        momentum=s.momentum,
        nesterov=s.nesterov,
        weight_decay=s.weight_decay,
        weight_decay_norm=s.weight_decay_norm,
        weight_decay_bias=s.weight_decay_bias,
    )
    scheduler = schedule_cls(
        optimizer,
        max_iter=s.max_iter,
        method=s.lr_scheduler,
        steps=s.steps,
        gamma=s.gamma,
        warmup_iters=s.warmup_iters,
        warmup_factor=s.warmup_factor,
        final_factor=s.cosine_final_factor,
    )
    checkpointer = Checkpointer(cfg.output_dir, keep_last=s.keep_last, is_main=dist.is_main)
    return trainer_cls(
        model,
        data_loader,
        optimizer,
        scheduler,
        checkpointer,
        solver=s,
        test=cfg.test,
        output_dir=cfg.output_dir,
        evaluate_fn=evaluate_fn,
        config=to_dict(cfg),
        pixel_format=pixel_format,
        device=dist.device,
        progress=progress and dist.is_main,
        tensorboard=tensorboard,
        **trainer_kwargs,
    )
