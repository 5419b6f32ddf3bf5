"""Decode + augmentation throughput of the detection input pipeline (images/s).

Generates (once, cached) shapes JPEGs of about `--image-size` pixels, then times the training
pipeline: safe decode, random flip, float conversion, through a DataLoader with `--workers` processes
and the grouped batch sampler. Resizing is not part of it: the detector resizes (`model.input`).
"""
from __future__ import annotations

import argparse
import itertools
import time
import warnings

from resdet.config.data import DataConfig
from resdet.data.build import build_detection_dataset, build_train_loader


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=800,
                   help="size of the generated JPEGs (each side drawn in [0.75, 1] x this)")
    p.add_argument("--num-images", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--batches", type=int, default=100, help="timed batches, after one warm-up pass over the workers")
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)

    data = DataConfig(train=[{"format": "shapes", "split": "train", "num_images": args.num_images,
                              "image_size": args.image_size, "seed": 0}],
                      cache_dir=args.cache_dir, num_workers=args.workers)
    t0 = time.perf_counter()
    dataset = build_detection_dataset(data, "train")
    print(f"dataset ready in {time.perf_counter() - t0:.1f}s ({len(dataset)} images, generated once then cached)")
    loader = iter(build_train_loader(dataset, data, args.batch_size, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max(2, args.workers * 2)):  # start the workers, fill their prefetch queues
            next(loader)
        t0 = time.perf_counter()
        images = sum(len(batch[0]) for batch in itertools.islice(loader, args.batches))
    rate = images / (time.perf_counter() - t0)
    print(f"{rate:.1f} images/s decode+flip ({args.workers} workers, ~{args.image_size}-px JPEGs, "
          f"batch {args.batch_size})")
    return rate


if __name__ == "__main__":
    main()
