"""Input-pipeline throughput (images/s): detection decode + flip, or CIFAR in-memory batches beside
what ResNet-20 training consumes; or the memory COCO-sized records take (--coco-scale).

    # detection: shapes JPEGs, DataLoader
    python tools/bench_data.py
    # CIFAR pipeline vs ResNet-20 steps
    python tools/bench_data.py --cifar ../shared/data/cifar10_jpeg
    # records of a COCO-2017-train-sized file: read time, memory held, DataLoader workers' growth
    python tools/bench_data.py --coco-scale [--images 118287] [--before]

Detection: generates (once, cached) shapes JPEGs of about `--image-size` pixels, then times the
training pipeline: safe decode, random flip, float conversion, through a DataLoader with `--workers`
processes and the grouped batch sampler. Resizing is not part of it: the detector
resizes (`model.input`).

CIFAR: the split is decoded once (cached), then the tool times the in-memory batches (indexing,
pad-crop-flip, on `--device`) alone, then full ResNet-20 training steps (forward, backward, SGD) on
those batches, in one process, and prints the ratio pipeline / consumption.

COCO scale: generates (once, under `--work-dir`) a COCO-2017-train-like instances file of
`--images` images (seeded: ~7.3 annotations per image, ~24-point polygons, 1% crowd RLE; the images
are symlinks to a few real JPEGs of `--jpegs`), then, each in a fresh process, reads it with and
without masks through the records cache, cold (parse + write the cache) and warm (map), builds the
training dataset and lets `--workers` forked DataLoader workers read every record; prints one table:
times, memory held by the main process, the workers' private growth
(/proc/<pid>/smaps_rollup) and the node projection for `--ranks` ranks. `--before` adds the row of
the same records held as Python lists (the layout before `resdet.data.compact`). Then, on the same
file, the time from launching tools/train_det.py to the end of its first step, cold (the records
parsed) and warm (mapped), for the boxes and the masks demo configs, and COCO box scoring of
`--eval-images` images x 100 detections (ours with each backend, faster-coco-eval's own).

The measuring is resdet.benchmarks.data_speed's; this tool parses the options and prints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from resdet.benchmarks.coco_eval_speed import compare_coco_eval
from resdet.benchmarks.data_speed import (
    COCO_TRAIN_IMAGES,
    cifar_batches,
    coco_scale_rows,
    detection_loader_rate,
    first_step_seconds,
    format_scale_table,
    pipeline_rate,
    shapes_training_set,
    training_rate,
    write_coco_like,
)
from resdet.classification.cifar import load_cifar
from resdet.config import CONFIG_DIR
from resdet.utils.cli import run_tool
from resdet.utils.paths import cache_root

#: real JPEGs the generated COCO-like images link to, when this checkout has ../shared
TINY_COCO_JPEGS = Path(__file__).resolve().parents[1] / ".." / "shared/data/tiny_coco/train2017"


def detection_rate(args: argparse.Namespace) -> float:
    t0 = time.perf_counter()
    dataset, data = shapes_training_set(
        num_images=args.num_images,
        image_size=args.image_size,
        workers=args.workers,
        cache_dir=args.cache_dir,
    )
    print(
        f"dataset ready in {time.perf_counter() - t0:.1f}s "
        f"({len(dataset)} images, generated once then cached)"
    )
    rate = detection_loader_rate(dataset, data, batch_size=args.batch_size, batches=args.batches)
    print(
        f"{rate:.1f} images/s decode+flip ({args.workers} workers, ~{args.image_size}-px JPEGs, "
        f"batch {args.batch_size})"
    )
    return rate


def cifar_rates(args: argparse.Namespace) -> tuple[float, float]:
    """(pipeline images/s, ResNet-`--depth` training images/s) at batch `--batch-size`."""
    t0 = time.perf_counter()
    data = load_cifar(Path(args.cifar), "train", cache_dir=args.cache_dir)
    print(f"train split ready in {time.perf_counter() - t0:.1f}s ({len(data)} images)")
    device = torch.device(args.device)
    batches = cifar_batches(data, args.batch_size, device)
    pipeline = pipeline_rate(batches, args.batches, device)
    training = training_rate(
        batches,
        depth=args.depth,
        steps=max(1, args.train_steps),
        batch_size=args.batch_size,
        device=device,
    )
    print(
        f"CIFAR pipeline alone: {pipeline:.0f} images/s (in memory, pad-crop-flip on {device}, "
        f"batch {args.batch_size})"
    )
    print(
        f"ResNet-{args.depth} training consumes: {training:.0f} images/s "
        f"({training / args.batch_size:.2f} it/s, {torch.get_num_threads()} threads)"
    )
    print(f"ratio pipeline / training: {pipeline / training:.0f}x")
    return pipeline, training


def coco_scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The --coco-scale table (see the module docstring); returns its rows."""
    work = Path(args.work_dir or cache_root(args.cache_dir) / "bench_coco_scale")
    work = work / f"{args.images}-seed{args.seed}"
    load = "load average %.2f %.2f %.2f" % os.getloadavg()
    print(f"{load} at the start ({os.cpu_count()} CPUs)")
    t0 = time.perf_counter()
    ann_file = write_coco_like(work, images=args.images, seed=args.seed, jpeg_dir=args.jpegs)
    print(
        f"{ann_file} ({ann_file.stat().st_size / 1e6:.0f} MB) ready in "
        f"{time.perf_counter() - t0:.0f} s (generated once, then reused)"
    )
    rows = coco_scale_rows(
        ann_file,
        ann_file.parent / "images",
        work,
        workers=args.workers,
        ranks=args.ranks,
        before=args.before,
    )
    print(format_scale_table(rows, workers=args.workers, ranks=args.ranks))
    if args.first_step:
        print("\ntools/train_det.py, launch to the end of the first step (2 images, no test set):")
        for kind, config in (("boxes", "demo_shapes.yaml"), ("masks", "demo_shapes_mask.yaml")):
            cache = work / f"first_step_{kind}"
            shutil.rmtree(cache, ignore_errors=True)
            times = [
                first_step_seconds(
                    Path(__file__).with_name("train_det.py"),
                    CONFIG_DIR / config,
                    ann_file,
                    ann_file.parent / "images",
                    cache,
                    work / "first_step_run",
                )
                for _ in ("cold", "warm")
            ]
            print(f"  {kind} (configs/{config}): cold {times[0]:.1f} s, warm {times[1]:.1f} s")
    if args.eval_images:
        print(f"\nCOCO box scoring, {args.eval_images} images x 100 detections:")
        runs = compare_coco_eval(args.eval_images, 100, args.seed)
        for name, run in runs.items():
            print(f"  {name}: {run.wall_s:.1f} s")
    print("load average %.2f %.2f %.2f at the end" % os.getloadavg())
    return rows


def main(argv: list[str] | None = None) -> Any:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cifar", metavar="DIR", help="time the CIFAR pipeline on this folder (either layout)"
    )
    p.add_argument(
        "--depth", type=int, default=20, help="CIFAR: the ResNet whose training is timed"
    )
    p.add_argument("--train-steps", type=int, default=20, help="CIFAR: timed training steps")
    p.add_argument("--device", default="cpu", help="CIFAR: where batches are augmented and trained")
    p.add_argument(
        "--image-size",
        type=int,
        default=800,
        help="size of the generated JPEGs (each side drawn in [0.75, 1] x this)",
    )
    p.add_argument("--num-images", type=int, default=64)
    p.add_argument(
        "--workers", type=int, default=None, help="default 2 (detection), 4 (COCO scale)"
    )
    p.add_argument(
        "--coco-scale", action="store_true", help="the memory of COCO-sized records (docstring)"
    )
    p.add_argument("--images", type=int, default=COCO_TRAIN_IMAGES, help="COCO scale: images")
    p.add_argument("--seed", type=int, default=0, help="COCO scale: the generator's seed")
    p.add_argument("--ranks", type=int, default=8, help="COCO scale: ranks per node, projected")
    p.add_argument(
        "--jpegs",
        default=str(TINY_COCO_JPEGS) if TINY_COCO_JPEGS.is_dir() else None,
        help="COCO scale: real JPEGs to link to (default ../shared/data/tiny_coco/train2017 when "
        "present, else generated ones)",
    )
    p.add_argument(
        "--work-dir",
        default=None,
        help="COCO scale: where generated files and caches go (<cache>/bench_coco_scale)",
    )
    p.add_argument(
        "--before", action="store_true", help="COCO scale: add the row of records as Python lists"
    )
    p.add_argument(
        "--no-first-step",
        dest="first_step",
        action="store_false",
        help="COCO scale: skip timing tools/train_det.py to its first step (cold and warm)",
    )
    p.add_argument(
        "--eval-images",
        type=int,
        default=5000,
        help="COCO scale: images of the scoring comparison (100 detections each; 0 skips it)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="default 2 (detection), 128 (CIFAR)"
    )
    p.add_argument(
        "--batches", type=int, default=100, help="timed batches, after one warm-up batch"
    )
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    if args.coco_scale:
        args.workers = 4 if args.workers is None else args.workers
        return coco_scale(args)
    args.workers = 2 if args.workers is None else args.workers
    if args.cifar:
        args.batch_size = args.batch_size or 128
        return cifar_rates(args)[0]
    args.batch_size = args.batch_size or 2
    return detection_rate(args)


if __name__ == "__main__":
    run_tool(main, "bench_data")
