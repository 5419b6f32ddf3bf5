"""IoU matching of predictions (anchors or proposals) to ground-truth boxes, for a
whole batch at once."""

from __future__ import annotations

import torch
from torch import Tensor

FOREGROUND, BACKGROUND, IGNORE = 1, 0, -1


class Matcher:
    """Label each prediction foreground (IoU >= ``fg_iou``), background (IoU <
    ``bg_iou``) or ignored.

    With ``allow_low_quality``, every prediction whose IoU with some ground-truth box equals that
    box's best IoU over all predictions of the same image becomes foreground too (Faster R-CNN's
    rule that each object gets at least one anchor). Boxes a prediction overlaps nowhere (IoU 0)
    never qualify, so objects without any overlapping anchor do not turn random anchors positive.
    """

    def __init__(self, *, fg_iou: float, bg_iou: float, allow_low_quality: bool) -> None:
        if not 0.0 <= bg_iou <= fg_iou <= 1.0:
            raise ValueError(
                f"need 0 <= bg_iou <= fg_iou <= 1, got bg_iou={bg_iou}, fg_iou={fg_iou}"
            )
        self.fg_iou = fg_iou
        self.bg_iou = bg_iou
        self.allow_low_quality = allow_low_quality

    def __call__(self, iou: Tensor, image_index: Tensor, num_images: int) -> tuple[Tensor, Tensor]:
        """Match R predictions against the (padded) ground truth of their own image.

        Args:
            iou: (R, G) IoU of prediction r with ground-truth slot g of r's image; slots that hold
                no box (padding) must be -1.
            image_index: (R,) int64, the image each prediction belongs to.
            num_images: batch size.
        Returns:
            matched (R,) int64 index of the best ground-truth slot (meaningful for foreground) and
            labels (R,) int8 in {1 foreground, 0 background, -1 ignore}.
        """
        r, g = iou.shape
        if g == 0:
            return (
                torch.zeros(r, dtype=torch.int64, device=iou.device),
                torch.full((r,), BACKGROUND, dtype=torch.int8, device=iou.device),
            )
        best, matched = iou.max(dim=1)
        labels = torch.full((r,), IGNORE, dtype=torch.int8, device=iou.device)
        labels[best >= self.fg_iou] = FOREGROUND
        labels[best < self.bg_iou] = BACKGROUND
        if self.allow_low_quality:
            # best IoU of every ground-truth slot over its image's predictions: (num_images, G)
            per_gt = iou.new_full((num_images, g), -1.0).scatter_reduce(
                0, image_index[:, None].expand(r, g), iou, reduce="amax"
            )
            target = per_gt[image_index]
            low_quality = ((iou == target) & (target > 0)).any(dim=1)
            labels[low_quality] = FOREGROUND
        return matched, labels
