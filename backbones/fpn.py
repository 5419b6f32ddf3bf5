"""Feature Pyramid Network (Lin et al., 2017) on top of any backbone that declares ``output_specs``.

The function equals torchvision's ``FeaturePyramidNetwork`` with ``LastLevelMaxPool`` or
``LastLevelP6P7``, and the parameter names map one to one:

=====================================  ====================================
this module                            torchvision ``backbone.fpn``
=====================================  ====================================
``lateral_convs.{i}.0`` (``.1`` norm)  ``inner_blocks.{i}.0`` (``.1``)
``output_convs.{i}.0`` (``.1`` norm)   ``layer_blocks.{i}.0`` (``.1``)
``top_block.p6`` / ``top_block.p7``    ``extra_blocks.p6`` / ``extra_blocks.p7``
``bottom_up.*``                        ``backbone.body.*``
=====================================  ====================================

``i`` indexes ``in_features`` from the highest resolution (res2) down.

Levels are named by their stride, as DESIGN.md and detectron2 do: ``p<k>`` has stride 2^k
(``res2..res5`` at strides 4..32 give ``p2..p5``; the CIFAR nets' res2..res4 at 1, 2, 4 give
``p0..p2``). The input strides must double from one level to the next.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from backbones.norm import make_norm
from backbones.spec import FeatureSpec, PixelFormat

TOP_BLOCKS = ("maxpool", "p6p7")


def _conv_norm(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> nn.Sequential:
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm
    )
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, make_norm(norm, out_channels)) if norm else nn.Sequential(conv)


class LastLevelP6P7(nn.Module):
    """P6 = 3x3/2 conv of its input (P5 or C5), P7 = 3x3/2 conv of relu(P6); RetinaNet's levels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for conv in (self.p6, self.p7):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, Cin, H, W) -> P6 (N, C, ceil(H/2), ceil(W/2)), P7 at half of that."""
        p6 = self.p6(x)
        return p6, self.p7(F.relu(p6))


class FPN(nn.Module):
    """Wraps ``bottom_up`` and returns a pyramid with the same ``output_specs`` contract.

    Input (N, 3, H, W) as ``bottom_up`` expects (its ``pixel_format`` is forwarded). Output
    ``{"p<k>": (N, out_channels, H/2^k, W/2^k)}`` for every feature in ``in_features`` (named by
    its stride 2^k; ``level_names`` lists them, one per input feature), highest resolution first,
    then the top block: ``"maxpool"`` adds ``p<k+1>`` by 1x1 max pool
    with stride 2 on the coarsest output (Faster R-CNN FPN: res2..res5 -> p2..p6); ``"p6p7"`` adds
    ``p<k+1>, p<k+2>`` by :class:`LastLevelP6P7` (RetinaNet: res3..res5 -> p3..p7), fed with the
    coarsest FPN output (``top_block_input="p5"``) or the coarsest backbone map (``"c5"``).
    Top-down merging upsamples with nearest neighbour to the lateral map's exact size, so any
    input size works. ``norm`` ("" for none, else as :func:`backbones.norm.make_norm`) follows
    every lateral and output conv, which then has no bias. Input strides that are not powers of
    two, or that do not double from one level to the next (e.g. res4 and res5 both at stride 16
    with ``res5_dilation=2``), raise ``ValueError``.
    """

    def __init__(
        self,
        bottom_up: nn.Module,
        in_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        out_channels: int = 256,
        top_block: str | None = "maxpool",
        norm: str = "",
        top_block_input: str = "p5",
    ) -> None:
        super().__init__()
        specs: dict[str, FeatureSpec] = bottom_up.output_specs
        in_features = tuple(in_features)
        if not in_features:
            raise ValueError("FPN needs at least one input feature")
        for f in in_features:
            if f not in specs:
                raise ValueError(
                    f"FPN input feature {f!r} is not a bottom_up output; "
                    f"allowed: {', '.join(specs)}"
                )
        order = list(specs)
        if [order.index(f) for f in in_features] != sorted(order.index(f) for f in in_features):
            raise ValueError(f"in_features must go from high to low resolution, got {in_features}")
        if top_block is not None and top_block not in TOP_BLOCKS:
            raise ValueError(
                f"unknown top_block {top_block!r}; allowed: {', '.join(TOP_BLOCKS)} or None"
            )
        if top_block_input not in ("p5", "c5"):
            raise ValueError(f"unknown top_block_input {top_block_input!r}; allowed: p5, c5")

        self.bottom_up = bottom_up
        self.in_features = in_features
        self.top_block_input = top_block_input
        self.lateral_convs = nn.ModuleList(
            _conv_norm(specs[f].channels, out_channels, 1, norm) for f in in_features
        )
        self.output_convs = nn.ModuleList(
            _conv_norm(out_channels, out_channels, 3, norm) for _ in in_features
        )

        levels = _levels([specs[f].stride for f in in_features], in_features)
        #: the output name of each input feature, in ``in_features`` order
        self.level_names: tuple[str, ...] = tuple(f"p{lv}" for lv in levels)
        num_top = {"maxpool": 1, "p6p7": 2, None: 0}[top_block]
        names = self.level_names + tuple(f"p{levels[-1] + i}" for i in range(1, num_top + 1))
        self.top_block: nn.Module | None = None
        self._top_block_kind = top_block
        if top_block == "p6p7":
            in_ch = out_channels if top_block_input == "p5" else specs[in_features[-1]].channels
            self.top_block = LastLevelP6P7(in_ch, out_channels)
        self.output_specs: dict[str, FeatureSpec] = {
            name: FeatureSpec(out_channels, 2 ** int(name[1:])) for name in names
        }
        self.out_features = names

    @property
    def pixel_format(self) -> PixelFormat:
        """The input format of the wrapped backbone's weights."""
        return self.bottom_up.pixel_format

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) -> {"p<k>": (N, out_channels, H/stride, W/stride)}, high-res first."""
        feats = self.bottom_up(x)
        bottom = [feats[f] for f in self.in_features]
        top_down = self.lateral_convs[-1](bottom[-1])
        results = [self.output_convs[-1](top_down)]
        for i in range(len(bottom) - 2, -1, -1):
            lateral = self.lateral_convs[i](bottom[i])
            top_down = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.output_convs[i](top_down))
        if self._top_block_kind == "maxpool":
            results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2))
        elif self._top_block_kind == "p6p7":
            results.extend(
                self.top_block(results[-1] if self.top_block_input == "p5" else bottom[-1])
            )
        return dict(zip(self.out_features, results))


def _levels(strides: Sequence[int], features: Sequence[str]) -> list[int]:
    """Input strides -> pyramid levels k (stride 2^k), checked to double from level to level."""
    levels = [int(math.log2(s)) for s in strides]
    if any(2**lv != s for lv, s in zip(levels, strides)):
        raise ValueError(
            f"FPN input strides must be powers of two, got {list(strides)} for {list(features)}"
        )
    for a, b, fa, fb in zip(levels, levels[1:], features, features[1:]):
        if b != a + 1:
            raise ValueError(
                f"FPN input strides must double from one level to the next, got "
                f"{fa} at stride {2**a} then {fb} at stride {2**b} "
                f"(in_features {list(features)}, strides {list(strides)})"
            )
    return levels
