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
those batches, in one process, and prints the ratio the issue asks for (pipeline / consumption).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

from resdet.benchmarks import timing
from resdet.classification.cifar import load_cifar
from resdet.classification.loader import InMemoryTrainBatches
from resdet.classification.model import build_classifier
from resdet.classification.objective import ClassificationObjective
from resdet.config.classification import ClsModelConfig
from resdet.config.data import DataConfig
from resdet.data.build import build_detection_dataset, build_train_loader


def detection_rate(args: argparse.Namespace) -> float:
    data = DataConfig(
        train=[
            {
                "format": "shapes",
                "split": "train",
                "num_images": args.num_images,
                "image_size": args.image_size,
                "seed": 0,
            }
        ],
        cache_dir=args.cache_dir,
        num_workers=args.workers,
    )
    t0 = time.perf_counter()
    dataset = build_detection_dataset(data, "train")
    print(
        f"dataset ready in {time.perf_counter() - t0:.1f}s "
        f"({len(dataset)} images, generated once then cached)"
    )
    loader = iter(build_train_loader(dataset, data, args.batch_size, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the warm-up starts the workers and fills their prefetch queues
        seconds, sizes = timing.time_total(
            lambda: len(next(loader)[0]), args.batches, warmup=max(2, args.workers * 2)
        )
    rate = sum(sizes) / seconds
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
    batches = iter(InMemoryTrainBatches(data, args.batch_size, pad=4, seed=0, device=device))
    seconds, sizes = timing.time_total(
        lambda: len(next(batches)[0][0]), args.batches, warmup=1, device=device
    )
    pipeline = sum(sizes) / seconds

    net = build_classifier(ClsModelConfig(arch="cifar", depth=args.depth, shortcut="A"), 10).to(
        device
    )
    model = ClassificationObjective(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    steps = max(1, args.train_steps)

    def train_step() -> None:
        images, targets = next(batches)
        loss = model(images, targets)["loss_cls"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds, _ = timing.time_total(train_step, steps, warmup=1, device=device)
    training = steps * args.batch_size / seconds
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
    main()
