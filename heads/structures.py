"""Flat, batch-wide containers: every box carries the index of its image, so no per-image lists."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class GroundTruth:
    """Ground truth padded to the largest count G in the batch.

    boxes (B, G, 4) xyxy in network-input pixels, labels (B, G) int64 in 0..num_classes-1,
    valid (B, G) bool (False for padding).
    """

    boxes: Tensor
    labels: Tensor
    valid: Tensor


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
    image index (D,)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    image_index: Tensor
