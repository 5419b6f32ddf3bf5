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

Augmentation: `SeededBatchSampler` tags every index with `sample_seed(seed, n)`, `n` its global
sample position (`global batch * batch_size + slot`), and `SeededItems` loads each item with
python's, numpy's and torch's (CPU) global generators seeded by it, then puts the caller's states
back. A sample's random flips, crops, ... are then a function of the run seed and its position
alone: the same in the main process or any worker, after a resume, and for any number of
processes. (Worker processes keep no random state that matters, so nothing of theirs is
checkpointed.)
"""

from __future__ import annotations

import contextlib
import random
import signal
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def aspect_groups(heights: Sequence[int], widths: Sequence[int]) -> list[int]:
    """Group id per image: 0 for landscape or square (w >= h), 1 for portrait."""
    return [0 if w >= h else 1 for h, w in zip(heights, widths)]


def position_seed(seed: int, rank: int, position: int) -> int:
    """A generator seed for rank `rank` at batch `position` of the run seeded `seed`: derived from
    the position, so a resumed run draws what an uninterrupted one would, not a replay."""
    return hash((seed, rank, position)) & 0x7FFF_FFFF_FFFF


def loader_generator(seed: int, rank: int, start: int) -> torch.Generator:
    """The DataLoader generator for a run resumed at batch `start` (`position_seed`). It draws the
    workers' base seeds (and keeps the DataLoader off torch's global generator); augmentation does
    not depend on it when the items are `SeededItems`."""
    return torch.Generator().manual_seed(position_seed(seed, rank, start))


def sample_seed(seed: int, sample: int) -> int:
    """A 64-bit seed for the augmentation of global sample `sample` (0, 1, ... in the order
    `GroupedBatchSampler.global_batches` hands them out) of the run seeded `seed`."""
    hi, lo = np.random.SeedSequence([seed % 2**64, sample]).generate_state(2, dtype=np.uint32)
    return int(hi) << 32 | int(lo)


@contextlib.contextmanager
def seeded_random_state(seed: int) -> Iterator[None]:
    """Python's, numpy's and torch's CPU global generators seeded from `seed` inside the block,
    and put back as they were after it (CUDA generators are not touched)."""
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(th)


class SampleKey(NamedTuple):
    """What `SeededBatchSampler` yields per sample: the dataset index and its augmentation seed."""

    index: int
    seed: int


class SeededBatchSampler(Sampler[list[SampleKey]]):
    """`GroupedBatchSampler`'s batches with each index as `SampleKey(index, sample_seed(seed,
    global sample position))`; for a DataLoader over `SeededItems`. Position and state are the
    wrapped sampler's."""

    def __init__(self, batches: GroupedBatchSampler) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[SampleKey]]:
        b = self.batches
        lo = b.rank * (b.batch_size // b.world_size)
        for indices in b:
            first = (b.position - 1) * b.batch_size + lo  # `position` counts this batch already
            yield [SampleKey(i, sample_seed(b.seed, first + j)) for j, i in enumerate(indices)]

    @property
    def position(self) -> int:
        return self.batches.position

    def state_dict(self) -> dict[str, int]:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches.load_state_dict(state)


class SeededItems(Dataset):
    """`dataset` whose items are loaded under `seeded_random_state(key.seed)` for a `SampleKey`
    (a plain index loads as it is). Other attributes are the wrapped dataset's."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey | int) -> Any:
        if not isinstance(key, SampleKey):
            return self.dataset[key]
        with seeded_random_state(key.seed):
            return self.dataset[key.index]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn` for training: workers ignore SIGINT and SIGTERM, which the
    trainer handles in the main process (a checkpoint, then a clean exit) while it still needs
    the batch in flight; a terminal's Ctrl-C or a scheduler's SIGTERM to the whole process group
    would otherwise kill them first. They still end with the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
