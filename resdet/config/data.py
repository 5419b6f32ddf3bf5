"""`data:` section: which datasets, where they live, how they are loaded and augmented.

Dataset entries (`train`, `test`) are names resolved under the dataset root (`coco_2017_train`,
`voc_2007_trainval`, ...; see `resdet.data.formats`) or mappings:
`{format: coco, ann_file: ..., image_dir: ...}`, `{format: voc, root: ..., split: ...,
class_names: [...]}`, `{format: voc_folder, image_dir: ..., ann_dir: ..., class_names: [...],
split_file: ... | split: {fraction: 0.8, seed: 0, part: train|test}}` (a flat labelled folder, see
`resdet.data.voc_folder`), `{format: shapes, split: train|val, num_images: ..., image_size: ...,
seed: ..., max_objects: ...}`. Several entries are concatenated. Relative paths in mappings are
taken under the dataset root.

Images are not resized here: the detector resizes (sizes in `model.input`), so training and
evaluation images reach it at their decoded size and its outputs are in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A dataset entry: a registered name (`voc_2007_trainval`) or a mapping (see the module docstring).
DatasetEntry = str | dict[str, Any]


@dataclass
class DataConfig:
    #: dataset root; None -> $RESDET_DATASETS, else `datasets/`
    root: str | None = None
    train: list[DatasetEntry] = field(default_factory=list)
    test: list[DatasetEntry] = field(default_factory=list)
    num_workers: int = 2
    #: where generated (shapes) data is cached; None -> $RESDET_CACHE, else ~/.cache/resdet
    cache_dir: str | None = None
    #: leave training images without a usable box out (counted)
    filter_empty: bool = True
    #: train on VOC `difficult` objects too (they are always kept for evaluation)
    use_difficult: bool = False
    #: skip (and count) undecodable images instead of failing, up to `max_bad_images` per process
    skip_bad_images: bool = False
    max_bad_images: int = 100
    #: VOC and voc_folder readers drop the later box of a same-class pair overlapping at IoU above
    #: this (annotators' double boxes; counted in one warning); null keeps them, as the official
    #: VOC devkit does (set null to reproduce devkit numbers exactly)
    duplicate_iou: float | None = 0.9
    #: horizontal flip probability in training
    flip_prob: float = 0.5
    #: batch only images of the same orientation (landscape / portrait) together
    aspect_grouping: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if self.duplicate_iou is not None and not 0.0 < self.duplicate_iou <= 1.0:
            raise ValueError(f"duplicate_iou must be in (0, 1] or null, got {self.duplicate_iou}")
        if self.max_bad_images < 0 or self.num_workers < 0:
            raise ValueError("max_bad_images and num_workers must be >= 0")
