import random

import numpy as np
import pytest
from torch.utils.data import DataLoader

from ssl_core._sampler import LengthBucketBatchSampler


def _skewed_lengths(n: int = 1000, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in np.clip(rng.lognormal(3.0, 1.0, size=n), 1, 2000)]


def _padding_waste(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return (padded - real) / padded


def test_every_index_exactly_once_per_epoch() -> None:
    lengths = _skewed_lengths(503)
    sampler = LengthBucketBatchSampler(lengths, 16, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 32
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(503))
        assert all(1 <= len(b) <= 16 for b in batches)


def test_less_padding_than_random_batches() -> None:
    lengths = _skewed_lengths()
    bucketed = list(LengthBucketBatchSampler(lengths, 32, seed=0))
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    random_batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    assert _padding_waste(bucketed, lengths) < 0.5 * _padding_waste(random_batches, lengths)
    assert _padding_waste(bucketed, lengths) < 0.2


def test_shuffle_is_deterministic_per_seed_and_epoch() -> None:
    lengths = _skewed_lengths(300)

    def run(seed: int, epoch: int) -> list[list[int]]:
        s = LengthBucketBatchSampler(lengths, 8, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert run(0, 0) == run(0, 0)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)


def test_no_shuffle_gives_sorted_batches() -> None:
    lengths = [5, 1, 4, 2, 3, 6, 7]
    batches = list(LengthBucketBatchSampler(lengths, 3, shuffle=False))
    assert batches == [[1, 3, 4], [2, 0, 5], [6]]
    assert list(LengthBucketBatchSampler(lengths, 3, shuffle=False, drop_last=True)) == [[1, 3, 4], [2, 0, 5]]


def test_max_tokens_budget() -> None:
    lengths = _skewed_lengths(400)
    sampler = LengthBucketBatchSampler(lengths, max_tokens=512, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(400))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) * longest <= 512 or len(b) == 1  # an over-long item forms its own batch
    both = list(LengthBucketBatchSampler(lengths, 4, max_tokens=512, seed=3))
    assert all(len(b) <= 4 for b in both)


@pytest.mark.parametrize("drop_last", [False, True])
def test_replicas_disjoint_and_equal_length(drop_last: bool) -> None:
    lengths = _skewed_lengths(400)  # 400 / 10 = 40 batches, divisible by 4 replicas
    samplers = [
        LengthBucketBatchSampler(lengths, 10, seed=5, num_replicas=4, rank=r, drop_last=drop_last) for r in range(4)
    ]
    for s in samplers:
        s.set_epoch(2)
    per_rank = [list(s) for s in samplers]
    assert {len(b) for b in per_rank} == {10} and all(len(s) == 10 for s in samplers)
    sets = [{i for b in batches for i in b} for batches in per_rank]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not sets[a] & sets[b]
    assert set().union(*sets) == set(range(400))


def test_replicas_uneven_batch_count() -> None:
    lengths = list(range(1, 51))  # 50 items / 10 = 5 batches over 2 replicas
    padded = [list(LengthBucketBatchSampler(lengths, 10, num_replicas=2, rank=r)) for r in range(2)]
    assert [len(p) for p in padded] == [3, 3]  # one batch repeated to keep ranks in step
    assert {i for p in padded for b in p for i in b} == set(range(50))
    dropped = [list(LengthBucketBatchSampler(lengths, 10, num_replicas=2, rank=r, drop_last=True)) for r in range(2)]
    assert [len(d) for d in dropped] == [2, 2]
    flat = [i for d in dropped for b in d for i in b]
    assert len(flat) == len(set(flat)) == 40


def test_works_as_dataloader_batch_sampler() -> None:
    lengths = [3, 1, 2, 5, 4, 1]
    data = [list(range(n)) for n in lengths]
    loader = DataLoader(
        data, batch_sampler=LengthBucketBatchSampler(lengths, 2, seed=0), collate_fn=lambda b: [len(x) for x in b]
    )
    seen = sorted(n for batch in loader for n in batch)
    assert seen == sorted(lengths)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size, max_tokens"):
        LengthBucketBatchSampler([1, 2])
    with pytest.raises(ValueError):
        LengthBucketBatchSampler([1, 2], 0)
    with pytest.raises(ValueError):
        LengthBucketBatchSampler([1, 2], 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError):
        LengthBucketBatchSampler([1, -2], 2)


def test_empty_dataset() -> None:
    sampler = LengthBucketBatchSampler([], 4)
    assert len(sampler) == 0 and list(sampler) == []
