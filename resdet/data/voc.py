"""PASCAL VOC reader: a `VOC<year>`-style folder and a split -> `DatasetSource`.

Layout: `<root>/ImageSets/Main/<split>.txt` lists ids; `<root>/Annotations/<id>.xml` and
`<root>/JPEGImages/<id>.jpg` hold each image. Only direct `<object>` children of `<annotation>` are
objects (the `<part>` boxes of VOC's person layout are not). VOC pixel coordinates are 1-based and
inclusive; as detectron2 does, a box is loaded as `(xmin - 1, ymin - 1, xmax, ymax)`, which makes
its width `xmax - xmin + 1` pixels. `difficult` is kept as a per-object flag. The VOC evaluator
undoes the shift so its numbers equal the devkit's.

Dropped, and counted in one summary warning per file set: a box whose file numbers have
`xmax <= xmin` or `ymax <= ymin` (zero extent as annotated: a point or a line, never a real object),
a box with nothing left inside the image after clipping, and the later box of a same-class pair
overlapping at IoU > `duplicate_iou` (`data.duplicate_iou`, default 0.9; an annotator's double
click). The official devkit keeps all of them, near-duplicates included; `duplicate_iou=None` keeps
near-duplicates, which reproduces the devkit's numbers exactly on files without zero-extent boxes.

`parse_voc_xml` + `voc_record` read one file; `resdet.data.voc_folder` uses them for flat folders.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from resdet.data.checks import (
    ZERO_AREA,
    DropCounter,
    boxes_array,
    check_relative,
    clip_box,
    near_duplicate,
)
from resdet.data.compact import CompactRecords
from resdet.data.errors import DatasetError
from resdet.data.records import DatasetSource, ImageRecord

#: The 20 PASCAL VOC classes in the standard order (1-based `category_id` = index + 1).
VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def split_file(root: str | Path, split: str) -> Path:
    """`<root>/ImageSets/Main/<split>.txt`: the file listing a split's image ids."""
    return Path(root) / "ImageSets" / "Main" / f"{split}.txt"


def read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in `split_file(root, split)` (one per line, blank lines skipped)."""
    path = split_file(root, split)
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found (VOC root {root}, split {split!r})")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    for n, image_id in enumerate(ids, 1):
        check_relative(image_id, f"{path}:{n}")
        if "/" in image_id or "\\" in image_id:
            raise DatasetError(f"{path}:{n}: image id {image_id!r} contains a path separator")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"{path}: image id {dup!r} listed twice")
    return ids


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(f"{where}: missing field <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}: field <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DatasetError(f"{where}: field <{tag}> is not finite: {text!r}")
    return value


@dataclass
class VocObject:
    """One `<object>` of a VOC XML file, numbers as written in the file (1-based, inclusive)."""

    #: position among the file's `<object>` elements (0-based), for messages
    index: int
    name: str
    #: `(xmin, ymin, xmax, ymax)` of `<bndbox>`, unshifted
    box: tuple[float, float, float, float]
    difficult: bool


@dataclass
class VocAnnotation:
    """One parsed VOC XML file: its `<filename>` (None when absent), `<size>` and objects."""

    path: Path
    filename: str | None
    width: int
    height: int
    objects: list[VocObject]


def parse_voc_xml(xml_path: str | Path) -> VocAnnotation:
    """Parse and check one VOC XML file (no class check: see `voc_record`). Only direct
    `<object>` children of `<annotation>` are read. Invalid content is a `DatasetError` naming the
    file, the object index and the field."""
    xml_path = Path(xml_path)
    try:
        ann = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{xml_path}: annotation file not found") from None
    except ET.ParseError as e:
        raise DatasetError(f"{xml_path}: malformed XML: {e}") from None
    size = ann.find("size")
    if size is None:
        raise DatasetError(f"{xml_path}: missing field <size>")
    width, height = (int(_number(size, tag, f"{xml_path}: <size>")) for tag in ("width", "height"))
    if width <= 0 or height <= 0:
        raise DatasetError(f"{xml_path}: <size> must be positive, got {width}x{height}")
    objects = []
    for k, obj in enumerate(ann.findall("object")):
        where = f"{xml_path}: object {k}"
        cls = _text(obj, "name", where)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{where}: missing field <bndbox>")
        where_box = f"{where} ({cls}): <bndbox>"
        x1, y1, x2, y2 = (_number(bnd, t, where_box) for t in ("xmin", "ymin", "xmax", "ymax"))
        flag = obj.find("difficult")
        try:
            is_difficult = flag is not None and flag.text is not None and int(flag.text) == 1
        except ValueError:
            raise DatasetError(f"{where}: field <difficult> is not 0 or 1: {flag.text!r}") from None
        objects.append(VocObject(k, cls, (x1, y1, x2, y2), is_difficult))
    name = ann.find("filename")
    filename = name.text.strip() if name is not None and name.text and name.text.strip() else None
    return VocAnnotation(xml_path, filename, width, height, objects)


def near_duplicates(boxes: np.ndarray, labels: np.ndarray, iou: float) -> dict[int, int]:
    """`{j: i}` for every box `j` that overlaps an earlier kept box `i` of the same label at
    IoU > `iou` (`boxes` (N, 4) xyxy; earlier boxes are kept, later ones dropped, in order)."""
    if len(boxes) < 2:
        return {}
    t = torch.from_numpy(boxes)
    overlap = box_iou(t, t).numpy()
    hits = np.triu((overlap > iou) & (labels[:, None] == labels[None, :]), k=1)
    found: dict[int, int] = {}
    for j in np.flatnonzero(hits.any(axis=0)):
        earlier = [i for i in np.flatnonzero(hits[:, j]) if i not in found]
        if earlier:
            found[int(j)] = int(earlier[0])
    return found


def voc_record(
    ann: VocAnnotation,
    label_of: dict[str, int],
    *,
    file_name: str,
    image_id: str,
    dropped: DropCounter,
    duplicate_iou: float | None,
) -> ImageRecord:
    """The training/evaluation record of a parsed file.

    An object whose class is not in `label_of` is a `DatasetError`. Boxes are loaded as
    `(xmin - 1, ymin - 1, xmax, ymax)` and clipped to the image. Dropped and counted in `dropped`:
    boxes with `xmax <= xmin` or `ymax <= ymin` in the file (zero extent), boxes with nothing left
    after clipping, and, unless `duplicate_iou` is None, the later box of each same-class pair
    overlapping at IoU > `duplicate_iou`.
    """
    boxes, labels, difficult, index = [], [], [], []
    for o in ann.objects:
        if o.name not in label_of:
            raise DatasetError(
                f"{ann.path}: object {o.index}: field <name> {o.name!r} is not one of the "
                f"{len(label_of)} classes ({', '.join(label_of)})"
            )
        where = f"{ann.path.name} object {o.index}"
        x1, y1, x2, y2 = o.box
        if x2 <= x1 or y2 <= y1:
            dropped.drop(where, ZERO_AREA)
            continue
        box = clip_box(x1 - 1.0, y1 - 1.0, x2, y2, ann.width, ann.height)
        if box is None:
            dropped.drop(where)
            continue
        boxes.append(box)
        labels.append(label_of[o.name])
        difficult.append(o.difficult)
        index.append(o.index)
    box_arr, label_arr = boxes_array(boxes), np.asarray(labels, dtype=np.int64)
    keep = np.ones(len(boxes), dtype=bool)
    if duplicate_iou is not None:
        kind = near_duplicate(duplicate_iou)
        for j, i in near_duplicates(box_arr, label_arr, duplicate_iou).items():
            keep[j] = False
            dropped.drop(f"{ann.path.name} object {index[j]} (same as object {index[i]})", kind)
    return ImageRecord(
        file_name=file_name,
        image_id=image_id,
        height=ann.height,
        width=ann.width,
        boxes=box_arr[keep],
        labels=label_arr[keep],
        difficult=np.asarray(difficult, dtype=bool)[keep],
    )


def load_voc(
    root: str | Path,
    split: str,
    class_names: list[str] | None = None,
    name: str | None = None,
    *,
    duplicate_iou: float | None = 0.9,
) -> DatasetSource:
    """Read every image of `split` under the VOC-style folder `root`. Opens no image.

    `class_names` defaults to the 20 VOC classes; an object of any other class is an error.
    Dropped boxes (see `voc_record`) are summarised in one `DatasetWarning`.
    """
    root = Path(root)
    class_names = list(class_names or VOC_CLASSES)
    label_of = {c: k for k, c in enumerate(class_names)}
    dropped = DropCounter()
    records = []
    for image_id in read_split(root, split):
        xml_path = root / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise DatasetError(f"{xml_path}: annotation file not found (listed in split {split!r})")
        records.append(
            voc_record(
                parse_voc_xml(xml_path),
                label_of,
                file_name=str(root / "JPEGImages" / f"{image_id}.jpg"),
                image_id=image_id,
                dropped=dropped,
                duplicate_iou=duplicate_iou,
            )
        )
    dropped.warn(f"{root.name or root} ({split})")
    return DatasetSource(
        name=name or f"{root}:{split}",
        protocol="voc",
        class_names=class_names,
        category_ids=list(range(1, len(class_names) + 1)),
        records=CompactRecords.from_records(records, masks=False),
    )
