"""default_denoiser / train_denoiser with bfloat16 forward passes and channels_last training."""

from __future__ import annotations

import pytest
import torch

from mlimaging.inverse._denoisers import DnCNN, default_denoiser, train_denoiser

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
