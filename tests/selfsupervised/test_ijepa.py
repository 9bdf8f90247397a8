"""I-JEPA: no gradient into the target encoder, its EMA by hand, the loss in embedding space, fit and resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from mlimaging.selfsupervised.base import SelfSupervisedStep
from mlimaging.selfsupervised.ijepa import IJEPA
from mlimaging.selfsupervised.mae import encode_visible
from mlimaging.selfsupervised.masking import multi_block_masks
from mlimaging.training import fit

TINY = dict(image_size=16, patch_size=4, encoder_dim=16, encoder_depth=1, encoder_heads=2, predictor_dim=8,
            predictor_depth=1, predictor_heads=2, total_steps=20)


def images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * 16
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    d2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    return (torch.exp(-d2 / 18.0) + 0.1 * torch.rand(n, 16, 16, generator=g))[:, None]


def make(seed: int = 0, **kw) -> IJEPA:
    torch.manual_seed(seed)
    return IJEPA(**{**TINY, **kw})


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_target_encoder_starts_as_a_frozen_copy_and_gets_no_gradient():
    model = make()
    assert all(not p.requires_grad for p in model.target_encoder.parameters())
    a, b = params(model.encoder), params(model.target_encoder)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loss = model.ssl_loss(images(4), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert all(p.grad is not None for p in model.encoder.patch_embed.parameters())
    assert model.predictor_proj.weight.grad is not None and model.mask_token.grad is not None
    # the state dict keeps the target encoder and the update counter (checkpoints resume exactly)
    state = model.state_dict()
    assert "target_encoder.patch_embed.proj.weight" in state and "num_updates" in state


def test_target_encoder_is_the_ema_of_the_context_encoder_after_two_steps():
    ema = (0.5, 0.9)
    model = make(ema=ema, total_steps=4)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    step = SelfSupervisedStep(seed=0)
    x = images(8)
    theta0 = params(model.encoder)
    step(model, x, optimizer=opt)
    theta1 = params(model.encoder)
    step(model, x, optimizer=opt)
    theta2 = params(model.encoder)
    m0, m1 = ema[0], ema[0] + (1 / 4) * (ema[1] - ema[0])  # the momentum schedule, linear in the step
    target = model.target_encoder.state_dict()
    for k in theta0:
        assert not torch.equal(theta0[k], theta2[k]) or k == "cls_token"
        by_hand = m1 * (m0 * theta0[k] + (1 - m0) * theta1[k]) + (1 - m1) * theta2[k]
        torch.testing.assert_close(target[k], by_hand)
    assert int(model.num_updates) == 2
    assert model.momentum() == pytest.approx(ema[0] + 0.5 * (ema[1] - ema[0]))


def test_momentum_schedule_reaches_the_end_and_stays():
    model = make(ema=(0.9, 1.0), total_steps=3)
    seen = []
    for _ in range(5):
        seen.append(model.momentum())
        model.after_step()
    assert seen == pytest.approx([0.9, 0.9 + 0.1 / 3, 0.9 + 0.2 / 3, 1.0, 1.0])
    # at momentum 1 the target stops moving
    with torch.no_grad():
        model.encoder.patch_embed.proj.weight.add_(1.0)
    before = params(model.target_encoder)
    model.after_step()
    after = params(model.target_encoder)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_loss_is_the_l2_between_predictions_and_layer_normed_target_tokens():
    model = make()
    x = images(3, seed=1)
    # ssl_loss draws its masks first from the generator: the same seed gives the same masks
    masks = multi_block_masks(model.grid_size, batch=3, **model.mask_options, generator=torch.Generator().manual_seed(9))
    loss = model.ssl_loss(x, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        h = encode_visible(model.target_encoder, x)[:, 1:]
        h = F.layer_norm(h, (16,))
        context = encode_visible(model.encoder, x, masks.context)[:, 1:]
        pred = model.predict(context, masks.context, masks.targets)
        per_block = [((pred[b, i] - h[b, masks.targets[b, i]]) ** 2).mean()
                     for b in range(3) for i in range(masks.targets.shape[1])]
    torch.testing.assert_close(loss.detach(), torch.stack(per_block).mean())


def test_predictions_depend_on_the_target_positions_only_through_the_position_embedding():
    model = make()
    x = images(2)
    masks = multi_block_masks(model.grid_size, batch=2, generator=torch.Generator().manual_seed(1))
    context = encode_visible(model.encoder, x, masks.context)[:, 1:]
    pred = model.predict(context, masks.context, masks.targets)
    assert pred.shape == (*masks.targets.shape, 16)
    moved = (masks.targets + 1) % model.encoder.num_patches
    assert not torch.allclose(model.predict(context, masks.context, moved), pred)


def fit_ijepa(epochs, **kw):
    model = make(seed=kw.pop("model_seed", 0), total_steps=12)
    h = fit(model, TensorDataset(images(64)), step=SelfSupervisedStep(seed=0), metrics=(), batch_size=16,
            optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3), epochs=epochs, progress=False, **kw)
    return model, h


def test_fit_lowers_the_loss():
    _, h = fit_ijepa(4)
    assert h["loss"][-1] < h["loss"][0]


def test_resume_is_exact(tmp_path):
    ref, href = fit_ijepa(3)
    fit_ijepa(2, checkpoint_dir=tmp_path)
    model, h = fit_ijepa(3, checkpoint_dir=tmp_path, resume=True, model_seed=5)
    assert h["loss"] == href["loss"]
    assert int(model.num_updates) == int(ref.num_updates) == 12
    sa, sb = model.state_dict(), ref.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_encoder_features():
    model = make()
    assert model.encoder(images(5)).shape == (5, 16) and model.feature_dim == 16
    assert model(images(2)).shape == (2, 16)


@settings(max_examples=25, deadline=None)
@given(ema=st.one_of(st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True))
                     .filter(lambda e: not all(0 <= v <= 1 for v in e)),
                     st.just((0.9,)), st.just(0.99), st.just((0.9, True))))
def test_bad_ema_is_refused(ema):
    with pytest.raises(ValueError, match="ema"):
        IJEPA(**{**TINY, "ema": ema})


@settings(max_examples=25, deadline=None)
@given(size=st.integers(5, 40), patch=st.integers(2, 8))
def test_image_size_not_divisible_by_patch_is_refused(size, patch):
    kw = {**TINY, "image_size": size, "patch_size": patch}
    if size % patch:
        with pytest.raises(ValueError, match="divisible by patch_size"):
            IJEPA(**kw)
    elif size == patch:
        with pytest.raises(ValueError, match="at least 2 patches"):
            IJEPA(**kw)
    else:
        assert IJEPA(**kw).grid_size == (size // patch, size // patch)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="predictor_heads must divide"):
        IJEPA(**{**TINY, "predictor_dim": 10, "predictor_heads": 4})
    with pytest.raises(ValueError, match="total_steps"):
        IJEPA(**{**TINY, "total_steps": 0})
    with pytest.raises(ValueError, match="target_scale"):
        IJEPA(**{**TINY, "target_scale": (0.0, 0.2)})
    with pytest.raises(ValueError, match="encoder"):
        IJEPA(**{**TINY, "encoder": torch.nn.Linear(2, 2)})


def test_layernorm_targets_are_the_target_encoders_tokens_layer_normed():
    model = make(encoder_depth=2)
    with torch.no_grad():  # move the target away from the context encoder and its final norm off identity
        for p in model.target_encoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    t = model.target_tokens(images(3))
    assert t.shape == (3, model.encoder.num_patches, 16)
    torch.testing.assert_close(t.mean(-1), torch.zeros(3, model.encoder.num_patches), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.var(-1, unbiased=False), torch.ones(3, model.encoder.num_patches), atol=1e-3, rtol=0)
    with torch.no_grad():
        h = encode_visible(model.target_encoder, images(3))[:, 1:]
    torch.testing.assert_close(t, (h - h.mean(-1, keepdim=True)) / (h.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt())


@pytest.mark.parametrize("top_k", [1, 2])
def test_data2vec_targets_average_the_instance_normed_feed_forward_outputs_of_the_top_blocks(top_k):
    model = make(encoder_depth=3, targets="data2vec", top_k=top_k)
    with torch.no_grad():
        for p in model.target_encoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = images(3)
    seen = []  # oracle: the blocks' feed-forward outputs read by forward hooks on the unmodified encoder
    hooks = [b.mlp.register_forward_hook(lambda mod, inp, out: seen.append(out)) for b in model.target_encoder.blocks]
    with torch.no_grad():
        encode_visible(model.target_encoder, x)
    for h in hooks:
        h.remove()
    top = [a[:, 1:] for a in seen[-top_k:]]
    by_hand = sum((a - a.mean(1, keepdim=True)) / (a.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
                  for a in top) / top_k
    t = model.target_tokens(x)
    torch.testing.assert_close(t, by_hand, atol=1e-5, rtol=1e-4)
    if top_k == 1:  # instance norm: zero mean and unit variance over the patches, per image and channel
        torch.testing.assert_close(t.mean(1), torch.zeros(3, 16), atol=1e-5, rtol=0)
    loss = model.ssl_loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None for p in model.target_encoder.parameters())


def test_bad_targets_are_refused():
    with pytest.raises(ValueError, match="targets must be one of"):
        IJEPA(**{**TINY, "targets": "pixels"})
    with pytest.raises(ValueError, match="top_k must be at most"):
        IJEPA(**{**TINY, "targets": "data2vec", "top_k": 2})
    with pytest.raises(ValueError, match="top_k"):
        IJEPA(**{**TINY, "top_k": 0})


@pytest.mark.parametrize("ema", [(0.0, 0.0), (1.0, 1.0)])
def test_ema_extremes_copy_or_freeze_the_target(ema):
    model = make(ema=ema)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    start = params(model.target_encoder)
    for _ in range(2):
        SelfSupervisedStep(seed=0)(model, images(8), optimizer=opt)
    target, context = params(model.target_encoder), params(model.encoder)
    expected = context if ema[0] == 0.0 else start  # momentum 0: a copy; momentum 1: never moves
    assert all(torch.equal(target[k], expected[k]) for k in target)
    assert any(not torch.equal(context[k], start[k]) for k in context)


# ---------------------------------------------------------------- C-JEPA's variance / covariance option


def _loss_parts(model, x, seed):
    """The prediction loss and the context encoder's tokens of ssl_loss, computed by hand with its masks."""
    masks = multi_block_masks(model.grid_size, batch=len(x), **model.mask_options,
                              generator=torch.Generator().manual_seed(seed))
    t = model.target_tokens(x)
    if model.standardise_targets:
        t = (t - t.mean(0)) / (t.var(0, unbiased=False) + 1e-6).sqrt()
    context = encode_visible(model.encoder, x, masks.context)[:, 1:]
    pred = model.predict(context, masks.context, masks.targets)
    b, m, k = masks.targets.shape
    targets = torch.stack([t[i, masks.targets[i].reshape(-1)] for i in range(b)]).reshape(b, m, k, -1)
    return ((pred - targets) ** 2).mean(), context


def test_zero_weights_keep_the_published_loss():
    x = images(6)
    plain = make().ssl_loss(x, generator=torch.Generator().manual_seed(3))
    zero = make(variance_weight=0.0, covariance_weight=0.0).ssl_loss(x, generator=torch.Generator().manual_seed(3))
    assert isinstance(zero, torch.Tensor) and torch.equal(plain, zero)


@pytest.mark.parametrize("regularise", ["pooled", "tokens"])
def test_regularised_loss_adds_vicreg_terms_of_the_context_encoder(regularise):
    from mlimaging.selfsupervised.losses import covariance_loss, variance_loss

    model = make(variance_weight=2.0, covariance_weight=0.5, regularise=regularise)
    x = images(6, seed=2)
    loss, extras = model.ssl_loss(x, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        prediction, context = _loss_parts(model, x, 4)
        z = context.mean(1) if regularise == "pooled" else context.reshape(-1, 16)
        # by hand: the VICReg hinge on the std of every feature, the squared off-diagonal covariances / D
        std = (z.var(0) + 1e-4).sqrt()
        v = torch.clamp(1 - std, min=0).mean()
        cov = (z - z.mean(0)).T @ (z - z.mean(0)) / (len(z) - 1)
        c = (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / 16
    torch.testing.assert_close(extras["prediction"], prediction)
    torch.testing.assert_close(extras["variance"], v)
    torch.testing.assert_close(extras["covariance"], c)
    torch.testing.assert_close(loss.detach(), prediction + 2.0 * v + 0.5 * c)
    assert float(variance_loss(z)) == pytest.approx(float(v)) and float(covariance_loss(z)) == pytest.approx(float(c))


def test_regulariser_gradient_reaches_the_encoder_and_not_the_target_encoder():
    x = images(8)
    grads = {}
    for name, kw in (("plain", {}), ("vicreg", {"variance_weight": 1.0, "covariance_weight": 1.0})):
        model = make(**kw)
        result = model.ssl_loss(x, generator=torch.Generator().manual_seed(0))
        (result[0] if isinstance(result, tuple) else result).backward()
        assert all(p.grad is None for p in model.target_encoder.parameters())
        grads[name] = model.encoder.patch_embed.proj.weight.grad.clone()
    # same initialisation and masks: the difference is the regulariser's gradient, which is not zero
    assert (grads["vicreg"] - grads["plain"]).abs().max() > 1e-6


def test_standardised_targets_are_standardised_per_position_and_feature_over_the_batch():
    model = make(standardise_targets=True)
    x = images(5, seed=3)
    loss = model.ssl_loss(x, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        prediction, _ = _loss_parts(model, x, 7)
    torch.testing.assert_close(loss.detach(), prediction)
    assert not torch.allclose(loss, make().ssl_loss(x, generator=torch.Generator().manual_seed(7)))


def test_fit_logs_the_regulariser_terms():
    model = make(variance_weight=1.0, covariance_weight=0.04, total_steps=8)
    h = fit(model, TensorDataset(images(32)), step=SelfSupervisedStep(seed=0), metrics=(), batch_size=16,
            optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3), epochs=2, progress=False)
    assert len(h["variance"]) == len(h["covariance"]) == len(h["prediction"]) == 2
    assert h["variance"][-1] < h["variance"][0]  # the hinge pushes the pooled features apart


@pytest.mark.parametrize("kw, match", [
    ({"variance_weight": -1.0}, "variance_weight"), ({"variance_weight": float("nan")}, "variance_weight"),
    ({"covariance_weight": float("inf")}, "covariance_weight"), ({"covariance_weight": True}, "covariance_weight"),
    ({"variance_weight": "1"}, "variance_weight"), ({"regularise": "cls"}, "regularise"),
    ({"standardise_targets": 1}, "standardise_targets")])
def test_bad_regulariser_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        IJEPA(**{**TINY, **kw})


@pytest.mark.parametrize("kw", [{"variance_weight": 1.0}, {"covariance_weight": 1.0}, {"standardise_targets": True}])
def test_batch_statistics_need_two_images(kw):
    with pytest.raises(ValueError, match="at least 2 images"):
        make(**kw).ssl_loss(images(1), generator=torch.Generator().manual_seed(0))


def test_pretrain_recipe_turns_the_c_jepa_options_on_and_empty_options_give_the_paper():
    from mlimaging.cli.pretrain import BATCH, build_method
    from mlimaging.selfsupervised.ijepa import IJEPA_OPTIONS

    model, meta = build_method("ijepa", channels=1, image_size=16, total_steps=5)
    assert (model.variance_weight, model.covariance_weight, model.regularise, model.ema) == (
        IJEPA_OPTIONS["variance_weight"], IJEPA_OPTIONS["covariance_weight"], IJEPA_OPTIONS["regularise"],
        tuple(IJEPA_OPTIONS["ema"]))
    assert meta["method_kwargs"]["variance_weight"] == IJEPA_OPTIONS["variance_weight"] and BATCH["ijepa"] == 64
    paper, _ = build_method("ijepa", channels=1, image_size=16, total_steps=5, options={})
    assert (paper.variance_weight, paper.covariance_weight, paper.ema, paper.standardise_targets) == (
        0.0, 0.0, (0.996, 1.0), False)
