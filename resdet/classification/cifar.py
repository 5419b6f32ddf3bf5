"""CIFAR-10 in memory: the official binary release or class folders of images, decoded once.

Two layouts are read from the same `data.path`, detected from what the folder holds:
- binary (`cifar-10-batches-bin/`): `data_batch_{1..5}.bin`, `test_batch.bin` and
  `batches.meta.txt`. Each `*.bin` file is a run of 3073-byte records: one label byte, then
  1024 red, 1024 green and 1024 blue bytes of a 32x32 image in row-major order;
  `batches.meta.txt` names the classes.
- folders: `train/<class>/*.{jpg,png}` and `test/<class>/*`; the sorted folder names are the label
  order (for CIFAR-10 the official one: airplane, automobile, bird, ...).

A split lives in memory as one uint8 tensor `[N, 3, 32, 32]` (150 MB for the 50k training images).
Decoding 60,000 small files takes seconds to minutes, so a folder split is decoded once and cached
under `$RESDET_CACHE/cifar/` (default `~/.cache/resdet`), keyed by the folder's content (a SHA-256
of every file's relative path and bytes: a replaced image is decoded again even when its size and
modification time are unchanged; hashing the 60,000 files of `cifar10_jpeg` takes about 0.5 s
from the page cache): the second run loads one file. A cache file that cannot be read back
(truncated, corrupt, not ours) is rebuilt with one warning.

Splits: `train` and `test`, plus the paper's held-out split of the training set (Sec. 4.2: "45k/5k
train/val split"): `val5k` is the last 500 images of each class in file order, `train45k` the rest.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from resdet.data.errors import DatasetError, DatasetWarning
from resdet.data.image_io import read_image
from resdet.utils.atomic import atomic_torch_save
from resdet.utils.paths import cache_root

IMAGE_SIZE = 32
RECORD_BYTES = 1 + 3 * IMAGE_SIZE * IMAGE_SIZE
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "test", "train45k", "val5k")
#: images per class held out of `train` by the `val5k` / `train45k` pair (5,000 over 10 classes)
HELD_OUT_PER_CLASS = 500
#: bump when the cached tensors' meaning changes, so old cache files are not reused
CACHE_VERSION = 2


class CifarFormatError(DatasetError):
    """A CIFAR folder or file is missing or malformed;
    the message names the folder, file or record."""


@dataclass(frozen=True)
class CifarSplit:
    """One split in memory: `images` uint8 `[N, 3, H, W]` RGB, `labels` int64 `[N]`, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def cifar_layout(folder: str | Path) -> str:
    """`"binary"` or `"folders"`, from what `folder` holds; an error naming the folder otherwise."""
    folder = Path(folder)
    if (folder / META_FILE).is_file() or any(folder.glob("*.bin")):
        return "binary"
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return "folders"
    if not folder.is_dir():
        raise CifarFormatError(f"{folder}: CIFAR folder not found (set data.path, or data.root)")
    raise CifarFormatError(
        f"{folder}: neither CIFAR layout: expected the binary release "
        f"({', '.join(TRAIN_FILES[:1])} ... {TEST_FILES[0]} and {META_FILE}) "
        "or class folders train/<class>/*.jpg and test/<class>/*.jpg"
    )


def load_cifar(
    folder: str | Path, split: str, *, cache_dir: str | Path | None = None, progress: bool = True
) -> CifarSplit:
    """Split `split` (see the module docstring) of the CIFAR set in `folder`, either layout."""
    if split not in SPLITS:
        raise ValueError(f"CIFAR split must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = Path(folder)
    source = "test" if split == "test" else "train"
    if cifar_layout(folder) == "binary":
        data = read_binary_split(folder, source)
    else:
        data = read_folder_split(folder / source, cache_dir=cache_dir, progress=progress)
    if split in ("train45k", "val5k"):
        keep = held_out_mask(data.labels, len(data.classes))
        keep = keep if split == "val5k" else ~keep
        data = CifarSplit(data.images[keep], data.labels[keep], data.classes)
    return data


def held_out_mask(
    labels: torch.Tensor, num_classes: int, per_class: int = HELD_OUT_PER_CLASS
) -> torch.Tensor:
    """Bool `[N]`: the last `per_class` images of each class (in file order) ->
    the `val5k` split."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) <= per_class:
            raise CifarFormatError(
                f"class {c} has {len(idx)} training images, too few to hold "
                f"{per_class} out for the val5k split"
            )
        mask[idx[-per_class:]] = True
    return mask


# ----------------------------------------------------------------------------- binary release


def read_cifar_meta(root: str | Path) -> list[str]:
    """Class names from `<root>/batches.meta.txt` (blank lines ignored), in label order."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise CifarFormatError(
            f"{path}: missing; the CIFAR-10 binary layout names its classes there"
        )
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
            f"({count} full records and {extra} bytes left over); "
            "the file is truncated or not CIFAR-10"
        )
    records = raw.reshape(count, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise CifarFormatError(
            f"{path}: record {i}: label {labels[i]} is not below the "
            f"{num_classes} classes of {META_FILE}"
        )
    # (N, 3072) channel-planar rows -> (N, 3, 32, 32)
    images = records[:, 1:].reshape(count, 3, IMAGE_SIZE, IMAGE_SIZE)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def read_binary_split(root: str | Path, split: str) -> CifarSplit:
    """`train` (the 5 data batches) or `test` of the binary release in `root`."""
    root = Path(root)
    classes = read_cifar_meta(root)
    parts = [
        read_cifar_batch(root / name, len(classes))
        for name in (TRAIN_FILES if split == "train" else TEST_FILES)
    ]
    return CifarSplit(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), classes)


# ----------------------------------------------------------------------------- class folders


def _folder_files(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names and `(file, label)` pairs in sorted order, or an error
    naming the folder."""
    if not split_dir.is_dir():
        raise CifarFormatError(f"{split_dir}: missing; the folder layout needs train/ and test/")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise CifarFormatError(f"{split_dir}: no class folders")
    files = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((split_dir / name).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise CifarFormatError(
            f"{split_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders"
        )
    return classes, files


def _content_key(split_dir: Path, files: list[tuple[Path, int]]) -> str:
    """A digest of every file's path (relative to `split_dir`) and bytes, and the cache version."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for f, _ in files:
        data = f.read_bytes()
        h.update(f"{f.relative_to(split_dir).as_posix()}\0{len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()[:20]


def _read_cache(path: Path, files: list[tuple[Path, int]], classes: list[str]) -> CifarSplit | None:
    """The split cached in `path`, or None when there is none; a file that cannot be read back or
    does not hold this split (truncated, corrupt, another layout) is one warning and None, so the
    caller decodes the folder again and replaces it."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = obj["images"], obj["labels"]
        expected = torch.tensor([label for _, label in files], dtype=torch.int64)
        if not (
            isinstance(images, torch.Tensor)
            and images.dtype == torch.uint8
            and images.dim() == 4
            and len(images) == len(files)
            and isinstance(labels, torch.Tensor)
            and torch.equal(labels, expected)
            and list(obj["classes"]) == classes
        ):
            raise ValueError("its tensors do not match the folder")
    except Exception as e:  # noqa: BLE001  any unreadable cache is rebuilt: the folder holds it all
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:160]
        warnings.warn(
            f"{path}: unreadable CIFAR cache file ({reason}); decoding the folder again",
            DatasetWarning,
            stacklevel=3,
        )
        return None
    return CifarSplit(images, labels, classes)


def read_folder_split(
    split_dir: str | Path, *, cache_dir: str | Path | None = None, progress: bool = True
) -> CifarSplit:
    """Decode `split_dir/<class>/*` into one uint8 tensor, or load it from the cache.

    Every image must have the first image's size; one that differs, or cannot be decoded, is an
    error naming the file.
    """
    split_dir = Path(split_dir)
    classes, files = _folder_files(split_dir)
    key = _content_key(split_dir, files)
    cached = cache_root(cache_dir) / "cifar" / f"{split_dir.parent.name}-{split_dir.name}-{key}.pt"
    hit = _read_cache(cached, files, classes)
    if hit is not None:
        return hit
    first = read_image(files[0][0])
    images = torch.empty((len(files), 3, *first.shape[:2]), dtype=torch.uint8)
    for i, (f, _) in enumerate(
        tqdm(
            files,
            desc=f"decoding {split_dir} (once, then cached)",
            disable=not progress,
            unit="img",
            mininterval=1.0,
        )
    ):
        pixels = first if i == 0 else read_image(f)
        if pixels.shape != first.shape:
            raise CifarFormatError(
                f"{f}: image is {pixels.shape[1]}x{pixels.shape[0]}, the others "
                f"{first.shape[1]}x{first.shape[0]}; a CIFAR split has one size"
            )
        images[i] = torch.from_numpy(pixels).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    atomic_torch_save({"images": images, "labels": labels, "classes": classes}, cached)
    return CifarSplit(images, labels, classes)
