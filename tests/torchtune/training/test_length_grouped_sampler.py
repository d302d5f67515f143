"""LengthGroupedSampler: a permutation per epoch, batches of similar length, exact mid-epoch resume."""

import random

import pytest

from torchtune.training import LengthGroupedSampler, StatefulDistributedSampler

N, BATCH = 203, 4  # 203 = a short last batch


def _lengths(n: int = N):
    rng = random.Random(0)
    return [rng.randint(5, 500) for _ in range(n)]


def _sampler(lengths, **kwargs):
    return LengthGroupedSampler(list(range(len(lengths))), lengths, BATCH, group_batches=8,
                                num_replicas=1, rank=0, seed=3, **kwargs)


def _padding(order, lengths):
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_every_sample_once_per_epoch_and_far_less_padding():
    lengths = _lengths()
    sampler = _sampler(lengths)
    sampler.set_epoch(0)
    order = list(sampler)
    assert sorted(order) == list(range(N))
    plain = StatefulDistributedSampler(list(range(N)), num_replicas=1, rank=0, seed=3)
    plain.set_epoch(0)
    # Windows of 32 sorted samples: padding falls by far more than half on uniform lengths.
    assert _padding(order, lengths) < 0.3 * _padding(list(plain), lengths)
    # The window's samples are those of the shuffled order: same set, window by window.
    window = BATCH * 8
    plain_order = list(plain)
    for start in range(0, N, window):
        assert set(order[start : start + window]) == set(plain_order[start : start + window])


def test_order_depends_on_seed_and_epoch_only():
    lengths = _lengths()
    a, b = _sampler(lengths), _sampler(lengths)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)
    # The short last batch stays last, so the DataLoader's batches line up with the sampler's.
    a.set_epoch(1)
    order = list(a)
    assert len(order) % BATCH == N % BATCH == 3


def test_resume_mid_epoch_continues_the_same_order():
    lengths = _lengths()
    full = _sampler(lengths)
    full.set_epoch(1)
    expected = list(full)
    consumed = 12 * BATCH
    state = full.state_dict(samples_consumed=consumed)
    resumed = _sampler(lengths)
    resumed.load_state_dict(state)
    assert list(resumed) == expected[consumed:]
    # Only the first pass after loading skips: the next epoch is whole.
    resumed.set_epoch(2)
    assert len(list(resumed)) == N


def test_two_ranks_split_the_data():
    lengths = _lengths(200)
    orders = []
    for rank in range(2):
        s = LengthGroupedSampler(list(range(200)), lengths, BATCH, num_replicas=2, rank=rank, seed=0)
        s.set_epoch(0)
        orders.append(list(s))
    assert not set(orders[0]) & set(orders[1])
    assert sorted(orders[0] + orders[1]) == list(range(200))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="lengths has 3 entries for a dataset of 4"):
        LengthGroupedSampler([0, 1, 2, 3], [1, 2, 3], 2, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedSampler([0, 1], [1, 2], 0, num_replicas=1, rank=0)
