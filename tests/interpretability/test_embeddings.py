"""Embeddings: layer features through a forward hook, and their t-SNE map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from mlimaging.interpretability import embed, plot_embedding, tsne
from mlimaging.interpretability.embeddings import layer_names, resolve_layer


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(),
                         nn.Linear(5, 3))


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --------------------------------------------------------------------------- worked examples


def test_embed_equals_the_layer_output_by_hand():
    net = _mlp()
    x = torch.randn(7, 1, 4, 4)
    feats, labels = embed(net, x, layer="2", batch_size=3)
    assert labels is None and feats.dtype == np.float32
    np.testing.assert_allclose(feats, net[:3](x).detach().numpy(), rtol=1e-6, atol=1e-6)
    pen, _ = embed(net, x)  # penultimate = what the last Linear reads (after the ReLU)
    np.testing.assert_allclose(pen, net[:5](x).detach().numpy(), rtol=1e-6, atol=1e-6)
    by_module, _ = embed(net, x, layer=net[3])
    np.testing.assert_allclose(by_module, net[:4](x).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_embed_of_a_dataset_loader_and_pair_agree_and_keep_order(lenet):
    x = torch.rand(10, 1, 28, 28)
    y = torch.arange(10) % 4
    ref, ref_labels = embed(lenet, (x, y), layer="conv2", flatten=False)
    assert ref.shape == (10, 16, 10, 10)
    np.testing.assert_array_equal(ref_labels, y.numpy())
    for data in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=4)):
        feats, labels = embed(lenet, data, layer="conv2", flatten=False, batch_size=3)
        np.testing.assert_allclose(feats, ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(labels, ref_labels)


def test_layer_names_and_resolution():
    net = _mlp()
    assert layer_names(net) == ["0", "1", "2", "3", "4", "5"]
    assert resolve_layer(net, net[4]) == ("4", net[4])


# --------------------------------------------------------------------------- invariants


def test_embed_restores_mode_flags_and_stops_after_the_layer():
    class Head(nn.Module):
        def forward(self, x):
            raise AssertionError("layers after the hooked one must not run")

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), Head()).train()
    net[0].bias.requires_grad_(False)
    feats, _ = embed(net, torch.rand(4, 1, 6, 6), layer="1")
    assert feats.shape == (4, 3 * 4 * 4)
    assert net.training and net[0].weight.requires_grad and not net[0].bias.requires_grad
    assert _hooks(net) == 0
    with pytest.raises(ValueError, match="layer"):
        embed(net, torch.rand(4, 1, 6, 6), layer="nope")
    with pytest.raises(RuntimeError):
        embed(net, torch.rand(4, 6, 6), layer="0")  # wrong channels: the conv itself fails
    assert _hooks(net) == 0 and net.training


def test_embed_eval_mode_inside():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9)).train()
    x = torch.randn(6, 4)
    a, _ = embed(net, x, layer="1")
    b, _ = embed(net, x, layer="1")
    np.testing.assert_array_equal(a, b)  # dropout off
    assert net.training


def _clusters(n_per: int = 15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8.0, size=(3, 6))
    x = np.concatenate([c + rng.normal(size=(n_per, 6)) for c in centres])
    return x, np.repeat(np.arange(3), n_per)


def test_tsne_is_seeded_and_equals_sklearn():
    from sklearn.manifold import TSNE

    x, _ = _clusters()
    a = tsne(x, perplexity=10, seed=3, max_iter=300)
    assert a.shape == (45, 2)
    np.testing.assert_array_equal(a, tsne(torch.as_tensor(x), perplexity=10, seed=3, max_iter=300))
    ref = TSNE(n_components=2, perplexity=10, init="pca", random_state=3,
               max_iter=300).fit_transform(x)
    np.testing.assert_allclose(a, ref, rtol=1e-6, atol=1e-6)
    assert tsne(x, perplexity=10, n_components=3, max_iter=250).shape == (45, 3)


def test_plot_embedding_one_colour_per_class():
    x, y = _clusters()
    fig = plot_embedding(x[:, :2], y, classes=["a", "b", "c"], title="t")
    ax = fig.axes[0]
    assert len(ax.collections) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]


# --------------------------------------------------------------------------- oracle


def test_tsne_of_lenet_features_on_mnist5k_is_trustworthy():
    """The issue's oracle: sklearn.manifold.trustworthiness >= 0.9 for t-SNE of LeNet features."""
    from sklearn.manifold import trustworthiness

    from mlimaging.data import load_dataset
    from mlimaging.models import create_model
    from mlimaging.training import fit

    train = load_dataset("mnist5k", split="train")
    test = load_dataset("mnist5k", split="test")
    rng = np.random.default_rng(0)  # the splits are ordered by digit: take random subsets
    torch.manual_seed(0)
    model = create_model("lenet")
    fit(model, Subset(train, rng.permutation(len(train))[:1000].tolist()), epochs=2, loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=2e-3), batch_size=50, progress=False,
        metrics=())
    feats, labels = embed(model, Subset(test, rng.permutation(len(test))[:300].tolist()))
    assert feats.shape == (300, 84) and len(np.unique(labels)) == 10
    points = tsne(feats, perplexity=30, seed=0, max_iter=500)
    assert trustworthiness(feats, points, n_neighbors=5) >= 0.9


# --------------------------------------------------------------------------- bad input


@settings(max_examples=20, deadline=None)
@given(n=st.integers(min_value=2, max_value=12), extra=st.floats(min_value=0, max_value=100))
def test_perplexity_at_least_n_points_is_rejected(n, extra):
    x = np.random.default_rng(0).normal(size=(n, 3))
    with pytest.raises(ValueError, match="perplexity"):
        tsne(x, perplexity=n + extra)


@pytest.mark.parametrize("features, match", [
    (np.zeros(5), "2D"),
    (np.zeros((1, 3)), "N >= 2"),
    (np.full((4, 2), np.nan), "finite"),
])
def test_tsne_bad_features(features, match):
    with pytest.raises(ValueError, match=match):
        tsne(features, perplexity=1)


@pytest.mark.parametrize("kw, match", [
    (dict(perplexity=0), "perplexity"),
    (dict(perplexity=float("nan")), "perplexity"),
    (dict(perplexity=2, n_components=0), "n_components"),
    (dict(perplexity=2, max_iter=10), "max_iter"),
    (dict(perplexity=2, backend="umap"), "backend"),
])
def test_tsne_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        tsne(np.random.default_rng(0).normal(size=(6, 3)), **kw)


@settings(max_examples=20, deadline=None)
@given(name=st.text(min_size=1, max_size=6).filter(lambda s: s not in {"0", "1", "2", "3", "4",
                                                                           "5", "penultimate"}))
def test_embed_unknown_layer_lists_names(name):
    with pytest.raises(ValueError, match=r"valid names: '0', '1', '2'"):
        embed(_mlp(), torch.randn(2, 1, 4, 4), layer=name)


def test_embed_bad_data_and_batch_size():
    net = _mlp()
    with pytest.raises(ValueError, match="batch_size"):
        embed(net, torch.randn(2, 1, 4, 4), batch_size=0)
    with pytest.raises(ValueError, match="data"):
        embed(net, "images")
    with pytest.raises(ValueError, match="data"):
        embed(net, torch.empty(0, 1, 4, 4))
    with pytest.raises(ValueError, match="labels"):
        embed(net, (torch.randn(3, 1, 4, 4), torch.arange(2)))
    with pytest.raises(ValueError, match="penultimate"):
        embed(nn.Sequential(nn.Flatten()), torch.randn(2, 4))
