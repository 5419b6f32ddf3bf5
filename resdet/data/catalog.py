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

Mappings: `{format: coco, ann_file, image_dir}`, `{format: voc, root, split[, class_names]}`,
`{format: voc_folder, image_dir, ann_dir[, class_names][, split_file | split: {fraction, seed,
part}]}` (a flat labelled folder, `resdet.data.voc_folder`) and `{format: shapes, split[,
num_images, image_size, seed, max_objects]}` (generated once into the cache, then read through the
COCO reader).
"""

from __future__ import annotations

from typing import Any

from resdet.data.coco import load_coco
from resdet.data.errors import DatasetError
from resdet.data.records import DatasetSource
from resdet.data.shapes import ensure_shapes_detection
from resdet.data.voc import load_voc
from resdet.data.voc_folder import FolderSplit, load_voc_folder
from resdet.utils.paths import dataset_root


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


def _class_names(entry: dict[str, Any], where: str) -> list[str] | None:
    names = entry.get("class_names")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise DatasetError(f"{where}: class_names must be a list of names, got {names!r}")
    return names


def _no_masks(masks: bool, where: str) -> None:
    if masks:
        raise DatasetError(
            f"{where}: VOC-format datasets have boxes only, but a mask model "
            "(model.mask_head.enabled) trains on instance masks: use a COCO-format dataset with "
            "'segmentation', or model.mask_head.enabled=false"
        )


def load_source(
    entry: str | dict[str, Any],
    root: str | None = None,
    cache_dir: str | None = None,
    *,
    duplicate_iou: float | None = 0.9,
    folder_class_names: list[str] | None = None,
    masks: bool = False,
) -> DatasetSource:
    """Read one dataset entry (a registered name or a mapping) into a `DatasetSource`.

    `masks`: read instance masks too (a Mask R-CNN's training set); only COCO-format entries (and
    shapes) have them, so a VOC entry is then an error.
    `duplicate_iou` goes to the VOC and voc_folder readers (`data.duplicate_iou`);
    `folder_class_names` is the class list of a voc_folder entry that gives none (the training
    set's collected names, for its test entries), instead of collecting them from its XMLs.
    """
    base = dataset_root(root)
    if isinstance(entry, str):
        if entry in COCO_NAMES:
            ann, images = COCO_NAMES[entry]
            return load_coco(
                base / "coco" / "annotations" / ann, base / "coco" / images, name=entry, masks=masks
            )
        if entry in VOC_NAMES:
            _no_masks(masks, repr(entry))
            year, split = VOC_NAMES[entry]
            return load_voc(
                base / "VOCdevkit" / f"VOC{year}", split, name=entry, duplicate_iou=duplicate_iou
            )
        raise DatasetError(
            f"unknown dataset name {entry!r}; known: {', '.join([*COCO_NAMES, *VOC_NAMES])}, "
            "or a mapping with `format: coco|voc|voc_folder|shapes`"
        )
    if not isinstance(entry, dict):
        raise DatasetError(f"a dataset entry must be a name or a mapping, got {entry!r}")
    fmt, where = entry.get("format"), f"dataset entry {entry!r}"
    if fmt == "coco":
        _keys(entry, ("ann_file", "image_dir"), (), where)
        return load_coco(
            base / entry["ann_file"],
            base / entry["image_dir"],
            name=str(entry["ann_file"]),
            masks=masks,
        )
    if fmt in ("voc", "voc_folder"):
        _no_masks(masks, where)
    if fmt == "voc":
        _keys(entry, ("root", "split"), ("class_names",), where)
        return load_voc(
            base / entry["root"],
            entry["split"],
            _class_names(entry, where),
            name=f"{entry['root']}:{entry['split']}",
            duplicate_iou=duplicate_iou,
        )
    if fmt == "voc_folder":
        _keys(entry, ("image_dir", "ann_dir"), ("class_names", "split_file", "split"), where)
        if "split_file" in entry and "split" in entry:
            raise DatasetError(f"{where}: give split_file or split, not both")
        split = FolderSplit.from_mapping(entry["split"], where) if "split" in entry else None
        split_file = entry.get("split_file")
        return load_voc_folder(
            base / entry["image_dir"],
            base / entry["ann_dir"],
            _class_names(entry, where) or folder_class_names,
            split_file=None if split_file is None else base / split_file,
            split=split,
            duplicate_iou=duplicate_iou,
            name=str(entry["ann_dir"]) + (f":{split.part}" if split else ""),
        )
    if fmt == "shapes":
        _keys(entry, ("split",), tuple(SHAPES_DEFAULTS), where)
        args = {**SHAPES_DEFAULTS, **{k: v for k, v in entry.items() if k in SHAPES_DEFAULTS}}
        folder = ensure_shapes_detection(entry["split"], cache_dir=cache_dir, **args)
        return load_coco(
            folder / "annotations.json",
            folder / "JPEGImages",
            name=f"shapes_{entry['split']}",
            masks=masks,
        )
    raise DatasetError(f"{where}: `format` must be one of coco, voc, voc_folder, shapes")
