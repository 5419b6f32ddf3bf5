"""COCO instances-json records for the reader and dataset tests."""

from __future__ import annotations


def coco_annotation(
    aid: int, image: int, bbox, cat: int, crowd: int = 0, area: float = 1.0
) -> dict:
    """One `annotations` entry; `bbox` is COCO's `[x, y, w, h]`."""
    return {
        "id": aid,
        "image_id": image,
        "category_id": cat,
        "bbox": list(bbox),
        "iscrowd": crowd,
        "area": area,
    }
