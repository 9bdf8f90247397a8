"""SimCLR: the loss by hand, invariants, training through fit, exact resume, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import Subset, TensorDataset

from mlimaging.data import load_dataset
from mlimaging.selfsupervised import SelfSupervisedStep
from mlimaging.selfsupervised.encoders import SmallCNN
from mlimaging.selfsupervised.simclr import SimCLR
from mlimaging.training import fit


class Flat(nn.Module):
    """A parameter-free encoder: the flattened image."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def noise(x, *, generator):
    return x + 0.2 * torch.randn(x.shape, generator=generator)


def identity(x, *, generator):
    return x.clone()


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent of Chen et al. (2020), eq. 1, by a double loop over the 2N views."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    total = z.new_zeros(())
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sim = [torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm()) for k in range(n2)]
        den = sum(torch.exp(sim[k] / tau) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(sim[j] / tau) / den)
    return total / n2


def _model(augment=noise, temperature=0.5, seed=0):
    torch.manual_seed(seed)
    return SimCLR(SmallCNN(feature_dim=16, width=4), projection_dim=8, hidden_dim=16,
                  temperature=temperature, augment=augment)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_loss_is_nt_xent_of_the_projected_views(temperature):
    model = _model(temperature=temperature)
    x = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(3)
    g_copy = torch.Generator()
    g_copy.set_state(g.get_state())
    loss, extras = model.ssl_loss(x, generator=g)
    v1, v2 = noise(x, generator=g_copy), noise(x, generator=g_copy)
    z1, z2 = model.projector(model.encoder(torch.cat([v1, v2]))).chunk(2)
    torch.testing.assert_close(loss, nt_xent_loop(z1, z2, temperature), rtol=1e-5, atol=1e-6)
    cos = torch.nn.functional.cosine_similarity(z1, z2).mean()
    torch.testing.assert_close(extras["positive_cosine"], cos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(extras["alignment"], 2 - 2 * cos, rtol=1e-5, atol=1e-6)  # unit vectors
    assert torch.equal(g.get_state(), g_copy.get_state())  # exactly two views drawn


def test_worked_example_identity_encoder_and_projection():
    # Flat encoder, projection reduced to the identity by hand: the loss is NT-Xent of the views
    # themselves. Two images (1, 0) and (0, 1), identical views: s_pos = 1, the negatives have
    # s = 0 (twice) and the positive term, so each view's loss is -log(e^2 / (e^2 + 2)) at tau 0.5.
    model = SimCLR(Flat(2), projection_dim=2, hidden_dim=2, augment=identity)
    model.projector = nn.Identity()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 1, 2)
    loss, extras = model.ssl_loss(x, generator=torch.Generator())
    assert loss.item() == pytest.approx(-math.log(math.e ** 2 / (math.e ** 2 + 2)), rel=1e-6)
    assert extras["positive_cosine"].item() == pytest.approx(1.0)
    assert extras["negative_cosine"].item() == pytest.approx(0.0, abs=1e-7)


def test_identity_views_loss_is_invariant_to_batch_order():
    # with deterministic views NT-Xent only pairs rows, and batch norm's statistics do not
    # depend on the order: permuting the batch leaves the loss unchanged (up to rounding).
    # With random views it would not: the generator's draws go to other images.
    model = _model(augment=identity)
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    loss, extras = model.ssl_loss(x, generator=torch.Generator())
    loss_perm, _ = model.ssl_loss(x[perm], generator=torch.Generator())
    torch.testing.assert_close(loss, loss_perm, rtol=1e-5, atol=1e-6)
    assert extras["positive_cosine"].item() == pytest.approx(1.0, abs=1e-5)
    assert extras["alignment"].item() == pytest.approx(0.0, abs=1e-5)


def test_seeded_views_are_repeatable_and_generator_dependent():
    model = _model(augment=None)  # the default simclr_augment pipeline
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    a, _ = model.ssl_loss(x, generator=torch.Generator().manual_seed(1))
    b, _ = model.ssl_loss(x, generator=torch.Generator().manual_seed(1))
    c, _ = model.ssl_loss(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.isfinite(c)


def test_forward_is_the_encoder_and_gradients_reach_it():
    model = _model()
    x = torch.rand(4, 1, 12, 12)
    model.eval()
    assert torch.equal(model(x), model.encoder(x)) and model.feature_dim == 16
    model.train()
    loss, _ = model.ssl_loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def _digits(n: int = 96) -> Subset:
    return Subset(load_dataset("digits", split="train"), range(n))


def test_pretraining_through_fit_lowers_the_loss():
    model = _model(augment=None)
    step = SelfSupervisedStep(seed=0)
    data = _digits()
    batch = torch.stack([data[i][0] for i in range(len(data))])
    before = step.validation_loss(model, batch).item()
    h = fit(model, data, step=step, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), epochs=4,
            batch_size=48, metrics=(), progress=False)
    after = step.validation_loss(model, batch).item()
    assert after < before
    assert h["loss"][-1] < h["loss"][0]
    assert h["positive_cosine"][-1] > h["positive_cosine"][0]  # the two views' projections align


def test_resume_is_exact(tmp_path):
    data = TensorDataset(torch.stack([_digits(64)[i][0] for i in range(64)]))

    def run(folder, epochs, resume=False):
        model = _model(augment=None)
        fit(model, data, step=SelfSupervisedStep(seed=0), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
            epochs=epochs, batch_size=32, metrics=(), progress=False, checkpoint_dir=folder, resume=resume)
        return model.state_dict()

    full = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


def test_bad_encoder():
    with pytest.raises(ValueError, match="feature_dim"):
        SimCLR(nn.Flatten())
    with pytest.raises(ValueError, match="encoder"):
        SimCLR(lambda x: x)


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf")), st.booleans(),
                 st.text(max_size=3)))
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(Flat(4), temperature=temperature)


@pytest.mark.parametrize(("kwargs", "match"), [({"projection_dim": 0}, "projection_dim"),
                                               ({"hidden_dim": 2.5}, "hidden_dim"),
                                               ({"augment": "crop"}, "augment")])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimCLR(Flat(4), **kwargs)


@pytest.mark.parametrize(("x", "match"), [(torch.rand(1, 1, 8, 8), "at least 2"),
                                          (torch.rand(3, 8, 8), "shape"),
                                          (torch.zeros(2, 1, 8, 8, dtype=torch.int64), "floating")])
def test_bad_batch(x, match):
    with pytest.raises(ValueError, match=match):
        _model().ssl_loss(x, generator=torch.Generator())


def test_vit_encoder_trains_through_simclr():
    from mlimaging.models import ViT
    from mlimaging.selfsupervised.encoders import ViTEncoder

    torch.manual_seed(0)
    vit = ViT(image_size=16, patch_size=4, dim=16, depth=1, heads=2)
    model = SimCLR(ViTEncoder(vit, pool="mean"), projection_dim=8, hidden_dim=16)
    loss, _ = model.ssl_loss(torch.rand(4, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert model.feature_dim == 16 and vit.blocks[0].attn.qkv.weight.grad is not None
    assert vit.head.weight.grad is None  # the classifier head is not part of the encoder
