"""Detection data: COCO/VOC readers, the synthetic shapes set, safe decoding,
transforms and samplers.

Classification data (CIFAR, ImageNet folders) lives in `cifar.py`, `imagenet_folder.py`,
`cls_transforms.py`.
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
