"""Whole-pixel translation and shift augmentation (mlimaging.data.transforms)."""

from __future__ import annotations

import pytest
import torch

from mlimaging.data import ShiftAugment, distort_digits, translate


def test_translate_worked_example_and_zero_fill():
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    assert translate(x, 1, 0)[0, 0].tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    assert translate(x, 0, -1)[0, 0].tolist() == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]
    assert torch.equal(translate(x, 0, 0), x) and translate(x, 3, 0).abs().sum() == 0
    assert x[0, 0, 0, 0] == 1  # input untouched


def test_translate_there_and_back_keeps_the_interior():
    x = torch.rand(2, 1, 10, 10)
    back = translate(translate(x, 2, -2), -2, 2)
    assert torch.equal(back[..., :8, 2:], x[..., :8, 2:])
    assert back[..., 8:, :].abs().sum() == 0 and back[..., :, :2].abs().sum() == 0


def test_translate_rejects_non_tensors():
    with pytest.raises(ValueError, match="images"):
        translate([[1.0]], 1, 0)


def test_shift_augment_is_seeded_and_bounded():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    ds = ShiftAugment(x, torch.zeros(1, dtype=torch.long), max_shift=2)
    torch.manual_seed(0)
    a = [ds[0][0] for _ in range(20)]
    torch.manual_seed(0)
    b = [ds[0][0] for _ in range(20)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    for img in a:
        r, c = divmod(int(img.flatten().argmax()), 9)
        assert abs(r - 4) <= 2 and abs(c - 4) <= 2 and img.sum() == 1
    assert len({int(img.flatten().argmax()) for img in a}) > 1


def test_distort_digits_is_seeded_and_keeps_the_digit_on_the_canvas():
    digits = torch.zeros(4, 1, 28, 28)
    digits[:, :, 10:18, 12:16] = 1.0
    a = distort_digits(digits, canvas=36, seed=3)
    assert a.shape == (4, 1, 36, 36)
    assert torch.equal(a, distort_digits(digits, canvas=36, seed=3))
    assert not torch.equal(a, distort_digits(digits, canvas=36, seed=4))
    mass = a.sum(dim=(1, 2, 3))  # area scales by zoom^2 in [0.64, 1.44] of the 32-pixel bar
    assert bool(((mass > 0.6 * 32) & (mass < 1.5 * 32)).all())
    same = distort_digits(digits, canvas=36, max_angle=0.0, scale=(1.0, 1.0), shift=0.0)
    torch.testing.assert_close(same[..., 4:32, 4:32], digits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="canvas"):
        distort_digits(digits, canvas=20)
