from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from torch.utils.data import TensorDataset

from mlimaging.generative.scm import (
    ConditionalVAE,
    DeepSCM,
    IntensityFlow,
    SCMStep,
    ThicknessFlow,
    TrueSCM,
    causal_effects,
    counterfactual,
    scm_batch,
)
from mlimaging.training import fit


def _true_parents(n, seed):
    """(t, i, eps_i) drawn from the SCM of Pawlowski et al. (2020), written out here as the test oracle."""
    g = torch.Generator().manual_seed(seed)
    eps_t = torch._standard_gamma(torch.full((n,), 10.0, dtype=torch.float64), generator=g) / 5.0
    t = 0.5 + eps_t
    eps_i = torch.randn(n, generator=g, dtype=torch.float64)
    i = 64 + 191 * torch.sigmoid(0.5 * eps_i + 2 * t - 5)
    return t.float(), i.float(), eps_i


def _tiny(**kw):
    torch.manual_seed(0)
    return DeepSCM(image_size=8, latent_dim=2, width=2, **kw)


# ----------------------------------------------------------------------------------------- flows
def test_thickness_flow_is_lognormal_without_skew_and_tail():
    flow = ThicknessFlow(loc=0.8, scale=0.3)
    t = torch.linspace(0.3, 6.0, 50)
    oracle = torch.distributions.LogNormal(0.8, 0.3).log_prob(t)
    assert_allclose(flow.log_prob(t).detach(), oracle, rtol=1e-5, atol=1e-5)


def test_thickness_flow_inverts_and_its_density_integrates_to_one():
    flow = ThicknessFlow(loc=0.9, scale=0.25)
    with torch.no_grad():
        flow.skew.fill_(0.4)
        flow.log_tail.fill_(-0.3)
    u = torch.linspace(-4, 4, 101, dtype=torch.float64)
    flow.double()
    assert_allclose(flow.inverse(flow(u)).detach(), u, atol=1e-9)
    s = torch.linspace(-8, 12, 200001, dtype=torch.float64)  # integrate over log t: dt = t ds
    mass = torch.trapezoid((flow.log_prob(s.exp()) + s).exp().detach(), s)
    assert_allclose(float(mass), 1.0, atol=1e-5)


def test_intensity_flow_matches_torch_transformed_distribution():
    torch.manual_seed(1)
    flow = IntensityFlow(low=60.0, high=255.0, t_mean=2.5, t_std=0.6)
    t = torch.linspace(1.0, 4.0, 7)
    a, b = flow._ab(t)
    u = torch.linspace(-2, 2, 7)
    i = flow(u, t).detach()
    D = torch.distributions
    oracle = D.TransformedDistribution(D.Normal(torch.zeros(7), torch.ones(7)),
                                       [D.AffineTransform(a.detach(), b.detach().exp()), D.SigmoidTransform(),
                                        D.AffineTransform(60.0, 195.0)])
    assert_allclose(flow.log_prob(i, t).detach(), oracle.log_prob(i), rtol=1e-4, atol=1e-4)
    assert_allclose(flow.inverse(i, t).detach(), u, atol=1e-4)


def test_intensity_flow_represents_the_true_mechanism_exactly():
    flow = IntensityFlow(low=64.0, high=255.0, t_mean=0.0, t_std=1.0, hidden=1).double()
    with torch.no_grad():  # a(t) = 2t - 5, b = log 0.5 through one tanh unit of tiny slope
        flow.net[0].weight.fill_(1e-3)
        flow.net[0].bias.zero_()
        flow.net[2].weight.copy_(torch.tensor([[2e3], [0.0]]))
        flow.net[2].bias.copy_(torch.tensor([-5.0, math.log(0.5)]))
    t = torch.linspace(1, 4, 9, dtype=torch.float64)
    eps = torch.linspace(-2, 2, 9, dtype=torch.float64)
    assert_allclose(flow(eps, t).detach(), TrueSCM.intensity_mechanism(eps, t), rtol=1e-5)


def test_vae_kl_matches_torch_distributions():
    torch.manual_seed(0)
    vae = ConditionalVAE(image_size=8, cond_dim=2, latent_dim=3, width=2)
    x, c = torch.rand(4, 1, 8, 8), torch.randn(4, 2)
    mu, logvar = vae.encode(x, c)
    _, kl = vae.negative_elbo(x, c, generator=torch.Generator().manual_seed(0))
    D = torch.distributions
    oracle = D.kl_divergence(D.Normal(mu, (0.5 * logvar).exp()), D.Normal(0.0, 1.0)).sum(1)
    assert_allclose(kl.detach(), oracle.detach(), rtol=1e-5, atol=1e-6)


def test_gaussian_gain_likelihood_matches_torch_normal():
    torch.manual_seed(0)
    vae = ConditionalVAE(image_size=8, cond_dim=2, latent_dim=3, width=2, likelihood="gaussian", gain=1)
    x, c = torch.rand(4, 1, 8, 8), torch.randn(4, 2)
    rec, _ = vae.negative_elbo(x, c, generator=torch.Generator().manual_seed(0))
    mu, logvar = vae.encode(x, c)  # the same z: the same generator draws the same eps
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    z = mu + (0.5 * logvar).exp() * eps
    oracle = -torch.distributions.Normal(vae.decode(z, c), vae.scale(c)).log_prob(x).flatten(1).sum(1)
    assert_allclose(rec.detach(), oracle.detach(), rtol=1e-5)


def test_bernoulli_gain_likelihood_matches_torch_bernoulli():
    torch.manual_seed(0)
    vae = ConditionalVAE(image_size=8, cond_dim=2, latent_dim=3, width=2, gain=0)
    x, c = torch.rand(3, 1, 8, 8), torch.randn(3, 2)
    rec, _ = vae.negative_elbo(x, c, generator=torch.Generator().manual_seed(1))
    mu, logvar = vae.encode(x, c)
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    oracle = -torch.distributions.Bernoulli(probs=vae.decode(z, c), validate_args=False).log_prob(x).flatten(1).sum(1)
    assert_allclose(rec.detach(), oracle.detach(), rtol=1e-5)


def test_gain_decoder_shape_ignores_the_gain_parent_and_fixed_sigma_is_not_learned():
    torch.manual_seed(0)
    vae = ConditionalVAE(image_size=8, cond_dim=2, latent_dim=3, width=2, likelihood="gaussian", sigma=0.05, gain=1)
    z, c = torch.randn(2, 3), torch.randn(2, 2)
    c2 = c.clone()
    c2[:, 1] += 3.0
    assert torch.equal(vae.decode_logits(z, c), vae.decode_logits(z, c2))
    ratio = vae.decode(z, c2) / vae.decode(z, c)  # the parent acts as a per-image brightness only
    assert_allclose(ratio.detach(), (vae.gain_of(c2) / vae.gain_of(c)).expand_as(ratio).detach(), rtol=1e-5)
    assert "log_sigma" not in dict(vae.named_parameters())
    assert_allclose(vae.sigma().detach(), torch.full((1, 8, 8), 0.05), rtol=1e-6)


@pytest.mark.parametrize("kw, match", [
    ({"sigma": 0.1}, "sigma"),
    ({"likelihood": "gaussian", "sigma": -1.0}, "sigma"),
    ({"gain": 2}, "gain"),
    ({"gain": True}, "gain"),
])
def test_bad_vae_options_are_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ConditionalVAE(image_size=8, cond_dim=2, latent_dim=2, width=2, **kw)


# ----------------------------------------------------------------------------------------- deep SCM
def test_abduction_then_prediction_reconstructs_the_parents():
    scm = _tiny(i_low=50.0, i_high=255.0)
    t, i, _ = _true_parents(32, 0)
    x = torch.rand(32, 1, 8, 8)
    out = counterfactual(scm, x, {"t": t, "i": i}, {})
    assert_allclose(out["t"], t, rtol=1e-5)
    assert_allclose(out["i"], i, rtol=1e-5)
    assert out["image"].shape == x.shape and float(out["image"].min()) >= 0 and float(out["image"].max()) <= 1


def test_do_t_moves_i_through_its_mechanism_and_do_i_leaves_t():
    scm = _tiny(i_low=50.0, i_high=255.0)
    t, i, _ = _true_parents(16, 1)
    x = torch.rand(16, 1, 8, 8)
    noise = scm.abduct(x, {"t": t, "i": i})
    cf = counterfactual(scm, x, {"t": t, "i": i}, {"t": 3.0})
    assert_allclose(cf["t"], torch.full((16,), 3.0))
    assert_allclose(cf["i"], scm.intensity(noise["i"], torch.full((16,), 3.0)).detach(), rtol=1e-6)
    cf_i = counterfactual(scm, x, {"t": t, "i": i}, {"i": 200.0})
    assert_allclose(cf_i["t"], t, rtol=1e-5)
    assert_allclose(cf_i["i"], torch.full((16,), 200.0))


def test_counterfactual_keeps_the_training_mode_and_batch_values():
    scm = _tiny()
    scm.train()
    x = torch.rand(3, 1, 8, 8)
    cf = counterfactual(scm, x, {"t": 2.0, "i": 150.0}, {"t": torch.tensor([1.0, 2.0, 3.0])})
    assert scm.training
    assert cf["t"].tolist() == [1.0, 2.0, 3.0]
    assert cf["i"][0] != cf["i"][2]


def test_gaussian_decoder_noise_makes_the_null_intervention_exact():
    scm = _tiny(likelihood="gaussian")
    x = torch.rand(5, 1, 8, 8)
    out = counterfactual(scm, x, {"t": 2.0, "i": 150.0}, {}, decoder_noise=True)
    assert_allclose(out["image"], x, atol=1e-6)
    with pytest.raises(ValueError, match="Gaussian"):
        counterfactual(_tiny(), x, {"t": 2.0, "i": 150.0}, {}, decoder_noise=True)


def test_gain_decoder_noise_makes_do_i_a_brightness_change():
    scm = _tiny(likelihood="gaussian", gain=True, i_low=50.0, i_high=255.0)
    x = 0.3 * torch.rand(4, 1, 8, 8)
    pa = {"t": torch.tensor([1.5, 2.0, 2.5, 3.0]), "i": torch.tensor([100.0, 120.0, 150.0, 180.0])}
    out = counterfactual(scm, x, pa, {"i": 200.0}, decoder_noise=True)
    g = scm.image.gain_of
    ratio = g(scm._cond(pa["t"], torch.full((4,), 200.0))) / g(scm._cond(pa["t"], pa["i"]))
    assert_allclose(out["image"], (x * ratio).clamp(0, 1).detach(), rtol=1e-4, atol=1e-6)
    assert_allclose(counterfactual(scm, x, pa, {}, decoder_noise=True)["image"], x, atol=1e-6)
    assert scm.config["gain"] is True and DeepSCM(**scm.config).image.gain == 1


def test_scm_step_beta_weights_the_kl():
    scm = _tiny()
    batch = (torch.rand(4, 1, 8, 8), torch.full((4,), 2.0), torch.full((4,), 150.0))
    loss1, parts = SCMStep(seed=0)._terms(scm, batch, torch.Generator().manual_seed(0))
    loss_half, _ = SCMStep(seed=0, beta=0.5)._terms(scm, batch, torch.Generator().manual_seed(0))
    assert_allclose(float(loss1 - loss_half), 0.5 * float(parts["kl"]), rtol=1e-5, atol=1e-5 * abs(float(loss1)))
    with pytest.raises(ValueError, match="beta"):
        SCMStep(beta=0.0)


def test_flows_trained_through_fit_give_the_true_intensity_counterfactuals():
    t, i, eps_i = _true_parents(2000, 2)
    x = torch.zeros(2000, 1, 8, 8)
    torch.manual_seed(0)
    scm = DeepSCM.from_data(t, i, image_size=8, latent_dim=2, width=2)
    h = fit(scm, TensorDataset(x, t, i), step=SCMStep(seed=0), metrics=(), epochs=15, batch_size=100,
            optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), progress=False)
    assert h["nll_i"][-1] < h["nll_i"][0] and h["nll_t"][-1] < h["nll_t"][0]
    t_new = torch.full((2000,), 3.0)
    cf = counterfactual(scm, x, {"t": t, "i": i}, {"t": t_new})
    truth = TrueSCM.intensity_mechanism(eps_i, t_new.double())
    mae = float((cf["i"].double() - truth).abs().mean())
    assert mae < 4.0, mae  # grey levels; the support (l, h) is estimated from the data
    # the model's distribution of t: mean and sd close to Gamma(10, 5) + 0.5 (2.5, 0.632)
    s = scm.sample(4000, generator=torch.Generator().manual_seed(0))
    assert abs(float(s["t"].mean()) - 2.5) < 0.1 and abs(float(s["t"].std()) - math.sqrt(10) / 5) < 0.1


def test_scm_step_state_round_trip_repeats_the_draws():
    scm = _tiny()
    batch = (torch.rand(4, 1, 8, 8), torch.full((4,), 2.0), torch.full((4,), 150.0))
    step = SCMStep(seed=3)
    state = {k: v.clone() for k, v in step.state_dict().items()}
    a = step._terms(scm, batch, step.generator)[0]
    step.load_state_dict(state)
    b = step._terms(scm, batch, step.generator)[0]
    assert float(a) == float(b)
    assert float(step.validation_loss(scm, batch)) == float(step.validation_loss(scm, batch))


def test_scm_batch_accepts_tuples_and_causal_mnist_dicts():
    x, t, i = torch.zeros(2, 1, 8, 8), torch.ones(2), torch.ones(2)
    assert scm_batch((x, t, i))[1] is t
    assert scm_batch({"images": x, "thickness": t, "intensity": i, "digit": t})[2] is i
    with pytest.raises(ValueError, match="SCM batch"):
        scm_batch((x, t))


def test_from_data_sets_the_support_around_the_observed_intensities():
    t, i, _ = _true_parents(500, 3)
    scm = DeepSCM.from_data(t, i)
    assert float(scm.intensity.low) < float(i.min()) and float(scm.intensity.high) > float(i.max())
    assert scm.config["i_high"] <= 255.0 + 1e-9 or float(i.max()) > 255


# ----------------------------------------------------------------------------------------- effects
class _LinearSCM:
    """t = u_t, i = 10 t + u_i, x = a t + b i + u_x (constant images): effects known by hand."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def abduct(self, image, parents):
        t, i = parents["t"], parents["i"]
        return {"t": t, "i": i - 10 * t, "x": image - (self.a * t + self.b * i)[:, None, None, None]}

    def predict(self, noise, do, **_):
        t = do["t"] * torch.ones_like(noise["t"]) if "t" in do else noise["t"]
        i = do["i"] * torch.ones_like(noise["i"]) if "i" in do else 10 * t + noise["i"]
        return {"image": noise["x"] + (self.a * t + self.b * i)[:, None, None, None], "t": t, "i": i}


def test_causal_effects_worked_example_of_a_linear_scm():
    model = _LinearSCM(a=0.5, b=0.02)
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pa = {"t": torch.full((6,), 2.0, dtype=torch.float64), "i": torch.full((6,), 25.0, dtype=torch.float64)}
    rows = {r["outcome"]: r for r in causal_effects(model, x, pa, t=3.0, outcomes={"mean": lambda im: im.mean((1, 2, 3))})}
    # dt = 1: direct a*dt = 0.5; indirect b * 10 * dt = 0.2; total 0.7
    assert_allclose([rows["mean"]["total"], rows["mean"]["direct"], rows["mean"]["indirect"]], [0.7, 0.5, 0.2],
                    atol=1e-12)
    assert_allclose([rows["i"]["total"], rows["i"]["indirect"]], [10.0, 0.0])
    assert_allclose(rows["image_l1"]["total"], 0.7, atol=1e-12)


def test_causal_effects_reference_value_reverses_the_sign():
    model = _LinearSCM(a=0.5, b=0.0)
    x = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    pa = {"t": torch.full((2,), 2.0, dtype=torch.float64), "i": torch.full((2,), 20.0, dtype=torch.float64)}
    out = causal_effects(model, x, pa, t=1.0, reference=3.0, outcomes={"m": lambda im: im.mean((1, 2, 3))})
    assert_allclose(out[0]["total"], -1.0)


# ----------------------------------------------------------------------------------------- bad input
_x = torch.rand(2, 1, 8, 8)


@pytest.mark.parametrize("parents, match", [
    ({"t": 2.0}, "missing"),
    ({"t": 2.0, "i": 100.0, "s": 1.0}, "unknown parent 's'"),
    ({"t": torch.ones(3), "i": 100.0}, r"shape \(2,\)"),
    ({"t": float("nan"), "i": 100.0}, "NaN"),
    ({"t": -1.0, "i": 100.0}, "> 0"),
    ({"t": 2.0, "i": 400.0}, "support"),
    ([2.0, 100.0], "dict"),
])
def test_bad_parents_are_value_errors(parents, match):
    with pytest.raises(ValueError, match=match):
        counterfactual(_tiny(), _x, parents, {"t": 3.0})


@pytest.mark.parametrize("do, match", [
    ({"z": 1.0}, "unknown parent 'z'"),
    ({"t": 0.0}, "> 0"),
    ({"i": float("inf")}, "NaN or infinite"),
    ({"t": torch.ones(5)}, "shape"),
])
def test_bad_interventions_are_value_errors(do, match):
    with pytest.raises(ValueError, match=match):
        counterfactual(_tiny(), _x, {"t": 2.0, "i": 100.0}, do)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=5), nan=st.booleans())
def test_images_of_wrong_shape_or_with_nan_are_value_errors(shape, nan):
    x = torch.rand(*shape)
    good_shape = len(shape) in (3, 4) and (shape[-3] if len(shape) == 3 else shape[1]) == 1 and shape[0] > 0
    if nan and x.numel():
        x.view(-1)[0] = float("nan")
    if good_shape and not (nan and x.numel()) and x.numel():
        return  # a valid image: not this test's concern
    with pytest.raises(ValueError, match="image"):
        counterfactual(_tiny(), x, {"t": 2.0, "i": 100.0}, {})


@settings(max_examples=25, deadline=None)
@given(name=st.text(min_size=1, max_size=8).filter(lambda s: s not in ("t", "i", "thickness", "intensity")))
def test_unknown_parent_names_are_value_errors(name):
    with pytest.raises(ValueError, match="unknown parent"):
        counterfactual(_tiny(), _x, {"t": 2.0, "i": 100.0}, {name: 1.0})


def test_integer_images_and_bad_models_are_value_errors():
    with pytest.raises(ValueError, match="floating-point"):
        counterfactual(_tiny(), torch.zeros(1, 1, 8, 8, dtype=torch.uint8), {"t": 2.0, "i": 100.0}, {})
    with pytest.raises(ValueError, match="abduct"):
        counterfactual(object(), _x, {"t": 2.0, "i": 100.0}, {})
    with pytest.raises(ValueError, match="image_size"):
        DeepSCM(image_size=10)
    with pytest.raises(ValueError, match="likelihood"):
        DeepSCM(likelihood="poisson")


def test_true_scm_rejects_parents_outside_its_support():
    with pytest.raises(ValueError, match=r"\(64, 255\)"):
        TrueSCM().abduct(_x, {"t": 2.0, "i": 50.0})
    with pytest.raises(ValueError, match="0.5"):
        TrueSCM().abduct(_x, {"t": 0.4, "i": 100.0})


def test_true_scm_abducts_the_generating_noise():
    t, i, eps_i = _true_parents(50, 4)
    noise = TrueSCM().abduct(torch.rand(50, 1, 8, 8), {"t": t, "i": i})
    assert_allclose(noise["i"].double().numpy(), eps_i.numpy(), atol=2e-3)
    assert_allclose(noise["t"].numpy(), (t - 0.5).numpy())
    assert np.all(np.isfinite(noise["i"].numpy()))
