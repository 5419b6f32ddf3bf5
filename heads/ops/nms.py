"""Non-maximum suppression for a whole batch: one batched NMS, then the best k of every image."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from heads.ops.fg_bg_sampling import counts_per_image

#: `nms_per_image`'s signature: (boxes, scores, groups, num_groups, image_index, num_images,
#: iou_threshold, k) -> kept indices; what `RPN.propose` and `RoIHeads.detect` take as ``nms``
NMS = Callable[[Tensor, Tensor, Tensor, int, Tensor, int, float, int], Tensor]


def top_k_per_image(order: Tensor, image_index: Tensor, num_images: int, k: int) -> Tensor:
    """Indices from ``order`` (sorted by decreasing score), regrouped by image, at most ``k`` each.

    Returns the kept indices sorted by image and, within an image, by decreasing score.
    """
    images = image_index[order]
    regroup = torch.sort(images, stable=True).indices
    order, images = order[regroup], images[regroup]
    counts = counts_per_image(images, num_images)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(len(order), device=order.device) - starts[images]
    return order[rank < k]


@torch.compiler.disable
def nms_per_image(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    num_groups: int,
    image_index: Tensor,
    num_images: int,
    iou_threshold: float,
    k: int,
) -> Tensor:
    """NMS within each (image, group) pair, then the ``k`` best survivors of every image.

    Args:
        boxes (N, 4) xyxy; scores (N,); groups (N,) int64 class or level id in 0..num_groups-1;
        image_index (N,) int64.
    Returns:
        kept indices (K,), sorted by image, then by decreasing score.

    Runs eagerly under ``torch.compile``: NMS, torchvision's loop over the groups present and the
    top-k selection all have data-dependent shapes, so one opaque call ends the graph once
    instead of at each of them (and the per-group loop triggers no recompilations).
    """
    keep = batched_nms(boxes, scores, image_index * num_groups + groups, iou_threshold)
    return top_k_per_image(keep, image_index, num_images, k)
