"""`data:` section: which datasets, where they live, how they are loaded."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A dataset entry: a registered name (`voc_2007_trainval`) or a mapping
#: (`{format: coco, ann_file: ..., image_dir: ...}` / `{format: voc, root: ..., split: ...}`).
DatasetEntry = str | dict[str, Any]


@dataclass
class DataConfig:
    root: str | None = None
    train: list[DatasetEntry] = field(default_factory=list)
    test: list[DatasetEntry] = field(default_factory=list)
    num_workers: int = 2
