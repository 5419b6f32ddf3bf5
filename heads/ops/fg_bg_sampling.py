"""Balanced foreground/background sampling per image, done for the whole batch in one pass."""

from __future__ import annotations

import torch
from torch import Tensor

from heads.ops.matcher import BACKGROUND, FOREGROUND, Matcher


def counts_per_image(image_index: Tensor, num_images: int, mask: Tensor | None = None) -> Tensor:
    """(R,) int64 image index (and an optional (R,) bool ``mask``) -> (num_images,) int64 number
    of (masked) entries of each image: ``bincount(image_index[mask], minlength=num_images)``,
    with an output shape that does not depend on the values (no graph break under
    ``torch.compile``)."""
    ones = torch.ones_like(image_index) if mask is None else mask.to(image_index.dtype)
    counts = torch.zeros(num_images, dtype=image_index.dtype, device=image_index.device)
    return counts.index_add_(0, image_index, ones)


def random_rank(mask: Tensor, image_index: Tensor, num_images: int) -> Tensor:
    """A uniformly random order among the True entries of ``mask`` within each image.

    (R,) bool mask, (R,) int64 image index -> (R,) int64 rank 0, 1, ... per image for masked
    entries (unmasked entries get ranks beyond every masked one of their image).
    """
    # Sort by image, then by a random key; masked entries of an image come first.
    key = (
        image_index.to(torch.float64) * 4
        + (~mask).to(torch.float64) * 2
        + torch.rand(mask.shape, device=mask.device, dtype=torch.float64)
    )
    order = key.argsort()
    counts = counts_per_image(image_index, num_images)
    starts = counts.cumsum(0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=mask.device) - starts[image_index[order]]
    return rank


def sample_balanced(
    labels: Tensor,
    image_index: Tensor,
    num_images: int,
    *,
    per_image: int,
    positive_fraction: float,
) -> tuple[Tensor, Tensor]:
    """Pick up to ``per_image`` labelled predictions per image, at most ``positive_fraction`` of
    them foreground; background fills the rest.

    Args:
        labels: (R,) int8 from the matcher (1 fg, 0 bg, -1 ignore).
        image_index: (R,) int64 image of each prediction.
    Returns:
        (R,) bool masks: sampled foreground, sampled background.
    """
    fg = labels == FOREGROUND
    bg = labels == BACKGROUND
    num_fg = counts_per_image(image_index, num_images, fg)
    num_bg = counts_per_image(image_index, num_images, bg)
    fg_quota = num_fg.clamp(max=int(per_image * positive_fraction))
    bg_quota = torch.minimum(num_bg, per_image - fg_quota)
    take_fg = fg & (random_rank(fg, image_index, num_images) < fg_quota[image_index])
    take_bg = bg & (random_rank(bg, image_index, num_images) < bg_quota[image_index])
    return take_fg, take_bg


def match_and_sample(
    matcher: Matcher,
    iou: Tensor,
    image_index: Tensor,
    num_images: int,
    per_image: int,
    positive_fraction: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Match every prediction to a ground-truth box (``matcher`` over ``iou``: (R, G), -1 for a
    padded slot), then `sample_balanced`: (R,) int64 matched slot, (R,) bool sampled foreground,
    (R,) bool sampled background. The step the RPN (anchors) and the RoI heads (proposals) share."""
    matched, labels = matcher(iou, image_index, num_images)
    fg, bg = sample_balanced(
        labels, image_index, num_images, per_image=per_image, positive_fraction=positive_fraction
    )
    return matched, fg, bg
