"""The training engine, for detectors and classifiers alike: `Trainer` (the iteration loop: AMP,
accumulation, clipping, DDP, periodic checkpoints and evaluation, exact resume), the learning-rate
schedule, the optimizer's parameter groups, precise BN, and `build.py`, which turns a resolved
config and a model into a ready `Trainer` (`prepare_model`, `build_trainer`). Whole runs that use
it are in `resdet.runs`; the checkpoints it writes are `resdet.io.checkpoints`'.
"""

from resdet.engine.build import build_trainer, images_per_rank, prepare_model
from resdet.engine.errors import (
    NonFiniteLossError,
    NonFiniteStateError,
    NonFiniteStepsError,
    TrainingInterrupted,
    TrainingStopped,
)
from resdet.engine.lr_schedule import WarmupSchedule, lr_factor
from resdet.engine.optim import build_optimizer, param_groups
from resdet.engine.trainer import Trainer, unwrap

__all__ = [
    "WarmupSchedule",
    "lr_factor",
    "build_optimizer",
    "param_groups",
    "build_trainer",
    "images_per_rank",
    "prepare_model",
    "NonFiniteLossError",
    "NonFiniteStepsError",
    "NonFiniteStateError",
    "TrainingInterrupted",
    "TrainingStopped",
    "Trainer",
    "unwrap",
]
