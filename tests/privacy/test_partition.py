"""Client partitions: worked examples, invariants (coverage, sizes, label skew), bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from torch.utils.data import Dataset, Subset, TensorDataset

from mlimaging.privacy import partition, partition_summary, plot_partition
from mlimaging.privacy._partition import _labels


def labelled(n_per_class: int, num_classes: int, *, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    y = torch.cat([y, torch.arange(extra) % num_classes])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    return torch.zeros(len(y), 2), y


class Pairs(Dataset):
    """A plain Dataset of (x, y) pairs with no ``targets`` attribute."""

    def __init__(self, y):
        self.y = list(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.zeros(3), self.y[i]


# ---------------------------------------------------------------------------- worked examples
def test_partition_summary_by_hand():
    y = torch.tensor([2, 0, 1, 1, 2, 2, 0])
    parts = [[0, 4], [1, 2, 3], [5, 6]]
    expected = np.array([[0, 0, 2],
                         [1, 2, 0],
                         [1, 0, 1]])
    assert_array_equal(partition_summary((torch.zeros(7, 1), y), parts), expected)
    assert partition_summary(Pairs(y.tolist()), parts).dtype == np.int64


def test_labels_from_every_kind_of_dataset():
    from mlimaging.data import load_dataset

    y = torch.tensor([3, 1, 0, 1])
    x = torch.zeros(4, 2)
    for data in [(x, y), (x.numpy(), y.numpy()), TensorDataset(x, y), Pairs(y.tolist()),
                 Pairs(list(y.unbind()))]:
        assert_array_equal(_labels(data), [3, 1, 0, 1])
    assert_array_equal(_labels(Subset(TensorDataset(x, y), [2, 0])), [0, 3])
    digits = load_dataset("digits", split="test")
    assert_array_equal(_labels(digits), np.asarray(digits.targets))


def test_shards_small_example_by_hand():
    # 8 samples, 4 labels of 2; 2 clients x 2 shards of 2: each shard is one label.
    y = torch.tensor([3, 0, 2, 1, 0, 3, 1, 2])
    parts = partition((torch.zeros(8, 1), y), num_clients=2, scheme="shards", shards_per_client=2, seed=3)
    labels = [sorted({int(y[i]) for i in p}) for p in parts]
    assert [len(p) for p in parts] == [4, 4]
    assert sorted(sum(labels, [])) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("scheme", ["iid", "shards", "dirichlet"])
@pytest.mark.parametrize("n, k", [(100, 10), (103, 7), (31, 31), (50, 1)])
def test_every_sample_in_exactly_one_client(scheme, n, k):
    x, y = labelled(n // 10, 10, extra=n % 10)
    assert len(y) == n
    parts = partition((x, y), num_clients=k, scheme=scheme, shards_per_client=1 if n == k else 2, seed=5)
    assert len(parts) == k
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(n))
    assert all(len(p) > 0 for p in parts)
    assert all(p == sorted(p) and all(isinstance(i, int) for i in p) for p in parts)
    summary = partition_summary((x, y), parts)
    assert_array_equal(summary.sum(1), [len(p) for p in parts])
    assert_array_equal(summary.sum(0), np.bincount(y.numpy()))


@pytest.mark.parametrize("n, k", [(100, 10), (103, 7), (5, 3)])
def test_iid_sizes_differ_by_at_most_one(n, k):
    sizes = [len(p) for p in partition((torch.zeros(n, 1), torch.zeros(n, dtype=torch.long)), num_clients=k)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


def test_shards_give_each_client_at_most_shards_per_client_labels():
    # 10 classes x 40 samples, 20 clients x 2 shards of 10: every shard is label-pure.
    x, y = labelled(40, 10)
    for s in (1, 2):
        parts = partition((x, y), num_clients=40 // s, scheme="shards", shards_per_client=s, seed=0)
        summary = partition_summary((x, y), parts)
        assert ((summary > 0).sum(1) <= s).all()
        assert {len(p) for p in parts} == {10 * s}
    # uneven sizes: shards of 7 or 8; a client still holds at most 2 shards' worth of samples
    x, y = labelled(10, 10, extra=3)
    parts = partition((x, y), num_clients=7, scheme="shards", seed=2)
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 2


def test_shards_are_much_more_skewed_than_iid():
    x, y = labelled(50, 10)
    skew = {s: (partition_summary((x, y), partition((x, y), num_clients=10, scheme=s)) > 0).sum(1).mean()
            for s in ("iid", "shards")}
    assert skew["shards"] <= 2 and skew["iid"] >= 8


def test_dirichlet_alpha_controls_label_skew():
    x, y = labelled(200, 10)
    big = partition_summary((x, y), partition((x, y), num_clients=5, scheme="dirichlet", alpha=1e5, seed=0))
    props = big / big.sum(1, keepdims=True)
    assert np.abs(props - 0.1).max() < 0.03  # approaches the IID proportions
    small = partition_summary((x, y), partition((x, y), num_clients=10, scheme="dirichlet", alpha=0.05, seed=0))
    props_small = small / small.sum(1, keepdims=True)
    # few classes make up most of each client's data (IID: all ten, at ~10% each)
    assert (props_small > 0.05).sum(1).mean() < 4
    assert props_small.max(1).mean() > 0.5 > props.max(1).mean() + 0.3


def test_dirichlet_never_leaves_a_client_empty():
    x, y = labelled(5, 4)
    for seed in range(5):
        parts = partition((x, y), num_clients=20, scheme="dirichlet", alpha=1e-3, seed=seed)
        assert all(len(p) >= 1 for p in parts) and sorted(sum(parts, [])) == list(range(20))


@pytest.mark.parametrize("scheme", ["iid", "shards", "dirichlet"])
def test_partition_is_deterministic_by_seed(scheme):
    x, y = labelled(20, 5)
    a = partition((x, y), num_clients=6, scheme=scheme, seed=11)
    assert partition(TensorDataset(x, y), num_clients=6, scheme=scheme, seed=11) == a
    assert partition((x, y), num_clients=6, scheme=scheme, seed=12) != a


def test_plot_partition_draws_one_bar_segment_per_client_and_class():
    summary = np.array([[3, 0, 1], [0, 2, 2]])
    fig = plot_partition(summary, title="split")
    patches = fig.axes[0].patches
    assert len(patches) == 6
    tops = {}
    for p in patches:
        c = round(p.get_x() + p.get_width() / 2)
        tops[c] = max(tops.get(c, 0), p.get_y() + p.get_height())
    assert tops == {0: 4, 1: 4}
    with pytest.raises(ValueError, match="summary"):
        plot_partition(np.array([1, 2]))


# --------------------------------------------------------------------------------- bad input
XY = labelled(3, 4)  # 12 samples


@given(st.one_of(st.integers(-5, 0), st.integers(13, 100)))
@settings(max_examples=20, deadline=None)
def test_bad_num_clients(k):
    with pytest.raises(ValueError, match="num_clients"):
        partition(XY, num_clients=k)


@given(st.text(max_size=8).filter(lambda s: s not in ("iid", "shards", "dirichlet")))
@settings(max_examples=20, deadline=None)
def test_unknown_scheme(scheme):
    with pytest.raises(ValueError, match="scheme"):
        partition(XY, num_clients=2, scheme=scheme)


@given(st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))))
@settings(max_examples=20, deadline=None)
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        partition(XY, num_clients=2, scheme="dirichlet", alpha=alpha)


@given(st.integers(-3, 0))
@settings(max_examples=10, deadline=None)
def test_bad_shards_per_client(s):
    with pytest.raises(ValueError, match="shards_per_client"):
        partition(XY, num_clients=2, scheme="shards", shards_per_client=s)


def test_too_many_shards_and_bad_labels_and_parts():
    with pytest.raises(ValueError, match="shards_per_client"):
        partition(XY, num_clients=5, scheme="shards", shards_per_client=3)
    with pytest.raises(ValueError, match="labels"):
        partition((torch.zeros(4, 1), torch.tensor([0.5, 1.0, 0.0, 1.0])), num_clients=2)
    with pytest.raises(ValueError, match="labels"):
        partition((torch.zeros(2, 1), torch.tensor([-1, 0])), num_clients=2)
    with pytest.raises(ValueError, match="dataset"):
        partition(42, num_clients=2)
    with pytest.raises(ValueError, match="parts"):
        partition_summary(XY, [[0, 99]])
    with pytest.raises(ValueError, match="seed"):
        partition(XY, num_clients=2, seed=-1)
