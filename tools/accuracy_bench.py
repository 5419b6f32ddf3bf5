#!/usr/bin/env python
"""Ours and torchvision's Faster R-CNN trained to a config side by side, then evaluated alike.

    python tools/accuracy_bench.py configs/frcnn_r18_fpn_bccd.yaml --compare torchvision \
        [--seeds 0 1] [--output-dir DIR] [--json FILE] [key.sub=value ...]

Trains torchvision's FasterRCNN (built from torchvision's parts to the config:
resdet.benchmarks.torchvision_reference) and ours through the same engine on the same data order,
once per seed, evaluates both with the same evaluator, and prints every run's mAPs and per-class
AP, the minutes of each, the ratio, and the settings torchvision has no knob for
(resdet.benchmarks.accuracy). Finished runs are kept and not repeated. Each run is a full training
of the recipe: hours on a CPU. Speed and memory are tools/benchmark.py's.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from resdet.config import load_config
from resdet.evaluation.base import headline_metric
from resdet.utils.cli import run_tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", help="detector recipe (YAML)")
    p.add_argument(
        "--compare",
        choices=["torchvision"],
        default="torchvision",
        help="the reference trained beside ours: torchvision's Faster R-CNN (the only one)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed each")
    p.add_argument(
        "--output-dir", type=Path, help="where the runs go (default output/accuracy/<config name>)"
    )
    p.add_argument("--json", type=Path, help="write the runs and the verdict here")
    p.add_argument(
        "overrides",
        nargs="*",
        help="config overrides key.sub=value, e.g. solver.max_iter=1000 model.backbone.depth=50",
    )
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from resdet.benchmarks.accuracy import accuracy_table, compare_accuracy, verdict
    from resdet.benchmarks.torchvision_reference import unequal_settings

    a = parse_args(argv)
    cfg = load_config(a.config, list(a.overrides))
    root = a.output_dir or Path("output") / "accuracy" / Path(a.config).stem
    runs = compare_accuracy(a.config, list(a.overrides), seeds=a.seeds, root=root)
    metric = cfg.test.best_metric or headline_metric(runs[0].metrics)
    v = verdict(runs, metric)
    differences = unequal_settings(cfg)
    print(f"\n{a.config}: ours and torchvision's FasterRCNN, seeds {a.seeds} (percent; minutes)")
    print(accuracy_table(runs))
    print(
        f"{metric}: ours {100 * v['ours_mean']:.1f} vs torchvision "
        f"{100 * v['torchvision_mean']:.1f}"
        f" (torchvision's seed spread {100 * v['torchvision_spread']:.1f}): ours is "
        f"{'no worse' if v['ours_no_worse'] else 'WORSE'} beyond that spread; "
        f"time ours/torchvision {v['time_ratio']:.2f}x"
    )
    print("not equalised (torchvision has no knob):")
    for line in differences:
        print(f"  {line}")
    out = {
        "config": a.config,
        "overrides": a.overrides,
        "runs": [asdict(r) for r in runs],
        "verdict": v,
        "not_equalised": differences,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    run_tool(main, "accuracy_bench")
