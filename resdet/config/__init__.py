"""Typed configuration: `load_config(path, overrides)` -> `Config`; `save_config` writes it resolved.

Sections live in their own modules (`model`, `data`, `solver`); this module wires them together.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resdet.config.data import DataConfig
from resdet.config.loader import ConfigError, apply_overrides, from_dict, read_yaml, to_dict
from resdet.config.model import ModelConfig
from resdet.config.solver import SolverConfig, TestConfig

__all__ = ["Config", "ConfigError", "load_config", "save_config", "config_from_dict"]


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    output_dir: str = "output"
    seed: int = 0
    #: the file this config came from (not a YAML key)
    source: str = field(default="<config>", repr=False, compare=False, init=False)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read `path` (following `_base_`), apply `key.sub=value` overrides, and check every key and type."""
    data = read_yaml(path)
    if overrides:
        from_dict(Config, data, source=str(path))  # the file alone must be valid
        data = apply_overrides(data, list(overrides), str(path))
        try:
            cfg = from_dict(Config, data, source=str(path))
        except ConfigError as e:
            raise ConfigError(f"command-line override on {path}: {e}") from None
    else:
        cfg = from_dict(Config, data, source=str(path))
    cfg.source = str(path)
    return cfg


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build a `Config` from a plain mapping (e.g. the one stored in a checkpoint)."""
    cfg = from_dict(Config, data, source=source)
    cfg.source = source
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML that `load_config` reads back to an equal `Config`."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
