"""Logistic regression on pixels and the linear model on morphometric features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose

from mlimaging.data.morphometry import digit_features
from mlimaging.models import FeatureLinear, LogisticRegression, create_model

# ---------------------------------------------------------------- logistic regression


def test_course_parameter_count_785():
    """28 x 28 pixels and one output: 28^2 weights + 1 bias."""
    model = LogisticRegression(input_shape=(1, 28, 28), num_classes=2, binary=True)
    assert sum(p.numel() for p in model.parameters()) == 785
    assert sum(p.numel() for p in LogisticRegression().parameters()) == 7850
    rgb = LogisticRegression(input_shape=(3, 32, 32), num_classes=5)
    assert sum(p.numel() for p in rgb.parameters()) == 3 * 32 * 32 * 5 + 5


def test_forward_is_affine_on_flattened_pixels():
    torch.manual_seed(0)
    model = LogisticRegression(input_shape=(2, 3, 4), num_classes=3)
    x = torch.rand(5, 2, 3, 4)
    w, b = model.linear.weight, model.linear.bias
    expected = x.reshape(5, 24) @ w.T + b
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_binary_single_logit_is_log_odds():
    model = LogisticRegression(input_shape=(1, 4, 4), num_classes=2, binary=True)
    x = torch.rand(6, 1, 4, 4)
    logit = model(x)
    assert logit.shape == (6, 1)
    # sigmoid(z) is the softmax probability of class 1 for logits (0, z)
    two = torch.cat([torch.zeros_like(logit), logit], dim=1)
    assert torch.allclose(torch.sigmoid(logit[:, 0]), two.softmax(1)[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match="num_classes=2"):
        LogisticRegression(num_classes=3, binary=True)


def test_weights_image_is_a_detached_reshaped_copy():
    model = LogisticRegression(input_shape=(2, 3, 5), num_classes=4)
    img = model.weights_image()
    assert img.shape == (4, 2, 3, 5)
    assert not img.requires_grad
    w = model.linear.weight
    # class k, channel c, row i, column j is weight column c*15 + i*5 + j
    assert img[3, 1, 2, 4] == w[3, 1 * 15 + 2 * 5 + 4]
    assert img[0, 0, 1, 0] == w[0, 5]
    img.zero_()
    assert model.linear.weight.abs().sum() > 0
    assert LogisticRegression(num_classes=2, binary=True).weights_image().shape == (1, 1, 28, 28)


def test_logistic_regression_learns_a_separable_task():
    """Bright top half vs bright bottom half: the weights image shows the difference."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g) * 0.5
    y = torch.arange(64) % 2
    x[y == 0, :, :4] += 0.5
    x[y == 1, :, 4:] += 0.5
    torch.manual_seed(0)
    model = LogisticRegression(input_shape=(1, 8, 8), num_classes=2, binary=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(100):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(x).squeeze(1), y.float()).backward()
        opt.step()
    assert ((model(x).squeeze(1) > 0).long() == y).all()
    w = model.weights_image()[0, 0]
    assert w[4:].mean() > 0 > w[:4].mean()  # evidence for class 1 lives in the bottom half


def test_logistic_regression_bad_input():
    model = LogisticRegression(input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="input_shape"):
        LogisticRegression(input_shape=(28, 28))
    with pytest.raises(ValueError, match="input_shape"):
        LogisticRegression(input_shape=(1, 0, 28))


# ---------------------------------------------------------------- feature linear


def _bars(n: int, *, horizontal: bool, seed: int) -> torch.Tensor:
    """Random bars of varying length and width on 28 x 28, vertical or horizontal."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28), dtype=np.float32)
    for i in range(n):
        length, width = rng.integers(10, 20), rng.integers(1, 4)
        r, c = rng.integers(2, 6), rng.integers(4, 20)
        imgs[i, r:r + length, c:c + width] = 1.0
        if horizontal:
            imgs[i] = imgs[i].T
    return torch.from_numpy(imgs)[:, None]


def test_fit_standardizer_matches_feature_statistics():
    images = torch.cat([_bars(10, horizontal=False, seed=0), _bars(10, horizontal=True, seed=1)])
    model = FeatureLinear(num_classes=2)
    assert model.fit_standardizer(images) is model
    feats = digit_features(images)
    assert_allclose(model.feature_mean.numpy(), feats.mean(0), rtol=1e-6)
    assert_allclose(model.feature_std.numpy(), feats.std(0), rtol=1e-6)
    # forward = linear layer on the standardised features
    z = (torch.as_tensor(feats, dtype=torch.float32) - model.feature_mean) / model.feature_std
    assert torch.allclose(model(images), model.linear(z), atol=1e-5)


def test_constant_feature_gets_unit_std():
    images = _bars(5, horizontal=False, seed=0)
    images[:] = images[0]  # identical images: every feature constant
    model = FeatureLinear().fit_standardizer(images)
    assert torch.equal(model.feature_std, torch.ones(6))


def test_standardizer_is_saved_buffers_not_parameters():
    model = FeatureLinear().fit_standardizer(_bars(6, horizontal=True, seed=2))
    names = {n for n, _ in model.named_parameters()}
    assert names == {"linear.weight", "linear.bias"}
    copy = FeatureLinear()
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.feature_mean, model.feature_mean)
    assert torch.equal(copy.feature_std, model.feature_std)


def test_gradients_reach_the_linear_layer_only():
    model = FeatureLinear(num_classes=3)
    images = _bars(4, horizontal=False, seed=3).requires_grad_(True)
    model(images).sum().backward()
    assert model.linear.weight.grad is not None and model.linear.weight.grad.abs().sum() > 0
    assert images.grad is None  # features are not differentiable in the image


def test_feature_linear_learns_vertical_vs_horizontal():
    x = torch.cat([_bars(20, horizontal=False, seed=4), _bars(20, horizontal=True, seed=5)])
    y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    torch.manual_seed(0)
    model = create_model("feature_linear", num_classes=2).fit_standardizer(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert (model(x).argmax(1) == y).all()


def test_feature_linear_bad_input():
    model = FeatureLinear()
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="at least one image"):
        model.fit_standardizer(np.zeros((0, 28, 28)))
    with pytest.raises(ValueError, match="threshold"):
        FeatureLinear(threshold=float("inf"))
