"""Trust checks: cascading randomisation (Adebayo et al. 2018), deletion/insertion (Petsiuk et al.
2018) and the rank correlation they use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr
from torch import nn

from mlimaging.interpretability import deletion_insertion, rank_correlation, saliency, sanity_check
from mlimaging.interpretability.trust import trapezoid_area


def _grad(model, x, target):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(model(x)[:, target].sum(), x)[0]


def _linear(weights: list[float], bias: bool = False) -> nn.Module:
    net = nn.Sequential(nn.Flatten(), nn.Linear(len(weights), 2, bias=bias))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([torch.tensor(weights), torch.zeros(len(weights))]))
        if bias:
            net[1].bias.zero_()
    return net


# --------------------------------------------------------------------------- rank correlation


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(min_value=3, max_value=40))
def test_rank_correlation_equals_scipy_spearmanr_with_ties(data, n):
    values = st.integers(min_value=-3, max_value=3).map(float)  # few values: many ties
    a = data.draw(arrays(np.float64, (2, n), elements=values))
    b = data.draw(arrays(np.float64, (2, n), elements=values))
    ours = rank_correlation(a, b)
    for i in range(2):
        if np.ptp(a[i]) == 0 or np.ptp(b[i]) == 0:
            assert np.isnan(ours[i])
        else:
            assert ours[i] == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_rank_correlation_worked_example_and_shapes():
    # ranks of (1, 2, 2, 5) are (1, 2.5, 2.5, 4); of (4, 3, 2, 1) (4, 3, 2, 1).
    # centred: (-1.5, 0, 0, 1.5) . (1.5, 0.5, -0.5, -1.5) = -4.5; norms sqrt(4.5 * 5).
    rho = rank_correlation(torch.tensor([[1.0, 2.0, 2.0, 5.0]]), [[4.0, 3.0, 2.0, 1.0]])
    assert rho[0] == pytest.approx(-4.5 / np.sqrt(4.5 * 5.0))
    with pytest.raises(ValueError, match="same shape"):
        rank_correlation(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        rank_correlation(np.zeros((2, 1)), np.zeros((2, 1)))


# --------------------------------------------------------------------------- sanity check


def test_sanity_check_starts_at_one_and_drops_for_saliency(lenet):
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    state = {k: v.clone() for k, v in lenet.state_dict().items()}
    lenet.train()
    lenet.fc1.weight.requires_grad_(False)
    rows, maps = sanity_check(lenet, x, 3, method="saliency", ssim=True, return_maps=True)
    assert [r["layer"] for r in rows] == ["(trained)", "fc3", "fc2", "fc1", "conv2", "conv1"]
    assert rows[0]["spearman"] == 1.0 and rows[0]["spearman_per_sample"] == [1.0] * 3
    assert rows[0]["ssim"] == pytest.approx(1.0)
    assert all(r["spearman"] < 0.5 for r in rows[1:])
    assert maps.shape == (6, 3, 1, 28, 28)
    torch.testing.assert_close(maps[0], saliency(lenet, x, 3))
    # the caller's model is untouched: weights, mode, flags
    assert all(torch.equal(state[k], v) for k, v in lenet.state_dict().items())
    assert lenet.training and not lenet.fc1.weight.requires_grad and lenet.conv1.weight.requires_grad


def test_sanity_check_rows_equal_scipy_on_the_returned_maps(lenet):
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    rows, maps = sanity_check(lenet, x, 5, method="input_x_gradient", layers=["fc3", "conv2"],
                              return_maps=True)
    assert [r["layer"] for r in rows] == ["(trained)", "fc3", "conv2"]
    for k, row in enumerate(rows):
        for b in range(2):
            ref = spearmanr(maps[0, b].abs().flatten(), maps[k, b].abs().flatten()).statistic
            assert row["spearman_per_sample"][b] == pytest.approx(ref, abs=1e-10)
        assert row["spearman"] == pytest.approx(np.mean(row["spearman_per_sample"]))


def test_sanity_check_callable_equals_name_and_is_seeded(lenet):
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    by_name = sanity_check(lenet, x, 1, method="saliency", seed=4)
    by_fn = sanity_check(lenet, x, 1, method=_grad, seed=4)  # |grad| ranks as saliency does
    for a, b in zip(by_name, by_fn, strict=True):
        assert a["spearman_per_sample"] == pytest.approx(b["spearman_per_sample"], abs=1e-12)
    again = sanity_check(lenet, x, 1, method="saliency", seed=4)
    assert [r["spearman_per_sample"] for r in again] == [r["spearman_per_sample"] for r in by_name]
    other = sanity_check(lenet, x, 1, method="saliency", seed=5)
    assert [r["spearman"] for r in other] != [r["spearman"] for r in by_name]
    signed = sanity_check(lenet, x, 1, method=_grad, seed=4, absolute=False)
    assert signed[0]["spearman"] == 1.0


def test_guided_backprop_is_less_sensitive_than_saliency(lenet):
    """Adebayo et al.'s finding: guided backprop barely changes when the top layer is randomised."""
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    sal = sanity_check(lenet, x, 3, method="saliency", layers=["fc3"])
    gbp = sanity_check(lenet, x, 3, method="guided_backprop", layers=["fc3"])
    assert gbp[1]["spearman"] > sal[1]["spearman"] + 0.2


def test_sanity_check_maps_module_arguments_to_the_copy(lenet):
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    kw = dict(method="grad_cam", layers=["fc3", "conv1"], return_maps=True)
    by_module, maps_module = sanity_check(lenet, x, 6, layer=lenet.conv2, **kw)
    by_name, maps_name = sanity_check(lenet, x, 6, layer="conv2", **kw)
    torch.testing.assert_close(maps_module, maps_name, rtol=0, atol=0)
    assert maps_module[0].abs().sum() > 0 and by_module[0]["spearman"] == 1.0
    np.testing.assert_array_equal([r["spearman"] for r in by_module],
                                  [r["spearman"] for r in by_name])


def test_sanity_check_bad_input(lenet):
    x = torch.rand(1, 1, 28, 28)
    with pytest.raises(ValueError, match="layers"):
        sanity_check(lenet, x, 0, layers=["fc9"])
    with pytest.raises(ValueError, match="method"):
        sanity_check(lenet, x, 0, method=3)
    with pytest.raises(ValueError, match="method"):
        sanity_check(lenet, x, 0, method="no_such_method")
    with pytest.raises(ValueError, match="x"):
        sanity_check(lenet, torch.rand(0, 1, 28, 28), 0)
    with pytest.raises(ValueError, match="one map per sample"):
        sanity_check(lenet, x, 0, method=lambda m, x, t: torch.zeros(2, 3))
    with pytest.raises(ValueError, match="no layer"):
        sanity_check(nn.Sequential(nn.Flatten()), x, 0, method=lambda m, x, t: x)


# --------------------------------------------------------------------------- deletion / insertion


def test_deletion_curve_of_a_linear_model_with_softmax():
    # logit_0 = w . x with x = 1 and w = (1, 4, 2, 3); logit_1 = 0: p_0 = sigmoid(logit_0).
    net = _linear([1.0, 4.0, 2.0, 3.0])
    x = torch.ones(1, 1, 2, 2)
    att = torch.tensor([1.0, 4.0, 2.0, 3.0]).view(1, 1, 2, 2)  # input x gradient, exact here
    res = deletion_insertion(net, x, 0, att, steps=4, insertion_baseline=0.0)
    sig = lambda v: 1 / (1 + np.exp(-np.asarray(v)))  # noqa: E731
    np.testing.assert_allclose(res["fractions"], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(res["deletion"][0], sig([10, 6, 3, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(res["insertion"][0], sig([0, 4, 7, 9, 10]), rtol=1e-6)
    for kind in ("deletion", "insertion"):
        np.testing.assert_allclose(res[f"{kind}_auc"], np.trapezoid(res[kind], res["fractions"]))
        from sklearn.metrics import auc

        assert res[f"{kind}_auc"][0] == pytest.approx(auc(res["fractions"], res[kind][0]))
    reverse = deletion_insertion(net, x, 0, -att, steps=4, insertion_baseline=0.0)
    assert reverse["deletion_auc"][0] > res["deletion_auc"][0]
    assert reverse["insertion_auc"][0] < res["insertion_auc"][0]


def test_curve_ends_blur_substrate_and_state(lenet):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 28, 28, generator=gen)
    att = torch.rand(2, 1, 28, 28, generator=gen)
    lenet.train()
    res = deletion_insertion(lenet, x, [3, 7], att, steps=7, batch_size=3)
    assert lenet.training
    assert res["deletion"].shape == (2, 8) and res["deletion_auc"].shape == (2,)
    with torch.no_grad():
        lenet.eval()
        p = lenet(x).softmax(1)
        p0 = lenet(torch.zeros_like(x)).softmax(1)
        from scipy.ndimage import gaussian_filter

        blurred = torch.as_tensor(gaussian_filter(x.double().numpy(), (0, 0, 5, 5), mode="nearest"))
        pb = lenet(blurred.float()).softmax(1)
    for b, t in enumerate([3, 7]):
        assert res["deletion"][b, 0] == pytest.approx(float(p[b, t]), rel=1e-5)
        assert res["deletion"][b, -1] == pytest.approx(float(p0[b, t]), rel=1e-5)
        assert res["insertion"][b, 0] == pytest.approx(float(pb[b, t]), rel=1e-5)
        assert res["insertion"][b, -1] == pytest.approx(float(p[b, t]), rel=1e-5)
    # the same map given as (B, H, W), and another batch size, give the same curves
    again = deletion_insertion(lenet, x, [3, 7], att[:, 0], steps=7, batch_size=64)
    np.testing.assert_allclose(again["deletion"], res["deletion"], rtol=1e-6)
    np.testing.assert_allclose(again["insertion"], res["insertion"], rtol=1e-6)


def test_channels_are_summed_and_pixels_move_together():
    # two channels; pixel importance is the channel sum, and a deleted pixel loses both channels
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.tensor([[[1.0, 2.0]], [[10.0, 20.0]]]).view(1, 2, 1, 2)
    att = torch.tensor([[[0.0, 5.0]], [[3.0, -1.0]]]).view(1, 2, 1, 2)  # sums: 3, 4
    res = deletion_insertion(net, x, 0, att, steps=2, output="logit", insertion_baseline=0.0)
    np.testing.assert_allclose(res["deletion"][0], [33.0, 11.0, 0.0])


def test_trapezoid_area_equals_numpy():
    y = np.random.default_rng(0).random((3, 9))
    f = np.sort(np.random.default_rng(1).random(9))
    np.testing.assert_allclose(trapezoid_area(y, f), np.trapezoid(y, f))


@settings(max_examples=15, deadline=None)
@given(steps=st.integers(max_value=0))
def test_deletion_steps_below_one_rejected(steps):
    net = _linear([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion(net, torch.ones(1, 1, 2, 2), 0, torch.ones(1, 1, 2, 2), steps=steps)


@pytest.mark.parametrize("kw, match", [
    (dict(attribution=torch.ones(1, 1, 2, 3)), "attribution"),
    (dict(attribution=torch.ones(2, 1, 2, 2)), "attribution"),
    (dict(attribution=torch.full((1, 1, 2, 2), float("nan"))), "finite"),
    (dict(output="prob"), "output"),
    (dict(baseline="mean"), "baseline"),
    (dict(insertion_baseline=torch.ones(3, 3)), "insertion_baseline"),
    (dict(target=2), "target"),
    (dict(target=[0, 1]), "target"),
    (dict(target=0.5), "target"),
    (dict(blur_sigma=0), "blur_sigma"),
    (dict(batch_size=0), "batch_size"),
    (dict(x=torch.ones(4)), "x"),
])
def test_deletion_bad_input(kw, match):
    args = dict(model=_linear([1.0, 2.0, 3.0, 4.0]), x=torch.ones(1, 1, 2, 2), target=0,
                attribution=torch.ones(1, 1, 2, 2), steps=2)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        deletion_insertion(**args)
