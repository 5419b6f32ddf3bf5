"""Fig. 6-style plot (He et al. 2015) of training (dashed) and test (solid) top-1 error over
iterations, plain nets left, residual nets right, from the output directories of
tools/pretrain_cls.py runs.

    python tools/plot_curves.py output/cls_plain20_cifar10 output/cls_plain56_cifar10 \
        output/cls_resnet20_cifar10 output/cls_resnet56_cifar10 --out fig6.png

configs/cls_shapes_fig6.yaml lists the commands for the same figure on the shapes set, on a CPU.
"""

from __future__ import annotations

import argparse

from resdet.reports.curves import plot_error_curves, read_run
from resdet.utils.cli import run_tool


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "runs", nargs="+", help="output directories holding metrics.jsonl (and config.yaml)"
    )
    p.add_argument(
        "--labels", nargs="+", help="one legend label per run (default: plain-20, ResNet-56, ...)"
    )
    p.add_argument("--out", default="error_curves.png", help="PNG to write")
    p.add_argument(
        "--smooth", type=int, default=1, help="moving average over this many logged training points"
    )
    p.add_argument("--title", help="figure title")
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        p.error(f"--labels has {len(args.labels)} entries for {len(args.runs)} runs")
    labels = args.labels or [None] * len(args.runs)
    runs = [read_run(r, label) for r, label in zip(args.runs, labels)]
    out = plot_error_curves(runs, args.out, smooth=args.smooth, title=args.title)
    for r in runs:
        last = f"{r.test_error[-1]:.2f}%" if len(r.test_error) else "n/a"
        print(f"{r.label:>12}: final training error {r.train_error[-1]:.2f}%, test error {last}")
    print(f"figure: {out}")


if __name__ == "__main__":
    run_tool(main, "plot_curves", expected=(ValueError, FileNotFoundError))
