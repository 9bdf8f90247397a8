"""ViT and attention rollout: worked examples, invariants, the timm oracle, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.models import ViT, attention_rollout, create_model


def _tiny(**kw) -> ViT:
    cfg = {"image_size": 28, "patch_size": 7, "dim": 16, "depth": 2, "heads": 4}
    cfg.update(kw)
    return ViT(**cfg)


def _randomise(model: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Weights far from the small init (LayerNorm gains too), so comparisons are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def _rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ 1. worked examples
def test_tokens_for_28px_and_7px_patches():
    """28 / 7 = 4 patches per axis: 16 patch tokens + the class token."""
    model = _tiny().eval()
    assert model.grid_size == (4, 4) and model.num_patches == 16
    assert model.pos_embed.shape == (1, 17, 16)
    assert model.cls_token.shape == (1, 1, 16)
    assert model.patch_grid((28, 28)) == (4, 4)
    assert model.patch_grid((42, 14)) == (6, 2)
    with torch.no_grad():
        _, attn = model(_rand(2, 1, 28, 28), return_attention=True)
    assert [a.shape for a in attn] == [(2, 4, 17, 17)] * 2
    # a non-square image and per-axis patches: (28 / 7) x (21 / 3) = 4 x 7 = 28 tokens
    model = _tiny(image_size=(28, 21), patch_size=(7, 3))
    assert model.grid_size == (4, 7) and model.pos_embed.shape == (1, 29, 16)
    # a volume: (8 / 4)^3 = 8 tokens
    model = _tiny(image_size=8, patch_size=4, spatial_dims=3)
    assert model.grid_size == (2, 2, 2) and model.pos_embed.shape == (1, 9, 16)
    assert model.patch_embed.proj.kernel_size == (4, 4, 4)


def test_parameter_count_by_hand():
    """D = 64, p = 7, 16 patches, 4 blocks, MLP 4D, 10 classes (vit_tiny)."""
    d, hidden = 64, 256
    patch = 7 * 7 * d + d  # conv 1 -> D, 7 x 7
    tokens = d + 17 * d  # class token + position embedding (16 patches + class)
    block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * hidden + hidden) + (hidden * d + d)
    assert block == 49984
    total = patch + tokens + 4 * block + 2 * d + (d * 10 + 10)
    assert total == 205066
    assert sum(p.numel() for p in create_model("vit_tiny").parameters()) == total
    # vit_small: D = 128, p = 4, 49 patches, 6 blocks
    d, hidden = 128, 512
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * hidden + hidden + d)
    total = (16 * d + d) + 50 * d + d + 6 * block + 2 * d + (10 * d + 10)
    assert total == 1199882
    assert sum(p.numel() for p in create_model("vit_small").parameters()) == total


def test_module_names_are_timms():
    keys = set(_tiny(depth=1).state_dict())
    assert keys == {
        "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.norm2.weight", "blocks.0.norm2.bias",
        "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias",
        "norm.weight", "norm.bias", "head.weight", "head.bias",
    }
    assert all(m.eps == 1e-6 for m in _tiny().modules() if isinstance(m, torch.nn.LayerNorm))


def test_rollout_worked_examples():
    """Uniform attention U (all 1/T) over T = 5 tokens (a 2 x 2 grid):
    one layer: (U + I) / 2, class row to each patch 1/10;
    two layers: ((U + I) / 2)^2 = (3U + I) / 4 (U^2 = U), class row to each patch 3/20."""
    u = torch.full((1, 2, 5, 5), 0.2)
    one = attention_rollout([u])
    assert one.shape == (1, 2, 2)
    torch.testing.assert_close(one, torch.full((1, 2, 2), 0.1))
    torch.testing.assert_close(attention_rollout([u, u]), torch.full((1, 2, 2), 0.15))
    # attention to oneself only: the class token never reads a patch
    eye = torch.eye(5).expand(1, 3, 5, 5)
    assert torch.equal(attention_rollout([eye, eye]), torch.zeros(1, 2, 2))


# ------------------------------------------------------------------------------ 2. invariants
def test_batch_permutation_permutes_logits():
    model = _randomise(_tiny()).eval()
    x = _rand(5, 1, 28, 28)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(model(x[perm]), model(x)[perm], atol=1e-5, rtol=1e-5)


def test_position_embedding_at_its_own_size_is_identity():
    model = _randomise(_tiny())
    assert model.position_embedding((4, 4)) is model.pos_embed
    model3 = _tiny(image_size=(8, 12, 4), patch_size=4, spatial_dims=3)
    assert model3.position_embedding((2, 3, 1)) is model3.pos_embed


@pytest.mark.parametrize("spatial_dims, grid", [(2, (6, 3)), (2, (2, 2)), (3, (3, 1, 4))])
def test_resampled_position_embedding_keeps_class_entry_and_constants(spatial_dims, grid):
    model = _tiny(image_size=14 if spatial_dims == 2 else 8, patch_size=7 if spatial_dims == 2 else 4,
                  spatial_dims=spatial_dims)
    with torch.no_grad():
        model.pos_embed[:, 1:] = torch.arange(16.0)  # constant over the grid, one value per channel
        model.pos_embed[:, 0] = -1.0
    pos = model.position_embedding(grid)
    assert pos.shape == (1, math.prod(grid) + 1, 16)
    torch.testing.assert_close(pos[:, 0], torch.full((1, 16), -1.0))
    torch.testing.assert_close(pos[:, 1:], torch.arange(16.0).expand(1, math.prod(grid), 16), atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_patch_shuffle_invariance_without_position_information(pool):
    """Attention is permutation-equivariant: with the same position embedding for every patch,
    shuffling the patches of the image leaves the class token and the patch mean unchanged."""
    model = _randomise(_tiny(pool=pool)).eval()
    with torch.no_grad():
        model.pos_embed[:, 1:] = model.pos_embed[:, 1]
    x = _rand(2, 1, 28, 28)
    patches = x.reshape(2, 1, 4, 7, 4, 7).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, 1, 7, 7)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    shuffled = patches[:, perm].reshape(2, 4, 4, 1, 7, 7).permute(0, 3, 1, 4, 2, 5).reshape(2, 1, 28, 28)
    assert not torch.equal(shuffled, x)
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled), model(x), atol=1e-5, rtol=1e-5)


def test_mean_pool_reads_the_mean_of_normalised_patch_tokens():
    model = _randomise(_tiny(pool="mean")).eval()
    seen = {}
    model.norm.register_forward_hook(lambda m, i, o: seen.update(tokens=o))
    with torch.no_grad():
        logits = model(_rand(3, 1, 28, 28))
    tokens = seen["tokens"]
    assert tokens.shape == (3, 17, 16)
    torch.testing.assert_close(logits, model.head(tokens[:, 1:].mean(dim=1)))
    assert not torch.allclose(logits, model.head(tokens[:, 0]))


def test_attention_rows_are_distributions():
    model = _randomise(_tiny()).eval()
    with torch.no_grad():
        _, attentions = model(_rand(2, 1, 28, 28), return_attention=True)
    for a in attentions:
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 17))


@pytest.mark.parametrize("size", [28, 42])
def test_explicit_attention_path_equals_fused_path(size):
    model = _randomise(_tiny()).eval()
    x = _rand(2, 1, size, size)
    with torch.no_grad():
        fast = model(x)
        slow, _ = model(x, return_attention=True)
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-5)


def test_attention_equals_scaled_dot_product_attention():
    """Our maps A = softmax(Q K^T / sqrt(d)) satisfy A V = SDPA(Q, K, V), head by head."""
    attn = _randomise(_tiny()).blocks[0].attn.eval()
    x = _rand(2, 17, 16)
    b, t, d = x.shape
    q, k, v = attn.qkv(x).reshape(b, t, 3, 4, 4).permute(2, 0, 3, 1, 4)
    with torch.no_grad():
        out_explicit, maps = attn(x, return_attention=True)
        out_fused, none = attn(x)
        reference = F.scaled_dot_product_attention(q, k, v)
        by_hand = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    assert none is None
    torch.testing.assert_close(maps, by_hand, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps @ v, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_explicit, out_fused, atol=1e-5, rtol=1e-5)


def test_patch_embedding_is_a_linear_map_of_flattened_patches():
    model = _randomise(_tiny(in_channels=2))
    x = _rand(2, 2, 28, 28)
    patches = F.unfold(x, kernel_size=7, stride=7).transpose(1, 2)  # (B, 16, C*7*7), row-major grid
    w = model.patch_embed.proj.weight.reshape(16, -1)
    with torch.no_grad():
        torch.testing.assert_close(model.patch_embed(x), patches @ w.T + model.patch_embed.proj.bias,
                                   atol=1e-5, rtol=1e-5)


def test_3d_with_full_depth_patches_is_the_2d_model_on_stacked_slices():
    """Patches spanning the whole depth D: Conv3d over (C, D, H, W) = Conv2d over (C * D, H, W)."""
    vol = _randomise(_tiny(image_size=(4, 28, 28), patch_size=(4, 7, 7), spatial_dims=3, in_channels=2)).eval()
    flat = _tiny(in_channels=8).eval()
    state = vol.state_dict()
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].reshape(16, 8, 7, 7)
    flat.load_state_dict(state)
    x = _rand(2, 2, 4, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(vol(x), flat(x.reshape(2, 8, 28, 28)), atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    model = _randomise(_tiny(dropout=0.5))
    x = _rand(2, 1, 28, 28)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        assert torch.equal(model.eval()(x), model(x))


def test_rollout_properties():
    model = _randomise(_tiny(image_size=(28, 14))).eval()
    x = _rand(2, 1, 28, 14)
    with torch.no_grad():
        _, attentions = model(x, return_attention=True)
    grid = model.patch_grid(x.shape[2:])
    for fusion in ("mean", "max", "min"):
        for ratio in (0.0, 0.5):
            r = attention_rollout(attentions, head_fusion=fusion, discard_ratio=ratio, grid=grid)
            assert r.shape == (2, 4, 2)
            assert (r >= 0).all() and (r.flatten(1).sum(1) <= 1 + 1e-6).all()
    # the class row of the rollout is a distribution: patches + the class token itself
    eye = torch.eye(9)
    step = [(a.mean(1) + eye) / (a.mean(1) + eye).sum(-1, keepdim=True) for a in attentions]
    total = step[1] @ step[0]
    torch.testing.assert_close(attention_rollout(attentions, grid=grid).flatten(1), total[:, 0, 1:])
    torch.testing.assert_close(total[:, 0].sum(-1), torch.ones(2))
    up = attention_rollout(attentions, grid=grid, size=(28, 14))
    assert up.shape == (2, 28, 14)
    # every token attending to patch 2 only: the map peaks there
    focus = torch.zeros(1, 1, 5, 5)
    focus[..., 3] = 1.0
    assert attention_rollout([focus, focus]).flatten().argmax() == 2
    # a constant map stays constant when upsampled (3D too)
    const = torch.full((1, 1, 9, 9), 1 / 9)
    vol = attention_rollout([const], grid=(2, 2, 2), size=(8, 8, 8))
    torch.testing.assert_close(vol, torch.full((1, 8, 8, 8), 1 / 18))


# ------------------------------------------------------------------------------ 3. oracle: timm
def _timm_pair(pool: str, *, image_size=28, patch_size=7, in_channels=1, seed=0):
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    ours = _randomise(ViT(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                          num_classes=5, dim=32, depth=2, heads=4, mlp_ratio=2.0, pool=pool), seed).eval()
    ref = timm_vit.VisionTransformer(
        img_size=image_size, patch_size=patch_size, in_chans=in_channels, num_classes=5, embed_dim=32, depth=2,
        num_heads=4, mlp_ratio=2.0, qkv_bias=True, class_token=True,
        global_pool="token" if pool == "cls" else "avg", fc_norm=False, dynamic_img_size=True).eval()
    ref.load_state_dict(ours.state_dict())  # same names: no mapping needed
    return ours, ref


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("size", [28, 42, 14])
def test_logits_equal_timm(pool, size):
    ours, ref = _timm_pair(pool)
    x = _rand(3, 1, size, size, seed=size)
    with torch.no_grad():
        expected = ref(x)
        assert expected.abs().max() > 0.1  # not a trivial comparison
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(x, return_attention=True)[0], expected, atol=1e-5, rtol=1e-5)


def test_logits_equal_timm_non_square_patches_and_resampling():
    ours, ref = _timm_pair("cls", image_size=(28, 21), patch_size=(7, 3), in_channels=3, seed=1)
    for shape in ((28, 21), (35, 12)):
        x = _rand(2, 3, *shape, seed=7)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_timm_and_ours_learn_alike():
    """One SGD step from the same weights gives the same gradients."""
    ours, ref = _timm_pair("mean")
    x, y = _rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(ours.train()(x), y).backward()
    F.cross_entropy(ref.train()(x), y).backward()
    grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ 4. bad input
_SMALL = _tiny(image_size=14, dim=8, depth=1, heads=2).eval()


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 30))
def test_image_smaller_than_one_patch(h, w):
    with pytest.raises(ValueError, match=rf"smaller than one patch: image size {h} x {w}, patch_size 7 x 7"):
        _SMALL(torch.zeros(1, 1, h, w))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(7, 60), w=st.integers(7, 60))
def test_size_not_a_multiple_of_the_patch(h, w):
    x = torch.zeros(1, 1, h, w)
    if h % 7 or w % 7:
        with pytest.raises(ValueError, match="multiple of patch_size"):
            _SMALL(x)
    else:
        assert _SMALL(x).shape == (1, 10)


@settings(max_examples=20, deadline=None)
@given(c=st.integers(1, 5).filter(lambda c: c != 1), ndim=st.sampled_from([3, 4, 5]))
def test_wrong_channels_or_rank(c, ndim):
    shape = (1, c, 14, 14, 14)[:ndim] if ndim != 4 else (1, c, 14, 14)
    with pytest.raises(ValueError, match="shape"):
        _SMALL(torch.zeros(shape))
    with pytest.raises(ValueError, match="shape"):
        _SMALL(torch.zeros(1, 1, 14, 14, 14))
    with pytest.raises(ValueError, match="floating"):
        _SMALL(torch.zeros(1, 1, 14, 14, dtype=torch.long))


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(1, 64), heads=st.integers(1, 16))
def test_heads_must_divide_dim(dim, heads):
    if dim % heads:
        with pytest.raises(ValueError, match="heads must divide dim"):
            ViT(image_size=7, patch_size=7, dim=dim, depth=1, heads=heads)
    else:
        assert ViT(image_size=7, patch_size=7, dim=dim, depth=1, heads=heads).dim == dim


@settings(max_examples=20, deadline=None)
@given(pool=st.text(max_size=6).filter(lambda s: s not in ("cls", "mean")))
def test_bad_pool(pool):
    with pytest.raises(ValueError, match="pool"):
        ViT(image_size=7, patch_size=7, dim=4, depth=1, heads=1, pool=pool)


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": 30}, "image_size must be divisible by patch_size"),
    ({"image_size": (28, 28, 28)}, "image_size"),
    ({"patch_size": 0}, "patch_size"),
    ({"patch_size": (7, 7.0)}, "patch_size"),
    ({"spatial_dims": 1}, "spatial_dims"),
    ({"dim": 0}, "dim"),
    ({"depth": 0}, "depth"),
    ({"mlp_ratio": 0}, "mlp_ratio"),
    ({"dropout": 1.0}, "dropout"),
    ({"num_classes": 0}, "num_classes"),
    ({"in_channels": True}, "in_channels"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _tiny(**kwargs)


@settings(max_examples=20, deadline=None)
@given(ratio=st.one_of(st.floats(-5, -1e-3), st.floats(1.0, 5.0)))
def test_bad_discard_ratio(ratio):
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_rollout([torch.full((1, 1, 5, 5), 0.2)], discard_ratio=ratio)


def test_bad_rollout_arguments():
    a = torch.full((1, 1, 5, 5), 0.2)
    with pytest.raises(ValueError, match="attentions"):
        attention_rollout([])
    with pytest.raises(ValueError, match="attentions"):
        attention_rollout(a)
    with pytest.raises(ValueError, match="attentions"):
        attention_rollout([a, torch.full((1, 1, 10, 10), 0.1)])
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout([a], head_fusion="median")
    with pytest.raises(ValueError, match="grid must be given"):
        attention_rollout([torch.full((1, 1, 4, 4), 0.25)])
    with pytest.raises(ValueError, match="grid"):
        attention_rollout([a], grid=(2, 3))
    with pytest.raises(ValueError, match="size"):
        attention_rollout([a], size=(8, 8, 8))


# ------------------------------------------------------------------------------ registry
def test_registered_variants_and_options():
    tiny = create_model("vit_tiny", num_classes=3, in_channels=2, image_size=32, patch_size=8, pool="mean",
                        dropout=0.1, seed=0)
    assert (tiny.dim, tiny.depth, tiny.heads, tiny.grid_size, tiny.pool) == (64, 4, 4, (4, 4), "mean")
    assert tiny.eval()(_rand(1, 2, 32, 32)).shape == (1, 3)
    small = create_model("vit_small", seed=0)
    assert (small.dim, small.depth, small.heads, small.patch_size) == (128, 6, 4, (4, 4))
    assert small.num_patches == 49
    vol = create_model("vit_tiny", spatial_dims=3, image_size=(14, 28, 28), seed=0)
    assert vol.grid_size == (2, 4, 4)
