"""Detection data: dataset entries to records, records to batches.

- `formats.py`: the table of dataset formats (coco, voc, voc_folder, shapes: keys, reader, expected
  files, evaluation protocol) and the registered names; `catalog.py`: `load_source`, an entry
  read through that table.
- readers: `coco.py`, `voc.py`, `voc_folder.py` (with `checks.py`, `masks.py`), producing the
  `records.py` types, the records packed in flat arrays (`compact.py`) that DataLoader workers
  share; COCO files are parsed once per node and mapped afterwards (`records_cache.py`);
  `shapes.py` generates the synthetic shapes set.
- `build.py` / `dataset.py`: the `data:` config to a `DetectionDataset` and its DataLoaders, with
  `image_io.py` (safe decoding), `transforms.py`, `samplers.py` and `collate.py`.

Classification data (CIFAR, ImageNet folders, their transforms) lives in `resdet.classification`
(`cifar.py`, `imagenet_folder.py`, `transforms.py`); the dataset and cache roots in
`resdet.utils.paths`.
"""

from resdet.data.build import (
    build_detection_dataset,
    build_test_loader,
    build_train_loader,
    build_transforms,
)
from resdet.data.catalog import load_source
from resdet.data.collate import collate_detection
from resdet.data.dataset import DetectionDataset
from resdet.data.errors import DatasetError, DatasetWarning
from resdet.data.image_io import BadImageError, read_image
from resdet.data.records import DatasetSource, ImageRecord
from resdet.data.samplers import GroupedBatchSampler, InferenceSampler

__all__ = [
    "build_detection_dataset",
    "build_test_loader",
    "build_train_loader",
    "build_transforms",
    "load_source",
    "collate_detection",
    "DetectionDataset",
    "BadImageError",
    "read_image",
    "DatasetError",
    "DatasetSource",
    "DatasetWarning",
    "ImageRecord",
    "GroupedBatchSampler",
    "InferenceSampler",
]
