"""Test support: small segment-anything reference SAMs and loading them into ours.

Imported by path from the SAM predictor and automatic-mask tests (not a test module).
segment-anything is imported lazily, inside the functions, through pytest.importorskip.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch


def reference_sam(*, img_size=128, dim=32, depth=2, heads=2, global_attn=(1,), window=4,
                  prompt_dim=32, mlp_dim=64, seed=0):
    """A segment-anything Sam of a small size, weights perturbed so that no table is zero."""
    modeling = pytest.importorskip("segment_anything.modeling")
    torch.manual_seed(seed)
    grid = img_size // 16
    sam = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=depth, embed_dim=dim, img_size=img_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads, patch_size=16,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=list(global_attn),
            window_size=window, out_chans=prompt_dim),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=prompt_dim,
                                                   mlp_dim=mlp_dim, num_heads=8),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=prompt_dim),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    with torch.no_grad():
        for p in sam.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return sam.eval()


def load_ours(ref, path):
    """Save ``ref``'s state dict to ``path`` and load it with load_sam_checkpoint."""
    from mlimaging.models.sam import load_sam_checkpoint

    torch.save(ref.state_dict(), path)
    return load_sam_checkpoint(path)
