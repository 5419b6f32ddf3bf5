#!/usr/bin/env python
"""heads.roi.roi_align against torchvision.ops.roi_align on CPU: forward, and forward +
backward.

    python tools/bench_roi_align.py --rois 1024 --size 128 --channels 256 --layout nhwc

The workload is one FPN level of a training step: (images, channels, size, size) features and
``--rois`` boxes of 8..120 px at stride 4, pooled to 7x7 with ``--sampling-ratio`` points per bin
side (resdet.benchmarks.roi_align_speed). Prints median milliseconds and the speed-up (torchvision
time / ours).
"""

from __future__ import annotations

import argparse

from resdet.benchmarks.roi_align_speed import PHASES, RoIAlignWorkload, compare_roi_align
from resdet.utils.cli import run_tool


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


def main(argv: list[str] | None = None) -> dict[str, float]:
    a = parse_args(argv)
    workload = RoIAlignWorkload(
        rois=a.rois,
        images=a.images,
        channels=a.channels,
        size=a.size,
        sampling_ratio=a.sampling_ratio,
        layout=a.layout,
    )
    out = compare_roi_align(workload, a.iters)
    for phase, _ in PHASES:
        ours, tv = out[f"{phase}_ours_ms"], out[f"{phase}_torchvision_ms"]
        print(
            f"{phase:17s} ours {ours:8.1f} ms  torchvision {tv:8.1f} ms  speed-up {tv / ours:5.2f}x"
        )
    return out


if __name__ == "__main__":
    run_tool(main, "bench_roi_align")
