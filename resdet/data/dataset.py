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

The records stay in the sources' flat stores (`resdet.data.compact`): `dataset.records` is a
`RecordsView` over them in item order, so DataLoader workers forked from the process that holds the
dataset share those pages instead of copying them as they read Python objects.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from resdet.data.compact import CompactRecords, RecordsView, as_compact
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
        # one flat store per source (readers give one; a list of ImageRecords is packed)
        sources = [
            s
            if isinstance(s.records, CompactRecords)
            else replace(s, records=as_compact(s.records))
            for s in sources
        ]
        stores: list[CompactRecords] = [s.records for s in sources]  # type: ignore[misc]
        if masks and any(len(st) and not st.masks for st in stores):
            raise DatasetError("masks=True needs sources read with masks (load_source(masks=True))")
        self.sources = sources
        self.masks = masks
        self.class_names = list(sources[0].class_names)
        self.transforms = transforms
        self.train, self.use_difficult = train, use_difficult
        self.skip_bad_images, self.max_bad_images = skip_bad_images, max_bad_images
        self.bad_images = 0
        names = ", ".join(s.name for s in sources)
        total = sum(len(st) for st in stores)
        order = np.arange(total, dtype=np.int64)
        if train and filter_empty:
            train_counts = np.concatenate(
                [np.zeros(0, np.int64)]
                + [st.kept_counts(self._train_keep_all(st.difficult)) for st in stores]
            )
            crowd_counts = np.concatenate(
                [np.zeros(0, np.int64)] + [st.crowd_counts for st in stores]
            )
            kept = train_counts > 0
            if not kept.all():
                crowd_only = int((~kept & (crowd_counts > 0)).sum())
                warnings.warn(
                    f"{names}: {total - int(kept.sum())} of {total} images "
                    "have no box to train on "
                    f"and are left out ({crowd_only} with only crowd boxes)",
                    DatasetWarning,
                    stacklevel=2,
                )
            order = order[kept]
        if not len(order):
            after = " after filtering" if train and filter_empty else ""
            raise DatasetError(f"{names}: the dataset is empty{after}")
        #: the records of the dataset's images, in item order: a sequence over the sources'
        #: stores (`records[i]` builds an `ImageRecord`; `.heights` / `.widths` are columns)
        self.records = RecordsView(stores, order)
        if check_files:
            missing = [f for f in self.records.file_names() if not os.path.isfile(f)]
            if missing:
                raise DatasetError(
                    f"{names}: {len(missing)} image file(s) missing:\n  " + "\n  ".join(missing)
                )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _train_keep(self, r: ImageRecord) -> np.ndarray:
        return self._train_keep_all(r.difficult)

    def _train_keep_all(self, difficult: np.ndarray) -> np.ndarray:
        """Which of the boxes with these `difficult` flags are trained on."""
        if not self.train or self.use_difficult:
            return np.ones(len(difficult), dtype=bool)
        return ~difficult

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
