"""DataLoaders for classification in the engine's batch format.

Train: infinite, seeded, rank-sharded and resumable (`resdet.data.sampler.GroupedBatchSampler` with
one group); each batch is `([images uint8 [n, 3, H, W]], [{"labels": int64 [n]}])`.
Test: this rank's contiguous shard, once, as `(images, labels)`; 10-crop images are `[n, 10, 3, H, W]`.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from resdet.data.sampler import GroupedBatchSampler, InferenceSampler, loader_generator


def _collate_train(items: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, labels = default_collate(items)
    return [images], [{"labels": labels}]


def build_train_loader(dataset: Dataset, micro_batch: int, *, num_workers: int, seed: int, rank: int = 0,
                       world_size: int = 1, start_batch: int = 0) -> DataLoader:
    """Endless batches of `micro_batch // world_size` images per rank, from global batch `start_batch` on.

    `micro_batch` is the global batch of one forward pass (`ims_per_batch / grad_accum`).
    """
    sampler = GroupedBatchSampler([0] * len(dataset), micro_batch, seed=seed, rank=rank,
                                  world_size=world_size, start_iter=start_batch)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=_collate_train,
                      generator=loader_generator(seed, rank, start_batch), persistent_workers=num_workers > 0)


def build_test_loader(dataset: Dataset, batch_size: int, *, num_workers: int, rank: int = 0,
                      world_size: int = 1) -> DataLoader:
    """This rank's shard of `dataset` in order, `batch_size` images per batch."""
    return DataLoader(dataset, batch_size=batch_size, sampler=InferenceSampler(len(dataset), rank, world_size),
                      num_workers=num_workers)
