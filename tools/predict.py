"""Run a trained detector on your own images: one drawn PNG per image and one results JSON.

    python tools/predict.py configs/demo_shapes.yaml --weights output/demo_shapes/model_final.pth \
        photos/ more/*.jpg one.png [--output-dir DIR] [--score-thresh 0.5] [--device cpu]

INPUT: image files, folders (their image files, not recursive) and globs (quote `**` globs).
Arguments of the form key.sub=value are config overrides. Class names come from the checkpoint
(resdet checkpoints carry them); no dataset is read. Writes `<stem>.png` per image and
`predictions.json` (see `resdet.deploy.predict`) into `--output-dir` (default
`<output_dir>/predict`), which must not be a folder holding any INPUT image (refused before the
model runs: drawings there could replace your photos). Images that cannot be decoded are listed and
skipped. Exit code 0 on success (also with skipped images), 2 for bad input (a config, a
checkpoint, an input that names no file, an output folder that holds inputs or cannot be written),
1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from resdet.config import load_config
from resdet.deploy.predict import (
    PredictionReport,
    check_output_dir,
    collect_images,
    load_predictor,
    predict_images,
)
from resdet.utils.cli import run_tool

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", help="YAML config the checkpoint was trained with")
    p.add_argument("--weights", required=True, help="detector checkpoint (model_final.pth, ...)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs")
    p.add_argument("--output-dir", help="where drawings and predictions.json go")
    p.add_argument(
        "--score-thresh",
        type=float,
        default=0.5,
        help="keep detections scoring at least this (drawings and JSON; default 0.5)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="images per forward (default 4)")
    p.add_argument(
        "--device", help="torch device (default: cuda when available, else cpu)", default=None
    )
    args = p.parse_intermixed_args(argv)
    args.overrides = [a for a in args.inputs if _OVERRIDE.match(a) and not Path(a).exists()]
    args.inputs = [a for a in args.inputs if a not in args.overrides]
    if not args.inputs:
        p.error("no INPUT images given")
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return args


def main(argv: list[str] | None = None) -> PredictionReport:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    paths = collect_images(args.inputs)
    out_dir = Path(args.output_dir) if args.output_dir else Path(cfg.output_dir) / "predict"
    check_output_dir(paths, out_dir, "--output-dir" if args.output_dir else "output_dir/predict")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = load_predictor(cfg, args.weights, device)
    report = predict_images(
        predictor, paths, out_dir, score_thresh=args.score_thresh, batch_size=args.batch_size
    )
    for path, reason in report.skipped:
        print(f"skipped {reason}" if str(path) in reason else f"skipped {path}: {reason}")
    print(
        f"predicted {len(report.predicted)} image(s), {report.num_detections} detection(s) "
        f"with score >= {args.score_thresh}; skipped {len(report.skipped)} unreadable; "
        f"wrote {out_dir}/*.png and {report.results}"
    )
    return report


def cli() -> int:
    main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    run_tool(cli, "predict", expected=(ValueError, FileNotFoundError))
