"""MAE: the loss counts masked patches only, the encoder sees visible patches only, training and resume."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from mlimaging.models import ViT, create_model
from mlimaging.selfsupervised.base import SelfSupervisedStep
from mlimaging.selfsupervised.mae import MAE, masked_patch_loss
from mlimaging.selfsupervised.masking import patchify, unpatchify
from mlimaging.training import fit

TINY = dict(image_size=16, patch_size=4, encoder_dim=16, encoder_depth=1, encoder_heads=2, decoder_dim=8,
            decoder_depth=1, decoder_heads=2)


def blobs(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth images (one Gaussian blob each): a reconstruction task a tiny MAE can learn."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * size
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    d2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 18.0)[:, None]


def make(seed: int = 0, **kw) -> MAE:
    torch.manual_seed(seed)
    return MAE(**{**TINY, **kw})


def test_shapes_encoder_and_feature_dim():
    mae = make()
    x = blobs(3)
    pred, mask = mae.forward_masked(x, generator=torch.Generator().manual_seed(0))
    assert pred.shape == (3, 16, 16) and mask.shape == (3, 16)
    assert (mask.sum(dim=1) == 12).all()
    assert mae.encoder(x).shape == (3, 16) and mae.feature_dim == 16 == mae.encoder.feature_dim
    assert mae(x).shape == (3, 16)
    # the features are the mean patch token after the final norm, every patch visible
    vit = mae.encoder
    z = vit.patch_embed(x) + vit.pos_embed[:, 1:]
    z = torch.cat([(vit.cls_token + vit.pos_embed[:, :1]).expand(3, -1, -1), z], dim=1)
    for block in vit.blocks:
        z, _ = block(z)
    torch.testing.assert_close(mae.encoder(x), vit.norm(z)[:, 1:].mean(dim=1))


def test_loss_by_hand():
    mae = make(norm_pix_loss=False)
    x = blobs(2)
    pred, mask = mae.forward_masked(x, generator=torch.Generator().manual_seed(4))
    patches = patchify(x, 4)
    per = [((pred[b, n] - patches[b, n]) ** 2).mean() for b in range(2) for n in range(16) if mask[b, n]]
    expected = torch.stack(per).mean()
    torch.testing.assert_close(mae.ssl_loss(x, generator=torch.Generator().manual_seed(4)), expected)


def test_norm_pix_targets_by_hand():
    pred = torch.zeros(1, 1, 4)
    target = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    mean, var = 2.5, 5.0 / 3.0  # unbiased variance of 1..4
    normed = (target - mean) / (var + 1e-6) ** 0.5
    loss = masked_patch_loss(pred, target, torch.ones(1, 1, dtype=torch.bool), norm_pix_loss=True)
    torch.testing.assert_close(loss, normed.pow(2).mean())


def test_loss_ignores_visible_patches():
    mae = make(norm_pix_loss=True)
    x = blobs(4, seed=1)
    pred, mask = mae.forward_masked(x, generator=torch.Generator().manual_seed(2))
    target = patchify(x, 4)
    # any change of the targets (pixels) and the predictions at visible patches: same loss
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(3))
    visible = ~mask[..., None]
    changed_target = torch.where(visible, target + noise, target)
    changed_pred = torch.where(visible, pred - 5 * noise, pred)
    base = masked_patch_loss(pred, target, mask, norm_pix_loss=True)
    torch.testing.assert_close(masked_patch_loss(changed_pred, changed_target, mask, norm_pix_loss=True), base,
                               rtol=0, atol=0)
    # through the model: the gradient of the loss reaches no visible patch's prediction
    pred = pred.detach().requires_grad_(True)
    masked_patch_loss(pred, target, mask, norm_pix_loss=True).backward()
    assert (pred.grad[~mask] == 0).all() and (pred.grad[mask] != 0).any()


def test_encoder_sees_only_visible_patches():
    # changing the pixels of masked patches, with the same generator, changes no prediction
    mae = make()
    x = blobs(3, seed=2)
    pred, mask = mae.forward_masked(x, generator=torch.Generator().manual_seed(7))
    patches = patchify(x, 4)
    scribble = torch.rand(patches.shape, generator=torch.Generator().manual_seed(8))
    x2 = unpatchify(torch.where(mask[..., None], scribble, patches), 4, 16, 1)
    assert not torch.equal(x, x2)
    pred2, mask2 = mae.forward_masked(x2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(pred2, pred, rtol=0, atol=0)


def test_reconstruct_images_for_figures():
    mae = make(norm_pix_loss=True).train()
    x = blobs(2, seed=3)
    masked, recon, mask = mae.reconstruct(x, generator=torch.Generator().manual_seed(0))
    assert masked.shape == recon.shape == mask.shape == x.shape and mask.dtype == torch.bool
    assert mae.training  # the mode is restored
    assert float(mask.float().mean()) == pytest.approx(0.75)
    assert torch.equal(recon[~mask], x[~mask]) and torch.equal(masked[~mask], x[~mask])
    assert (masked[mask] == 0).all()


def test_a_models_vit_can_be_pretrained():
    vit = create_model("vit_tiny", image_size=16, patch_size=4)
    mae = MAE(image_size=16, patch_size=4, encoder=vit, decoder_dim=8, decoder_depth=1, decoder_heads=2)
    assert mae.encoder is vit and mae.feature_dim == 64
    assert mae.encoder(blobs(2)).shape == (2, 64)
    with pytest.raises(ValueError, match="encoder"):
        MAE(image_size=16, patch_size=4, encoder=torch.nn.Linear(2, 2))


def fit_mae(epochs, **kw):
    mae = make(seed=kw.pop("model_seed", 0))
    h = fit(mae, TensorDataset(blobs(64)), step=SelfSupervisedStep(seed=0), metrics=(), batch_size=16,
            optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3), epochs=epochs, progress=False, **kw)
    return mae, h


def test_fit_lowers_the_loss():
    _, h = fit_mae(4)
    assert h["loss"][-1] < 0.7 * h["loss"][0]


def test_resume_is_exact(tmp_path):
    ref, href = fit_mae(3)
    fit_mae(2, checkpoint_dir=tmp_path)
    mae, h = fit_mae(3, checkpoint_dir=tmp_path, resume=True, model_seed=5)
    assert h["loss"] == href["loss"]
    sa, sb = mae.state_dict(), ref.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@settings(max_examples=25, deadline=None)
@given(ratio=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, allow_nan=False),
                       st.just(float("nan")), st.none()))
def test_mask_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(ValueError, match="ratio"):
        MAE(**{**TINY, "mask_ratio": ratio})


@settings(max_examples=25, deadline=None)
@given(size=st.integers(5, 40), patch=st.integers(2, 8))
def test_image_size_not_divisible_by_patch_is_refused(size, patch):
    kw = {**TINY, "image_size": size, "patch_size": patch}
    if size % patch == 0 and (size // patch) ** 2 >= 4:
        assert MAE(**kw).num_patches == (size // patch) ** 2
    elif size % patch:
        with pytest.raises(ValueError, match="divisible by patch_size"):
            MAE(**kw)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="decoder_heads must divide decoder_dim"):
        MAE(**{**TINY, "decoder_dim": 10, "decoder_heads": 4})
    with pytest.raises(ValueError, match="decoder_depth"):
        MAE(**{**TINY, "decoder_depth": 0})
    with pytest.raises(ValueError, match="norm_pix_loss"):
        MAE(**{**TINY, "norm_pix_loss": 1})
    with pytest.raises(ValueError, match="at least one patch visible"):
        MAE(**{**TINY, "mask_ratio": 0.99})
    with pytest.raises(ValueError, match="mask must mark at least one"):
        masked_patch_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool))
    assert isinstance(make().encoder, ViT)
