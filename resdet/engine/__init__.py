"""Training engine: optimizer and schedule, checkpoints, the iteration-based `Trainer`.

What `resdet.runs.detection.train_detector` does on every rank (`tools/train_det.py` loads the
config and the datasets, then calls it inside `exit_on_failure`: any failure ends every rank, code
1; bad input, such as an undecodable image met by a DataLoader worker, is one line and code 2):
    dist = init_distributed(timeout_s=cfg.solver.dist_timeout_s)  # RANK/WORLD_SIZE/LOCAL_RANK
    seed_all(cfg.seed, dist.rank)                                # seed + rank
    model = prepare_model(build_model(cfg, num_classes), cfg.solver, dist,  # device, SyncBN,
                          channels_last=cfg.model.input.channels_last is True)  # layout, DDP

    def loader(start):  # resumes the data order: `start` = batches this rank already consumed
        return build_train_loader(train_set, cfg.data, micro_batch, seed=cfg.seed, rank=dist.rank,
                                  world_size=dist.world_size, start_iter=start)

    trainer = build_trainer(cfg, model, loader, dist, evaluate_fn=evaluate,
                            class_names=train_set.class_names)  # into every checkpoint
    trainer.resume_or_load(resume=resume)
    trainer.train()
with `micro_batch = images_per_rank(cfg.solver, dist.world_size) * dist.world_size`.
(`init_distributed`, `shutdown_distributed`, `exit_on_failure` live in `resdet.utils.dist`,
`seed_all` in `resdet.utils.seed`.)
"""

from resdet.engine.build import build_trainer, images_per_rank, prepare_model
from resdet.engine.lr_schedule import WarmupSchedule, lr_factor
from resdet.engine.optim import build_optimizer, param_groups
from resdet.engine.trainer import NonFiniteLossError, Trainer, unwrap
from resdet.io.training_checkpoints import Checkpointer, load_checkpoint_file

__all__ = [
    "Checkpointer",
    "load_checkpoint_file",
    "WarmupSchedule",
    "lr_factor",
    "build_optimizer",
    "param_groups",
    "build_trainer",
    "images_per_rank",
    "prepare_model",
    "NonFiniteLossError",
    "Trainer",
    "unwrap",
]
