"""Anchor boxes: a few cell anchors per feature level, repeated at every feature-map location."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def cell_anchors(
    sizes: Sequence[float], aspect_ratios: Sequence[float], round_to_int: bool
) -> Tensor:
    """Zero-centred anchors (len(ratios) * len(sizes), 4), ratio-major, each of area size**2 and
    ``height / width == ratio``."""
    sizes_t = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    ws = ((1 / h_ratios)[:, None] * sizes_t[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * sizes_t[None, :]).reshape(-1)
    anchors = torch.stack((-ws, -hs, ws, hs), dim=1) / 2
    return anchors.round() if round_to_int else anchors


class AnchorGenerator(nn.Module):
    """Anchors for every level of a feature pyramid (or a single level for C4).

    Args:
        sizes: per level, the anchor sizes (sqrt of area) in input pixels.
        aspect_ratios: per level, the height/width ratios (or one list for all levels).
        strides: per level, the feature stride in pixels (from the backbone's ``FeatureSpec``).
        offset: anchor centres sit at ``(i + offset) * stride``.
        round_to_int: round cell anchors to whole pixels (torchvision does, detectron2 does not).
        stride_from_image_size: take the stride as ``padded image size // grid size`` per axis
            (torchvision's rule; it differs from the nominal stride when the padded size is not a
            multiple of it, e.g. on p6).

    ``forward`` returns, per level, anchors (H*W*A, 4) xyxy ordered by location (row-major) and
    then by cell anchor, matching the RPN head's output layout.
    """

    def __init__(
        self,
        *,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[float] | Sequence[Sequence[float]],
        strides: Sequence[int],
        offset: float = 0.0,
        round_to_int: bool = False,
        stride_from_image_size: bool = False,
    ) -> None:
        super().__init__()
        if len(sizes) != len(strides):
            raise ValueError(
                f"anchor sizes give {len(sizes)} levels but the features have "
                f"{len(strides)} ({list(strides)})"
            )
        if aspect_ratios and not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = [aspect_ratios] * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise ValueError(f"{len(aspect_ratios)} aspect-ratio lists for {len(sizes)} levels")
        self.strides = [int(s) for s in strides]
        self.offset = float(offset)
        self.stride_from_image_size = stride_from_image_size
        cells = [cell_anchors(s, r, round_to_int) for s, r in zip(sizes, aspect_ratios)]
        self.num_anchors: list[int] = [len(c) for c in cells]
        self.num_ratios: list[int] = [len(r) for r in aspect_ratios]
        for i, c in enumerate(cells):
            self.register_buffer(f"cell{i}", c, persistent=False)

    def forward(
        self, grid_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]
    ) -> list[Tensor]:
        """Grid sizes (H_l, W_l) per level and the padded batch size (H, W) ->
        [(H_l*W_l*A_l, 4)]."""
        out = []
        for i, ((gh, gw), stride) in enumerate(zip(grid_sizes, self.strides)):
            cell: Tensor = getattr(self, f"cell{i}")
            sy, sx = (
                (image_size[0] // gh, image_size[1] // gw)
                if self.stride_from_image_size
                else (stride, stride)
            )
            xs = (torch.arange(gw, device=cell.device, dtype=torch.float32) + self.offset) * sx
            ys = (torch.arange(gh, device=cell.device, dtype=torch.float32) + self.offset) * sy
            y, x = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((x, y, x, y), dim=-1).reshape(-1, 1, 4)
            # (H*W, 1, 4) + (1, A, 4) -> (H*W*A, 4)
            out.append((shifts + cell[None]).reshape(-1, 4))
        return out
