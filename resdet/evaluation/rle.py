"""Instance masks <-> COCO run-length encoding (RLE), through `pycocotools.mask`.

An RLE here is COCO's compressed form as the results format carries it under `segmentation`:
`{"size": [H, W], "counts": str}` (column-major runs, counts as the ASCII string pycocotools writes,
so the dict is JSON as it is).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch

#: a mask pixel is on where the predicted probability is above this (torchvision's convention)
MASK_THRESHOLD = 0.5


def binary_to_rle(binary: np.ndarray | torch.Tensor) -> list[dict[str, Any]]:
    """Encode K binary masks `(K, H, W)` (bool or 0/1) -> K RLEs, each `{"size": [H, W], "counts":
    str}`."""
    if isinstance(binary, torch.Tensor):
        binary = binary.detach().cpu().numpy()
    if binary.ndim != 3:
        raise ValueError(f"expected binary masks of shape (K, H, W), got {tuple(binary.shape)}")
    # pycocotools encodes a Fortran-ordered uint8 (H, W, K) array
    rles = mask_util.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))
    return [
        {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles
    ]


def masks_to_rle(masks: torch.Tensor, threshold: float = MASK_THRESHOLD) -> list[dict[str, Any]]:
    """Encode a detector's masks: float probabilities `(K, 1, H, W)` in the input image's frame
    (torchvision's `"masks"` output) -> K RLEs; a pixel is on where its probability is
    `> threshold`."""
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"expected masks of shape (K, 1, H, W), got {tuple(masks.shape)}")
    return binary_to_rle(masks[:, 0].detach() > threshold)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode one RLE -> uint8 `(H, W)` of 0/1."""
    return mask_util.decode(rle)


def rle_area(rles: list[dict[str, Any]]) -> list[int]:
    """Pixels on in each RLE."""
    # one at a time: pycocotools 2.0.11's `area` of a list overflows past 255 RLEs
    return [int(mask_util.area(r)) for r in rles]


def rle_to_bbox(rle: dict[str, Any]) -> list[float]:
    """The tight box `[x, y, w, h]` of one RLE's pixels (all zeros for an empty mask), as
    `COCO.loadRes` derives boxes of segmentation results."""
    return [float(v) for v in mask_util.toBbox(rle)]


def is_rle(value: Any) -> bool:
    """Whether `value` has the results format's RLE form: `{"size": [H, W], "counts": str}` with
    `H, W >= 0` integers (the counts themselves are pycocotools' to read)."""
    if not isinstance(value, dict) or set(value) != {"size", "counts"}:
        return False
    size = value["size"]
    return (
        isinstance(value["counts"], str)
        and isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    )
