"""What a reader produces: one `ImageRecord` per image and a `DatasetSource` per dataset entry.

Records hold annotations only (no pixels). Boxes are `xyxy` float32 in absolute pixels of the
image's loaded frame, already clipped to the image; degenerate boxes were dropped by the reader.
A reader returns them as one `resdet.data.compact.CompactRecords` (flat arrays that forked
DataLoader workers share; `records[i]` builds the `ImageRecord`); a plain list of `ImageRecord`s
is accepted wherever records are, and `DetectionDataset` packs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass
class ImageRecord:
    """Annotations of one image.

    `boxes` (N, 4) float32 xyxy, `labels` (N,) int64 contiguous `0..C-1`, `difficult` (N,)
    bool (VOC's flag; all False for COCO), `crowd_boxes` (M, 4) float32 xyxy (COCO
    `iscrowd=1`, never trained on). `segmentations`: one COCO segmentation (polygons or RLE,
    `resdet.data.masks`) per box when the reader was asked for masks, else None. Records built
    from a `CompactRecords` hold their own array copies and polygons as float64 arrays (one per
    part, the values the JSON held); changing a record does not change the store.
    """

    file_name: str
    image_id: int | str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    crowd_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    segmentations: list[Any] | None = None


@dataclass
class DatasetSource:
    """One dataset entry after reading: its class list, records and what its evaluator needs.

    `protocol` is the evaluation protocol that scores it (`resdet.evaluation.build` picks the
    evaluator by it): "coco" (COCOeval against `ann_file`) or "voc" (VOC mAP over the records). It
    is not the entry's file layout (`format:` in a config's dataset entry): `voc_folder`
    entries are scored as "voc", `shapes` entries as "coco".
    `category_ids[k]` is the dataset's own id of contiguous label `k` (COCO ids; 1..C for VOC).
    `records`: the readers give a `CompactRecords`; any sequence of `ImageRecord`s works.
    `ann_file` is the COCO json the COCO evaluator scores against (None for VOC, whose
    evaluator uses the records). `class_names_from_data`: the reader collected `class_names` from
    the annotations (a `voc_folder` entry without `class_names`) rather than being given them.
    """

    name: str
    protocol: Literal["coco", "voc"]
    class_names: list[str]
    category_ids: list[int]
    records: Sequence[ImageRecord]
    ann_file: str | None = None
    class_names_from_data: bool = False
