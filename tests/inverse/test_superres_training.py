"""SR training recipes: flips/rotations of LR/HR pairs, VDSR's adjustable gradient clipping,
train_superres through fit (schedule, zero-initialised residual, LapSRN's loss at every level,
bfloat16 and channels_last), the geometric self-ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.inverse.superres import (
    SR_RECIPES,
    AdjustableGradientClip,
    SRSelfEnsemble,
    bicubic_upscale,
    degrade,
    dihedral,
    load_sr_image,
    modcrop,
    sr_pairs,
    sr_recipe,
    train_superres,
)
from mlimaging.models import create_model


# ------------------------------------------------------------------------------ worked examples
def test_dihedral_worked_example():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert dihedral(x, 0).tolist() == x.tolist()
    assert dihedral(x, 1)[0].tolist() == [[2.0, 4.0], [1.0, 3.0]]  # a quarter turn counter-clockwise
    assert dihedral(x, 2)[0].tolist() == [[4.0, 3.0], [2.0, 1.0]]
    assert dihedral(x, 4)[0].tolist() == [[2.0, 1.0], [4.0, 3.0]]  # left-right flip


def test_adjustable_clip_bounds_each_sgd_step_by_theta():
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0]]))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    step = AdjustableGradientClip(lambda out, y: (out - y).pow(2).mean(), theta=0.01)
    # gradient of (w.x - y)^2 at w = 0: -2 y x = (-200, -0.02); clipped to theta / lr = 0.1 per component
    step(net, (torch.tensor([[1.0, 0.0001]]), torch.tensor([[100.0]])), optimizer=opt)
    np.testing.assert_allclose(net.weight.detach().numpy(), [[0.01, 0.1 * 0.02]], rtol=1e-5)


# ------------------------------------------------------------------------------ invariants
def test_the_eight_transforms_are_distinct_and_invertible():
    x = torch.arange(12.0).view(1, 3, 4)
    outs = {tuple(dihedral(x, k).flatten().tolist()) + (tuple(dihedral(x, k).shape),) for k in range(8)}
    assert len(outs) == 8
    inverse = {0: 0, 1: 3, 2: 2, 3: 1, 4: 4, 5: 5, 6: 6, 7: 7}  # flips and half turns are involutions
    for k in range(8):
        assert torch.equal(dihedral(dihedral(x, k), inverse[k]), x)


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("k", range(8))
def test_flips_and_rotations_commute_with_bicubic_degradation(k, scale):
    hr = torch.from_numpy(modcrop(load_sr_image("camera"), scale)[:, 99:171, 201:273].copy())
    a = degrade(dihedral(hr, k), scale)
    b = dihedral(degrade(hr, scale), k)
    torch.testing.assert_close(a, b, atol=2e-6, rtol=0)


def test_flips_do_not_commute_with_blur_down_so_augment_refuses_it():
    hr = torch.from_numpy(modcrop(load_sr_image("camera"), 2)[:, 100:164, 200:264].copy())
    flipped = degrade(dihedral(hr, 4), 2, degradation="blur-down")
    assert not torch.allclose(flipped, dihedral(degrade(hr, 2, degradation="blur-down"), 4), atol=1e-3)
    with pytest.raises(ValueError, match="augment=True needs degradation='bicubic'"):
        sr_pairs(["camera"], scale=2, patch=16, degradation="blur-down", augment=True)


def test_augmented_pairs_are_transformed_pairs_and_seeded():
    plain = sr_pairs(["camera"], scale=2, patch=16, max_patches=6, seed=0)
    aug = sr_pairs(["camera"], scale=2, patch=16, max_patches=6, augment=True, seed=0)
    again = sr_pairs(["camera"], scale=2, patch=16, max_patches=6, augment=True, seed=0)
    seen = set()
    for i in range(len(plain)):
        (lr, hr), (lr2, hr2) = aug[i], again[i]
        assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
        k = next(k for k in range(8) if torch.equal(dihedral(plain[i][1], k), hr))
        assert torch.equal(dihedral(plain[i][0], k), lr)  # the same transform on both
        seen.add(k)
    assert len(seen) > 1


def test_train_superres_follows_the_cosine_schedule_and_lowers_the_loss():
    data = sr_pairs(["camera"], scale=2, patch=16, max_patches=32, augment=True, seed=0)
    net = create_model("espcn", scale=2, features=(8, 4), seed=0)
    recipe = sr_recipe("espcn", batch_size=8, lr=1e-2, final_lr=0.1)
    h = train_superres(net, data, name="espcn", recipe=recipe, epochs=3, progress=False)
    assert len(h) == 3 and h["loss"][-1] < h["loss"][0]
    # fit records the learning rate at the start of each epoch: t = 0, 1/3, 2/3 of the 12 steps
    expected = [1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))) for t in (0, 1 / 3, 2 / 3)]
    np.testing.assert_allclose(h["lr"], expected, rtol=1e-6)


def test_zero_last_starts_vdsr_at_the_bicubic_image():
    data = sr_pairs(["camera"], scale=2, patch=16, max_patches=4, seed=0)
    net = create_model("vdsr", scale=2, depth=3, features=4, seed=0)
    recipe = sr_recipe("vdsr", lr=1e-30, batch_size=4)  # a step of ~nothing: the weights stay at their start
    train_superres(net, data, name="vdsr", recipe=recipe, epochs=1, progress=False)
    lr = data[0][0][None]
    torch.testing.assert_close(net.eval()(lr), bicubic_upscale(lr, 2), atol=1e-6, rtol=0)


def test_lapsrn_is_trained_at_every_level_and_its_mode_restored():
    data = sr_pairs(["camera"], scale=4, patch=16, max_patches=4, seed=0)
    net = create_model("lapsrn", scale=4, depth=1, features=4, seed=0)
    seen = []
    recipe = sr_recipe("lapsrn", batch_size=4)

    class Spy:
        def on_batch_end(self, state, *args, **kwargs):
            seen.append(net.return_all)

    train_superres(net, data, name="lapsrn", recipe=recipe, epochs=1, progress=False, callbacks=[Spy()])
    assert seen and all(seen) and net.return_all is False
    assert isinstance(net(data[0][0][None]), torch.Tensor)


def test_last_lr_scales_the_output_layers_learning_rate():
    """SRCNN's paper: the last layer learns 10x slower; the other layers keep the recipe's rate."""
    data = sr_pairs(["camera"], scale=2, patch=16, max_patches=4, seed=0)
    net = create_model("srcnn", scale=2, features=(4, 4), seed=0)
    seen = []

    class Spy:
        def on_batch_end(self, state, *args, **kwargs):
            seen.append([(len(g["params"]), g["lr"]) for g in state.optimizer.param_groups])

    recipe = sr_recipe("srcnn", lr=1e-3, final_lr=1.0, last_lr=0.1, batch_size=4)
    train_superres(net, data, name="srcnn", recipe=recipe, epochs=1, progress=False, callbacks=[Spy()])
    assert seen[0] == [(4, 1e-3), (2, pytest.approx(1e-4))]  # extract + mapping (w, b); reconstruct (w, b)


def test_zero_last_zeroes_every_lapsrn_level():
    data = sr_pairs(["camera"], scale=4, patch=16, max_patches=4, seed=0)
    net = create_model("lapsrn", scale=4, depth=1, features=4, seed=0)
    recipe = sr_recipe("lapsrn", lr=1e-30, batch_size=4, model_kwargs={})
    train_superres(net, data, name="lapsrn", recipe=recipe, epochs=1, progress=False)
    lr = data[0][0][None]
    twice = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
    once = torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(lr, scale_factor=2, mode="bilinear", align_corners=False),
        scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(net.eval()(lr), once, atol=1e-6, rtol=0)
    assert not torch.allclose(once, twice)  # two x2 levels, not one x4 interpolation


def test_recipe_precision_and_channels_last_reach_the_forward_pass_and_the_layout_is_restored():
    data = sr_pairs(["camera"], scale=2, patch=16, max_patches=8, augment=True, seed=0)
    seen = []

    for precision, channels_last in (("fp32", False), ("bf16", True)):
        net = create_model("lapsrn", scale=2, depth=1, features=4, seed=0)
        conv = net.feature_branch[0][0]  # 4 -> 4 channels: the two layouts differ
        conv.register_forward_hook(lambda m, a, out: seen.append(
            (out.dtype, m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous())))
        recipe = sr_recipe("lapsrn", batch_size=4, precision=precision, channels_last=channels_last)
        h = train_superres(net, data, name="lapsrn", recipe=recipe, epochs=1, progress=False)
        assert math.isfinite(h["loss"][-1])
        assert conv.weight.is_contiguous() and conv.weight.dtype == torch.float32
    assert seen[0] == (torch.float32, False) and seen[-1] == (torch.bfloat16, True)


def test_old_recipes_keep_float32_and_the_default_layout():
    for name in ("srcnn", "vdsr", "espcn", "dbpn"):
        assert sr_recipe(name)["precision"] == "fp32" and sr_recipe(name)["channels_last"] is False


def test_self_ensemble_worked_example_and_equivariance():
    # one LR pixel into a 2x2 block with a fixed asymmetric pattern: not equivariant by itself
    pattern = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    net = lambda y: torch.kron(y, pattern)  # noqa: E731
    y = torch.ones(1, 1, 1, 1)
    # the 8 transforms move the 1 to each corner twice: the mean is a quarter everywhere
    torch.testing.assert_close(SRSelfEnsemble(net)(y), torch.full((1, 1, 2, 2), 0.25))
    # k = 0, 2, 4, 6 send it to the four corners once each
    torch.testing.assert_close(SRSelfEnsemble(net, transforms=4)(y), torch.full((1, 1, 2, 2), 0.25))
    ens = SRSelfEnsemble(create_model("espcn", scale=2, features=(4, 4), seed=0).eval())
    y = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = ens(y)
        assert out.shape == (2, 1, 10, 14)
        for k in range(8):  # the ensemble commutes with every flip/rotation
            torch.testing.assert_close(ens(dihedral(y, k)), dihedral(out, k), atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", range(8))
def test_dihedral_inverse_undoes_the_transform(k):
    x = torch.arange(12.0).view(1, 3, 4)
    assert torch.equal(dihedral(dihedral(x, k), k, inverse=True), x)
    assert torch.equal(dihedral(dihedral(x, k, inverse=True), k), x)


# ------------------------------------------------------------------------------ bad input
@settings(max_examples=25, deadline=None)
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=8), st.booleans(), st.floats()))
def test_dihedral_bad_k_raises(k):
    with pytest.raises(ValueError, match="k must be"):
        dihedral(torch.zeros(1, 2, 2), k)


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.floats(max_value=0), st.booleans(), st.just(float("nan"))))
def test_adjustable_clip_bad_theta_raises(theta):
    with pytest.raises(ValueError, match="theta"):
        AdjustableGradientClip(lambda a, b: (a - b).abs().mean(), theta=theta)


def test_recipes_bad_names_and_fields_raise():
    assert set(SR_RECIPES) == {"srcnn", "vdsr", "espcn", "lapsrn", "dbpn"}
    with pytest.raises(ValueError, match="model must be"):
        sr_recipe("edsr")
    with pytest.raises(ValueError, match="unknown recipe fields"):
        sr_recipe("espcn", momentum=0.9)
    data = sr_pairs(["camera"], scale=2, patch=16, max_patches=2, seed=0)
    net = create_model("espcn", scale=2, features=(4, 4), seed=0)
    with pytest.raises(ValueError, match="loss must be"):
        train_superres(net, data, name="espcn", recipe=sr_recipe("espcn", loss="ssim"), epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_superres(net, data, name="espcn", epochs=0, progress=False)


def test_recipe_bad_precision_and_self_ensemble_bad_input_raise():
    data = sr_pairs(["camera"], scale=2, patch=16, max_patches=2, seed=0)
    net = create_model("espcn", scale=2, features=(4, 4), seed=0)
    with pytest.raises(ValueError, match="precision"):
        train_superres(net, data, name="espcn", recipe=sr_recipe("espcn", precision="fp16"), epochs=1, progress=False)
    with pytest.raises(ValueError, match="net must be"):
        SRSelfEnsemble(3)
    with pytest.raises(ValueError, match="transforms"):
        SRSelfEnsemble(net, transforms=2)
    with pytest.raises(ValueError, match="y must be"):
        SRSelfEnsemble(net)(torch.zeros(1, 4, 4))
