"""RoIAlign speed: `heads.roi.roi_align` against `torchvision.ops.roi_align` on CPU, forward and
forward + backward; tools/bench_roi_align.py prints it.

The workload is one FPN level of a training step: (images, channels, size, size) features and
`rois` boxes of 8..120 px at stride 4, pooled to 7x7 with `sampling_ratio` points per bin side.
Each figure is the median milliseconds of timed calls after one warm-up call
(`resdet.benchmarks.timing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torchvision.ops import roi_align as tv_roi_align

from heads.roi.roi_align import roi_align
from resdet.benchmarks import timing

#: (phase name, with backward)
PHASES = (("forward", False), ("forward+backward", True))


@dataclass
class RoIAlignWorkload:
    """One FPN level: `images` feature maps of `channels` x `size` x `size` cells at stride 4
    (`layout` nchw | nhwc) and `rois` boxes; `sampling_ratio` 0 is adaptive."""

    rois: int = 1024
    images: int = 2
    channels: int = 256
    size: int = 128
    sampling_ratio: int = 2
    layout: str = "nhwc"

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features (N, C, S, S), rois (R, 5) in input pixels at stride 4, output
        gradient (R, C, 7, 7)."""
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.images, self.channels, self.size, self.size, generator=g)
        if self.layout == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        xy = torch.rand(self.rois, 2, generator=g) * (self.size * 4 - 120)
        wh = 8 + torch.rand(self.rois, 2, generator=g) * 112
        image = torch.randint(0, self.images, (self.rois, 1), generator=g).float()
        grad = torch.randn(self.rois, self.channels, 7, 7, generator=g)
        return x, torch.cat([image, xy, xy + wh], 1), grad


def median_ms(fn: Callable[[], None], iters: int) -> float:
    """Median milliseconds of `iters` timed calls after one warm-up call."""
    return 1000 * timing.median(timing.time_iterations(fn, iters, warmup=1))


def compare_roi_align(w: RoIAlignWorkload, iters: int) -> dict[str, float]:
    """`{"<phase>_ours_ms", "<phase>_torchvision_ms"}` for each of `PHASES`: per phase ours is
    timed, then torchvision's."""
    x, rois, grad = w.tensors()

    def run(op: Callable, backward: bool) -> Callable[[], None]:
        def step() -> None:
            inp = x.detach().requires_grad_(backward)
            out = op(inp, rois, 7, 0.25, w.sampling_ratio, False)
            if backward:
                out.backward(grad)

        return step

    out: dict[str, float] = {}
    for phase, backward in PHASES:
        with torch.set_grad_enabled(backward):
            out[f"{phase}_ours_ms"] = median_ms(run(roi_align, backward), iters)
            out[f"{phase}_torchvision_ms"] = median_ms(run(tv_roi_align, backward), iters)
    return out
