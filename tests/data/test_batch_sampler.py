"""GroupedBatchSampler: grouping, determinism, rank sharding and exact resume;
InferenceSampler shards."""

import itertools

import numpy as np
import pytest

from resdet.data.samplers import GroupedBatchSampler, InferenceSampler, aspect_groups

GROUPS = [int(g) for g in np.random.default_rng(1).integers(0, 2, 37)]


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_batches_are_single_group_and_cover_every_image_each_pass():
    batches = take(GroupedBatchSampler(GROUPS, 4, seed=3), 40)
    for b in batches:
        assert len(b) == 4 and len({GROUPS[i] for i in b}) == 1
    flat = [i for b in batches for i in b]
    # buckets carry over between epochs, so within the first 9 batches (36 of 37
    # images) none repeats
    assert len(set(flat[:36])) == 36
    assert set(flat) == set(range(len(GROUPS)))


def test_deterministic_from_the_seed():
    assert take(GroupedBatchSampler(GROUPS, 4, seed=3), 20) == take(
        GroupedBatchSampler(GROUPS, 4, seed=3), 20
    )
    assert take(GroupedBatchSampler(GROUPS, 4, seed=3), 20) != take(
        GroupedBatchSampler(GROUPS, 4, seed=4), 20
    )


@pytest.mark.parametrize("world_size", [2, 4])
def test_union_over_ranks_is_the_single_process_batch(world_size):
    single = take(GroupedBatchSampler(GROUPS, 8, seed=5), 30)
    ranks = [
        take(GroupedBatchSampler(GROUPS, 8, seed=5, rank=r, world_size=world_size), 30)
        for r in range(world_size)
    ]
    for i in range(30):
        assert [idx for r in range(world_size) for idx in ranks[r][i]] == single[i]
        assert all(len(ranks[r][i]) == 8 // world_size for r in range(world_size))


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_sees_what_an_uninterrupted_run_sees(world_size):
    for rank in range(world_size):
        full = take(GroupedBatchSampler(GROUPS, 4, seed=7, rank=rank, world_size=world_size), 60)
        resumed = take(
            GroupedBatchSampler(GROUPS, 4, seed=7, rank=rank, world_size=world_size, start_iter=23),
            37,
        )
        assert resumed == full[23:]


def test_state_dict_round_trip():
    sampler = GroupedBatchSampler(GROUPS, 4, seed=7, rank=1, world_size=2)
    full = take(sampler, 12)
    assert sampler.state_dict() == {"position": 12, "seed": 7, "batch_size": 4}
    fresh = GroupedBatchSampler(GROUPS, 4, seed=7, rank=1, world_size=2)
    fresh.load_state_dict({**sampler.state_dict(), "position": 5})
    assert take(fresh, 7) == full[5:]
    with pytest.raises(ValueError, match="seed 8"):
        GroupedBatchSampler(GROUPS, 4, seed=8).load_state_dict(sampler.state_dict())


def test_resume_on_a_different_world_size_keeps_the_global_order():
    full = take(GroupedBatchSampler(GROUPS, 4, seed=7), 30)
    halves = [
        take(GroupedBatchSampler(GROUPS, 4, seed=7, rank=r, world_size=2, start_iter=10), 20)
        for r in (0, 1)
    ]
    assert [a + b for a, b in zip(*halves)] == full[10:]


def test_argument_checks():
    with pytest.raises(ValueError, match="multiple of world_size"):
        GroupedBatchSampler(GROUPS, 6, world_size=4)
    with pytest.raises(ValueError, match="empty"):
        GroupedBatchSampler([], 2)
    with pytest.raises(ValueError, match="rank 2"):
        GroupedBatchSampler(GROUPS, 4, rank=2, world_size=2)


def test_aspect_groups():
    assert aspect_groups([10, 20, 10], [20, 10, 10]) == [0, 1, 0]


@pytest.mark.parametrize("size,world", [(10, 3), (2, 4), (7, 1)])
def test_inference_sampler_shards_cover_once(size, world):
    shards = [list(InferenceSampler(size, r, world)) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(size))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
