"""CIFAR-10 in its official binary layout (`cifar-10-batches-bin/`), read without unpickling.

Each `*.bin` file is a run of 3073-byte records: one label byte, then 1024 red, 1024 green and
1024 blue bytes of a 32x32 image in row-major order. `batches.meta.txt` names the classes, one a line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from resdet.data.records import DatasetError

IMAGE_SIZE = 32
RECORD_BYTES = 1 + 3 * IMAGE_SIZE * IMAGE_SIZE
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"


class CifarFormatError(DatasetError):
    """A CIFAR binary file is missing or malformed; the message names the file and the record."""


def read_cifar_meta(root: str | Path) -> list[str]:
    """Class names from `<root>/batches.meta.txt` (blank lines ignored), in label order."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise CifarFormatError(f"{path}: missing; the CIFAR-10 binary layout names its classes there")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise CifarFormatError(f"{path}: no class names")
    if len(names) > 256:
        raise CifarFormatError(f"{path}: {len(names)} classes do not fit the one-byte label")
    return names


def read_cifar_batch(path: str | Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one binary batch file.

    Returns `images` uint8 `[N, 3, 32, 32]` (RGB) and `labels` int64 `[N]` in `0..num_classes-1`.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarFormatError(f"{path}: missing")
    raw = np.fromfile(path, dtype=np.uint8)
    count, extra = divmod(raw.size, RECORD_BYTES)
    if extra or count == 0:
        raise CifarFormatError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte records "
            f"({count} full records and {extra} bytes left over); the file is truncated or not CIFAR-10")
    records = raw.reshape(count, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise CifarFormatError(f"{path}: record {i}: label {labels[i]} is not below the "
                               f"{num_classes} classes of {META_FILE}")
    # (N, 3072) channel-planar rows -> (N, 3, 32, 32)
    images = records[:, 1:].reshape(count, 3, IMAGE_SIZE, IMAGE_SIZE)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


class Cifar10Binary(Dataset):
    """CIFAR-10 from `root` = a `cifar-10-batches-bin` folder; `split` is "train" (5 files) or "test".

    Item `i` is `(image, label)`: `transform(image)` of a uint8 `[3, 32, 32]` RGB tensor, and an int.
    The whole split lives in memory as uint8 (150 MB for the training set).
    """

    def __init__(self, root: str | Path, split: str = "train",
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.classes = read_cifar_meta(self.root)
        parts = [read_cifar_batch(self.root / name, len(self.classes))
                 for name in (TRAIN_FILES if split == "train" else TEST_FILES)]
        self.images = torch.cat([p[0] for p in parts])
        self.labels = torch.cat([p[1] for p in parts])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])
