"""Input-pipeline throughput (images/s): detection decode + flip, or CIFAR in-memory batches beside
what ResNet-20 training consumes.

    # detection: shapes JPEGs, DataLoader
    python tools/bench_data.py
    # CIFAR pipeline vs ResNet-20 steps
    python tools/bench_data.py --cifar ../shared/data/cifar10_jpeg

Detection: generates (once, cached) shapes JPEGs of about `--image-size` pixels, then times the
training pipeline: safe decode, random flip, float conversion, through a DataLoader with `--workers`
processes and the grouped batch sampler. Resizing is not part of it: the detector
resizes (`model.input`).

CIFAR: the split is decoded once (cached), then the tool times the in-memory batches (indexing,
pad-crop-flip, on `--device`) alone, then full ResNet-20 training steps (forward, backward, SGD) on
those batches, in one process, and prints the ratio pipeline / consumption. The measuring is
resdet.benchmarks.data_speed's; this tool parses the options and prints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from resdet.benchmarks.data_speed import (
    cifar_batches,
    detection_loader_rate,
    pipeline_rate,
    shapes_training_set,
    training_rate,
)
from resdet.classification.cifar import load_cifar
from resdet.utils.cli import run_tool


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


def main(argv: list[str] | None = None) -> float:
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
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--batch-size", type=int, default=None, help="default 2 (detection), 128 (CIFAR)"
    )
    p.add_argument(
        "--batches", type=int, default=100, help="timed batches, after one warm-up batch"
    )
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    if args.cifar:
        args.batch_size = args.batch_size or 128
        return cifar_rates(args)[0]
    args.batch_size = args.batch_size or 2
    return detection_rate(args)


if __name__ == "__main__":
    run_tool(main, "bench_data")
