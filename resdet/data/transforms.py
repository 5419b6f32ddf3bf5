"""Detection transforms on (image, target) pairs, plus mapping predictions back to the original image.

A transform is called as `image, target = t(image, target)` with `image` an RGB `uint8` Tensor of shape
(3, H, W) (any strides: the decoder's (H, W, 3) array viewed channels-last) and `target["boxes"]` an
(N, 4) float32 xyxy array in that image's pixels. Resizing works on `uint8` pixels before the float
conversion (torchvision's bilinear, antialiased when shrinking: its channels-last `uint8` kernel is
several times faster than Pillow's here). Random choices draw from torch's global generator, which the
DataLoader seeds per worker.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

Target = dict[str, Any]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


def resized_shape(height: int, width: int, short_side: int, max_size: int) -> tuple[int, int]:
    """(H, W) after scaling the shorter side to `short_side`, capped so the longer side is <= `max_size`."""
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


class ResizeShortestEdge:
    """Resize so the shorter side is one of `short_sides` (chosen at random) and the longer <= `max_size`.

    Boxes are scaled by the exact per-axis ratio of new to old size.
    """

    def __init__(self, short_sides: Sequence[int], max_size: int) -> None:
        if not short_sides:
            raise ValueError("ResizeShortestEdge needs at least one short side")
        self.short_sides = [int(s) for s in short_sides]
        self.max_size = int(max_size)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        h, w = image.shape[-2:]
        k = int(torch.randint(len(self.short_sides), ()).item()) if len(self.short_sides) > 1 else 0
        nh, nw = resized_shape(h, w, self.short_sides[k], self.max_size)
        if (nh, nw) != (h, w):
            image = F.resize(image, [nh, nw], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        boxes = target["boxes"] * np.array([nw / w, nh / h, nw / w, nh / h], dtype=np.float32)
        return image, {**target, "boxes": boxes}


class RandomHorizontalFlip:
    """Mirror the image with probability `prob`; a box `(x1, y1, x2, y2)` becomes `(W - x2, y1, W - x1, y2)`."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = float(prob)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if self.prob <= 0 or torch.rand(()).item() >= self.prob:
            return image, target
        w = image.shape[-1]
        boxes = target["boxes"][:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], dtype=np.float32)
        boxes += np.array([w, 0, w, 0], dtype=np.float32)
        return image.flip(-1), {**target, "boxes": boxes}


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


def to_original_size(boxes: torch.Tensor, image_size: tuple[int, int], orig_size: tuple[int, int]) -> torch.Tensor:
    """Map (N, 4) xyxy boxes from the transformed image (H, W) back to the original (H0, W0), clipped."""
    (h, w), (h0, w0) = image_size, orig_size
    scale = boxes.new_tensor([w0 / w, h0 / h, w0 / w, h0 / h])
    out = boxes * scale
    out[:, 0::2] = out[:, 0::2].clamp(0, w0)
    out[:, 1::2] = out[:, 1::2].clamp(0, h0)
    return out
