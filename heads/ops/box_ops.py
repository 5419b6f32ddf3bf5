"""Box geometry on xyxy float boxes in absolute pixels: IoU, areas, clipping, size filters."""

from __future__ import annotations

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...) areas (negative extents count as zero)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box in ``a`` (..., N, 4) with every box in ``b`` (..., M, 4) -> (..., N, M).

    Leading dimensions broadcast, so a batch of images is one call. Empty boxes give IoU 0.
    """
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    return torch.where(
        union > 0, inter / union.clamp(min=torch.finfo(a.dtype).tiny), torch.zeros_like(inter)
    )


def clip_boxes(boxes: Tensor, heights: Tensor, widths: Tensor) -> Tensor:
    """Clip (..., 4) boxes to images of the given (...) ``heights``/``widths`` (broadcast)."""
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), widths[..., None])
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), heights[..., None])
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def min_side_at_least(boxes: Tensor, min_size: float) -> Tensor:
    """(..., 4) -> (...) bool: both sides >= ``min_size`` and non-empty."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return (w >= min_size) & (h >= min_size) & (w > 0) & (h > 0)
