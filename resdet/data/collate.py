"""Batch collation that keeps images at their own sizes and every target's metadata."""

from __future__ import annotations

from typing import Any

import torch


def collate_detection(
    batch: list[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """[(image (3, H_i, W_i), target_i), ...] -> ([image_i, ...], [target_i, ...]);
    nothing is padded or dropped."""
    return [image for image, _ in batch], [target for _, target in batch]
