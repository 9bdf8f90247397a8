"""Image preprocessing shared by train classifier / predict and the segmentation networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlimaging.data.preprocessing import (
    background_level,
    has_light_background,
    prepare_image,
    resize_images,
    zscore,
)


def test_prepare_image_channels_ranges_and_errors():
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 255
    gray = prepare_image(rgb, channels=1, size=(6, 6))
    assert gray.shape == (1, 6, 6) and torch.allclose(gray, torch.full((1, 6, 6), 0.299))
    assert prepare_image(np.full((4, 4), 65535, np.uint16), channels=3, size=(2, 2)).shape == (3, 2, 2)
    assert torch.allclose(prepare_image(np.full((4, 4), 65535, np.uint16), channels=1, size=(2, 2)), torch.ones(1, 2, 2))
    scaled = prepare_image(np.array([[0.0, 10.0], [5.0, 10.0]]), channels=1, size=(2, 2))
    assert scaled.tolist() == [[[0.0, 1.0], [0.5, 1.0]]]
    assert prepare_image(np.array([[True, False]]), channels=1, size=(1, 2)).tolist() == [[[1.0, 0.0]]]
    chw = prepare_image(np.zeros((3, 5, 5), np.float32), channels=3, size=(5, 5))
    assert chw.shape == (3, 5, 5)
    with pytest.raises(ValueError, match="NaN"):
        prepare_image(np.array([[np.nan, 1.0]]), channels=1, size=(1, 2))
    with pytest.raises(ValueError, match="shape"):
        prepare_image(np.zeros((2, 3, 4, 5)), channels=1, size=(4, 4))
    with pytest.raises(ValueError, match="digit.png: the model takes 2 channels, the image has 3"):
        prepare_image(np.zeros((3, 5, 5)), channels=2, size=(5, 5), name="digit.png")
    with pytest.raises(ValueError, match="non-empty numeric"):
        prepare_image(np.array([["a"]]), channels=1, size=(1, 1))


def test_resize_images_is_bilinear_and_identity_at_the_same_size():
    x = torch.rand(2, 1, 6, 6)
    assert resize_images(x, (6, 6)) is x
    up = resize_images(torch.tensor([[[[0.0, 1.0]]]]), (1, 4))
    # align_corners=False: sample positions -0.25, 0.25, 0.75, 1.25 -> clamped to the edge values
    assert up.flatten().tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])
    down = resize_images(torch.ones(1, 1, 8, 8), (4, 4))
    assert torch.allclose(down, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="size"):
        resize_images(x, (0, 4))
    with pytest.raises(ValueError, match="batch"):
        resize_images(x[0], (3, 3))


def test_polarity_of_digits_and_of_their_negatives():
    digit = torch.zeros(1, 28, 28)
    digit[:, 6:22, 12:16] = 1.0
    border, centre = background_level(digit)
    assert border == 0.0 and centre == pytest.approx(float(digit[:, 3:25, 3:25].mean()))
    assert not has_light_background(digit) and has_light_background(1.0 - digit)
    # A light object filling the image is no light background: the border must beat the centre too.
    blob = torch.full((1, 16, 16), 0.6)
    blob[:, 4:12, 4:12] = 1.0
    assert not has_light_background(blob)
    assert background_level(torch.ones(3, 2, 2)) == (1.0, 1.0)  # nothing inside the frame: centre = all
    with pytest.raises(ValueError, match="one image"):
        background_level(torch.zeros(2, 1, 4, 4))


def test_zscore_gives_mean_zero_unit_variance_and_zeros_for_a_constant():
    x = torch.arange(12.0).reshape(3, 4) * 7 + 3
    z = zscore(x)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6) and float(z.std(unbiased=False)) == pytest.approx(1.0)
    assert torch.equal(zscore(np.full((2, 2), 5.0)), torch.zeros(2, 2))
    assert torch.allclose(zscore(x), zscore(x * 100 - 20), atol=1e-5)  # independent of the intensity scale
