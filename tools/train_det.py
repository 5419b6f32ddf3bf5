"""Train a Faster R-CNN detector, evaluating it on the config's test set.

    python tools/train_det.py configs/demo_shapes.yaml            # CPU demo: shapes data; the
                                                                  # first run also pretrains
                                                                  # resdet:shapes_r18
    python tools/train_det.py CONFIG [--output-dir DIR] [--resume] [key.sub=value ...]
    torchrun --nproc-per-node 8 tools/train_det.py CONFIG ...     # same run, DDP
    python tools/train_det.py CONFIG --eval-only [--weights CKPT]  # evaluate only

Writes into output_dir: config.yaml, metrics.jsonl, TensorBoard events, checkpoints +
last_checkpoint, class_names.json, eval/metrics.json. Exit code 0 on success, 2 for a bad config, a
missing or invalid dataset or an undecodable image (one line on stderr), 1 for any other failure.
"""

from __future__ import annotations

import argparse
import sys
import time

from resdet.config import ConfigError, load_config
from resdet.data.errors import DatasetError
from resdet.evaluation.inference import headline
from resdet.runs.detection import check_weights_present, eval_only, load_datasets, train_detector
from resdet.utils.cli import add_run_arguments, run_overrides, run_tool
from resdet.utils.dist import get_rank, shutdown_distributed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", help="YAML recipe, e.g. configs/demo_shapes.yaml")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="config overrides, e.g. solver.max_iter=100",
    )
    add_run_arguments(p)
    args = p.parse_intermixed_args(argv)
    args.overrides = run_overrides(p, args, args.overrides, "model.backbone.weights")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        cfg = load_config(args.config, args.overrides)
        if not args.eval_only:
            check_weights_present(cfg)
        datasets = load_datasets(cfg, train=not args.eval_only)
    except (ConfigError, DatasetError) as e:
        print(f"train_det: error: {e}", file=sys.stderr, flush=True)
        return 2
    if args.eval_only:
        if datasets.test is None:
            print(
                f"train_det: error: {args.config}: data.test lists no dataset to evaluate on",
                file=sys.stderr,
            )
            return 2
        eval_only(cfg, datasets.test, args.weights)
    else:
        metrics = train_detector(
            cfg,
            datasets,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        if get_rank() == 0:
            scores = headline({k: v for k, v in metrics.items() if "/" not in k})
            print(
                f"done in {(time.perf_counter() - start) / 60:.1f} min; "
                f"{scores or 'no evaluation'}; "
                f"outputs in {cfg.output_dir}"
            )
    sys.stdout.flush()
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    run_tool(main, "train_det")
