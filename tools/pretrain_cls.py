"""Classification pretraining of a ResNet (He et al. 2015, Sec. 3.4 and 4.2).

    python tools/pretrain_cls.py                                    # shapes set, CPU, a few minutes
    python tools/pretrain_cls.py configs/cls_resnet56_cifar10.yaml [key=value ...]
    torchrun --nproc-per-node 8 tools/pretrain_cls.py configs/cls_r50_imagenet.yaml
    python tools/pretrain_cls.py CONFIG --eval-only [--weights CKPT]

Prints the test top-1 accuracy and the checkpoint, which a detection recipe consumes through
`model.backbone.weights: <path>`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resdet.config import CONFIG_DIR, ConfigError
from resdet.config.classification import load_cls_config
from resdet.data.errors import DatasetError
from resdet.runs.pretraining import pretrain
from resdet.utils.atomic import ensure_writable_dir
from resdet.utils.cli import add_run_arguments, run_overrides, run_tool
from resdet.utils.dist import get_rank

DEFAULT_CONFIG = CONFIG_DIR / "cls_shapes.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG] [key=value ...]",
        help=f"a config file (default "
        f"configs/{DEFAULT_CONFIG.name}), "
        "then overrides such as solver.max_iter=100",
    )
    add_run_arguments(p)
    args = p.parse_intermixed_args(argv)
    rest = list(args.args)
    args.config = Path(rest.pop(0)) if rest and "=" not in rest[0] else DEFAULT_CONFIG
    args.overrides = run_overrides(p, args, rest, "model.weights")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_cls_config(args.config, args.overrides)
    ensure_writable_dir(cfg.output_dir, "--output-dir" if args.output_dir else "output_dir")
    result = pretrain(
        cfg,
        resume=args.resume,
        overwrite=args.overwrite,
        eval_only=args.eval_only,
        weights=args.weights,
        progress=not args.no_progress,
    )
    if get_rank() == 0:
        m = result.metrics
        print(
            f"top-1 accuracy {m['top1']:.2f}% (top-5 {m['top5']:.2f}%) on "
            f"{result.num_test_images} {cfg.data.test_split} images, {result.seconds:.0f} s "
            f"({result.seconds / 60:.1f} min)"
        )
        print(f"checkpoint: {result.checkpoint}")
    sys.stdout.flush()


def cli() -> int:
    """`main` on the command line: a bad config or a missing dataset is one line and exit code 2."""
    try:
        main(sys.argv[1:])
    except (ConfigError, DatasetError) as e:
        print(f"pretrain_cls: error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    run_tool(cli, "pretrain_cls")
