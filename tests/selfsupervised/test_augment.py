"""Batched augmentations: seeding, ranges, shapes, hand examples, bad parameters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.selfsupervised.augment import (
    ColorJitter,
    Compose,
    Cutout,
    GaussianBlur,
    GaussianNoise,
    IntensityJitter,
    RandomApply,
    RandomFlip,
    RandomResizedCrop,
    RandomRotation,
    Sobel,
    TwoViews,
    simclr_augment,
)

RANGES = [(0.0, 1.0), (-1000.0, 2000.0)]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(b, c, h, w, valid_range, seed=0):
    lo, hi = valid_range
    return lo + (hi - lo) * torch.rand(b, c, h, w, generator=_gen(seed))


def _factories(valid_range, channels):
    lo, hi = valid_range
    out = {
        "crop": lambda: RandomResizedCrop(12, scale=(0.2, 1.0)),
        "flip": lambda: RandomFlip(0.5),
        "vflip": lambda: RandomFlip(0.5, vertical=True),
        "rotation": lambda: RandomRotation(30.0, fill=lo),
        "intensity": lambda: IntensityJitter(0.4, 0.8, valid_range=valid_range),
        "noise": lambda: GaussianNoise((0.01, 0.2), valid_range=valid_range),
        "blur": lambda: GaussianBlur(5, sigma=(0.1, 2.0), p=0.5),
        "cutout": lambda: Cutout(5, p=0.7, fill=lo),
        "apply": lambda: RandomApply(GaussianNoise(0.1, valid_range=valid_range), p=0.5),
        "full": lambda: simclr_augment(12, channels=channels, valid_range=valid_range),
        "cropaug": lambda: simclr_augment(12, channels=channels, valid_range=valid_range,
                                          strength="crop"),
    }
    if channels == 3:
        out["color"] = lambda: ColorJitter(0.4, 0.4, 0.4, 0.1, valid_range=valid_range)
    return out


CASES = [(name, vr, c) for vr in RANGES for c in (1, 3) for name in _factories(vr, c)]


@pytest.mark.parametrize(("name", "valid_range", "channels"), CASES,
                         ids=[f"{n}-{int(vr[0])}-{c}ch" for n, vr, c in CASES])
def test_seeded_in_range_shape_and_input_untouched(name, valid_range, channels):
    transform = _factories(valid_range, channels)[name]()
    x = _images(16, channels, 16, 16, valid_range, seed=1)
    x_copy = x.clone()
    y1 = transform(x, generator=_gen(7))
    y2 = transform(x, generator=_gen(7))
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)  # bit-for-bit on CPU
    assert torch.equal(x, x_copy)  # never modified
    assert y1 is not x and y1.data_ptr() != x.data_ptr()
    expected = (16, channels, 12, 12) if name in ("crop", "full", "cropaug") else tuple(x.shape)
    assert tuple(y1.shape) == expected and y1.dtype == x.dtype
    lo, hi = valid_range
    assert y1.min() >= lo and y1.max() <= hi
    # a different generator state gives a different draw
    assert not torch.equal(transform(x, generator=_gen(8)), y1)
    # the generator advanced: a second call with the same generator differs
    g = _gen(7)
    transform(x, generator=g)
    assert not torch.equal(transform(x, generator=g), y1)


def test_works_in_float64_and_a_batch_of_one():
    x = torch.rand(1, 1, 10, 10, dtype=torch.float64, generator=_gen(0))
    y = simclr_augment(8)(x, generator=_gen(1))
    assert y.dtype == torch.float64 and y.shape == (1, 1, 8, 8)


# ---------------------------------------------------------------- geometry by hand


def test_flip_of_a_known_image():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    h = RandomFlip(p=1.0)(x, generator=_gen())
    v = RandomFlip(p=1.0, vertical=True)(x, generator=_gen())
    assert h[0, 0].tolist() == [[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]
    assert v[0, 0].tolist() == [[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]
    assert torch.equal(RandomFlip(p=0.0)(x, generator=_gen()), x)


def test_flip_draws_per_sample():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(64, 1, 1, 1)
    y = RandomFlip(p=0.5)(x, generator=_gen(3))
    flipped = (y[:, 0, 0, 0] == 3.0)
    assert torch.equal(y[flipped], x[flipped].flip(-1)) and torch.equal(y[~flipped], x[~flipped])
    assert 10 < int(flipped.sum()) < 54


def test_crop_full_image_is_identity_and_half_size_is_2x2_average():
    x = torch.rand(3, 2, 8, 8, generator=_gen(4))
    same = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, generator=_gen())
    torch.testing.assert_close(same, x, rtol=0, atol=1e-6)
    half = RandomResizedCrop(4, scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, generator=_gen())
    torch.testing.assert_close(half, F.avg_pool2d(x, 2), rtol=0, atol=1e-6)


def test_crop_is_a_zoom_into_the_image():
    """A small crop of a constant-per-quadrant image sees mostly one or two quadrants."""
    x = torch.zeros(1, 1, 32, 32)
    x[..., :16, :16] = 1.0
    big = x.repeat(32, 1, 1, 1)
    y = RandomResizedCrop((8, 8), scale=(0.05, 0.05), ratio=(1.0, 1.0))(big, generator=_gen(5))
    means = y.mean(dim=(1, 2, 3))
    assert ((means < 0.05) | (means > 0.95)).float().mean() > 0.3  # many crops inside one quadrant
    assert y.shape == (32, 1, 8, 8)


def test_crop_keeps_aspect_of_non_square_images():
    x = torch.rand(4, 1, 12, 20, generator=_gen(6))
    y = RandomResizedCrop((6, 10), scale=(1.0, 1.0), ratio=(20 / 12, 20 / 12))(x, generator=_gen())
    torch.testing.assert_close(y, F.avg_pool2d(x, 2), rtol=0, atol=1e-6)


def test_rotation_by_hand():
    x = torch.rand(2, 1, 6, 6, generator=_gen(7))
    zero = RandomRotation(0.0)(x, generator=_gen())
    torch.testing.assert_close(zero, x, rtol=0, atol=1e-6)
    quarter = RandomRotation((90.0, 90.0))(x, generator=_gen())
    torch.testing.assert_close(quarter, torch.rot90(x, -1, (-2, -1)), rtol=0, atol=1e-5)
    half = RandomRotation((180.0, 180.0))(x, generator=_gen())
    torch.testing.assert_close(half, x.flip(-1).flip(-2), rtol=0, atol=1e-5)
    # corners leave the image at 45 degrees and take the fill value
    ct = torch.full((1, 1, 9, 9), 40.0)
    y = RandomRotation((45.0, 45.0), fill=-1000.0)(ct, generator=_gen())
    assert y[0, 0, 0, 0] == -1000.0 and y[0, 0, 4, 4] == 40.0


# ---------------------------------------------------------------- intensity by hand


@pytest.mark.parametrize("valid_range", RANGES)
def test_intensity_jitter_brightness_is_a_fraction_of_the_range(valid_range):
    lo, hi = valid_range
    x = torch.full((64, 1, 4, 4), (lo + hi) / 2)
    y = IntensityJitter(brightness=0.1, contrast=0.0, valid_range=valid_range)(x, generator=_gen(1))
    shift = (y - x)[:, 0, 0, 0]
    assert torch.allclose(y - x, shift.view(-1, 1, 1, 1).expand_as(x), atol=1e-3 * (hi - lo))
    assert shift.abs().max() <= 0.1 * (hi - lo) * (1 + 1e-6)
    assert shift.abs().max() > 0.05 * (hi - lo)  # 64 draws of U(-0.1, 0.1) reach beyond 0.05


def test_intensity_jitter_contrast_keeps_the_mean_and_zero_is_identity():
    x = 0.4 + 0.2 * torch.rand(8, 1, 6, 6, generator=_gen(2))
    y = IntensityJitter(brightness=0.0, contrast=0.5)(x, generator=_gen(3))
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    assert not torch.allclose(y, x)
    same = IntensityJitter(brightness=0.0, contrast=0.0)(x, generator=_gen(3))
    torch.testing.assert_close(same, x)


def test_intensity_jitter_clamps_to_hu_range():
    x = torch.tensor([-1000.0, 2000.0]).view(1, 1, 1, 2).repeat(16, 1, 1, 1)
    y = IntensityJitter(brightness=1.0, contrast=2.0, valid_range=(-1000, 2000))(x, generator=_gen())
    assert y.min() >= -1000 and y.max() <= 2000 and (y == 2000).any()


def test_color_jitter_zero_is_identity_and_grey_stays_grey():
    x = torch.rand(4, 3, 5, 5, generator=_gen(4))
    same = ColorJitter(0.0, 0.0, 0.0, 0.0)(x, generator=_gen())
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5)
    grey = x[:, :1].expand(4, 3, 5, 5)
    y = ColorJitter(0.0, 0.0, 0.5, 0.5)(grey, generator=_gen(5))
    torch.testing.assert_close(y, grey, rtol=0, atol=1e-5)
    # hue alone keeps the luma (Y of YIQ) where nothing is clipped
    mid = 0.4 + 0.2 * x
    y = ColorJitter(0.0, 0.0, 0.0, 0.05)(mid, generator=_gen(6))
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    torch.testing.assert_close((y * w).sum(1), (mid * w).sum(1), rtol=0, atol=1e-5)
    assert not torch.allclose(y, mid, atol=1e-3)


def test_color_jitter_needs_rgb():
    with pytest.raises(ValueError, match="RGB"):
        ColorJitter()(torch.rand(2, 1, 4, 4), generator=_gen())


def test_gaussian_noise_std_is_a_fraction_of_the_range():
    x = torch.full((2, 1, 64, 64), 500.0)
    y = GaussianNoise(0.02, valid_range=(-1000.0, 2000.0))(x, generator=_gen(1))
    assert (y - x).std().item() == pytest.approx(60.0, rel=0.05)
    torch.testing.assert_close(GaussianNoise(0.0)(x.clamp(0, 1), generator=_gen()), x.clamp(0, 1))


def test_gaussian_blur_equals_a_2d_gaussian_convolution():
    x = torch.rand(3, 2, 9, 9, generator=_gen(2))
    y = GaussianBlur(5, sigma=1.3, p=1.0)(x, generator=_gen())
    t = torch.arange(5.0) - 2
    g = torch.exp(-t**2 / (2 * 1.3**2))
    g = g / g.sum()
    k2 = (g[:, None] * g[None, :]).expand(2, 1, 5, 5)
    ref = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k2, groups=2)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    assert torch.equal(GaussianBlur(5, p=0.0)(x, generator=_gen()), x)
    const = torch.full((2, 1, 6, 6), -300.0)
    torch.testing.assert_close(GaussianBlur(3, p=1.0)(const, generator=_gen()), const)


def test_gaussian_blur_sigma_differs_per_sample():
    x = torch.zeros(1, 1, 11, 11)
    x[..., 5, 5] = 1.0
    y = GaussianBlur(7, sigma=(0.3, 3.0), p=1.0)(x.repeat(8, 1, 1, 1), generator=_gen(3))
    peaks = y[:, 0, 5, 5]
    assert peaks.unique().numel() == 8
    torch.testing.assert_close(y.sum(dim=(1, 2, 3)), torch.ones(8))


def test_cutout_erases_one_square():
    x = torch.ones(32, 1, 20, 20)
    y = Cutout(4, p=1.0, fill=-1.0)(x, generator=_gen(4))
    erased = (y == -1.0)
    counts = erased.sum(dim=(1, 2, 3))
    assert counts.max() == 16 and counts.min() >= 4  # clipped at the border at worst to 2 x 2
    for e in erased[:, 0]:
        rows, cols = e.any(1).nonzero().flatten(), e.any(0).nonzero().flatten()
        assert e.sum() == rows.numel() * cols.numel()  # a rectangle
        assert rows.numel() <= 4 and cols.numel() <= 4
    assert torch.equal(Cutout(4, p=0.0)(x, generator=_gen()), x)


def test_sobel_of_a_step_edge_and_a_ramp():
    step = torch.zeros(1, 1, 5, 6)
    step[..., 3:] = 2.0
    y = Sobel()(step)
    assert y[0, 0].tolist() == [[0.0, 0.0, 8.0, 8.0, 0.0, 0.0]] * 5  # 4 x the height 2
    horizontal = Sobel()(step.transpose(-1, -2))
    torch.testing.assert_close(horizontal, y.transpose(-1, -2))
    ramp = torch.arange(7.0).expand(7, 7).reshape(1, 1, 7, 7).repeat(1, 3, 1, 1)
    inner = Sobel()(ramp)[..., 1:-1, 1:-1]
    torch.testing.assert_close(inner, torch.full_like(inner, 8.0))
    const = torch.full((2, 1, 4, 4), 123.0)
    assert torch.equal(Sobel()(const), torch.zeros_like(const))
    # deterministic: the generator is accepted and unused
    assert torch.equal(Sobel()(ramp, generator=_gen(1)), Sobel()(ramp, generator=_gen(2)))
    diag = Sobel()(torch.eye(6).reshape(1, 1, 6, 6))
    assert math.isfinite(diag.max().item())


# ---------------------------------------------------------------- composition


def test_random_apply_applies_to_the_chosen_samples():
    x = torch.zeros(16, 1, 3, 3)
    noise = GaussianNoise(0.1, valid_range=(-1.0, 1.0))
    y = RandomApply(noise, p=0.5)(x, generator=_gen(5))
    g = _gen(5)
    chosen = torch.rand(16, generator=g) < 0.5
    torch.testing.assert_close(y[chosen], noise(x[chosen], generator=g))
    assert torch.equal(y[~chosen], x[~chosen])
    always = RandomApply(noise, p=1.0)(x, generator=_gen(5))
    g = _gen(5)
    torch.rand(16, generator=g)
    torch.testing.assert_close(always, noise(x, generator=g))


def test_compose_and_two_views():
    x = torch.rand(4, 1, 8, 8, generator=_gen(6))
    t = Compose([RandomFlip(1.0), GaussianNoise(0.05)])
    g = _gen(7)
    ref = GaussianNoise(0.05)(RandomFlip(1.0)(x, generator=g), generator=g)
    torch.testing.assert_close(t(x, generator=_gen(7)), ref)
    v1, v2 = TwoViews(t)(x, generator=_gen(8))
    g = _gen(8)
    torch.testing.assert_close(v1, t(x, generator=g))
    torch.testing.assert_close(v2, t(x, generator=g))
    assert not torch.equal(v1, v2)
    assert "RandomFlip" in repr(TwoViews(t))


def test_simclr_presets():
    full = simclr_augment(28)
    crop = simclr_augment(28, strength="crop")
    assert [type(t).__name__ for t in full.transforms] == ["RandomResizedCrop", "RandomFlip",
                                                           "RandomApply", "GaussianBlur"]
    assert isinstance(full.transforms[2].transform, IntensityJitter)
    assert [type(t).__name__ for t in crop.transforms] == ["RandomResizedCrop"]
    rgb = simclr_augment(32, channels=3, valid_range=(0, 255))
    assert isinstance(rgb.transforms[2].transform, ColorJitter)
    assert rgb.transforms[3].kernel_size == 3
    assert simclr_augment(224).transforms[3].kernel_size == 23
    chiral = simclr_augment(28, flip=False)  # digits: a mirrored 2 is not a 2
    assert [type(t).__name__ for t in chiral.transforms] == ["RandomResizedCrop", "RandomApply", "GaussianBlur"]
    # crop only keeps each view's intensity histogram up to interpolation; full changes it
    x = torch.rand(16, 1, 28, 28, generator=_gen(9))
    xm = x.mean(dim=(1, 2, 3))
    cm = crop(x, generator=_gen(1)).mean(dim=(1, 2, 3))
    fm = full(x, generator=_gen(1)).mean(dim=(1, 2, 3))
    assert (fm - xm).abs().mean() > (cm - xm).abs().mean()


# ---------------------------------------------------------------- bad input

BAD_P = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0 + 1e-9), st.just(float("nan")))


@settings(max_examples=25, deadline=None)
@given(p=BAD_P)
def test_bad_probability(p):
    for make in (lambda: RandomFlip(p), lambda: GaussianBlur(3, p=p), lambda: Cutout(2, p=p),
                 lambda: RandomApply(Sobel(), p=p)):
        with pytest.raises(ValueError, match="p must"):
            make()


@settings(max_examples=25, deadline=None)
@given(v=st.one_of(st.floats(max_value=-1e-9), st.just(float("inf")), st.just(float("nan"))))
def test_bad_strengths(v):
    for name, make in (("brightness", lambda: IntensityJitter(brightness=v)),
                       ("contrast", lambda: IntensityJitter(contrast=v)),
                       ("saturation", lambda: ColorJitter(saturation=v)),
                       ("hue", lambda: ColorJitter(hue=v)),
                       ("sigma", lambda: GaussianNoise(v)),
                       ("sigma", lambda: GaussianBlur(3, sigma=v)),
                       ("degrees", lambda: RandomRotation(v))):
        with pytest.raises(ValueError, match=name):
            make()


@settings(max_examples=25, deadline=None)
@given(lo=st.floats(-1e4, 1e4), delta=st.floats(-1e4, 0.0))
def test_bad_valid_range(lo, delta):
    for make in (IntensityJitter, ColorJitter, GaussianNoise):
        with pytest.raises(ValueError, match="valid_range"):
            make(valid_range=(lo, lo + delta))
    with pytest.raises(ValueError, match="valid_range"):
        simclr_augment(8, valid_range=(lo, lo + delta))


@settings(max_examples=25, deadline=None)
@given(k=st.one_of(st.integers(max_value=0), st.integers(1, 50).map(lambda n: 2 * n)))
def test_bad_sizes(k):
    with pytest.raises(ValueError, match="kernel_size"):
        GaussianBlur(k)
    if k < 1:
        with pytest.raises(ValueError, match="size"):
            Cutout(k)
        with pytest.raises(ValueError, match="size"):
            RandomResizedCrop(k)


def test_bad_options_and_images():
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.8, 0.2))
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="ratio"):
        RandomResizedCrop(8, ratio=(-1.0, 1.0))
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.6)
    with pytest.raises(ValueError, match="strength"):
        simclr_augment(8, strength="weak")
    with pytest.raises(ValueError, match="channels"):
        simclr_augment(8, channels=2)
    with pytest.raises(ValueError, match="flip"):
        simclr_augment(8, flip="no")
    with pytest.raises(ValueError, match="transforms"):
        Compose([1])
    with pytest.raises(ValueError, match="transform"):
        TwoViews(None)
    t = RandomFlip()
    with pytest.raises(ValueError, match="x must have shape"):
        t(torch.rand(1, 4, 4), generator=_gen())
    with pytest.raises(ValueError, match="floating-point"):
        t(torch.zeros(1, 1, 4, 4, dtype=torch.long), generator=_gen())
    with pytest.raises(ValueError, match="generator"):
        t(torch.rand(1, 1, 4, 4), generator=0)
    with pytest.raises(ValueError, match="keep the image shape"):
        RandomApply(RandomResizedCrop(2), p=1.0)(torch.rand(2, 1, 4, 4), generator=_gen())
