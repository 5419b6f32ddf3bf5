"""COCO detection reader: instances json + image folder -> `DatasetSource`.

- Category ids, sorted, map to contiguous labels `0..C-1` (`DatasetSource.category_ids` maps back).
- `bbox` `[x, y, w, h]` becomes xyxy, clipped to the image; boxes empty after clipping are dropped
  and counted in one summary warning. Crowd annotations (`iscrowd=1`) go to `crowd_boxes`.
- With `masks=True` (a Mask R-CNN trains on it) every non-crowd annotation's `segmentation`
  (polygons or RLE) is checked (`resdet.data.masks`) and kept in `ImageRecord.segmentations`;
  unusable ones drop the annotation, counted in the same warning; a file without them is an error.
- Invalid input is a `DatasetError` naming the file, the record and the field: malformed json, a
  missing field, NaN/inf coordinates, duplicate annotation ids, unknown category or image ids,
  absolute or `..` file names.

The json is parsed directly rather than through `pycocotools.COCO`, which checks none of the above;
pycocotools scores the predictions (`resdet.evaluation.coco_evaluator`).

The records come back as one `CompactRecords` (flat arrays; `resdet.data.compact`). With `cache`
(by default for files of `MIN_CACHED_BYTES` or more) a file is parsed once: its records go to
`$RESDET_CACHE/records/` keyed by the file's path, size and mtime, `READER_VERSION` and the
options, and later reads (every DDP rank, every later run) map them (`resdet.data.records_cache`);
the drop warning is stored with them and repeated on every read.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from resdet.data.checks import DropCounter, DropKind, check_relative, clip_box, finite
from resdet.data.compact import CompactRecords, RecordsBuilder
from resdet.data.errors import DatasetError, DatasetWarning
from resdet.data.masks import check_segmentation
from resdet.data.records import DatasetSource
from resdet.data.records_cache import cached_records, file_identity, trim_heap

#: Bump when what `load_coco` makes of the same file changes: cached records of older versions
#: are then not used.
READER_VERSION = 1
#: `load_coco(cache=None)` caches files of at least this size (smaller ones parse in milliseconds)
MIN_CACHED_BYTES = 1 << 20


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Parse a COCO json file; malformed json is a `DatasetError` with line and column."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise DatasetError(
            f"{path}: the top level must be an object with 'images', 'annotations', 'categories'"
        )
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: field {key!r} is missing or not a list")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"{path}: field 'annotations' is not a list")
    return data


def _get(record: dict[str, Any], name: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected an object, got {record!r}")
    if name not in record:
        raise DatasetError(f"{where}: missing field {name!r}")
    return record[name]


def _int(record: dict[str, Any], name: str, where: str) -> int:
    value = _get(record, name, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetError(f"{where}: field {name!r} must be an integer, got {value!r}")
    return value


def load_coco(
    ann_file: str | Path,
    image_dir: str | Path,
    name: str | None = None,
    *,
    masks: bool = False,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
) -> DatasetSource:
    """Read a COCO instances file; image paths are `image_dir / file_name`. Opens no image.
    `masks`: also read and check the instance masks (see the module docstring). `cache`: parse
    once and map the records afterwards (None: for files of `MIN_CACHED_BYTES` or more), under
    `cache_dir` (default `$RESDET_CACHE`)."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    src = str(ann_file)
    identity = file_identity(ann_file) if cache is not False else None
    if identity is not None and (cache or identity["size"] >= MIN_CACHED_BYTES):
        inputs = {
            "reader": "coco",
            "version": READER_VERSION,
            **identity,
            "image_dir": str(image_dir),
            "masks": masks,
        }
        records, meta = cached_records(
            inputs, lambda: _parse(ann_file, image_dir, masks), cache_dir=cache_dir, describe=src
        )
    else:
        records, meta = _parse(ann_file, image_dir, masks)
    trim_heap()  # the parsed JSON's objects are freed: give their memory back
    for text in meta["warnings"]:
        warnings.warn(text, DatasetWarning, stacklevel=2)
    return DatasetSource(
        name=name or src,
        protocol="coco",
        class_names=meta["class_names"],
        category_ids=meta["category_ids"],
        records=records,
        ann_file=str(ann_file),
    )


def _parse(ann_file: Path, image_dir: Path, masks: bool) -> tuple[CompactRecords, dict[str, Any]]:
    """The file's records and meta (`class_names`, `category_ids`, `warnings`: the drop summary
    lines, not yet emitted)."""
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
                seg = check_segmentation(
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
    message = dropped.message(src)
    if unmasked:
        if message is not None:
            warnings.warn(message, DatasetWarning, stacklevel=3)
        total = len(unmasked) + sum(len(img["boxes"]) for img in images.values())
        raise DatasetError(
            f"{src}: {len(unmasked)} of {total} annotations have no 'segmentation' (e.g. "
            f"annotation id {unmasked[0]}); a mask model (model.mask_head.enabled) trains on "
            "instance masks" + (": this file has boxes only" if len(unmasked) == total else "")
        )
    del data

    builder = RecordsBuilder(masks=masks)
    for iid in list(images):
        img = images.pop(iid)  # free each image's lists as it is packed
        builder.add(
            str(image_dir / img["file_name"]),
            iid,
            img["height"],
            img["width"],
            img["boxes"],
            img["labels"],
            None,
            img["crowd"],
            img["segmentations"] if masks else None,
        )
    meta = {
        "class_names": [cats[c] for c in category_ids],
        "category_ids": category_ids,
        "warnings": [] if message is None else [message],
    }
    return builder.build(), meta
