"""Box <-> delta coding of R-CNN: centre offsets relative to the reference size, log-space sizes."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: detectron2/torchvision clamp on dw, dh: exp() never grows a box by more than 1000/16.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode target boxes as deltas ``(dx, dy, dw, dh)`` from reference boxes, and decode back.

    ``dx = wx * (cx_t - cx_r) / w_r``, ``dw = ww * log(w_t / w_r)`` (likewise for y, h); boxes are
    xyxy, widths are ``x2 - x1`` (no +1). ``decode`` clamps dw, dh at ``scale_clamp``.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ) -> None:
        if len(weights) != 4 or any(w <= 0 for w in weights):
            raise ValueError(f"box coder weights must be 4 positive numbers, got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """(..., 4) reference and target boxes -> (..., 4) deltas."""
        wx, wy, ww, wh = self.weights
        rw = reference[..., 2] - reference[..., 0]
        rh = reference[..., 3] - reference[..., 1]
        rx = reference[..., 0] + 0.5 * rw
        ry = reference[..., 1] + 0.5 * rh
        tw = target[..., 2] - target[..., 0]
        th = target[..., 3] - target[..., 1]
        tx = target[..., 0] + 0.5 * tw
        ty = target[..., 1] + 0.5 * th
        return torch.stack(
            (
                wx * (tx - rx) / rw,
                wy * (ty - ry) / rh,
                ww * torch.log(tw / rw),
                wh * torch.log(th / rh),
            ),
            dim=-1,
        )

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Deltas (R, K*4) for K boxes per reference box (R, 4) -> boxes (R, K, 4).

        Any leading shape works: ``deltas`` (..., K*4) with ``reference`` (..., 4).
        """
        wx, wy, ww, wh = self.weights
        deltas = deltas.reshape(*deltas.shape[:-1], deltas.shape[-1] // 4, 4)
        reference = reference.to(deltas.dtype)
        w = (reference[..., 2] - reference[..., 0])[..., None]
        h = (reference[..., 3] - reference[..., 1])[..., None]
        cx = reference[..., 0, None] + 0.5 * w
        cy = reference[..., 1, None] + 0.5 * h
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.scale_clamp)
        px = dx * w + cx
        py = dy * h + cy
        half_w = 0.5 * (torch.exp(dw) * w)
        half_h = 0.5 * (torch.exp(dh) * h)
        return torch.stack((px - half_w, py - half_h, px + half_w, py + half_h), dim=-1)
