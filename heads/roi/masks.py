"""Instance masks around the mask head: training targets, the loss, and pasting into the image.

Masks of the ground truth stay in their image's own frame (no resizing): a proposal box in network
input pixels is mapped to that frame, and RoIAlign of the binary mask onto the box gives its
target, for all foreground proposals of a batch in one call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from heads.roi.roi_align import roi_align


def mask_targets(masks: Tensor, mask_index: Tensor, boxes: Tensor, resolution: int) -> Tensor:
    """Binary targets of the mask head.

    Args:
        masks: (K, H, W) uint8/bool ground-truth masks (the batch's, padded to one size).
        mask_index: (F,) int64, the mask each box is matched to.
        boxes: (F, 4) xyxy boxes in the masks' pixel frame.
        resolution: side S of the head's output.
    Returns:
        (F, S, S) float 0/1: the mask averaged over each of the S x S bins of its box (RoIAlign,
        half-pixel aligned, adaptive sampling), thresholded at 0.5.
    """
    if len(boxes) == 0:
        return boxes.new_zeros((0, resolution, resolution))
    used, local = mask_index.unique(return_inverse=True)  # convert only the masks in use
    rois = torch.cat((local[:, None].to(boxes.dtype), boxes), dim=1)
    soft = roi_align(masks[used, None].to(boxes.dtype), rois, resolution, 1.0, 0, True)[:, 0]
    return (soft >= 0.5).to(boxes.dtype)


def mask_loss(logits: Tensor, classes: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross entropy of each foreground RoI's own-class mask (Mask R-CNN's L_mask).

    (F, C, S, S) logits, (F,) int64 class of each RoI, (F, S, S) targets -> scalar; 0 (with a
    gradient path) when there is no foreground RoI.
    """
    if len(logits) == 0:
        return logits.sum() * 0.0
    own = logits[torch.arange(len(logits), device=logits.device), classes]
    return F.binary_cross_entropy_with_logits(own, targets)


def _axis_matrix(lo: Tensor, hi: Tensor, length: int, side: int) -> Tensor:
    """(D, length, side + 2) bilinear weights from a padded mask axis of `side + 2` samples onto
    the image pixels `lo[d]..hi[d]` (inclusive integer box extent; zero rows elsewhere), as
    `F.interpolate(mode="bilinear", align_corners=False)` resizes onto `hi - lo + 1` pixels."""
    src_len = side + 2
    pixels = torch.arange(length, device=lo.device)
    extent = (hi - lo + 1).clamp(min=1)  # (D,)
    u = (pixels[None, :] - lo[:, None]).to(torch.float32)  # (D, length) pixel within the box
    ratio = (src_len / extent.to(torch.float32))[:, None]
    src = ((u + 0.5) * ratio - 0.5).clamp(min=0.0)
    i0 = src.floor().clamp(max=src_len - 1)
    frac = src - i0
    i0 = i0.to(torch.int64)
    i1 = (i0 + 1).clamp(max=src_len - 1)
    inside = ((pixels[None, :] >= lo[:, None]) & (pixels[None, :] <= hi[:, None])).float()
    m = torch.zeros((len(lo), length, src_len), device=lo.device)
    m.scatter_add_(2, i0[..., None], ((1.0 - frac) * inside)[..., None])
    m.scatter_add_(2, i1[..., None], (frac * inside)[..., None])
    return m


def paste_masks(masks: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """(D, S, S) mask probabilities on their (D, 4) xyxy boxes -> (D, height, width) in the image.

    Each mask, padded by one zero pixel per side, is stretched over its box expanded by (S+2)/S
    (so the padding falls just outside the box), truncated to integer pixels, and resized
    bilinearly onto them: torchvision's `paste_masks_in_image` arithmetic. Bilinear resizing is
    separable, so every mask is pasted at once as `Ry @ padded @ Rx^T` with per-mask (height,
    S+2) and (width, S+2) interpolation matrices that are zero outside the box.
    """
    num, side = masks.shape[0], masks.shape[-1]
    if num == 0:
        return masks.new_zeros((0, height, width))
    padded = F.pad(masks.float(), (1, 1, 1, 1))
    scale = (side + 2) / side
    boxes = boxes.float()
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx, cy = (boxes[:, 2] + boxes[:, 0]) * 0.5, (boxes[:, 3] + boxes[:, 1]) * 0.5
    # truncation toward zero, as an int64 cast of the expanded box
    x0, x1 = (cx - half_w).to(torch.int64), (cx + half_w).to(torch.int64)
    y0, y1 = (cy - half_h).to(torch.int64), (cy + half_h).to(torch.int64)
    rows = _axis_matrix(y0, y1, height, side)
    cols = _axis_matrix(x0, x1, width, side)
    return torch.bmm(torch.bmm(rows, padded), cols.transpose(1, 2)).to(masks.dtype)
