"""Where data lives on disk: the datasets root and the cache root, each decided in one place.

- `dataset_root(root)`: the folder dataset names and relative paths resolve under: `root` (a
  config's `data.root`) if given, else `$RESDET_DATASETS`, else `datasets/` (relative to the working
  directory).
- `cache_root(cache_dir)`: where generated and derived files go (the shapes sets, decoded CIFAR
  splits, `resdet:<name>` weights, COCO records parsed once, `records/`, see
  `resdet.data.records_cache`): `cache_dir` if given, else `$RESDET_CACHE`, else
  `~/.cache/resdet`.
"""

from __future__ import annotations

import os
from pathlib import Path


def dataset_root(root: str | None) -> Path:
    """`root` if given, else `$RESDET_DATASETS`, else `datasets/`."""
    return Path(root or os.environ.get("RESDET_DATASETS") or "datasets")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where generated data lives: `cache_dir`, else `$RESDET_CACHE`, else `~/.cache/resdet`."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("RESDET_CACHE") or Path.home() / ".cache" / "resdet")
