"""`data:` section -> train and test datasets with the recipe's augmentation.

Image folders and the shapes set are `Dataset`s of `(uint8 image [3, H, W], label)` items, augmented
per image; with 10-crop testing the test image is `[10, 3, H, W]`. CIFAR-10 (either layout) is a
decoded `CifarSplit` in memory, augmented per batch by `InMemoryTrainBatches`. Pixel normalisation
happens later, on whole batches (`resdet.classification.transforms.PixelNormalize`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from resdet.classification.cifar import CifarSplit, load_cifar
from resdet.classification.imagenet_folder import ImageFolderDataset
from resdet.classification.transforms import (
    cifar_test_transform,
    cifar_train_transform,
    imagenet_test_transform,
    imagenet_train_transform,
)
from resdet.config.classification import DEFAULT_PATHS, ClsDataConfig
from resdet.data.shapes import ensure_shapes_classification
from resdet.utils.paths import dataset_root

Transform = Callable[[torch.Tensor], torch.Tensor]


def dataset_dir(cfg: ClsDataConfig) -> Path:
    """The dataset folder: `data.path` (under `data.root` when that is set, else as written), or
    the format's usual folder under the datasets root; the shapes set is generated on first use
    when no `path` is given."""
    if cfg.format == "shapes" and cfg.path is None:
        return ensure_shapes_classification(
            cfg.shapes_train_per_class, cfg.shapes_val_per_class, cfg.shapes_image_size
        )
    if cfg.path is not None and cfg.root is None:
        return Path(cfg.path)
    return dataset_root(cfg.root) / (
        cfg.path if cfg.path is not None else DEFAULT_PATHS[cfg.format]
    )


def build_transforms(cfg: ClsDataConfig, ten_crop: bool = False) -> tuple[Transform, Transform]:
    """(train transform, test transform) for `cfg.augment`."""
    if cfg.augment == "cifar":
        if ten_crop:
            raise ValueError(
                "test.ten_crop needs data.augment=imagenet (CIFAR tests on the whole image)"
            )
        return cifar_train_transform(cfg.crop_size, cfg.pad), cifar_test_transform(cfg.crop_size)
    return (
        imagenet_train_transform(cfg.crop_size, tuple(cfg.short_side)),
        imagenet_test_transform(cfg.crop_size, cfg.test_short_side, ten_crop),
    )


def build_dataset(
    cfg: ClsDataConfig, split: str, transform: Transform | None
) -> Dataset | CifarSplit:
    """One split of the configured dataset; it has `classes` (names in label order). CIFAR-10 is
    decoded into memory (`transform` unused: its augmentation runs per batch)."""
    folder = dataset_dir(cfg)
    if cfg.format == "cifar10":
        return load_cifar(folder, split)
    labels = cfg.labels_file
    if labels is not None and not Path(labels).is_absolute():
        labels = folder / labels
    return ImageFolderDataset(folder, split, transform, labels_file=labels)


def build_datasets(
    cfg: ClsDataConfig, ten_crop: bool = False
) -> tuple[Dataset | CifarSplit, Dataset | CifarSplit]:
    """(train set with augmentation, test set with the test transform), sharing one class list."""
    train_tf, test_tf = build_transforms(cfg, ten_crop)
    train = build_dataset(cfg, cfg.train_split, train_tf)
    test = build_dataset(cfg, cfg.test_split, test_tf)
    if train.classes != test.classes:
        raise ValueError(
            f"{dataset_dir(cfg)}: splits {cfg.train_split!r} and {cfg.test_split!r} have "
            f"different class lists"
        )
    return train, test
