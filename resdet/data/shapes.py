"""Synthetic "shapes" dataset: real JPEGs with COCO json, a VOC tree and an ImageNet-style folder.

Every image has a textured background (colour gradient, low-frequency noise, optional stripes, pixel
noise) and 1..`max_objects` filled shapes of the classes `SHAPE_CLASSES`, with random size, aspect,
colour and position; shapes may overlap (box IoU at most 0.3 with any earlier shape, later ones
drawn on top). Everything follows from the seed: the same arguments give byte-identical files.

Boxes are whole pixels: a shape drawn over pixel columns `x1..x2-1` has the continuous box
`[x1, x2)`. The COCO json stores `[x1, y1, x2-x1, y2-y1]` and the VOC XML the
1-based inclusive `xmin = x1+1, xmax = x2`, so both readers load identical xyxy boxes. The COCO
json also holds each shape's exact instance mask as RLE: the pixels it painted that no later shape
covers (an occluded shape's visible part, which polygons could not state exactly); `area` is the
mask's pixel count, as in COCO.

Detection layout of one split, in `out_dir`:
    JPEGImages/<id>.jpg, annotations.json, Annotations/<id>.xml, ImageSets/Main/<split>.txt
Classification layout (one centred object per image): `out_dir/{train,val}/<class>/<n>.jpg`.

`ensure_shapes_detection` / `ensure_shapes_classification` generate once into a cache folder keyed
by a hash of the arguments (`$RESDET_CACHE`, default `~/.cache/resdet`, then `shapes/<hash>`) and
return it; concurrent callers (DDP ranks) race safely through an atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from resdet.utils.paths import cache_root

SHAPE_CLASSES = ["circle", "rectangle", "triangle", "star", "cross"]
#: Bump when the generator's output changes, so old caches are not reused.
GENERATOR_VERSION = 2
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


def _rng(seed: int, split: str, kind: int) -> np.random.Generator:
    if split not in _SPLIT_CODES:
        raise ValueError(f"shapes split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    return np.random.default_rng([seed, _SPLIT_CODES[split], kind])


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1.0) / 2.0
    img = c0 + (c1 - c0) * t[..., None]
    blobs = rng.uniform(-45, 45, (4, 4, 3)).astype(np.float32)
    low = np.stack(
        [
            np.asarray(Image.fromarray(blobs[..., c]).resize((width, height), Image.BILINEAR))
            for c in range(3)
        ],
        axis=-1,
    )
    img = img + low
    if rng.random() < 0.5:
        freq, phase, theta = (
            rng.uniform(0.05, 0.3),
            rng.uniform(0, 2 * np.pi),
            rng.uniform(0, np.pi),
        )
        img = (
            img + 20.0 * np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)[..., None]
        )
    img = img + rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _star(points: int = 5) -> np.ndarray:
    a = np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, 0.45)
    return np.stack([r * np.cos(a), -r * np.sin(a)], axis=1)


def _draw(
    canvases: list[tuple[ImageDraw.ImageDraw, tuple[int, ...] | int]],
    cls: str,
    box: tuple[int, int, int, int],
    rng: np.random.Generator,
) -> None:
    """Paint the same shape on each `(canvas, fill)`: the image and the instance-id map."""
    # Pixels x1..x2-1 are painted, so the continuous box is [x1, x2).
    x1, y1, x2, y2 = box[0], box[1], box[2] - 1, box[3] - 1
    w, h = x2 - x1, y2 - y1
    if cls == "triangle":
        apex = x1 + rng.uniform(0.2, 0.8) * w
    for draw, fill in canvases:
        if cls == "circle":
            draw.ellipse((x1, y1, x2, y2), fill=fill)
        elif cls == "rectangle":
            draw.rectangle((x1, y1, x2, y2), fill=fill)
        elif cls == "triangle":
            draw.polygon([(x1, y2), (x2, y2), (apex, y1)], fill=fill)
        elif cls == "star":
            p = _star()
            p = (p - p.min(0)) / (p.max(0) - p.min(0))
            draw.polygon([(x1 + u * w, y1 + v * h) for u, v in p], fill=fill)
        elif cls == "cross":
            tx, ty = max(1, round(w * 0.3)), max(1, round(h * 0.3))
            cx, cy = x1 + (w - tx) // 2, y1 + (h - ty) // 2
            draw.rectangle((cx, y1, cx + tx, y2), fill=fill)
            draw.rectangle((x1, cy, x2, cy + ty), fill=fill)
        else:
            raise ValueError(f"unknown shape class {cls!r}")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    c = rng.uniform(0, 255, 3)
    c[rng.integers(3)] = rng.choice(
        [rng.uniform(0, 40), rng.uniform(215, 255)]
    )  # keep it saturated
    return tuple(int(v) for v in c)


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _place(
    rng: np.random.Generator,
    width: int,
    height: int,
    existing: list[tuple[int, ...]],
    min_frac: float,
    max_frac: float,
) -> tuple[int, int, int, int] | None:
    for _ in range(20):
        side = rng.uniform(min_frac, max_frac) * min(width, height)
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        w = int(np.clip(round(side * np.sqrt(aspect)), 8, width))
        h = int(np.clip(round(side / np.sqrt(aspect)), 8, height))
        x1, y1 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        box = (x1, y1, x1 + w, y1 + h)
        if all(_iou(box, e) <= 0.3 for e in existing):
            return box
    return None


def _voc_xml(
    image_id: str, width: int, height: int, objects: list[tuple[str, tuple[int, ...]]]
) -> bytes:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(ann, "size")
    for tag, v in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    for cls, (x1, y1, x2, y2) in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = cls
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bnd, tag).text = str(v)
    return ET.tostring(ann)


def generate_shapes(
    out_dir: str | Path,
    split: str,
    num_images: int,
    image_size: int = 192,
    seed: int = 0,
    max_objects: int = 5,
) -> Path:
    """Write a detection split (JPEGs, COCO json, VOC tree) into `out_dir`;
    image sides in [0.75, 1] x size."""
    out = Path(out_dir)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = _rng(seed, split, kind=0)
    images, annotations, ids = [], [], []
    for n in range(1, num_images + 1):
        image_id = f"{n:06d}"
        width, height = (
            int(rng.integers(round(0.75 * image_size), image_size + 1)) for _ in range(2)
        )
        img = _background(rng, height, width)
        draw = ImageDraw.Draw(img)
        instances = Image.new("L", (width, height), 0)  # pixel = 1 + index of the shape on top
        draw_ids = ImageDraw.Draw(instances)
        objects: list[tuple[str, tuple[int, ...]]] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            box = _place(rng, width, height, [b for _, b in objects], 0.15, 0.5)
            if box is None:
                continue
            cls = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
            colour = _colour(rng)
            _draw([(draw, colour), (draw_ids, len(objects) + 1)], cls, box, rng)
            objects.append((cls, box))
        ids_map = np.asarray(instances)
        img.save(out / "JPEGImages" / f"{image_id}.jpg", quality=90)
        (out / "Annotations" / f"{image_id}.xml").write_bytes(
            _voc_xml(image_id, width, height, objects)
        )
        images.append({"id": n, "file_name": f"{image_id}.jpg", "width": width, "height": height})
        for k, (cls, (x1, y1, x2, y2)) in enumerate(objects):
            rle = mask_utils.encode(np.asfortranarray(ids_map == k + 1, dtype=np.uint8))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": n,
                    "category_id": SHAPE_CLASSES.index(cls) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int(mask_utils.area(rle)),
                    "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
                    "iscrowd": 0,
                }
            )
        ids.append(image_id)
    categories = [
        {"id": k + 1, "name": c, "supercategory": "shape"} for k, c in enumerate(SHAPE_CLASSES)
    ]
    (out / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return out


def generate_shapes_classification(
    out_dir: str | Path,
    num_train_per_class: int,
    num_val_per_class: int,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write `out_dir/{train,val}/<class>/<n>.jpg`: one centred shape per image
    (ImageNet folder layout)."""
    out = Path(out_dir)
    for split, count in (("train", num_train_per_class), ("val", num_val_per_class)):
        rng = _rng(seed, split, kind=1)
        for cls in SHAPE_CLASSES:
            (out / split / cls).mkdir(parents=True, exist_ok=True)
        for n in range(count * len(SHAPE_CLASSES)):
            cls = SHAPE_CLASSES[n % len(SHAPE_CLASSES)]
            img = _background(rng, image_size, image_size)
            side = rng.uniform(0.4, 0.8) * image_size
            aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
            w, h = (
                int(np.clip(round(v), 8, image_size))
                for v in (side * np.sqrt(aspect), side / np.sqrt(aspect))
            )
            cx, cy = (image_size / 2 + rng.uniform(-0.1, 0.1) * image_size for _ in range(2))
            x1 = int(np.clip(round(cx - w / 2), 0, image_size - w))
            y1 = int(np.clip(round(cy - h / 2), 0, image_size - h))
            _draw([(ImageDraw.Draw(img), _colour(rng))], cls, (x1, y1, x1 + w, y1 + h), rng)
            img.save(out / split / cls / f"{n // len(SHAPE_CLASSES):06d}.jpg", quality=90)
    return out


def _cached(key: dict, cache_dir: str | Path | None, make) -> Path:
    digest = hashlib.sha1(
        json.dumps({**key, "version": GENERATOR_VERSION}, sort_keys=True).encode()
    ).hexdigest()
    final = cache_root(cache_dir) / "shapes" / digest[:16]
    if (final / "DONE").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        make(tmp)
        (tmp / "DONE").write_text(json.dumps(key) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first; its copy is identical
            if not (final / "DONE").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def ensure_shapes_detection(
    split: str,
    num_images: int,
    image_size: int = 192,
    seed: int = 0,
    max_objects: int = 5,
    cache_dir: str | Path | None = None,
) -> Path:
    """Generate (once) and return the cached folder of a detection split; see `generate_shapes`."""
    key = {
        "kind": "detection",
        "split": split,
        "num_images": num_images,
        "image_size": image_size,
        "seed": seed,
        "max_objects": max_objects,
    }
    return _cached(
        key,
        cache_dir,
        lambda d: generate_shapes(d, split, num_images, image_size, seed, max_objects),
    )


def ensure_shapes_classification(
    num_train_per_class: int,
    num_val_per_class: int,
    image_size: int = 64,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Path:
    """Generate (once) and return the cached root holding `train/` and `val/` class folders."""
    key = {
        "kind": "classification",
        "num_train_per_class": num_train_per_class,
        "num_val_per_class": num_val_per_class,
        "image_size": image_size,
        "seed": seed,
    }
    return _cached(
        key,
        cache_dir,
        lambda d: generate_shapes_classification(
            d, num_train_per_class, num_val_per_class, image_size, seed
        ),
    )
