"""Training engine: optimizer and schedule, checkpoints, the iteration-based `Trainer`.

Typical entry point (what `tools/train_det.py` does), on every rank:
    def main():
        dist = init_distributed(timeout_s=cfg.solver.dist_timeout_s)   # reads RANK/WORLD_SIZE/LOCAL_RANK
        seed_all(cfg.seed, dist.rank)                                 # seed + rank
        model = prepare_model(build_model(cfg), cfg.solver, dist)     # device, SyncBN, channels_last, DDP
        loader = ...  # per-rank batches of images_per_rank(cfg.solver, dist.world_size) images
        trainer = build_trainer(cfg, model, loader, dist, sampler=sampler, evaluate_fn=evaluate)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        shutdown_distributed()
    exit_on_failure(main)                                             # any failure: every rank exits 1
(`init_distributed`, `shutdown_distributed`, `exit_on_failure` live in `resdet.utils.dist`,
`seed_all` in `resdet.utils.seed`.)
"""
from resdet.engine.checkpoint import Checkpointer, load_checkpoint_file
from resdet.engine.lr_schedule import WarmupSchedule, lr_factor
from resdet.engine.optim import build_optimizer, param_groups
from resdet.engine.setup import build_trainer, images_per_rank, prepare_model
from resdet.engine.trainer import NonFiniteLossError, ResumableSampler, Trainer, unwrap

__all__ = ["Checkpointer", "load_checkpoint_file", "WarmupSchedule", "lr_factor", "build_optimizer",
           "param_groups", "build_trainer", "images_per_rank", "prepare_model", "NonFiniteLossError",
           "ResumableSampler", "Trainer", "unwrap"]
