"""Dataset names and mapping entries -> `DatasetSource`s (annotations only; no image is opened).

Registered names, under the dataset root (`data.root`, else `$RESDET_DATASETS`, else `datasets/`):
- `coco_2017_{train,val}`: `coco/annotations/instances_<split>2017.json`, images
  in `coco/<split>2017/`
- `coco_2014_{train,val}`: `coco/annotations/instances_<split>2014.json`, images
  in `coco/<split>2014/`
- `coco_2014_{minival,valminusminival}`: `coco/annotations/instances_<split>2014.json`,
  images in `coco/val2014/`
- `voc_{2007,2012}_{train,val,trainval,test}`: `VOCdevkit/VOC<year>/`, split file
  `ImageSets/Main/<split>.txt`

Mappings: `{format: coco, ann_file, image_dir}`, `{format: voc, root, split[, class_names]}` and
`{format: shapes, split[, num_images, image_size, seed, max_objects]}` (generated once into the
cache, then read through the COCO reader).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from resdet.data.coco import load_coco
from resdet.data.records import DatasetError, DatasetSource
from resdet.data.shapes import ensure_shapes_detection
from resdet.data.voc import load_voc


def _coco_names() -> dict[str, tuple[str, str]]:
    names = {f"coco_2017_{s}": (f"instances_{s}2017.json", f"{s}2017") for s in ("train", "val")}
    names.update(
        {f"coco_2014_{s}": (f"instances_{s}2014.json", f"{s}2014") for s in ("train", "val")}
    )
    names.update(
        {
            f"coco_2014_{s}": (f"instances_{s}2014.json", "val2014")
            for s in ("minival", "valminusminival")
        }
    )
    return names


COCO_NAMES = _coco_names()
VOC_NAMES = {
    f"voc_{y}_{s}": (y, s) for y in ("2007", "2012") for s in ("train", "val", "trainval", "test")
}
SHAPES_DEFAULTS = {"num_images": 200, "image_size": 192, "seed": 0, "max_objects": 5}


def dataset_root(root: str | None) -> Path:
    """`root` if given, else `$RESDET_DATASETS`, else `datasets/`."""
    return Path(root or os.environ.get("RESDET_DATASETS") or "datasets")


def _keys(
    entry: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...], where: str
) -> None:
    missing = [k for k in required if k not in entry]
    unknown = [k for k in entry if k not in required + optional + ("format",)]
    if missing or unknown:
        problem = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise DatasetError(
            f"{where}: {problem} (a {entry['format']} entry takes {', '.join(required + optional)})"
        )


def load_source(
    entry: str | dict[str, Any], root: str | None = None, cache_dir: str | None = None
) -> DatasetSource:
    """Read one dataset entry (a registered name or a mapping) into a `DatasetSource`."""
    base = dataset_root(root)
    if isinstance(entry, str):
        if entry in COCO_NAMES:
            ann, images = COCO_NAMES[entry]
            return load_coco(
                base / "coco" / "annotations" / ann, base / "coco" / images, name=entry
            )
        if entry in VOC_NAMES:
            year, split = VOC_NAMES[entry]
            return load_voc(base / "VOCdevkit" / f"VOC{year}", split, name=entry)
        raise DatasetError(
            f"unknown dataset name {entry!r}; known: {', '.join([*COCO_NAMES, *VOC_NAMES])}, "
            "or a mapping with `format: coco|voc|shapes`"
        )
    if not isinstance(entry, dict):
        raise DatasetError(f"a dataset entry must be a name or a mapping, got {entry!r}")
    fmt, where = entry.get("format"), f"dataset entry {entry!r}"
    if fmt == "coco":
        _keys(entry, ("ann_file", "image_dir"), (), where)
        return load_coco(
            base / entry["ann_file"], base / entry["image_dir"], name=str(entry["ann_file"])
        )
    if fmt == "voc":
        _keys(entry, ("root", "split"), ("class_names",), where)
        return load_voc(
            base / entry["root"],
            entry["split"],
            entry.get("class_names"),
            name=f"{entry['root']}:{entry['split']}",
        )
    if fmt == "shapes":
        _keys(entry, ("split",), tuple(SHAPES_DEFAULTS), where)
        args = {**SHAPES_DEFAULTS, **{k: v for k, v in entry.items() if k in SHAPES_DEFAULTS}}
        folder = ensure_shapes_detection(entry["split"], cache_dir=cache_dir, **args)
        return load_coco(
            folder / "annotations.json", folder / "JPEGImages", name=f"shapes_{entry['split']}"
        )
    raise DatasetError(f"{where}: `format` must be one of coco, voc, shapes")
