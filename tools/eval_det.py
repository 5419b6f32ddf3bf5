"""Evaluate detections against a config's test set: `eval_det.py CONFIG --detections RESULTS.json`.

Prints a table and writes `metrics.json` into `--output-dir` (default `<output_dir>/eval`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resdet.config import load_config
from resdet.evaluation import evaluate_detections, read_results, write_metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="YAML config; its data.test names the ground truth")
    p.add_argument("--detections", required=True, help="results-format JSON (image_id, category_id, bbox xywh, score)")
    p.add_argument("--output-dir", help="where metrics.json goes (default: <config output_dir>/eval)")
    p.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    metrics, evaluator = evaluate_detections(cfg, read_results(args.detections), source=args.detections)
    print(evaluator.format_table(metrics))
    path = write_metrics(metrics, args.output_dir or Path(cfg.output_dir) / "eval")
    print(f"wrote {path}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
