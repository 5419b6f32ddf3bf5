"""`DetectionDataset`: concatenated `DatasetSource`s, filtered for training,
decoded and transformed.

An item is `(image, target)`: `image` a float32 Tensor (3, H, W) RGB in 0..1 after the transforms;
`target` a dict with `boxes` (N, 4) float32 xyxy in the transformed image's pixels, `labels` (N,)
int64 in `0..C-1`, `image_id` (int for COCO, str for VOC), `orig_size` `(H0, W0)` of the decoded
file and `file_name`; with `masks=True` also `masks` (N, H, W) uint8, one per box, in the
transformed image's pixels. Training targets hold the boxes to learn from: no crowd boxes, and no
VOC `difficult` objects unless `use_difficult`. The evaluator keeps its own ground truth.

Checks done before training starts: every image file exists (one error lists all missing paths) and
the dataset is not empty after filtering. Undecodable images fail with a `BadImageError` naming the
file and `data.skip_bad_images` (one line, also when raised in a DataLoader worker), or, with
`skip_bad_images`, are replaced by the next index and counted (per process) up to
`max_bad_images`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from resdet.data.errors import DatasetError, DatasetWarning
from resdet.data.image_io import BadImageError, read_image
from resdet.data.masks import rasterize
from resdet.data.records import DatasetSource, ImageRecord

Transform = Callable[[torch.Tensor, dict[str, Any]], tuple[torch.Tensor, dict[str, Any]]]


class DetectionDataset(Dataset):
    """Detection images of one or more sources with the same class list.
    See the module docstring."""

    def __init__(
        self,
        sources: list[DatasetSource],
        transforms: Transform | None = None,
        *,
        train: bool,
        filter_empty: bool = True,
        use_difficult: bool = False,
        skip_bad_images: bool = False,
        max_bad_images: int = 100,
        check_files: bool = True,
        masks: bool = False,
    ) -> None:
        if not sources:
            raise DatasetError("no dataset entries given")
        for s in sources[1:]:
            if s.class_names != sources[0].class_names:
                raise DatasetError(
                    f"cannot concatenate {s.name} with {sources[0].name}: their class lists differ "
                    f"({len(s.class_names)} vs {len(sources[0].class_names)} classes)"
                )
        if masks and any(r.segmentations is None for s in sources for r in s.records):
            raise DatasetError("masks=True needs sources read with masks (load_source(masks=True))")
        self.sources = sources
        self.masks = masks
        self.class_names = list(sources[0].class_names)
        self.transforms = transforms
        self.train, self.use_difficult = train, use_difficult
        self.skip_bad_images, self.max_bad_images = skip_bad_images, max_bad_images
        self.bad_images = 0
        records = [r for s in sources for r in s.records]
        names = ", ".join(s.name for s in sources)
        if train and filter_empty:
            kept = [r for r in records if len(self._train_boxes(r)[0])]
            if len(kept) < len(records):
                crowd_only = sum(
                    1 for r in records if not len(self._train_boxes(r)[0]) and len(r.crowd_boxes)
                )
                warnings.warn(
                    f"{names}: {len(records) - len(kept)} of {len(records)} images "
                    "have no box to train on "
                    f"and are left out ({crowd_only} with only crowd boxes)",
                    DatasetWarning,
                    stacklevel=2,
                )
            records = kept
        if not records:
            after = " after filtering" if train and filter_empty else ""
            raise DatasetError(f"{names}: the dataset is empty{after}")
        if check_files:
            missing = [r.file_name for r in records if not os.path.isfile(r.file_name)]
            if missing:
                raise DatasetError(
                    f"{names}: {len(missing)} image file(s) missing:\n  " + "\n  ".join(missing)
                )
        self.records: list[ImageRecord] = records

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _train_keep(self, r: ImageRecord) -> np.ndarray:
        if not self.train or self.use_difficult:
            return np.ones(len(r.boxes), dtype=bool)
        return ~r.difficult

    def _train_boxes(self, r: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
        keep = self._train_keep(r)
        return r.boxes[keep], r.labels[keep]

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, r: ImageRecord) -> np.ndarray:
        image = read_image(r.file_name)
        if image.shape[:2] != (r.height, r.width):
            raise BadImageError(
                f"{r.file_name}: decoded size {image.shape[0]}x{image.shape[1]} (HxW, EXIF "
                f"orientation applied) differs from the annotation's {r.height}x{r.width}"
            )
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.records[index]
        try:
            image = self._decode(r)
        except BadImageError as e:
            if not self.skip_bad_images:
                raise BadImageError(
                    f"{e} (data.skip_bad_images=true skips such files, counting them)"
                ) from None
            self.bad_images += 1
            if self.bad_images > self.max_bad_images:
                raise BadImageError(
                    f"more than data.max_bad_images={self.max_bad_images} bad images; last: {e}"
                ) from None
            warnings.warn(
                f"skipping bad image ({self.bad_images} so far in this process): {e}",
                DatasetWarning,
            )
            return self[(index + 1) % len(self)]
        boxes, labels = self._train_boxes(r)
        target: dict[str, Any] = {
            "boxes": boxes.copy(),
            "labels": labels.copy(),
            "image_id": r.image_id,
            "orig_size": (r.height, r.width),
            "file_name": r.file_name,
        }
        if self.masks:
            segs = [s for s, k in zip(r.segmentations, self._train_keep(r)) if k]
            target["masks"] = rasterize(segs, r.height, r.width)
        # (H, W, 3) array -> (3, H, W) uint8 view (channels-last strides, no copy)
        # for the transforms
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        if self.transforms is not None:
            tensor, target = self.transforms(tensor, target)
        target["boxes"] = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
        target["labels"] = torch.as_tensor(target["labels"], dtype=torch.int64)
        if self.masks:
            target["masks"] = torch.as_tensor(np.ascontiguousarray(target["masks"]))
        return tensor.contiguous().float().div_(255.0), target
