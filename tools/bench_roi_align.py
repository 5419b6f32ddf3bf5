#!/usr/bin/env python
"""heads.roi.roi_align against torchvision.ops.roi_align on CPU: forward and forward +
backward, interleaved.

    python tools/bench_roi_align.py --rois 1024 --size 128 --channels 256 --layout nhwc

The workload is one FPN level of a training step: (images, channels, size, size) features and
``--rois`` boxes of 8..120 px at stride 4, pooled to 7x7 with ``--sampling-ratio`` points per bin
side. Prints median milliseconds and the speed-up (torchvision time / ours).
"""

from __future__ import annotations

import argparse
from typing import Callable

import torch
from torchvision.ops import roi_align as tv_roi_align

from heads.roi.roi_align import roi_align
from resdet.benchmarks import timing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rois", type=int, default=1024)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--size", type=int, default=128, help="feature map side (cells)")
    p.add_argument("--sampling-ratio", type=int, default=2, help="0: adaptive")
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nhwc")
    p.add_argument("--iters", type=int, default=5)
    return p.parse_args(argv)


def workload(a: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (N, C, S, S), rois (R, 5) in input pixels at stride 4, output
    gradient (R, C, 7, 7)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.images, a.channels, a.size, a.size, generator=g)
    if a.layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    xy = torch.rand(a.rois, 2, generator=g) * (a.size * 4 - 120)
    wh = 8 + torch.rand(a.rois, 2, generator=g) * 112
    image = torch.randint(0, a.images, (a.rois, 1), generator=g).float()
    return x, torch.cat([image, xy, xy + wh], 1), torch.randn(a.rois, a.channels, 7, 7, generator=g)


def median_ms(fn: Callable[[], None], iters: int) -> float:
    """Median milliseconds of `iters` timed calls after one warm-up call."""
    return 1000 * timing.median(timing.time_iterations(fn, iters, warmup=1))


def main(argv: list[str] | None = None) -> dict[str, float]:
    a = parse_args(argv)
    x, rois, grad = workload(a)

    def run(op: Callable, backward: bool) -> Callable[[], None]:
        def step() -> None:
            inp = x.detach().requires_grad_(backward)
            out = op(inp, rois, 7, 0.25, a.sampling_ratio, False)
            if backward:
                out.backward(grad)

        return step

    out: dict[str, float] = {}
    for phase, backward in (("forward", False), ("forward+backward", True)):
        with torch.set_grad_enabled(backward):
            ours = median_ms(run(roi_align, backward), a.iters)
            tv = median_ms(run(tv_roi_align, backward), a.iters)
        out[f"{phase}_ours_ms"], out[f"{phase}_torchvision_ms"] = ours, tv
        print(
            f"{phase:17s} ours {ours:8.1f} ms  torchvision {tv:8.1f} ms  speed-up {tv / ours:5.2f}x"
        )
    return out


if __name__ == "__main__":
    main()
