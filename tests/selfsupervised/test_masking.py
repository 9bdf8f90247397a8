"""Patches and masks: exact round trips, exact visible counts, I-JEPA block masks, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.selfsupervised.masking import (
    multi_block_masks,
    num_kept,
    patchify,
    random_masking,
    sincos_position_embedding,
    unpatchify,
)


@pytest.mark.parametrize("shape, patch", [((2, 1, 28, 28), 7), ((3, 3, 8, 12), 4), ((1, 2, 6, 4), (3, 2))])
def test_patchify_unpatchify_round_trip_is_exact(shape, patch):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    p = patchify(x, patch)
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    assert p.shape == (shape[0], (shape[2] // ph) * (shape[3] // pw), ph * pw * shape[1])
    assert torch.equal(unpatchify(p, patch, shape[2:], shape[1]), x)
    # and the other way round
    q = torch.randn_like(p)
    assert torch.equal(patchify(unpatchify(q, patch, shape[2:], shape[1]), patch), q)


def test_patchify_by_hand_and_matches_the_vit_token_order():
    # a 4 x 4 image of 2 channels, 2 x 2 patches: patch 2 (bottom-left) holds rows 2-3, cols 0-1
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    expected = torch.tensor([8.0, 24.0, 9.0, 25.0, 12.0, 28.0, 13.0, 29.0])  # (a, b, c) with c fastest
    assert torch.equal(patchify(x, 2)[0, 2], expected)
    # a patch embedding convolution equals a linear map of patchify's vectors, token for token
    conv = torch.nn.Conv2d(2, 5, kernel_size=2, stride=2)
    tokens = conv(x).flatten(2).transpose(1, 2)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(5, -1)  # (out, p, p, C) as patchify's order
    torch.testing.assert_close(patchify(x, 2) @ weight.T + conv.bias, tokens)


@pytest.mark.parametrize("n, ratio", [(16, 0.75), (49, 0.75), (10, 0.5), (49, 0.6), (7, 0.3)])
def test_random_masking_keeps_exactly_round_of_visible_patches_different_per_sample(n, ratio):
    b = 8
    keep, mask, restore = random_masking(b, n, ratio, generator=torch.Generator().manual_seed(1))
    k = round((1 - ratio) * n)
    assert keep.shape == (b, k) and mask.shape == (b, n) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == n - k).all()
    assert not mask.gather(1, keep).any()  # kept patches are the unmasked ones
    assert all(len(set(row.tolist())) == k for row in keep)  # no duplicates
    assert len({tuple(sorted(row.tolist())) for row in keep}) > 1  # samples differ
    # restore_idx puts a [kept, masked] sequence back in grid order
    ids_shuffle = restore.argsort(dim=1)
    assert torch.equal(ids_shuffle[:, :k], keep)
    assert torch.equal(ids_shuffle.gather(1, restore), torch.arange(n).expand(b, n))


def test_random_masking_is_seeded():
    a = random_masking(4, 16, 0.75, generator=torch.Generator().manual_seed(3))
    b = random_masking(4, 16, 0.75, generator=torch.Generator().manual_seed(3))
    c = random_masking(4, 16, 0.75, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


@settings(max_examples=30, deadline=None)
@given(ratio=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, allow_nan=False),
                       st.just(float("nan")), st.booleans(), st.text(max_size=3)))
def test_random_masking_rejects_a_ratio_outside_0_1(ratio):
    with pytest.raises(ValueError, match="ratio"):
        random_masking(2, 16, ratio, generator=torch.Generator())


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 200), ratio=st.floats(0.001, 0.999))
def test_num_kept_is_round_or_refuses_with_a_message(n, ratio):
    k = round((1 - ratio) * n)
    if 1 <= k <= n - 1:
        assert num_kept(n, ratio) == k
    else:
        with pytest.raises(ValueError, match="at least one patch visible and one masked"):
            num_kept(n, ratio)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(2, 30), patch=st.integers(2, 8))
def test_patchify_rejects_sizes_not_divisible_by_the_patch(size, patch):
    x = torch.zeros(1, 1, size, size)
    if size % patch:
        with pytest.raises(ValueError, match="divisible by patch_size"):
            patchify(x, patch)
        with pytest.raises(ValueError, match="divisible by patch_size"):
            unpatchify(torch.zeros(1, 1, patch * patch), patch, size, 1)
    else:
        assert patchify(x, patch).shape == (1, (size // patch) ** 2, patch * patch)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="patches must have shape"):
        unpatchify(torch.zeros(1, 3, 4), 2, 4, 1)
    with pytest.raises(ValueError, match="batch"):
        random_masking(0, 16, 0.5)
    with pytest.raises(ValueError, match="target_scale"):
        multi_block_masks(8, target_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="context_scale"):
        multi_block_masks(8, context_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="num_targets"):
        multi_block_masks(8, num_targets=0)
    with pytest.raises(ValueError, match="grid"):
        multi_block_masks((1, 1))


@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (4, 6)])
def test_multi_block_masks_targets_are_blocks_and_context_excludes_them(grid):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        m = multi_block_masks(grid, batch=6, num_targets=4, generator=g)
        b, nt, kt = m.targets.shape
        assert (b, nt) == (6, 4) and m.context.shape[0] == 6 and m.context.shape[1] >= 1
        n = grid[0] * grid[1]
        for i in range(b):
            ctx = set(m.context[i].tolist())
            assert len(ctx) == m.context.shape[1] and all(0 <= j < n for j in ctx)
            for t in m.targets[i]:
                rows, cols = t // grid[1], t % grid[1]
                h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
                assert h * w == kt  # a full rectangle
                assert not ctx & set(t.tolist())
        # target area within the scale range (up to rounding of the sides)
        assert kt <= max(4, 0.45 * n)


def test_multi_block_masks_on_a_tiny_grid_keeps_one_context_patch():
    # 2 x 2 grid: four 1-patch targets can cover everything; the context still has a patch
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        m = multi_block_masks((2, 2), batch=3, num_targets=4, generator=g)
        assert m.context.shape[1] >= 1


def test_multi_block_masks_is_seeded():
    a = multi_block_masks((7, 7), batch=4, generator=torch.Generator().manual_seed(5))
    b = multi_block_masks((7, 7), batch=4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)


def test_sincos_position_embedding_by_hand():
    e = sincos_position_embedding(4, (2, 2))  # one frequency per axis quarter: omega = 1
    row1_col0 = torch.tensor([torch.sin(torch.tensor(1.0)), torch.cos(torch.tensor(1.0)), 0.0, 1.0])
    torch.testing.assert_close(e[2], row1_col0)
    torch.testing.assert_close(e[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert sincos_position_embedding(6, 3).shape == (9, 6)
