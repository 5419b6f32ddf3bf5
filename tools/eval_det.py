"""Evaluate a detector checkpoint or a detections file against a config's test set.

    python tools/eval_det.py CONFIG --weights CKPT [--save-detections RESULTS.json]  # run the model
    torchrun --nproc-per-node N tools/eval_det.py CONFIG --weights CKPT   # sharded over ranks
    python tools/eval_det.py CONFIG --detections RESULTS.json   # score a file, no model

A results file whose records carry `segmentation` (COCO RLE) is scored as boxes and as masks (COCO:
`segm/AP`, ...; a record without `bbox` gets its mask's box).

CKPT: a resdet checkpoint (model_final.pth, ...) or torchvision / detectron2 detector weights.
Prints a table and writes `metrics.json` into `--output-dir` (default `<output_dir>/eval`) in the
layout every evaluation uses (`resdet.io.run_dir`): `{"checkpoint" | "detections", "metrics"}`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resdet.config import load_config
from resdet.data.errors import DatasetError
from resdet.evaluation import evaluate_detections, read_results
from resdet.io.run_dir import eval_dir, write_evaluation
from resdet.runs.detection import evaluate_weights, load_datasets
from resdet.utils.atomic import OutputDirError, ensure_writable_dir
from resdet.utils.cli import run_tool
from resdet.utils.dist import get_rank, shutdown_distributed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "config", help="YAML config; its data.test names the ground truth, its model the network"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="detector checkpoint to run on data.test")
    source.add_argument(
        "--detections",
        help="results-format JSON (image_id, category_id, bbox xywh, score; segmentation RLE "
        "for masks)",
    )
    p.add_argument(
        "--save-detections",
        metavar="PATH",
        help="with --weights: also write the model's detections there (results format)",
    )
    p.add_argument(
        "--output-dir", help="where metrics.json goes (default: <config output_dir>/eval)"
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = p.parse_intermixed_args(argv)
    if args.save_detections and not args.weights:
        p.error("--save-detections needs --weights (a --detections file is already saved)")
    return args


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    # before the evaluation: an output that cannot be written is one line, not a lost run
    output_dir = args.output_dir or eval_dir(cfg.output_dir)
    ensure_writable_dir(output_dir, "--output-dir" if args.output_dir else "output_dir/eval")
    if args.save_detections:
        if Path(args.save_detections).is_dir():
            raise OutputDirError(f"--save-detections {args.save_detections} is a folder")
        ensure_writable_dir(Path(args.save_detections).parent, "the folder of --save-detections")
    if args.detections:
        metrics, evaluator = evaluate_detections(
            cfg, read_results(args.detections), source=args.detections
        )
        print(evaluator.format_table(metrics))
    else:
        test_set = load_datasets(cfg, train=False).test
        if test_set is None:
            raise DatasetError(f"{args.config}: data.test lists no dataset to evaluate on")
        metrics = evaluate_weights(
            cfg, test_set, args.weights, detections_path=args.save_detections
        )
    if get_rank() == 0 and metrics is not None:
        path = write_evaluation(
            output_dir, metrics, checkpoint=args.weights, detections=args.detections
        )
        print(f"wrote {path}" + (f" and {args.save_detections}" if args.save_detections else ""))
    shutdown_distributed()
    return metrics


def cli() -> int:
    main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    run_tool(cli, "eval_det")
