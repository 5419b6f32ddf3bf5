"""Batches for classification in the engine's format: DataLoaders over image datasets, or in-memory
batches over a decoded `CifarSplit`.

Train: infinite, seeded, rank-sharded and resumable (`resdet.data.samplers.GroupedBatchSampler` with
one group); each batch is `([images uint8 [n, 3, H, W]], [{"labels": int64 [n]}])`.
Test: this rank's contiguous shard, once, as `(images, labels)`; 10-crop images
are `[n, 10, 3, H, W]`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from resdet.classification.cifar import CifarSplit
from resdet.classification.transforms import pad_crop_flip
from resdet.data.samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    SeededBatchSampler,
    SeededItems,
    ignore_stop_signals,
    loader_generator,
    position_seed,
)

Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


def _collate_train(items: list[tuple[torch.Tensor, int]]) -> Batch:
    images, labels = default_collate(items)
    return [images], [{"labels": labels}]


def _one_group_sampler(
    size: int, micro_batch: int, seed: int, rank: int, world_size: int, start_batch: int
) -> GroupedBatchSampler:
    """The training order of a classification set: every image in one group (no aspect grouping)."""
    return GroupedBatchSampler(
        [0] * size, micro_batch, seed=seed, rank=rank, world_size=world_size, start_iter=start_batch
    )


def build_train_loader(
    dataset: Dataset | CifarSplit,
    micro_batch: int,
    *,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
    pad: int = 4,
    device: torch.device | str = "cpu",
) -> DataLoader | InMemoryTrainBatches:
    """Endless batches of `micro_batch // world_size` images per rank, from global
    batch `start_batch` on.

    `micro_batch` is the global batch of one forward pass (`ims_per_batch / grad_accum`). A decoded
    `CifarSplit` gets `InMemoryTrainBatches` (augmented on `device`, `pad` pixels); a `Dataset` a
    DataLoader with `num_workers` processes (its items are augmented by the dataset's transform,
    with the random state of (`seed`, the sample's position): `resdet.data.samplers.SeededItems`,
    so a resume is exact for any `num_workers`).
    """
    if isinstance(dataset, CifarSplit):
        return InMemoryTrainBatches(
            dataset,
            micro_batch,
            pad=pad,
            seed=seed,
            rank=rank,
            world_size=world_size,
            start_batch=start_batch,
            device=device,
        )
    sampler = _one_group_sampler(len(dataset), micro_batch, seed, rank, world_size, start_batch)
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=SeededBatchSampler(sampler),
        num_workers=num_workers,
        collate_fn=_collate_train,
        generator=loader_generator(seed, rank, start_batch),
        persistent_workers=num_workers > 0,
        worker_init_fn=ignore_stop_signals if num_workers > 0 else None,
    )


def build_test_loader(
    dataset: Dataset | CifarSplit,
    batch_size: int,
    *,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader | InMemoryTestBatches:
    """This rank's shard of `dataset` in order, `batch_size` images per batch."""
    if isinstance(dataset, CifarSplit):
        return InMemoryTestBatches(dataset, batch_size, rank=rank, world_size=world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=InferenceSampler(len(dataset), rank, world_size),
        num_workers=num_workers,
    )


class InMemoryTrainBatches:
    """Endless CIFAR-augmented batches from a decoded split, drawn on `device` without workers.

    The whole split is moved to `device` once; each batch is indexed out of it and augmented there
    (`pad_crop_flip`) with a generator seeded by `(seed, rank, batch number)`, so a run resumed at
    global batch `start_batch` sees the same images and the same augmentation as
    an uninterrupted one.
    """

    def __init__(
        self,
        data: CifarSplit,
        micro_batch: int,
        *,
        pad: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.sampler = _one_group_sampler(
            len(data), micro_batch, seed, rank, world_size, start_batch
        )
        self.pad, self.seed, self.rank, self.start_batch = pad, seed, rank, start_batch

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator(device=self.device)
        for b, indices in enumerate(self.sampler, start=self.start_batch):
            generator.manual_seed(position_seed(self.seed, self.rank, b))
            idx = torch.as_tensor(indices, device=self.device)
            images = self.images.index_select(0, idx)
            yield (
                [pad_crop_flip(images, self.pad, generator)],
                [{"labels": self.labels.index_select(0, idx)}],
            )


class InMemoryTestBatches:
    """This rank's contiguous shard of a decoded split, in order, as `(images uint8,
    labels)` batches."""

    def __init__(
        self, data: CifarSplit, batch_size: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        shard = InferenceSampler(len(data), rank, world_size)
        self.images = data.images[shard.begin : shard.end]
        self.labels = data.labels[shard.begin : shard.end]
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.labels), self.batch_size):
            yield self.images[i : i + self.batch_size], self.labels[i : i + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)
