"""Batch samplers: infinite and aspect-ratio-grouped for training, sharded sequential for testing.

Training order is defined once, globally, and does not depend on the number of processes:
epoch `e` visits a permutation drawn from `(seed, e)`; each index goes to the bucket of its group
(landscape or portrait); a bucket that reaches the global batch size is emitted as the next global
batch. Buckets carry over between epochs, so nothing is dropped and no batch mixes groups. Rank `r`
of `world_size` takes the `r`-th contiguous slice of every global batch, so the union of the ranks'
batch `i` is exactly global batch `i` of a single process.

Resuming: the stream is a pure function of the seed, so `start_iter=k` replays the first `k` global
batches without yielding them (index arithmetic only) and continues with batch `k`, exactly what an
uninterrupted run sees next. The engine's loader factory receives the number of batches the rank has
consumed, one per micro-step: `iterations * solver.grad_accum`, which is `start_iter` for a sampler
whose `batch_size` is the micro-step's global batch `ims_per_batch // grad_accum` (what
`resdet.runs.detection` builds). The sampler's own position (`state_dict()["position"]`, batches
handed out so far) runs ahead of that by what a DataLoader prefetched, so the engine does not read
it. `load_state_dict({"position": k, ...})` is the same as `start_iter=k`.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def aspect_groups(heights: Sequence[int], widths: Sequence[int]) -> list[int]:
    """Group id per image: 0 for landscape or square (w >= h), 1 for portrait."""
    return [0 if w >= h else 1 for h, w in zip(heights, widths)]


def position_seed(seed: int, rank: int, position: int) -> int:
    """A generator seed for rank `rank` at batch `position` of the run seeded `seed`: derived from
    the position, so a resumed run draws what an uninterrupted one would, not a replay."""
    return hash((seed, rank, position)) & 0x7FFF_FFFF_FFFF


def loader_generator(seed: int, rank: int, start: int) -> torch.Generator:
    """The DataLoader generator (it seeds the workers' augmentation RNG) for a run resumed at batch
    `start` (`position_seed`)."""
    return torch.Generator().manual_seed(position_seed(seed, rank, start))


class GroupedBatchSampler(Sampler[list[int]]):
    """Infinite, seeded, rank-sharded, resumable batches of dataset indices from one aspect group.

    `batch_size` is the global batch (`solver.ims_per_batch`); each rank yields lists of
    `batch_size // world_size` indices.
    """

    def __init__(
        self,
        group_ids: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
    ) -> None:
        if len(group_ids) == 0:
            raise ValueError("GroupedBatchSampler: the dataset is empty")
        if batch_size <= 0 or batch_size % world_size:
            raise ValueError(
                f"global batch size {batch_size} must be a positive multiple of "
                f"world_size {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        self.group_ids = np.asarray(group_ids, dtype=np.int64)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size, self.start_iter = rank, world_size, start_iter
        self.position = start_iter

    def global_batches(self) -> Iterator[list[int]]:
        """The process-independent stream of global batches, from the first."""
        buckets: dict[int, list[int]] = {int(g): [] for g in np.unique(self.group_ids)}
        epoch = 0
        while True:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.group_ids))
            for idx, g in zip(perm.tolist(), self.group_ids[perm].tolist()):
                bucket = buckets[g]
                bucket.append(idx)
                if len(bucket) == self.batch_size:
                    yield bucket
                    buckets[g] = []
            epoch += 1

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.batch_size // self.world_size
        lo = self.rank * per_rank
        stream = self.global_batches()
        for _ in range(self.start_iter):
            next(stream)
        self.position = self.start_iter
        for batch in stream:
            self.position += 1
            yield batch[lo : lo + per_rank]

    def state_dict(self) -> dict[str, int]:
        """`position`: global batches handed out since training began, plus the order's seed."""
        return {"position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next `iter()` start at global batch `state["position"]` of the same order."""
        if (state["seed"], state["batch_size"]) != (self.seed, self.batch_size):
            raise ValueError(
                f"sampler state is for seed {state['seed']}, global batch "
                f"{state['batch_size']}; this sampler has seed {self.seed}, global "
                f"batch {self.batch_size}"
            )
        self.start_iter = self.position = int(state["position"])


class InferenceSampler(Sampler[int]):
    """Each rank gets one contiguous shard of `range(size)`; the shards cover each index once."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        per, extra = divmod(size, world_size)
        self.begin = rank * per + min(rank, extra)
        self.end = self.begin + per + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin
