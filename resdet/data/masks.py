"""Instance masks of COCO annotations: checked when read, rasterised when an image is loaded.

A COCO `segmentation` is either polygons, `[[x1, y1, x2, y2, ...], ...]` in absolute pixels (one
list per part), or RLE, `{"size": [H, W], "counts": str | [int, ...]}` (column-major runs).
`check_segmentation` validates one without rasterising it: malformed values are a `DatasetError`
naming the annotation and the field; well-formed but unusable ones (a polygon of fewer than 3
points, an RLE whose size is not the image's, nothing inside the image) come back as the
`DropKind` the reader counts them under. `rasterize` turns the kept ones into (N, H, W) uint8.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
from pycocotools import mask as mask_utils

from resdet.data.checks import DropKind
from resdet.data.errors import DatasetError

#: polygons (one flat [x, y, ...] list or float64 array per part) or an RLE dict, as in the COCO
#: json; `check_segmentation` gives polygons as float64 arrays (the values the json held)
Segmentation = Union[list[list[float]], list[np.ndarray], dict[str, Any]]
_PLAIN_NUMBERS = {int, float}

FEW_POINTS = DropKind(
    "annotation with a polygon of fewer than 3 points",
    "annotations with a polygon of fewer than 3 points",
)
RLE_SIZE = DropKind(
    "annotation with an RLE of the wrong size",
    "annotations with an RLE of the wrong size",
    "RLE 'size' or run total differs from the image's height x width",
)
OUTSIDE = DropKind(
    "annotation with its mask outside the image",
    "annotations with their mask outside the image",
    "empty, or no mask pixel inside the image",
)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _polygons(value: list[Any], height: int, width: int, where: str) -> Segmentation | DropKind:
    parts = []
    for k, part in enumerate(value):
        field = f"'segmentation'[{k}]"
        # plain ints and floats (all a JSON parser gives) pass the type test at C speed
        if not isinstance(part, list) or not (
            set(map(type, part)) <= _PLAIN_NUMBERS or all(map(_is_number, part))
        ):
            raise DatasetError(f"{where}: field {field} must be a list of numbers x1, y1, x2, ...")
        if len(part) % 2:
            raise DatasetError(
                f"{where}: field 'segmentation'[{k}] has an odd number of coordinates"
            )
        coords = np.array(part, dtype=np.float64)
        if not np.isfinite(coords).all():
            raise DatasetError(f"{where}: field {field} is not finite")
        if len(part) < 6:
            return FEW_POINTS
        parts.append(coords)
    xs = np.concatenate([p[0::2] for p in parts])
    ys = np.concatenate([p[1::2] for p in parts])
    if xs.max() <= 0 or xs.min() >= width or ys.max() <= 0 or ys.min() >= height:
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


def check_segmentation(
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


def rasterize(segmentations: list[Segmentation], height: int, width: int) -> np.ndarray:
    """Checked segmentations -> (N, height, width) uint8 masks (1 inside)."""
    out = np.zeros((len(segmentations), height, width), dtype=np.uint8)
    for i, seg in enumerate(segmentations):
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = {"size": seg["size"], "counts": seg["counts"].encode()}
        out[i] = mask_utils.decode(rle)
    return out
