#!/usr/bin/env python
"""COCO box evaluation speed: our COCOEvaluator on pycocotools and on faster-coco-eval
(`test.coco_backend`) against faster-coco-eval's own COCOeval called directly, in one process.

    python tools/bench_coco_eval.py --images 5000 --dets-per-image 100 --seed 0

Generates (seeded) a ground truth shaped like COCO 2017 val (`--images` images, about 7.3 boxes
an image, 80 categories with COCO's ids) and `--dets-per-image` detections an image (jittered
ground truth plus noise), then times each candidate once from the annotation file to the 12 stats
(resdet.benchmarks.coco_eval_speed). Prints wall and CPU seconds, peak resident set, the ratio
ours (faster) / faster-coco-eval, whether each candidate's stats equal pycocotools' exactly, and
the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from resdet.benchmarks.coco_eval_speed import Run, compare_coco_eval
from resdet.utils.cli import run_tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--dets-per-image", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the figures there")
    a = p.parse_args(argv)
    if a.images < 1 or a.dets_per_image < 1:
        p.error("--images and --dets-per-image must be >= 1")
    return a


def main(argv: list[str] | None = None) -> dict[str, Run]:
    a = parse_args(argv)
    load_before = os.getloadavg()
    runs = compare_coco_eval(
        a.images, a.dets_per_image, a.seed, progress=lambda line: print(line, flush=True)
    )
    load_after = os.getloadavg()
    reference = runs["ours/pycocotools"].stats
    print(f"{'candidate':<20} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12}  stats")
    for name, run in runs.items():
        same = "= pycocotools" if run.stats == reference else "DIFFER from pycocotools"
        print(f"{name:<20} {run.wall_s:8.2f} {run.cpu_s:8.2f} {run.peak_rss_mb:12.0f}  {same}")
    ratio = runs["ours/faster"].wall_s / runs["faster-coco-eval"].wall_s
    print(f"ours (faster) / faster-coco-eval: {ratio:.2f}x wall")
    print(f"AP {reference[0]:.4f}  AP50 {reference[1]:.4f}  AR100 {reference[8]:.4f}")
    print(
        "load average (1, 5, 15 min) before "
        f"{' '.join(f'{v:.2f}' for v in load_before)}, after "
        f"{' '.join(f'{v:.2f}' for v in load_after)}"
    )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "args": vars(a),
                    "runs": {k: asdict(v) for k, v in runs.items()},
                    "ratio_ours_faster": ratio,
                    "load_before": load_before,
                    "load_after": load_after,
                },
                indent=1,
            )
        )
    return runs


if __name__ == "__main__":
    run_tool(main, "bench_coco_eval")
