"""TripletNet: worked examples by hand, mining invariants, training through fit, resume, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import Subset

from mlimaging.data import load_dataset
from mlimaging.selfsupervised import SelfSupervisedStep
from mlimaging.selfsupervised.encoders import SmallCNN
from mlimaging.selfsupervised.triplet import TripletNet, random_triplets
from mlimaging.training import fit


class Flat(nn.Module):
    """A parameter-free encoder: the flattened image (here the points themselves)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def identity(x, *, generator):
    return x.clone()


def points(*rows) -> torch.Tensor:
    """2-D points as a batch of 1x1x2 'images'."""
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 1, 1, 2)


# e0 = (0, 0), e1 = (2, 0) of class 0; e2 = (0, 1), e3 = (3, 0) of class 1. Squared distances:
# d01 = 4, d02 = 1, d03 = 9, d12 = 5, d13 = 1, d23 = 10. Batch-hard triplets:
# (0, 1, 2): 4 - 1 + 1 = 4; (1, 0, 3): 4 - 1 + 1 = 4; (2, 3, 0): 10 - 1 + 1 = 10; (3, 2, 1): 10.
X = points((0, 0), (2, 0), (0, 1), (3, 0))
Y = torch.tensor([0, 0, 1, 1])


def test_worked_example_batch_hard_squared():
    net = TripletNet(Flat(2), margin=1.0, normalize=False)
    loss, extras = net.ssl_loss(X, Y, generator=torch.Generator())
    assert loss.item() == pytest.approx(7.0)
    assert extras["triplets"].item() == 4 and extras["active"].item() == 1.0
    assert extras["distance_gap"].item() == pytest.approx(((1 - 4) * 2 + (1 - 10) * 2) / 4)


def test_worked_example_batch_hard_plain_distances():
    # the same triplets with d = |u - v|: (2 - 1 + 1) twice and (sqrt 10 - 1 + 1) twice
    net = TripletNet(Flat(2), margin=1.0, normalize=False, squared=False)
    loss, _ = net.ssl_loss(X, Y, generator=torch.Generator())
    assert loss.item() == pytest.approx(1 + math.sqrt(10) / 2, rel=1e-5)


def test_worked_example_self_supervised_triplets():
    # no labels, identical views: each view's positive is its twin (distance 0) and its hardest
    # negative the closest other image. e0 = (0, 0), e1 = (2, 0), e2 = (0, 1), margin 2:
    # max(0, 2 - 1) = 1 for images 0 and 2, max(0, 2 - 4) = 0 for image 1; every view is an anchor.
    net = TripletNet(Flat(2), margin=2.0, normalize=False, augment=identity)
    loss, extras = net.ssl_loss(points((0, 0), (2, 0), (0, 1)), generator=torch.Generator())
    assert loss.item() == pytest.approx(2 / 3)
    assert extras["triplets"].item() == 6 and extras["active"].item() == pytest.approx(4 / 6)


def test_normalized_embeddings_bound_the_loss():
    # unit embeddings: 0 <= d <= 4 (squared), so every triplet loss lies in [0, 4 + margin]
    net = TripletNet(Flat(4), margin=0.5, mining="semi_hard")
    x = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss, extras = net.ssl_loss(x, y, generator=torch.Generator())
    assert 0 <= loss.item() <= 4.5
    assert extras["triplets"].item() == 2 * (3 + 3 + 1)  # ordered positive pairs per class


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_labelled_loss_is_invariant_to_batch_order(mining):
    # deterministic mining on the batch and batch-norm statistics are both order-free
    torch.manual_seed(0)
    net = TripletNet(SmallCNN(feature_dim=8, width=4), margin=0.5, mining=mining)
    x = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(2))
    a, _ = net.ssl_loss(x, y, generator=torch.Generator())
    b, _ = net.ssl_loss(x[perm], y[perm], generator=torch.Generator())
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_random_triplets_are_valid_and_uniform():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3])
    g = torch.Generator().manual_seed(0)
    seen_p, seen_n = set(), set()
    for _ in range(200):
        a, p, n = random_triplets(labels, generator=g)
        assert a.tolist() == [0, 1, 2, 3, 4]  # labels 2 and 3 have no positive
        assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()
        seen_p |= {(i, j) for i, j in zip(a.tolist(), p.tolist(), strict=True)}
        seen_n |= {(i, j) for i, j in zip(a.tolist(), n.tolist(), strict=True)}
    assert len(seen_p) == 3 * 2 + 2  # every positive of every anchor is drawn
    assert len(seen_n) == 3 * 4 + 2 * 5
    a1 = random_triplets(labels, generator=torch.Generator().manual_seed(5))
    a2 = random_triplets(labels, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a1, a2, strict=True))


def test_no_triplet_gives_a_zero_loss_with_a_graph():
    torch.manual_seed(0)
    net = TripletNet(SmallCNN(feature_dim=8, width=4))
    loss, extras = net.ssl_loss(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long),
                                generator=torch.Generator())
    assert loss.item() == 0.0 and extras["triplets"].item() == 0
    loss.backward()  # the step can still call backward


def _digits(n: int) -> Subset:
    return Subset(load_dataset("digits", split="train"), range(n))


def test_labelled_training_through_fit_lowers_the_loss():
    torch.manual_seed(0)
    net = TripletNet(SmallCNN(feature_dim=16, width=4), margin=0.5)
    data = _digits(120)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data[i][1] for i in range(len(data))])
    g = torch.Generator()
    net.eval()
    with torch.no_grad():
        before = net.ssl_loss(x, y, generator=g)[0].item()
    h = fit(net, data, step=SelfSupervisedStep(seed=0), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
            epochs=4, batch_size=60, metrics=(), progress=False)
    net.eval()
    with torch.no_grad():
        after = net.ssl_loss(x, y, generator=g)[0].item()
    assert after < before and len(h) == 4


@pytest.mark.parametrize("mining", ["batch_hard", "random"])
def test_self_supervised_resume_is_exact(tmp_path, mining):
    data = Subset(torch.stack([_digits(48)[i][0] for i in range(48)]), range(48))  # images only

    def run(folder, epochs, resume=False):
        torch.manual_seed(0)
        net = TripletNet(SmallCNN(feature_dim=8, width=4), margin=0.5, mining=mining)
        fit(net, data, step=SelfSupervisedStep(seed=0), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
            epochs=epochs, batch_size=24, metrics=(), progress=False, checkpoint_dir=folder, resume=resume)
        return net.state_dict()

    full = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


@pytest.mark.parametrize(("kwargs", "match"), [({"margin": -1.0}, "margin"), ({"margin": float("nan")}, "margin"),
                                               ({"mining": "hardest"}, "mining"), ({"squared": 1}, "squared"),
                                               ({"normalize": "yes"}, "normalize"), ({"augment": 3}, "augment")])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TripletNet(Flat(2), **kwargs)


def test_bad_encoder_and_labels():
    with pytest.raises(ValueError, match="feature_dim"):
        TripletNet(nn.Flatten())
    net = TripletNet(Flat(2))
    with pytest.raises(ValueError, match="y must"):
        net.ssl_loss(X, torch.tensor([0, 1]), generator=torch.Generator())
    with pytest.raises(ValueError, match="y must"):
        net.ssl_loss(X, torch.tensor([0.0, 1.0, 0.0, 1.0]), generator=torch.Generator())
    with pytest.raises(ValueError, match="at least 2"):
        net.ssl_loss(X[:1], generator=torch.Generator())


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(max_value=0.0, exclude_max=True), st.just(float("inf")), st.booleans(), st.none()))
def test_bad_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        TripletNet(Flat(2), margin=margin)
