"""The records path as it was before `resdet.data.compact` (frozen here as the reference the
equality tests compare the compact records against): the COCO reader's list of `ImageRecord`s
with polygons as lists of Python floats, and `DetectionDataset` holding that list."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from resdet.data.checks import DropCounter, DropKind, boxes_array, check_relative, clip_box, finite
from resdet.data.coco import _get, _int, read_coco_json
from resdet.data.dataset import DetectionDataset
from resdet.data.errors import DatasetError
from resdet.data.masks import FEW_POINTS, OUTSIDE, RLE_SIZE, Segmentation
from resdet.data.records import DatasetSource, ImageRecord


def _polygons(value: list[Any], height: int, width: int, where: str) -> Segmentation | DropKind:
    parts = []
    for k, part in enumerate(value):
        field = f"'segmentation'[{k}]"
        if not isinstance(part, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in part
        ):
            raise DatasetError(f"{where}: field {field} must be a list of numbers x1, y1, x2, ...")
        if len(part) % 2:
            raise DatasetError(f"{where}: field {field} has an odd number of coordinates")
        if not all(math.isfinite(v) for v in part):
            raise DatasetError(f"{where}: field {field} is not finite")
        if len(part) < 6:
            return FEW_POINTS
        parts.append([float(v) for v in part])
    xs = [x for p in parts for x in p[0::2]]
    ys = [y for p in parts for y in p[1::2]]
    if max(xs) <= 0 or min(xs) >= width or max(ys) <= 0 or min(ys) >= height:
        return OUTSIDE
    return parts


def _rle(value: dict[str, Any], height: int, width: int, where: str) -> Segmentation | DropKind:
    size, counts = value.get("size"), value.get("counts")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise DatasetError(f"{where}: field 'segmentation.size' must be [height, width]")
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise DatasetError(f"{where}: field 'segmentation.counts' must be run lengths >= 0")
        if size != [height, width] or sum(counts) != height * width:
            return RLE_SIZE
        area = sum(counts[1::2])
    elif isinstance(counts, str):
        if size != [height, width]:
            return RLE_SIZE
        try:
            area = int(mask_utils.area({"size": size, "counts": counts.encode()}))
        except Exception as e:  # pycocotools raises bare Exceptions on bad strings
            raise DatasetError(
                f"{where}: field 'segmentation.counts' is not COCO RLE: {e}"
            ) from None
    else:
        raise DatasetError(f"{where}: field 'segmentation.counts' must be a string or a list")
    return value if area > 0 else OUTSIDE


def legacy_check_segmentation(
    value: Any, height: int, width: int, where: str
) -> Segmentation | DropKind | None:
    """The annotation's `segmentation` if usable, the `DropKind` to count it under if not, or None
    when it has none (absent or `[]`). Raises `DatasetError` naming `where` for malformed ones."""
    if value is None or (isinstance(value, list) and not value):
        return None
    if isinstance(value, list):
        return _polygons(value, height, width, where)
    if isinstance(value, dict):
        return _rle(value, height, width, where)
    raise DatasetError(
        f"{where}: field 'segmentation' must be polygons [[x, y, ...], ...] or an RLE "
        f"{{size, counts}}, got {type(value).__name__}"
    )


def legacy_load_coco(
    ann_file: str | Path, image_dir: str | Path, name: str | None = None, *, masks: bool = False
) -> DatasetSource:
    """`resdet.data.coco.load_coco` as it was: a list of `ImageRecord`s, polygons as lists of
    Python floats."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data = read_coco_json(ann_file)
    src = str(ann_file)

    cats: dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        where = f"{src}: categories[{i}]"
        cid = _int(c, "id", where)
        if cid in cats:
            raise DatasetError(f"{where} (id {cid}): duplicate category id")
        cats[cid] = str(_get(c, "name", where))
    category_ids = sorted(cats)
    label_of = {cid: k for k, cid in enumerate(category_ids)}

    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(data["images"]):
        where = f"{src}: images[{i}]"
        iid = _int(img, "id", where)
        where = f"{src}: image id {iid}"
        if iid in images:
            raise DatasetError(f"{where}: duplicate image id")
        file_name = _get(img, "file_name", where)
        if not isinstance(file_name, str):
            raise DatasetError(f"{where}: field 'file_name' must be a string, got {file_name!r}")
        check_relative(file_name, where)
        h, w = _int(img, "height", where), _int(img, "width", where)
        if h <= 0 or w <= 0:
            raise DatasetError(f"{where}: fields 'height'/'width' must be positive, got {h}x{w}")
        images[iid] = {
            "file_name": file_name,
            "height": h,
            "width": w,
            "boxes": [],
            "labels": [],
            "crowd": [],
            "segmentations": [],
        }

    seen: set[int] = set()
    dropped = DropCounter()
    unmasked: list[int] = []
    for i, ann in enumerate(data.get("annotations", [])):
        aid = _int(ann, "id", f"{src}: annotations[{i}]")
        where = f"{src}: annotation id {aid}"
        if aid in seen:
            raise DatasetError(f"{where}: duplicate annotation id")
        seen.add(aid)
        iid = _int(ann, "image_id", where)
        if iid not in images:
            raise DatasetError(f"{where}: field 'image_id' {iid} is not in 'images'")
        cid = _int(ann, "category_id", where)
        if cid not in label_of:
            raise DatasetError(f"{where}: field 'category_id' {cid} is not in 'categories'")
        bbox = _get(ann, "bbox", where)
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DatasetError(f"{where}: field 'bbox' must be [x, y, w, h], got {bbox!r}")
        x, y, bw, bh = (finite(v, where, "bbox") for v in bbox)
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise DatasetError(f"{where}: field 'iscrowd' must be 0 or 1, got {crowd!r}")
        img = images[iid]
        box = clip_box(x, y, x + bw, y + bh, img["width"], img["height"])
        if box is None:
            dropped.drop(f"annotation id {aid}")
        elif crowd:
            img["crowd"].append(box)
        else:
            if masks:
                seg = legacy_check_segmentation(
                    ann.get("segmentation"), img["height"], img["width"], where
                )
                if seg is None:
                    unmasked.append(aid)
                    continue
                if isinstance(seg, DropKind):
                    dropped.drop(f"annotation id {aid}", seg)
                    continue
                img["segmentations"].append(seg)
            img["boxes"].append(box)
            img["labels"].append(label_of[cid])
    dropped.warn(src)
    if unmasked:
        total = len(unmasked) + sum(len(img["boxes"]) for img in images.values())
        raise DatasetError(
            f"{src}: {len(unmasked)} of {total} annotations have no 'segmentation' (e.g. "
            f"annotation id {unmasked[0]}); a mask model (model.mask_head.enabled) trains on "
            "instance masks" + (": this file has boxes only" if len(unmasked) == total else "")
        )

    records = []
    for iid, img in images.items():
        n = len(img["boxes"])
        records.append(
            ImageRecord(
                file_name=str(image_dir / img["file_name"]),
                image_id=iid,
                height=img["height"],
                width=img["width"],
                boxes=boxes_array(img["boxes"]),
                labels=np.asarray(img["labels"], dtype=np.int64),
                difficult=np.zeros(n, dtype=bool),
                crowd_boxes=boxes_array(img["crowd"]),
                segmentations=img["segmentations"] if masks else None,
            )
        )
    return DatasetSource(
        name=name or src,
        protocol="coco",
        class_names=[cats[c] for c in category_ids],
        category_ids=category_ids,
        records=records,
        ann_file=str(ann_file),
    )


class LegacyDataset(DetectionDataset):
    """`DetectionDataset` holding a list of records, filtered as before (items are built by the
    same `__getitem__`)."""

    def __init__(self, sources, transforms=None, *, train, filter_empty=True, masks=False):
        self.sources, self.masks = sources, masks
        self.class_names = list(sources[0].class_names)
        self.transforms = transforms
        self.train, self.use_difficult = train, False
        self.skip_bad_images, self.max_bad_images, self.bad_images = False, 100, 0
        records = [r for s in sources for r in s.records]
        if train and filter_empty:
            records = [r for r in records if len(self._train_boxes(r)[0])]
        assert all(os.path.isfile(r.file_name) for r in records)
        self.records = records
