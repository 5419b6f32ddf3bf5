"""What every run's config has besides its sections (`output_dir`, `seed`, the file it came from),
and the one loader of run configs, shared by detection (`Config`) and classification
(`ClsConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from resdet.config.loader import load_typed, save_typed
from resdet.config.solver import scale_schedule


@dataclass
class RunConfig:
    output_dir: str = "output"
    seed: int = 0
    #: the file this config came from (not a YAML key)
    source: str = field(default="<config>", repr=False, compare=False, init=False)


R = TypeVar("R", bound=RunConfig)


def load_run_config(cls: type[R], path: str | Path, overrides: list[str] | None = None) -> R:
    """Read `path` (following `_base_`), apply `key.sub=value` overrides, check every key and type.

    An override of `solver.max_iter` alone scales the schedule (see `resdet.config.solver`)."""
    return load_typed(cls, path, overrides, adjust=scale_schedule)


def save_run_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML that `load_run_config` reads back to an equal config."""
    save_typed(cfg, path)
