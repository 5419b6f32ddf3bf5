"""RoI feature extraction: RoIAlign or RoIPool on one level, or on an FPN level chosen per box."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.ops import roi_pool

from heads.roi.roi_align import roi_align


def assign_levels(
    boxes: Tensor,
    min_level: int,
    max_level: int,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """FPN paper eq. (1): level ``floor(k0 + log2(sqrt(wh) / 224))`` clamped to the pyramid.

    (R, 4) boxes -> (R,) int64 index into the levels (0 = ``min_level``).
    """
    size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    level = torch.floor(
        canonical_level + torch.log2(size / canonical_size) + torch.tensor(eps, dtype=size.dtype)
    )
    return level.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


class RoIPooler(nn.Module):
    """Pool a fixed ``output_size`` square per box from feature maps at the given ``strides``.

    ``kind="align"``: RoIAlign with ``sampling_ratio`` (0 = adaptive) and ``aligned`` (half-pixel
    correction of detectron2's ROIAlignV2; torchvision's detectors use False). ``kind="pool"``:
    Fast R-CNN's RoIPool (quantised). With several levels each box goes to one level by
    :func:`assign_levels`.
    """

    def __init__(
        self,
        *,
        strides: Sequence[int],
        output_size: int,
        kind: Literal["align", "pool"] = "align",
        sampling_ratio: int = 0,
        aligned: bool = True,
        canonical_size: float = 224.0,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if kind not in ("align", "pool"):
            raise ValueError(f"pooler kind must be 'align' or 'pool', got {kind!r}")
        levels = [math.log2(s) for s in strides]
        if any(lv != int(lv) for lv in levels) or any(
            b - a != 1 for a, b in zip(levels, levels[1:])
        ):
            raise ValueError(
                f"pooler strides must be consecutive powers of two, got {list(strides)}"
            )
        self.scales = [1.0 / s for s in strides]
        self.min_level, self.max_level = int(levels[0]), int(levels[-1])
        self.output_size = output_size
        self.kind = kind
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.canonical_size = canonical_size
        self.canonical_level = canonical_level

    def _pool(self, x: Tensor, rois: Tensor, scale: float) -> Tensor:
        if self.kind == "pool":
            return roi_pool(x, rois, self.output_size, scale)
        return roi_align(x, rois, self.output_size, scale, self.sampling_ratio, self.aligned)

    def forward(self, features: list[Tensor], boxes: Tensor, image_index: Tensor) -> Tensor:
        """Per level (B, C, H_l, W_l); boxes (R, 4) xyxy input pixels;
        image index (R,) -> (R, C, S, S)."""
        if len(features) != len(self.scales):
            raise ValueError(
                f"pooler built for {len(self.scales)} levels got {len(features)} feature maps"
            )
        rois = torch.cat((image_index[:, None].to(boxes.dtype), boxes), dim=1)
        if len(features) == 1:
            return self._pool(features[0], rois, self.scales[0])
        return self._pool_levels(features, rois, self.assign_levels(boxes))

    def assign_levels(self, boxes: Tensor) -> Tensor:
        """(R, 4) boxes -> (R,) int64 index of the level each is pooled from (`assign_levels`)."""
        return assign_levels(
            boxes, self.min_level, self.max_level, self.canonical_size, self.canonical_level
        )

    @torch.compiler.disable
    def _pool_levels(self, features: list[Tensor], rois: Tensor, levels: Tensor) -> Tensor:
        """Each roi pooled from its level's map. Eager under ``torch.compile``: the rois of a
        level are found by ``nonzero`` (a data-dependent shape) once per level, so one opaque call
        ends the graph once instead of per level (and the loop triggers no recompilations)."""
        out = features[0].new_zeros(
            (len(rois), features[0].shape[1], self.output_size, self.output_size)
        )
        for level, (x, scale) in enumerate(zip(features, self.scales)):
            idx = (levels == level).nonzero(as_tuple=True)[0]
            out[idx] = self._pool(x, rois[idx], scale).to(out.dtype)
        return out
