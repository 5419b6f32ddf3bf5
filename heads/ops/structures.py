"""Flat, batch-wide containers: every box carries the index of its image, so no per-image lists."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class GroundTruth:
    """Ground truth padded to the largest count G in the batch.

    boxes (B, G, 4) xyxy in network-input pixels, labels (B, G) int64 in 0..num_classes-1,
    valid (B, G) bool (False for padding; an image's boxes fill its first slots).
    With instance masks: masks (K, H, W) uint8, the valid slots' masks in (image, slot) order, each
    in its own image's pixel frame (not resized; zero-padded to the largest image), and
    to_mask_frame (B, 4) the factors (sx, sy, sx, sy) taking an image's network-input xyxy boxes
    to that frame.
    """

    boxes: Tensor
    labels: Tensor
    valid: Tensor
    masks: Tensor | None = None
    to_mask_frame: Tensor | None = None

    def mask_index(self, image_index: Tensor, slot: Tensor) -> Tensor:
        """(R,) image and slot of valid ground truth -> (R,) int64 row of its mask in `masks`."""
        counts = self.valid.sum(dim=1)
        return (counts.cumsum(0) - counts)[image_index] + slot


@dataclass
class Proposals:
    """R proposals of a batch: boxes (R, 4) xyxy, objectness probabilities (R,), image index (R,).

    Sorted by image, then by decreasing score.
    """

    boxes: Tensor
    scores: Tensor
    image_index: Tensor


@dataclass
class Detections:
    """Final detections of a batch: boxes (D, 4), scores (D,), labels (D,) int64,
    image index (D,); with a mask head, masks (D, S, S) probabilities of the detection's class
    over its box."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    image_index: Tensor
    masks: Tensor | None = None
