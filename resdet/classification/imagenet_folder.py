"""Image classification sets in the ImageNet folder layout.

```
<root>/train/<wnid>/*.JPEG            one folder per class; the sorted folder names give labels
                                      0..C-1
<root>/val/<wnid>/*.JPEG              the same, or
<root>/val/*.JPEG + a labels file     lines `<image> <wnid>` or `<image> <index>` (space or comma),
                                      or Kaggle's `LOC_val_solution.csv`
                                      (`ImageId,PredictionString`)
```
The class list always comes from `<root>/train` when it exists, so train and val labels agree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from resdet.data.errors import DatasetError
from resdet.data.image_io import read_image

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
#: label files looked for in `<root>` when a split folder is flat and none is given
DEFAULT_LABEL_FILES = ("{split}_labels.txt", "LOC_{split}_solution.csv")


class ImageFolderError(DatasetError):
    """The folder layout or a labels file is wrong; the message names the folder, file and line."""


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _images_in(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and _is_image(e.name))


def read_label_file(path: Path, classes: list[str]) -> dict[str, int]:
    """Map image stem -> label from a labels file (see the module docstring for
    the accepted lines)."""
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or (n == 1 and line.lower().startswith("imageid")):
            continue
        fields = line.replace(",", " ").split()
        if len(fields) < 2:
            raise ImageFolderError(f"{path}:{n}: expected `<image> <class>`, got {line!r}")
        name, cls = fields[0], fields[1]
        if cls in index:
            label = index[cls]
        elif cls.isdigit() and int(cls) < len(classes):
            label = int(cls)
        else:
            raise ImageFolderError(
                f"{path}:{n}: class {cls!r} is neither one of the {len(classes)} class "
                f"folders nor an index below {len(classes)}"
            )
        out[Path(name).stem] = label
    return out


class ImageFolderDataset(Dataset):
    """One split (`train`, `val`, ...) of an ImageNet-layout folder.

    Item `i` is `(transform(image), label)` with `image` a uint8 RGB tensor `[3, H, W]` decoded by
    `resdet.data.image_io.read_image` (grey and CMYK files converted, EXIF orientation applied) and
    `label` an int in `0..len(classes)-1`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        labels_file: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        folder = self.root / split
        if not folder.is_dir():
            raise ImageFolderError(
                f"{folder}: split folder not found (expected {self.root}/{split}/<class>/)"
            )
        self.transform = transform
        train = self.root / "train"
        own = _class_folders(folder)
        self.classes = _class_folders(train) if train.is_dir() else own
        if not self.classes:
            raise ImageFolderError(f"{train if train.is_dir() else folder}: no class folders")
        if own:
            self.samples = self._scan_class_folders(folder, own)
        else:
            self.samples = self._scan_flat(folder, split, labels_file)

    def _scan_class_folders(self, folder: Path, own: list[str]) -> list[tuple[str, int]]:
        index = {c: i for i, c in enumerate(self.classes)}
        stray = _images_in(folder)
        if stray:
            raise ImageFolderError(
                f"{folder}: has both class folders and loose images ({stray[0]}, ...)"
            )
        samples = []
        for name in own:
            if name not in index:
                raise ImageFolderError(
                    f"{folder / name}: class folder not among the {len(self.classes)} "
                    f"classes of {self.root / 'train'}"
                )
            images = _images_in(folder / name)
            if not images:
                raise ImageFolderError(
                    f"{folder / name}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)}"
                    f" files); remove it or add its images"
                )
            samples += [(str(folder / name / f), index[name]) for f in images]
        return samples

    def _scan_flat(
        self, folder: Path, split: str, labels_file: str | Path | None
    ) -> list[tuple[str, int]]:
        if labels_file is None:
            found = [self.root / p.format(split=split) for p in DEFAULT_LABEL_FILES]
            found = [p for p in found if p.is_file()]
            if not found:
                raise ImageFolderError(
                    f"{folder}: flat image folder needs a labels file; none given and "
                    f"none of {[p.format(split=split) for p in DEFAULT_LABEL_FILES]} "
                    f"in {self.root}"
                )
            labels_file = found[0]
        labels_file = Path(labels_file)
        if not labels_file.is_file():
            raise ImageFolderError(f"{labels_file}: labels file not found")
        labels = read_label_file(labels_file, self.classes)
        images = _images_in(folder)
        if not images:
            raise ImageFolderError(f"{folder}: no images")
        samples = []
        for f in images:
            stem = Path(f).stem
            if stem not in labels:
                raise ImageFolderError(f"{labels_file}: no label for image {folder / f}")
            samples.append((str(folder / f), labels[stem]))
        return samples

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        # (H, W, 3) -> (3, H, W); read_image raises BadImageError naming the file
        image = torch.from_numpy(read_image(path).copy()).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return image, label
