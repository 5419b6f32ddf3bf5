"""Draw ground truth and detections on dataset images, or plot the curves of training runs.

    python tools/visualize.py boxes CONFIG --detections RESULTS.json --output-dir vis/ [--num 20]
    python tools/visualize.py curves output/run_a output/run_b --output curves.png \
        [--keys total_loss,AP50]
    python tools/visualize.py fig6 output/cls_plain20_cifar10 output/cls_plain56_cifar10 \
        output/cls_resnet20_cifar10 output/cls_resnet56_cifar10 --output fig6.png

`boxes`: ground truth in green, detections (class and score) in red, one PNG per image at the
image's size; RESULTS.json is the results format of `tools/eval_det.py --detections`.
`curves`: one subplot per key, one line per run, from each run's `metrics.jsonl`.
`fig6`: the view of Fig. 6 (He et al. 2015) for tools/pretrain_cls.py runs: training (dashed) and
test (solid) top-1 error over iterations, plain nets left, residual nets right
(configs/cls_shapes_fig6.yaml lists the commands for the same figure on the shapes set, on a CPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resdet.config import load_config
from resdet.data.build import build_detection_dataset
from resdet.evaluation import read_results
from resdet.reports.curves import plot_curves, plot_error_curves, read_run, resolve_keys, run_labels
from resdet.reports.visualize import draw_dataset, group_detections
from resdet.utils.cli import run_tool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("boxes", help="ground truth and detections drawn on images, one PNG each")
    b.add_argument("config", help="YAML config; data.<split> names the images and ground truth")
    b.add_argument(
        "--detections",
        help="results-format JSON (image_id, category_id, bbox xywh, score); "
        "without it only the ground truth is drawn",
    )
    b.add_argument(
        "--split", choices=("train", "test"), default="test", help="which of data.train / data.test"
    )
    b.add_argument(
        "--num", type=int, help="draw the first N images (default: 20, or all of --image-ids)"
    )
    b.add_argument(
        "--image-ids", nargs="+", help="draw these images instead (ids as in the dataset)"
    )
    b.add_argument(
        "--score-thresh", type=float, default=0.5, help="draw detections scoring at least this"
    )
    b.add_argument("--output-dir", required=True, help="where <image_id>.png files go")
    b.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    c = sub.add_parser("curves", help="loss and mAP curves of one or more runs")
    c.add_argument("runs", nargs="+", help="output directories holding metrics.jsonl")
    c.add_argument("--output", required=True, help="PNG to write")
    c.add_argument(
        "--keys",
        help="comma-separated keys (default: the losses and mAP keys logged); "
        "'AP50' also finds 'eval/AP50'",
    )
    f = sub.add_parser("fig6", help="Fig. 6: training and test error of classification runs")
    f.add_argument(
        "runs", nargs="+", help="tools/pretrain_cls.py output directories (metrics.jsonl)"
    )
    f.add_argument(
        "--labels", nargs="+", help="one legend label per run (default: plain-20, ResNet-56, ...)"
    )
    f.add_argument("--output", default="error_curves.png", help="PNG to write")
    f.add_argument(
        "--smooth", type=int, default=1, help="moving average over this many logged training points"
    )
    f.add_argument("--title", help="figure title")
    argv = sys.argv[1:] if argv is None else argv
    parsers = {"boxes": b, "curves": c, "fig6": f}
    if not argv or argv[0] not in parsers:
        return p.parse_args(argv)  # prints usage and exits
    # subparsers cannot parse intermixed options and positionals (config overrides), so the chosen
    # one does
    args = parsers[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    if args.command == "boxes" and args.num is not None and args.num < 1:
        b.error(f"--num must be >= 1, got {args.num}")
    if args.command == "fig6" and args.labels and len(args.labels) != len(args.runs):
        f.error(f"--labels has {len(args.labels)} entries for {len(args.runs)} runs")
    return args


def boxes(args: argparse.Namespace) -> list[Path]:
    cfg = load_config(args.config, args.overrides)
    dataset = build_detection_dataset(cfg.data, args.split)
    detections = (
        group_detections(read_results(args.detections), dataset, source=args.detections)
        if args.detections
        else {}
    )
    num = args.num if args.num is not None or args.image_ids else 20
    written = draw_dataset(
        dataset,
        detections,
        args.output_dir,
        num=num,
        image_ids=args.image_ids,
        score_thresh=args.score_thresh,
    )
    print(f"wrote {len(written)} image(s) to {args.output_dir}")
    return written


def curves(args: argparse.Namespace) -> Path:
    runs = [read_run(d, label) for d, label in zip(args.runs, run_labels(args.runs))]
    wanted = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    keys = resolve_keys(runs, wanted)
    out = plot_curves(runs, keys, args.output)
    print(f"plotted {', '.join(keys)} for {len(runs)} run(s): {out}")
    return out


def fig6(args: argparse.Namespace) -> Path:
    labels = args.labels or [None] * len(args.runs)
    runs = [read_run(r, label) for r, label in zip(args.runs, labels)]
    out = plot_error_curves(runs, args.output, smooth=args.smooth, title=args.title)
    for r in runs:
        last = f"{r.test_error[-1]:.2f}%" if len(r.test_error) else "n/a"
        print(f"{r.label:>12}: final training error {r.train_error[-1]:.2f}%, test error {last}")
    print(f"figure: {out}")
    return out


def main(argv: list[str] | None = None) -> list[Path] | Path:
    args = parse_args(argv)
    return {"boxes": boxes, "curves": curves, "fig6": fig6}[args.command](args)


def cli() -> int:
    """`main` for the command line: bad input (a config, a dataset, an image, a detections or
    metrics file; the library raises `ValueError`s and `FileNotFoundError`s naming it) is one line
    on stderr and exit code 2, without a traceback."""
    try:
        main(sys.argv[1:])
    except (ValueError, FileNotFoundError) as e:
        print(f"visualize: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_tool(cli, "visualize", expected=())
