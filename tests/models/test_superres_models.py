"""Super-resolution networks: shapes for every scale (2D and 3D), the sub-pixel shuffle against
``torch.nn.PixelShuffle``, ICNR = nearest-neighbour at initialisation, LapSRN's levels, DBPN's
projections, an image-to-image version of the generic model suite, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.models import create_model, model_info
from mlimaging.models.superres import (
    DBPN,
    ESPCN,
    SRCNN,
    VDSR,
    LapSRN,
    check_scale,
    icnr_,
    pixel_shuffle,
    upsample_interp,
)

SR_MODELS = ("srcnn", "vdsr", "espcn", "lapsrn", "dbpn")
# Tiny widths keep every test fast; the default configurations are checked by parameter count.
TINY = {
    "srcnn": {"features": (8, 4)},
    "vdsr": {"depth": 4, "features": 8},
    "espcn": {"features": (8, 4)},
    "lapsrn": {"depth": 2, "features": 8},
    "dbpn": {"stem_features": 8, "features": 4, "stages": 2},
}
SCALES = {"srcnn": (2, 3, 4), "vdsr": (2, 3, 4), "espcn": (2, 3, 4), "lapsrn": (2, 4, 8), "dbpn": (2, 3, 4)}
MODELS_3D = ("srcnn", "vdsr", "espcn")


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", SR_MODELS)
def test_output_shape_every_scale(name):
    for scale in SCALES[name]:
        for c in (1, 3):
            model = create_model(name, scale=scale, in_channels=c, seed=0, **TINY[name])
            out = model(_x(2, c, 5, 7))
            assert out.shape == (2, c, 5 * scale, 7 * scale), (name, scale, c)


@pytest.mark.parametrize("name", MODELS_3D)
@pytest.mark.parametrize("scale", [2, (1, 1, 4), (3, 1, 2)])
def test_output_shape_3d(name, scale):
    model = create_model(name, scale=scale, spatial_dims=3, seed=0, **TINY[name])
    s = (scale,) * 3 if isinstance(scale, int) else scale
    out = model(_x(1, 1, 3, 4, 2))
    assert out.shape == (1, 1, 3 * s[0], 4 * s[1], 2 * s[2])
    with pytest.raises(ValueError, match="shape"):  # a 2D batch is not a 3D one
        model(_x(1, 1, 4, 4))


@pytest.mark.parametrize("name", MODELS_3D)
def test_anisotropic_2d_scale(name):
    model = create_model(name, scale=(1, 4), seed=0, **TINY[name])
    assert model(_x(1, 1, 6, 5)).shape == (1, 1, 6, 20)


# ------------------------------------------------------------------------------ sub-pixel layer
@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_pixel_shuffle_equals_torch(r):
    x = _x(2, 3 * r * r, 4, 5)
    torch.testing.assert_close(pixel_shuffle(x, r), torch.nn.PixelShuffle(r)(x), rtol=0, atol=0)


def test_pixel_shuffle_3d_by_definition():
    """y[c, r1 i + a, r2 j + b, r3 k + d] = x[c R + flat(a, b, d), i, j, k], element by element."""
    r = (1, 2, 3)
    x = _x(1, 2 * 6, 2, 3, 2)
    y = pixel_shuffle(x, r)
    assert y.shape == (1, 2, 2, 6, 6)
    for c in range(2):
        for a in range(r[0]):
            for b in range(r[1]):
                for d in range(r[2]):
                    flat = (a * r[1] + b) * r[2] + d
                    torch.testing.assert_close(y[0, c, a::r[0], b::r[1], d::r[2]], x[0, c * 6 + flat], rtol=0, atol=0)


def test_pixel_shuffle_is_a_permutation():
    x = _x(1, 8, 3, 3, 3)
    y = pixel_shuffle(x, 2)
    assert torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values)


@pytest.mark.parametrize("scale, dims", [(2, 2), (3, 2), (4, 2), ((1, 2), 2), ((1, 1, 4), 3), ((2, 1, 3), 3)])
def test_espcn_icnr_init_is_nearest_neighbour(scale, dims):
    """At ICNR initialisation ESPCN = nearest-neighbour upsampling of the maps 0, R, 2R, ...: no checkerboard."""
    model = ESPCN(scale=scale, in_channels=3, features=(8, 4), spatial_dims=dims)
    x = _x(2, 3, *([4] * dims))
    feats = model.features(x)
    s = check_scale(scale, spatial_dims=dims)
    expected = F.interpolate(feats[:, :: math.prod(s)], scale_factor=s, mode="nearest")
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_icnr_repeats_sub_kernels():
    w, b = torch.empty(12, 5, 3, 3), torch.arange(12.0)
    icnr_(w, b, 4)
    for c in range(3):
        for k in range(4):
            assert torch.equal(w[4 * c + k], w[4 * c])
            assert b[4 * c + k] == b[4 * c]
    with pytest.raises(ValueError, match="multiple"):
        icnr_(torch.empty(10, 2, 3, 3), None, 4)


# ------------------------------------------------------------------------------ pre-upsampling
def test_srcnn_is_the_9_1_5_network():
    model = SRCNN()
    sizes = [(m.in_channels, m.out_channels, m.kernel_size) for m in (model.extract, model.mapping, model.reconstruct)]
    assert sizes == [(1, 64, (9, 9)), (64, 32, (1, 1)), (32, 1, (5, 5))]


def test_srcnn_replicate_padding_keeps_a_flat_image_flat():
    """Replicate padding: a constant image gives a constant output, border included; zero padding does not."""
    x = torch.full((1, 1, 6, 6), 0.7)
    for mode, flat in (("replicate", True), ("zeros", False)):
        out = create_model("srcnn", scale=2, features=(8, 4), padding_mode=mode, seed=0)(x)
        assert bool(torch.allclose(out, out[0, 0, 6, 6].expand_as(out), atol=1e-6)) is flat


def test_vdsr_is_bicubic_plus_residual():
    """With the last layer zeroed VDSR outputs exactly torch's bicubic upsampling."""
    model = VDSR(scale=3, depth=3, features=4)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.body) == 3
    last = model.body[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = _x(1, 1, 6, 5)
    expected = F.interpolate(x, scale_factor=3, mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(model(x), expected)
    assert len(VDSR().body) == 2 * 20 - 1  # 20 convolutions, 19 ReLUs


def test_upsample_interp_modes():
    x2, x3 = _x(1, 1, 4, 5), _x(1, 1, 3, 4, 5)
    torch.testing.assert_close(upsample_interp(x2, (2, 3)),
                               F.interpolate(x2, size=(8, 15), mode="bicubic", antialias=True, align_corners=False))
    torch.testing.assert_close(upsample_interp(x3, (1, 1, 4)),
                               F.interpolate(x3, size=(3, 4, 20), mode="trilinear", align_corners=False))


# ------------------------------------------------------------------------------ LapSRN / DBPN
def test_lapsrn_levels_and_return_all():
    model = LapSRN(scale=8, depth=1, features=4)
    x = _x(1, 1, 3, 4)
    outs = model(x, return_all=True)
    assert [tuple(o.shape[-2:]) for o in outs] == [(6, 8), (12, 16), (24, 32)]
    torch.testing.assert_close(model(x), outs[-1])
    assert isinstance(LapSRN(scale=2, depth=1, features=4, return_all=True)(x), list)


def test_lapsrn_image_branch_starts_bilinear():
    """The 4x4 stride-2 transposed convolution of the image branch = bilinear x2 away from the border."""
    up = LapSRN(scale=2, depth=1, features=4).image_up[0]
    x = _x(1, 1, 6, 7)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up(x)[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])


@pytest.mark.parametrize("scale", [2, 4])
def test_lapsrn_with_zero_residuals_is_bilinear_up_to_the_border(scale):
    """Residual convolutions at zero (zero_last_): every level is torch's bilinear x2 of the previous one,
    border included (the image branch sees the edge pixels replicated, not zeros)."""
    from mlimaging.inverse.superres.training import zero_last_

    model = zero_last_(LapSRN(scale=scale, depth=2, features=8))
    x = _x(2, 1, 5, 7)
    expected, outs = x, model(x, return_all=True)
    for out in outs:
        expected = F.interpolate(expected, scale_factor=2, mode="bilinear", align_corners=False)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_lapsrn_he_init_keeps_the_feature_scale_through_the_levels():
    """He initialisation (as the paper): the features of a 10-layer branch keep their order of magnitude
    (torch's default init shrinks them ~40x over 10 layers, leaving the residual branch no signal)."""
    model = LapSRN(scale=2, depth=10, features=32)
    with torch.no_grad():
        feats = F.leaky_relu(model.embed(_x(1, 1, 24, 24)), 0.2)
        first, last = feats.std(), model.feature_branch[0](feats).std()
    assert 0.3 < float(last / first) < 3


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_dbpn_projection_units_change_size_by_scale(scale):
    model = DBPN(scale=scale, stem_features=4, features=4, stages=2)
    low = _x(1, 4, 5, 6)
    high = model.ups[0](low)
    assert high.shape == (1, 4, 5 * scale, 6 * scale)
    assert model.downs[0](high).shape == low.shape


def test_dbpn_residual_option():
    base = DBPN(scale=2, stem_features=4, features=4, stages=1, residual=True)
    torch.nn.init.zeros_(base.reconstruct.weight)
    torch.nn.init.zeros_(base.reconstruct.bias)
    x = _x(1, 1, 5, 5)
    torch.testing.assert_close(base(x), upsample_interp(x, (2, 2)))


# ------------------------------------------------------------------------------ generic (image to image)
# Default parameter counts, by hand. conv k^d c_in -> c_out: k^d c_in c_out + c_out.
EXPECTED_PARAMS = {
    "srcnn": (81 * 64 + 64) + (64 * 32 + 32) + (25 * 32 + 1),  # 8,129
    "vdsr": (9 * 64 + 64) + 18 * (9 * 64 * 64 + 64) + (9 * 64 + 1),  # 665,921
    "espcn": (25 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * 4 + 4),  # 21,284 (x2: 4 sub-pixel maps)
    # embed 3x3 1->64; one level: 10 convs 64->64, transposed 4x4 64->64, residual 3x3 64->1,
    # image transposed 4x4 1->1 without bias
    "lapsrn": (9 * 64 + 64) + 10 * (9 * 64 * 64 + 64) + (16 * 64 * 64 + 64) + (9 * 64 + 1) + 16,  # 436,113
    # stem 3x3 1->32 + PReLU(32), 1x1 32->16 + PReLU(16); 5 projection units (3 ups, 2 downs) of three
    # 6x6 16->16 layers + 3 PReLU(16); dense 1x1 reductions 32->16, 48->16 (low), 32->16 (high) + PReLU;
    # reconstruction 3x3 48->1
    "dbpn": (9 * 32 + 32 + 32) + (32 * 16 + 16 + 16) + 5 * (3 * (36 * 16 * 16 + 16) + 3 * 16)
    + (32 * 16 + 32) + (48 * 16 + 32) + (32 * 16 + 32) + (9 * 48 + 1),  # 141,937
}


def test_hand_counts():
    assert EXPECTED_PARAMS == {"srcnn": 8129, "vdsr": 665921, "espcn": 21284, "lapsrn": 436113, "dbpn": 141937}


@pytest.mark.parametrize("name", SR_MODELS)
def test_registered_defaults(name):
    info = model_info(name)
    assert info.description and info.input_shape == (1, 16, 16)
    assert info.defaults["scale"] == 2 and info.defaults["in_channels"] == 1
    assert ("spatial_dims" in info.defaults) == (name in MODELS_3D)
    assert sum(p.numel() for p in create_model(name).parameters()) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", SR_MODELS)
def test_backward_and_seed_determinism(name):
    a = create_model(name, seed=0, **TINY[name]).train()
    x = _x(2, 1, 6, 6)
    out = a(x)
    F.mse_loss(out, _x(*out.shape, seed=1)).backward()
    grads = {n: p.grad for n, p in a.named_parameters()}
    assert not [n for n, g in grads.items() if g is None]
    assert all(torch.isfinite(g).all() for g in grads.values())
    b, c = create_model(name, seed=0, **TINY[name]), create_model(name, seed=1, **TINY[name])
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    sa, sc = a.state_dict(), c.state_dict()
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", SR_MODELS)
def test_wrong_channels_or_ndim_raise(name):
    model = create_model(name, seed=0, **TINY[name])
    with pytest.raises(ValueError, match="shape"):
        model(_x(1, 2, 6, 6))
    with pytest.raises(ValueError, match="shape"):
        model(_x(1, 6, 6))
    with pytest.raises(ValueError, match="floating"):
        model(torch.zeros(1, 1, 6, 6, dtype=torch.int64))


@pytest.mark.parametrize("name", ("lapsrn", "dbpn"))
def test_2d_only_models_take_no_spatial_dims(name):
    with pytest.raises(ValueError, match="spatial_dims"):
        create_model(name, spatial_dims=3)


# ------------------------------------------------------------------------------ bad input (hypothesis)
@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(SR_MODELS), scale=st.one_of(st.integers(-3, 12), st.floats(0.5, 4.5), st.booleans()))
def test_scale_not_allowed_raises(name, scale):
    if isinstance(scale, int) and not isinstance(scale, bool) and scale in SCALES[name]:
        return
    with pytest.raises(ValueError, match="scale"):
        create_model(name, scale=scale, **TINY[name])


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(MODELS_3D), scale=st.lists(st.integers(0, 6), min_size=1, max_size=4))
def test_per_axis_scale_checked(name, scale):
    ok = len(scale) == 3 and all(s in (1, 2, 3, 4) for s in scale) and any(s > 1 for s in scale)
    if ok:
        model = create_model(name, scale=tuple(scale), spatial_dims=3, **TINY[name])
        assert model(_x(1, 1, 2, 2, 2)).shape[2:] == tuple(2 * s for s in scale)
    else:
        with pytest.raises(ValueError, match="scale"):
            create_model(name, scale=tuple(scale), spatial_dims=3, **TINY[name])


@settings(max_examples=20, deadline=None)
@given(ndim=st.integers(1, 6), name=st.sampled_from(SR_MODELS))
def test_wrong_ndim_raises(ndim, name):
    model = create_model(name, seed=0, **TINY[name])
    if ndim == 4:
        return
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(*([1] * (ndim - 2)), *([4] * min(ndim, 2))) if ndim >= 2 else torch.rand(4))


@pytest.mark.parametrize("bad", [{"in_channels": 0}, {"features": (8,)}, {"kernel_sizes": (9, 2, 5)},
                                 {"padding_mode": "circular"}])
def test_bad_options_raise(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        create_model("srcnn", **bad)
