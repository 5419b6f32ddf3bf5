"""PASCAL VOC reader: a `VOC<year>`-style folder and a split -> `DatasetSource`.

Layout: `<root>/ImageSets/Main/<split>.txt` lists ids; `<root>/Annotations/<id>.xml` and
`<root>/JPEGImages/<id>.jpg` hold each image. Only direct `<object>` children of `<annotation>` are
objects (the `<part>` boxes of VOC's person layout are not). VOC pixel coordinates are 1-based and
inclusive; as detectron2 does, a box is loaded as `(xmin - 1, ymin - 1, xmax, ymax)`, which makes
its width `xmax - xmin + 1` pixels. `difficult` is kept as a per-object flag. The VOC evaluator
undoes the shift so its numbers equal the devkit's.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from resdet.data.records import (
    DatasetError,
    DatasetSource,
    DropCounter,
    ImageRecord,
    boxes_array,
    check_relative,
    clip_box,
)

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


def read_split(root: str | Path, split: str) -> list[str]:
    """Image ids listed in `<root>/ImageSets/Main/<split>.txt` (one per line,
    blank lines skipped)."""
    path = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
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


def load_voc(
    root: str | Path, split: str, class_names: list[str] | None = None, name: str | None = None
) -> DatasetSource:
    """Read every image of `split` under the VOC-style folder `root`. Opens no image.

    `class_names` defaults to the 20 VOC classes; an object of any other class is an error.
    """
    root = Path(root)
    class_names = list(class_names or VOC_CLASSES)
    label_of = {c: k for k, c in enumerate(class_names)}
    dropped = DropCounter()
    records = []
    for image_id in read_split(root, split):
        xml_path = root / "Annotations" / f"{image_id}.xml"
        try:
            tree = ET.parse(xml_path)
        except FileNotFoundError:
            raise DatasetError(
                f"{xml_path}: annotation file not found (listed in split {split!r})"
            ) from None
        except ET.ParseError as e:
            raise DatasetError(f"{xml_path}: malformed XML: {e}") from None
        ann = tree.getroot()
        size = ann.find("size")
        if size is None:
            raise DatasetError(f"{xml_path}: missing field <size>")
        width, height = (
            int(_number(size, tag, f"{xml_path}: <size>")) for tag in ("width", "height")
        )
        if width <= 0 or height <= 0:
            raise DatasetError(f"{xml_path}: <size> must be positive, got {width}x{height}")
        boxes, labels, difficult = [], [], []
        for k, obj in enumerate(ann.findall("object")):
            where = f"{xml_path}: object {k}"
            cls = _text(obj, "name", where)
            if cls not in label_of:
                raise DatasetError(
                    f"{where}: field <name> {cls!r} is not one of the {len(class_names)} classes "
                    f"({', '.join(class_names)})"
                )
            bnd = obj.find("bndbox")
            if bnd is None:
                raise DatasetError(f"{where}: missing field <bndbox>")
            where_box = f"{where} ({cls}): <bndbox>"
            x1, y1 = _number(bnd, "xmin", where_box) - 1.0, _number(bnd, "ymin", where_box) - 1.0
            x2, y2 = _number(bnd, "xmax", where_box), _number(bnd, "ymax", where_box)
            flag = obj.find("difficult")
            try:
                is_difficult = (
                    flag is not None and flag.text is not None and int(flag.text.strip()) == 1
                )
            except ValueError:
                raise DatasetError(
                    f"{where}: field <difficult> is not 0 or 1: {flag.text!r}"
                ) from None
            box = clip_box(x1, y1, x2, y2, width, height)
            if box is None:
                dropped.drop(f"{xml_path.name} object {k}")
                continue
            boxes.append(box)
            labels.append(label_of[cls])
            difficult.append(is_difficult)
        records.append(
            ImageRecord(
                file_name=str(root / "JPEGImages" / f"{image_id}.jpg"),
                image_id=image_id,
                height=height,
                width=width,
                boxes=boxes_array(boxes),
                labels=np.asarray(labels, dtype=np.int64),
                difficult=np.asarray(difficult, dtype=bool),
            )
        )
    dropped.warn(f"{root} ({split})")
    return DatasetSource(
        name=name or f"{root}:{split}",
        format="voc",
        class_names=class_names,
        category_ids=list(range(1, len(class_names) + 1)),
        records=records,
    )
