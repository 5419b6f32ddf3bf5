"""The dataset formats, one table entry each, and the registered dataset names.

`FORMATS[<format>]` says in one place, for the `format:` a dataset mapping names:
- `required` / `optional`: the keys such a mapping takes (besides `format`);
- `read`: how it is read into a `DatasetSource` (a small adapter around its reader module);
- `files`: what must exist under the datasets root for it to be installed (what
  `resdet.runs.detection.missing_datasets` reports before anything starts; none for generated data);
- `protocol`: the evaluation protocol that scores what it reads (`DatasetSource.protocol`, which
  `resdet.evaluation.build` picks the evaluator by);
- `masks`: whether it can hold instance masks (a mask model's training set).

`resdet.data.catalog.load_source` reads every entry through this table. A new format is a reader
module (`resdet/data/<format>.py`, returning a `DatasetSource`), its `_read_*` / `_*_files` pair
here and one `FORMATS` line.

Mappings (paths relative to the datasets root): `{format: coco, ann_file, image_dir}`,
`{format: voc, root, split[, class_names]}`, `{format: voc_folder, image_dir, ann_dir[,
class_names][, split_file | split: {fraction, seed, part}]}` (a flat labelled folder,
`resdet.data.voc_folder`) and `{format: shapes, split[, num_images, image_size, seed, max_objects]}`
(generated once into the cache, then read through the COCO reader).

Registered names (`NAMES`) stand for coco and voc mappings under the datasets root:
- `coco_2017_{train,val}`: `coco/annotations/instances_<split>2017.json`, images
  in `coco/<split>2017/`
- `coco_2014_{train,val}`: `coco/annotations/instances_<split>2014.json`, images
  in `coco/<split>2014/`
- `coco_2014_{minival,valminusminival}`: `coco/annotations/instances_<split>2014.json`,
  images in `coco/val2014/`
- `voc_{2007,2012}_{train,val,trainval,test}`: `VOCdevkit/VOC<year>/`, split file
  `ImageSets/Main/<split>.txt`
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from resdet.data.coco import load_coco
from resdet.data.errors import DatasetError
from resdet.data.records import DatasetSource
from resdet.data.shapes import ensure_shapes_detection
from resdet.data.voc import load_voc, split_file
from resdet.data.voc_folder import FolderSplit, load_voc_folder

#: A dataset mapping: `{"format": <a FORMATS key>, ...its keys}`.
Entry = dict[str, Any]


class Expected(NamedTuple):
    """A file (or folder) that must exist for an entry to be installed."""

    path: Path
    is_folder: bool = False


@dataclass(frozen=True)
class ReadArgs:
    """What `load_source` hands every reader besides the (checked) mapping."""

    #: the datasets root the mapping's relative paths are taken under
    root: Path
    #: how errors name the entry
    where: str
    #: the registered name the mapping stands for; None: the reader names the source
    name: str | None
    #: read instance masks too
    masks: bool
    #: `data.duplicate_iou`, for the VOC-style readers
    duplicate_iou: float | None
    #: a voc_folder entry's classes when it gives none (the training set's collected names)
    folder_class_names: list[str] | None
    #: `data.cache_dir`, where generated data and the records cache go
    cache_dir: str | None


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset file layout (see the module docstring)."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    read: Callable[[Entry, ReadArgs], DatasetSource]
    #: tolerates a malformed mapping (names what it can): `load_source` reports those
    files: Callable[[Entry, Path], list[Expected]]
    protocol: Literal["coco", "voc"]
    masks: bool


def class_names_key(entry: Entry, where: str) -> list[str] | None:
    """The mapping's `class_names`, checked: None or a list of non-empty names."""
    names = entry.get("class_names")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise DatasetError(f"{where}: class_names must be a list of names, got {names!r}")
    return names


def _read_coco(entry: Entry, args: ReadArgs) -> DatasetSource:
    return load_coco(
        args.root / entry["ann_file"],
        args.root / entry["image_dir"],
        name=args.name or str(entry["ann_file"]),
        masks=args.masks,
        cache_dir=args.cache_dir,
    )


def _coco_files(entry: Entry, root: Path) -> list[Expected]:
    return [Expected(root / entry["ann_file"])] if "ann_file" in entry else []


def _read_voc(entry: Entry, args: ReadArgs) -> DatasetSource:
    return load_voc(
        args.root / entry["root"],
        entry["split"],
        class_names_key(entry, args.where),
        name=args.name or f"{entry['root']}:{entry['split']}",
        duplicate_iou=args.duplicate_iou,
    )


def _voc_files(entry: Entry, root: Path) -> list[Expected]:
    if "root" in entry and "split" in entry:
        return [Expected(split_file(root / entry["root"], entry["split"]))]
    return []


def _read_voc_folder(entry: Entry, args: ReadArgs) -> DatasetSource:
    if "split_file" in entry and "split" in entry:
        raise DatasetError(f"{args.where}: give split_file or split, not both")
    split = FolderSplit.from_mapping(entry["split"], args.where) if "split" in entry else None
    split_file = entry.get("split_file")
    return load_voc_folder(
        args.root / entry["image_dir"],
        args.root / entry["ann_dir"],
        class_names_key(entry, args.where) or args.folder_class_names,
        split_file=None if split_file is None else args.root / split_file,
        split=split,
        duplicate_iou=args.duplicate_iou,
        name=args.name or str(entry["ann_dir"]) + (f":{split.part}" if split else ""),
    )


def _voc_folder_files(entry: Entry, root: Path) -> list[Expected]:
    found = [
        Expected(root / entry[k], is_folder=True) for k in ("image_dir", "ann_dir") if k in entry
    ]
    if isinstance(entry.get("split_file"), str):
        found.append(Expected(root / entry["split_file"]))
    return found


#: a shapes mapping's optional keys and their defaults
SHAPES_DEFAULTS = {"num_images": 200, "image_size": 192, "seed": 0, "max_objects": 5}


def _read_shapes(entry: Entry, args: ReadArgs) -> DatasetSource:
    settings = {**SHAPES_DEFAULTS, **{k: v for k, v in entry.items() if k in SHAPES_DEFAULTS}}
    folder = ensure_shapes_detection(entry["split"], cache_dir=args.cache_dir, **settings)
    return load_coco(
        folder / "annotations.json",
        folder / "JPEGImages",
        name=args.name or f"shapes_{entry['split']}",
        masks=args.masks,
        cache_dir=args.cache_dir,
    )


def _generated(entry: Entry, root: Path) -> list[Expected]:
    return []


FORMATS: dict[str, DatasetFormat] = {
    "coco": DatasetFormat(
        ("ann_file", "image_dir"), (), _read_coco, _coco_files, protocol="coco", masks=True
    ),
    "voc": DatasetFormat(
        ("root", "split"), ("class_names",), _read_voc, _voc_files, protocol="voc", masks=False
    ),
    "voc_folder": DatasetFormat(
        ("image_dir", "ann_dir"),
        ("class_names", "split_file", "split"),
        _read_voc_folder,
        _voc_folder_files,
        protocol="voc",
        masks=False,
    ),
    "shapes": DatasetFormat(
        ("split",), tuple(SHAPES_DEFAULTS), _read_shapes, _generated, protocol="coco", masks=True
    ),
}


def _coco_name(year: str, split: str, images: str) -> Entry:
    ann_file = f"coco/annotations/instances_{split}{year}.json"
    return {"format": "coco", "ann_file": ann_file, "image_dir": f"coco/{images}"}


#: registered dataset names -> the mappings they stand for (see the module docstring)
NAMES: dict[str, Entry] = {
    **{f"coco_2017_{s}": _coco_name("2017", s, f"{s}2017") for s in ("train", "val")},
    **{f"coco_2014_{s}": _coco_name("2014", s, f"{s}2014") for s in ("train", "val")},
    **{f"coco_2014_{s}": _coco_name("2014", s, "val2014") for s in ("minival", "valminusminival")},
    **{
        f"voc_{y}_{s}": {"format": "voc", "root": f"VOCdevkit/VOC{y}", "split": s}
        for y in ("2007", "2012")
        for s in ("train", "val", "trainval", "test")
    },
}


def format_of(mapping: Entry) -> DatasetFormat | None:
    """The table entry of the mapping's `format`, None when it names none."""
    name = mapping.get("format")
    return FORMATS.get(name) if isinstance(name, str) else None


def expected_files(entry: str | Entry, root: Path) -> list[Expected]:
    """What must exist under the datasets `root` for `entry` (a registered name or a mapping) to be
    installed: none for generated data, unknown names or formats and malformed entries (which
    `load_source` reports)."""
    mapping = NAMES.get(entry) if isinstance(entry, str) else entry
    fmt = format_of(mapping) if isinstance(mapping, dict) else None
    return [] if fmt is None else fmt.files(mapping, root)
