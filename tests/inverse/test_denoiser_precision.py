"""default_denoiser / train_denoiser with bfloat16 forward passes and channels_last training."""

from __future__ import annotations

import pytest
import torch

from mlimaging.inverse._denoisers import DnCNN, default_denoiser, grow_dncnn, train_denoiser

TINY = dict(depth=2, features=4, patches=16, epochs=1, patch_size=8, batch_size=16, images=["coins"])


def test_old_settings_keep_their_cache_key(tmp_path):
    # the file name the code before the precision option gave these settings: unset options stay out of the hash
    default_denoiser("dncnn", cache_dir=tmp_path, **TINY)
    default_denoiser("dncnn", cache_dir=tmp_path, precision=None, channels_last=None, **TINY)
    assert [p.name for p in tmp_path.glob("*.pt")] == ["inverse_dncnn_v3_b319efc5ec36.pt"]


def test_bf16_channels_last_training_gets_its_own_cache_entry_and_float32_weights(tmp_path):
    fp32 = default_denoiser("dncnn", cache_dir=tmp_path, **TINY)
    bf16 = default_denoiser("dncnn", cache_dir=tmp_path, precision="bf16", channels_last=True, **TINY)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert bf16.meta["settings"]["precision"] == "bf16" and bf16.meta["settings"]["channels_last"] is True
    for p, q in zip(fp32.state_dict().values(), bf16.state_dict().values(), strict=True):
        assert q.dtype == torch.float32 and q.is_contiguous()
        assert torch.isfinite(q).all() and not torch.equal(p, q)  # trained, and not in float32
    again = default_denoiser("dncnn", cache_dir=tmp_path, precision="bf16", channels_last=True, **TINY)
    for p, q in zip(bf16.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q)  # loaded from the cache


def test_train_denoiser_bf16_channels_last_lowers_the_loss_and_returns_a_contiguous_net():
    net = DnCNN(depth=3, features=8, sigma_input=True, norm="none", bias=False, seed=0)
    trained, hist = train_denoiser(net, images=["coins"], patch_size=16, patches=64, epochs=3, batch_size=16,
                                   val_patches=16, lr=3e-3, precision="bf16", channels_last=True)
    assert hist["loss"][-1] < hist["loss"][0]
    assert all(p.is_contiguous() and p.dtype == torch.float32 for p in trained.parameters())
    x = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert trained(x, 0.05).dtype == torch.float32


@pytest.mark.parametrize("bad", [dict(precision="fp16"), dict(precision=16), dict(channels_last="yes")])
def test_default_denoiser_rejects_bad_precision_settings(tmp_path, bad):
    with pytest.raises(ValueError, match="precision|channels_last"):
        default_denoiser("dncnn", cache_dir=tmp_path, **TINY, **bad)


# -- growing a trained DnCNN into a larger one --------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("small", "big"), [((3, 4), (3, 4)), ((3, 4), (7, 4)), ((4, 6), (4, 9)), ((5, 6), (9, 11))])
def test_grow_dncnn_preserves_the_function(small, big, bias):
    s = DnCNN(depth=small[0], features=small[1], norm="none", bias=bias, sigma_input=True, seed=0)
    with torch.no_grad():  # a non-trivial start: random weights of a realistic size
        for p in s.parameters():
            p.mul_(3.0)
    b = grow_dncnn(s, DnCNN(depth=big[0], features=big[1], norm="none", bias=bias, sigma_input=True, seed=1))
    x = torch.rand(2, 1, 13, 11, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(b(x, 0.05), s(x, 0.05), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in b.parameters()) >= sum(p.numel() for p in s.parameters())


@pytest.mark.parametrize(("kw", "match"), [(dict(depth=2), "at least"), (dict(features=3), "at least"),
                                           (dict(sigma_input=False), "same"), (dict(norm="batch", bias=True), "same")])
def test_grow_dncnn_refuses_a_smaller_or_different_network(kw, match):
    s = DnCNN(depth=3, features=4, norm="none", bias=False, sigma_input=True, seed=0)
    args = {**dict(depth=3, features=4, norm="none", bias=False, sigma_input=True), **kw}
    with pytest.raises(ValueError, match=match):
        grow_dncnn(s, DnCNN(**args))


def test_default_denoiser_warm_start_from_a_smaller_dncnn_grows_it(tmp_path):
    small_kw = {**TINY, "norm": "none", "bias": False}
    small = default_denoiser("dncnn", cache_dir=tmp_path, **small_kw)
    # a vanishing learning rate: the grown network still computes the small one's function
    big = default_denoiser("dncnn", cache_dir=tmp_path, **{**small_kw, "depth": 4, "features": 6, "lr": 1e-12,
                                                            "warm_start": small_kw})
    assert (big.depth, big.features) == (4, 6)
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(big(x, 0.05), small(x, 0.05), atol=1e-5, rtol=1e-4)


# -- the U-Net denoiser takes the same training options ---------------------------------------------------
TINY_UNET = dict(features=[4, 8], blocks=1, patches=16, epochs=1, patch_size=8, batch_size=16)


def test_unet_old_settings_keep_their_cache_key(tmp_path):
    # the file name the code before the unet's optional settings gave these settings
    default_denoiser("unet", cache_dir=tmp_path, **TINY_UNET)
    default_denoiser("unet", cache_dir=tmp_path, sigma_sampling=None, warm_start=None, images=None, precision=None,
                     channels_last=None, **TINY_UNET)
    assert [p.name for p in tmp_path.glob("*.pt")] == ["inverse_unet_v3_2e34bacbf72b.pt"]


def test_unet_trains_on_chosen_images_with_log_sigma_bf16_and_continues_from_a_warm_start(tmp_path):
    kw = {**TINY_UNET, "images": ["coins"], "sigma": [0.01, 0.2], "sigma_sampling": "log", "precision": "bf16",
          "channels_last": True}
    first = default_denoiser("unet", cache_dir=tmp_path, **kw)
    assert first.meta["images"] == ["coins"] and first.meta["settings"]["sigma_sampling"] == "log"
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in first.parameters())
    # a vanishing learning rate: the continued network still computes the first one's function
    more = default_denoiser("unet", cache_dir=tmp_path, **{**kw, "seed": 1, "lr": 1e-12, "warm_start": kw})
    assert len(list(tmp_path.glob("*.pt"))) == 2
    x = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(more(x, 0.05), first(x, 0.05), atol=1e-5, rtol=1e-4)
    assert more.meta["warm_start_cpu_seconds"] == pytest.approx(first.meta["cpu_seconds"])
    with pytest.raises(ValueError, match="sigma_sampling"):
        default_denoiser("unet", cache_dir=tmp_path, **{**kw, "sigma_sampling": "cubic"})
