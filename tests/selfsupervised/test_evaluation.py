"""Probes of a representation: linear probe, weighted kNN (Wu et al. 2018), fine-tuning, label efficiency."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.selfsupervised.evaluation import (
    extract_features,
    fine_tune,
    knn_accuracy,
    knn_predict,
    label_efficiency,
    linear_probe,
    stratified_subsets,
)


class TinyEncoder(nn.Sequential):
    """A small encoder with BatchNorm (whose running statistics must not move) and ``feature_dim``."""

    def __init__(self, seed: int = 0, feature_dim: int = 6):
        torch.manual_seed(seed)
        super().__init__(nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, feature_dim))
        self.feature_dim = feature_dim


def _blobs(n_per_class: int = 20, seed: int = 0, classes: int = 3):
    """Images (N, 1, 4, 4) whose class sets one bright quadrant pixel: easy, linearly separable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = 0.1 * torch.rand(len(y), 1, 4, 4, generator=g)
    x[torch.arange(len(y)), 0, y, y] += 1.0
    return x, y


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ kNN worked examples
def test_knn_worked_example_by_hand():
    # Two neighbours at cosine 1.0 (class 0) and 0.8 (class 1 twice at 0.6): with T = 1,
    # class 0 gets e^1 = 2.718, class 1 gets 2 e^0.6 = 3.644 -> class 1 wins; with T = 0.1 class 0 wins
    # (e^10 = 22026 against 2 e^6 = 807).
    train = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    q = torch.tensor([[2.0, 0.0]])  # normalised to (1, 0): similarities 1, 0.6, 0.6, -1
    s1 = knn_predict(train, labels, q, k=3, temperature=1.0)
    assert torch.allclose(s1, torch.tensor([[math.e, 2 * math.exp(0.6), 0.0]]) / math.e, rtol=1e-6)
    assert int(s1.argmax()) == 1
    assert int(knn_predict(train, labels, q, k=3, temperature=0.1).argmax()) == 0
    # k = 1: the nearest neighbour alone decides.
    assert int(knn_predict(train, labels, torch.tensor([[-3.0, 0.1]]), k=1).argmax()) == 2


def test_knn_scores_are_scale_invariant_and_k_is_capped():
    g = torch.Generator().manual_seed(1)
    f, y, q = torch.randn(10, 5, generator=g), torch.randint(0, 3, (10,), generator=g), torch.randn(4, 5, generator=g)
    a = knn_predict(f, y, q, k=4)
    b = knn_predict(7.0 * f, y, 0.5 * q, k=4)  # cosine similarity ignores the norms
    assert torch.allclose(a, b, rtol=1e-5)
    # k larger than the bank: every training sample votes, the total weight is the sum over all of them
    full = knn_predict(f, y, q, k=100, temperature=0.5)
    fn, qn = nn.functional.normalize(f.double(), dim=1), nn.functional.normalize(q.double(), dim=1)
    expected = torch.exp((qn @ fn.T - 1) / 0.5).sum(1)
    assert torch.allclose(full.double().sum(1), expected, rtol=1e-5)


def test_knn_accuracy_on_hand_made_clusters():
    # Features are the flattened images: two tight clusters, the test points near their own class.
    x = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]]).view(4, 1, 1, 2)
    y = torch.tensor([0, 0, 1, 1])
    xt = torch.tensor([[0.9, 0.3], [0.2, 0.8], [1.0, 0.95]]).view(3, 1, 1, 2)
    yt = torch.tensor([0, 1, 0])  # the last is closer to class 0 (cos 0.73 vs 0.69 ...)
    assert knn_accuracy(nn.Flatten(), (x, y), (xt, yt), k=2) == pytest.approx(1.0)
    assert knn_accuracy(nn.Flatten(), (x, y), (xt, torch.tensor([1, 0, 1])), k=2) == pytest.approx(0.0)


# ------------------------------------------------------------------------------ linear probe
def test_linear_probe_on_linearly_separable_features_reaches_100_percent():
    # Features (the flattened 1 x 1 x 3 "images") are the one-hot class plus noise of at most 0.2:
    # the classes are separated by the planes h_c - h_d = 0 with a margin of 0.6.
    def onehot(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(3).repeat(n)
        return (nn.functional.one_hot(y, 3).float() + 0.2 * torch.rand(len(y), 3, generator=g)).view(-1, 1, 1, 3), y

    res = linear_probe(nn.Flatten(), onehot(20, 0), onehot(50, 1), epochs=60, lr=0.1)
    assert res["accuracy"] == 1.0 and res["train_accuracy"] == 1.0
    assert res["n_labels"] == 60 and res["feature_dim"] == 3
    assert res["history"][-1]["loss"] < res["history"][0]["loss"]


def test_linear_probe_leaves_the_encoder_unchanged_and_is_repeatable():
    enc = TinyEncoder()
    enc.train()
    before = _state(enc)
    flags = [p.requires_grad for p in enc.parameters()]
    a = linear_probe(enc, _blobs(10), _blobs(5, seed=1), epochs=5)
    b = linear_probe(enc, _blobs(10), _blobs(5, seed=1), epochs=5)
    assert _same(before, _state(enc))  # BatchNorm running stats too
    assert enc.training and flags == [p.requires_grad for p in enc.parameters()]
    assert a["accuracy"] == b["accuracy"] and a["history"][-1]["loss"] == b["history"][-1]["loss"]


def test_probes_accept_datasets_and_methods():
    from torch.utils.data import TensorDataset

    class Method(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = TinyEncoder()

        def ssl_loss(self, x, y=None, *, generator):
            return self.encoder(x).sum()

    x, y = _blobs(6)
    m = Method()
    r1 = knn_accuracy(m, TensorDataset(x, y), (x, y), k=3)
    r2 = knn_accuracy(m.encoder, (x, y), [(x[i], y[i]) for i in range(len(y))], k=3)
    assert r1 == r2
    assert extract_features(m, x).shape == (18, 6)


# ------------------------------------------------------------------------------ fine-tuning
def test_fine_tune_trains_a_copy_and_never_modifies_the_encoder():
    enc = TinyEncoder()
    before = _state(enc)
    res = fine_tune(enc, _blobs(20), _blobs(10, seed=1), epochs=30, lr=1e-2, batch_size=16)
    assert _same(before, _state(enc))
    assert res["model"].encoder is not enc
    assert not _same(before, _state(res["model"].encoder))  # the copy did train
    assert res["accuracy"] == 1.0 and res["n_labels"] == 60


def test_fine_tune_unfreezes_its_copy_of_a_frozen_encoder():
    from mlimaging.training import freeze

    enc = TinyEncoder()
    freeze(enc)
    res = fine_tune(enc, _blobs(5), _blobs(2, seed=1), epochs=2)
    assert all(p.requires_grad for p in res["model"].parameters())
    assert not any(p.requires_grad for p in enc.parameters())


# ------------------------------------------------------------------------------ subsets and label efficiency
def test_stratified_subsets_are_nested_stratified_and_sized():
    y = torch.arange(10).repeat_interleave(350)  # mnist5k train
    fractions = (0.01, 0.05, 0.1, 0.5, 1.0)
    subsets = stratified_subsets(y, fractions, seed=3)
    for f, s in zip(fractions, subsets, strict=True):
        assert len(s) == round(f * 3500) and len(torch.unique(s)) == len(s)
        counts = torch.bincount(y[s], minlength=10)
        assert counts.min() >= 1
        assert (counts.double() - f * 350).abs().max() <= 1.0  # stratified to within one sample
    for small, big in zip(subsets, subsets[1:], strict=False):
        assert torch.isin(small, big).all()  # nested
    assert torch.equal(subsets[-1], torch.arange(3500))
    other = stratified_subsets(y, fractions, seed=4)
    assert not torch.equal(subsets[0], other[0])  # the seed draws other images
    assert all(torch.equal(a, b) for a, b in zip(subsets, stratified_subsets(y, fractions, seed=3), strict=True))


def test_stratified_subsets_keep_every_class_with_imbalance():
    y = torch.cat([torch.zeros(990, dtype=torch.long), torch.ones(5, dtype=torch.long), torch.full((5,), 2)])
    (s,) = stratified_subsets(y, (0.01,), seed=0)
    assert len(s) == 10 and set(y[s].tolist()) == {0, 1, 2}
    (tiny,) = stratified_subsets(y, (0.001,), seed=0)  # round(1) < 3 classes: one per class
    assert sorted(y[tiny].tolist()) == [0, 1, 2]


def test_label_efficiency_rows_compare_on_the_same_subsets():
    x, y = _blobs(20)
    test = _blobs(5, seed=1)
    built = []

    def scratch(seed):
        built.append(seed)
        return TinyEncoder(seed=100 + seed)

    enc = TinyEncoder()
    before = _state(enc)
    rows = label_efficiency(enc, (x, y), test, fractions=(0.1, 1.0), seeds=(0, 1), probe=("linear", "knn", "fine_tune"),
                            supervised=scratch, probe_epochs=2, fine_tune_epochs=1, batch_size=16)
    assert _same(before, _state(enc))
    assert built == [0, 0, 1, 1]
    assert len(rows) == 2 * 2 * 4
    assert {(r["method"], r["probe"]) for r in rows} == {("pretrained", "linear"), ("pretrained", "knn"),
                                                         ("pretrained", "fine_tune"), ("supervised", "scratch")}
    assert {r["labels"] for r in rows if r["fraction"] == 0.1} == {6} and all(0 <= r["accuracy"] <= 1 for r in rows)
    again = label_efficiency(enc, (x, y), test, fractions=(0.1, 1.0), seeds=(0, 1), probe=("linear", "knn", "fine_tune"),
                             supervised=scratch, probe_epochs=2, fine_tune_epochs=1, batch_size=16)
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in again]


def test_label_efficiency_knn_equals_knn_on_the_subset():
    x, y = _blobs(10)
    test = _blobs(4, seed=2)
    enc = TinyEncoder()
    (row,) = label_efficiency(enc, (x, y), test, fractions=(0.5,), seeds=(7,), probe="knn", k=3)
    (idx,) = stratified_subsets(y, (0.5,), seed=7)
    assert row["accuracy"] == knn_accuracy(enc, (x[idx], y[idx]), test, k=3)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(k=0), "k must be"), (dict(temperature=0.0), "temperature must be"),
    (dict(temperature=float("nan")), "temperature must be"),
])
def test_knn_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn_predict(torch.randn(3, 2), torch.tensor([0, 1, 0]), torch.randn(2, 2), **kwargs)


def test_bad_datasets_and_options_are_named():
    x, y = _blobs(3)
    with pytest.raises(ValueError, match="labels must be a vector"):
        linear_probe(nn.Flatten(), (x, y[:-1]), (x, y))
    with pytest.raises(ValueError, match="integer class indices"):
        knn_accuracy(nn.Flatten(), (x, y.float()), (x, y))
    with pytest.raises(ValueError, match="NaN"):
        knn_accuracy(nn.Flatten(), (x, y), (torch.full_like(x, float("nan")), y))
    with pytest.raises(ValueError, match="train must be"):
        linear_probe(nn.Flatten(), 42, (x, y))
    with pytest.raises(ValueError, match="encoder must be"):
        fine_tune("resnet", (x, y), (x, y))
    with pytest.raises(ValueError, match="epochs must be"):
        fine_tune(nn.Flatten(), (x, y), (x, y), epochs=0)
    with pytest.raises(ValueError, match="probe must be one of"):
        label_efficiency(nn.Flatten(), (x, y), (x, y), probe="svm")
    with pytest.raises(ValueError, match="fractions must be"):
        stratified_subsets(y, (0.0, 0.5))
    with pytest.raises(ValueError, match="encoder must return"):
        extract_features(nn.Identity(), x)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.lists(st.floats(-1.0, 2.0), min_size=1, max_size=4),
       st.integers(0, 2**31 - 1))
def test_stratified_subsets_property(labels, fractions, seed):
    y = torch.tensor(labels)
    if not all(0 < f <= 1 for f in fractions):
        with pytest.raises(ValueError, match="fractions"):
            stratified_subsets(y, fractions, seed=seed)
        return
    subsets = stratified_subsets(y, fractions, seed=seed)
    classes = set(labels)
    for f, s in zip(fractions, subsets, strict=True):
        assert len(s) == min(len(y), max(len(classes), round(f * len(y))))
        assert set(y[s].tolist()) == classes
    order = sorted(range(len(fractions)), key=lambda i: len(subsets[i]))
    for i, j in zip(order, order[1:], strict=False):
        assert torch.isin(subsets[i], subsets[j]).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.floats(0.01, 5.0))
def test_knn_scores_are_nonnegative_and_sum_to_the_topk_weights(n, k, temperature):
    g = torch.Generator().manual_seed(n * 7 + k)
    f, q = torch.randn(n, 3, generator=g), torch.randn(2, 3, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    s = knn_predict(f, y, q, k=k, temperature=temperature, num_classes=3)
    assert s.shape == (2, 3) and (s >= 0).all()
    sim = nn.functional.normalize(q.double(), dim=1) @ nn.functional.normalize(f.double(), dim=1).T
    top = sim.topk(min(k, n), dim=1).values
    assert torch.allclose(s.double().sum(1), torch.exp((top - 1) / temperature).sum(1), rtol=1e-5)
