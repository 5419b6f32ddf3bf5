"""Input-pipeline throughput (images/s): the detection training loader, and CIFAR's in-memory
batches beside what ResNet training consumes; tools/bench_data.py prints them.

Detection (`shapes_training_set`, `detection_loader_rate`): generated shapes JPEGs (once, cached)
through the training pipeline: safe decode, random flip, float conversion, through a DataLoader with
its worker processes and the grouped batch sampler. Resizing is not part of it: the detector
resizes (`model.input`).

CIFAR (`cifar_batches`, `pipeline_rate`, `training_rate`): the in-memory batches (indexing,
pad-crop-flip, on the device) alone, then full ResNet training steps (forward, backward, SGD) on
the batches that follow from the same stream, in one process. The timing is
`resdet.benchmarks.timing.time_total`: warm-up, then back-to-back calls synced at both ends.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import torch

from resdet.benchmarks import timing
from resdet.classification.cifar import CifarSplit
from resdet.classification.loader import Batch, InMemoryTrainBatches
from resdet.classification.model import build_classifier
from resdet.classification.objective import ClassificationObjective
from resdet.config.classification import ClsModelConfig
from resdet.config.data import DataConfig
from resdet.data.build import build_detection_dataset, build_train_loader
from resdet.data.dataset import DetectionDataset
from resdet.engine.optim import build_optimizer


def shapes_training_set(
    *, num_images: int, image_size: int, workers: int, cache_dir: str | None = None
) -> tuple[DetectionDataset, DataConfig]:
    """A shapes training set of `num_images` JPEGs of about `image_size` pixels (each side drawn in
    [0.75, 1] x it; generated once, then cached) and the data config that loads it with `workers`
    processes."""
    data = DataConfig(
        train=[
            {
                "format": "shapes",
                "split": "train",
                "num_images": num_images,
                "image_size": image_size,
                "seed": 0,
            }
        ],
        cache_dir=cache_dir,
        num_workers=workers,
    )
    return build_detection_dataset(data, "train"), data


def detection_loader_rate(
    dataset: DetectionDataset, data: DataConfig, *, batch_size: int, batches: int
) -> float:
    """Images/s of the training loader over `batches` batches, after as many as it takes to start
    the workers and fill their prefetch queues."""
    loader = iter(build_train_loader(dataset, data, batch_size, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, sizes = timing.time_total(
            lambda: len(next(loader)[0]), batches, warmup=max(2, data.num_workers * 2)
        )
    return sum(sizes) / seconds


def cifar_batches(data: CifarSplit, batch_size: int, device: torch.device) -> Iterator[Batch]:
    """CIFAR training batches as training draws them: in memory, pad 4, crop and flip on
    `device`."""
    return iter(InMemoryTrainBatches(data, batch_size, pad=4, seed=0, device=device))


def pipeline_rate(batches: Iterator[Batch], count: int, device: torch.device) -> float:
    """Images/s of drawing `count` batches from `batches`, after one warm-up batch."""
    seconds, sizes = timing.time_total(
        lambda: len(next(batches)[0][0]), count, warmup=1, device=device
    )
    return sum(sizes) / seconds


def training_rate(
    batches: Iterator[Batch], *, depth: int, steps: int, batch_size: int, device: torch.device
) -> float:
    """Images/s of CIFAR ResNet-`depth` (option-A shortcuts) training steps (forward, backward,
    SGD) on `batches`: `steps` timed steps after one warm-up step."""
    net = build_classifier(ClsModelConfig(arch="cifar", depth=depth, shortcut="A"), 10).to(device)
    model = ClassificationObjective(net)
    opt = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=1e-4)

    def train_step() -> None:
        images, targets = next(batches)
        loss = model(images, targets)["loss_cls"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds, _ = timing.time_total(train_step, steps, warmup=1, device=device)
    return steps * batch_size / seconds
