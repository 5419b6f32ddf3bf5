"""Typed configuration: `load_config(path, overrides)` -> `Config`; `save_config` writes it.

Sections live in their own modules (`model`, `data`, `solver`); this module wires them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from resdet.config.data import DataConfig
from resdet.config.loader import ConfigError, typed_from_dict
from resdet.config.model import ModelConfig
from resdet.config.run import RunConfig, load_run_config, save_run_config
from resdet.config.solver import SolverConfig, TestConfig

__all__ = ["CONFIG_DIR", "Config", "ConfigError", "load_config", "save_config", "config_from_dict"]

#: the recipes shipped inside the package (`configs/` in a checkout links here), found the same
#: way after `pip install .` as in an editable checkout
CONFIG_DIR = Path(str(resources.files("resdet") / "configs"))


@dataclass
class Config(RunConfig):
    """A detection run: `model`, `data`, `solver`, `test`, plus `output_dir` and `seed`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read `path` (following `_base_`), apply `key.sub=value` overrides, check every key and type.

    An override of `solver.max_iter` alone scales the schedule (see `resdet.config.solver`)."""
    return load_run_config(Config, path, overrides)


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build a `Config` from a plain mapping (e.g. the one stored in a checkpoint)."""
    return typed_from_dict(Config, data, source)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML that `load_config` reads back to an equal `Config`."""
    save_run_config(cfg, path)
