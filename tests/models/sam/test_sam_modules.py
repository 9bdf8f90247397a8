"""SAM modules: worked examples, invariants, the segment-anything oracle, bad prompts."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlimaging.models import create_model, model_info
from mlimaging.models.sam import SAM, SAM_CONFIGS, SAMConfig, load_sam_checkpoint
from mlimaging.models.sam.image_encoder import merge_windows, relative_position_bias, split_windows
from mlimaging.models.sam.prompt_encoder import check_prompts

TINY = SAM_CONFIGS["tiny"]


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every weight off its init (zero-initialised position tables, LayerNorm gains too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _tiny_sam(seed: int = 0, **changes) -> SAM:
    torch.manual_seed(seed)
    return _randomise(SAM(dataclasses.replace(TINY, **changes)), seed).eval()


def _rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ 1. worked examples
def test_tiny_config_and_registry():
    info = model_info("sam_tiny")
    assert info.prompted and info.input_shape == (3, 128, 128)
    sam = create_model("sam_tiny", seed=0)
    assert isinstance(sam, SAM) and sam.config == TINY and sam.img_size == 128 and sam.mask_threshold == 0.0
    assert TINY.grid_size == 8 and TINY.low_res_size == 32
    assert [b.window for b in sam.image_encoder.blocks] == [4, 0, 4, 0]
    # rel-pos tables: 2 * 4 - 1 rows in windowed blocks, 2 * 8 - 1 in global ones; head width 64 / 4
    assert [tuple(b.attn.rel_pos_h.shape) for b in sam.image_encoder.blocks] == [(7, 16), (15, 16)] * 2
    assert "pixel_mean" not in sam.state_dict() and sam.pixel_mean.shape == (3, 1, 1)


def test_tiny_parameter_count_by_hand():
    """D = 64, depth 4, MLP 256; C = 128, mask branch 16; decoder MLP 512, cross width 64; IoU 128."""
    d, c = 64, 128
    patch = 3 * 16 * 16 * d + d
    pos = 8 * 8 * d
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * 256 + 256) + (256 * d + d)
    rel = 2 * (7 * 16) * 2 + 2 * (15 * 16) * 2  # two windowed, two global blocks, h and w tables
    neck = d * c + 2 * c + 9 * c * c + 2 * c
    encoder = patch + pos + 4 * block + rel + neck
    prompt = 4 * c + c + c  # point types, not-a-point, no-mask (the Gaussian matrix is a buffer)
    # mask branch 1 -> 4 -> 16 channels (2 x 2 convs, LayerNorm2d), 1 x 1 conv 16 -> C
    prompt += (4 * 4 + 4) + 2 * 4 + (4 * 16 * 4 + 16) + 2 * 16 + (16 * c + c)
    self_attn = 4 * (c * c + c)
    cross = 3 * (c * 64 + 64) + (64 * c + c)
    layer = self_attn + 2 * cross + (c * 512 + 512) + (512 * c + c) + 4 * 2 * c
    transformer = 2 * layer + cross + 2 * c
    upscale = (c * 32 * 4 + 32) + 2 * 32 + (32 * 16 * 4 + 16)
    hyper = 4 * (2 * (c * c + c) + (c * 16 + 16))
    iou = (c * 128 + 128) + (128 * 128 + 128) + (128 * 4 + 4)
    decoder = transformer + c + 4 * c + upscale + hyper + iou
    sam = SAM("tiny")
    assert sum(p.numel() for p in sam.image_encoder.parameters()) == encoder
    assert sum(p.numel() for p in sam.prompt_encoder.parameters()) == prompt
    assert sum(p.numel() for p in sam.mask_decoder.parameters()) == decoder
    assert encoder + prompt + decoder == 1_170_432


def test_relative_position_bias_by_hand():
    """bias[(i, j), (k, l)] = q_ij . Rh[i - k + H - 1] + q_ij . Rw[j - l + W - 1]."""
    h, w, d = 2, 3, 4
    q = _rand(2, h * w, d, seed=3)
    rh, rw = _rand(2 * h - 1, d, seed=4), _rand(2 * w - 1, d, seed=5)
    bias = relative_position_bias(q, rh, rw, (h, w))
    expected = torch.empty(2, h * w, h * w)
    for i in range(h):
        for j in range(w):
            for k in range(h):
                for col in range(w):
                    qij = q[:, i * w + j]
                    expected[:, i * w + j, k * w + col] = qij @ rh[i - k + h - 1] + qij @ rw[j - col + w - 1]
    torch.testing.assert_close(bias, expected)


def test_windows_pad_and_round_trip():
    x = _rand(2, 5, 7, 3)
    windows, padded = split_windows(x, 4)
    assert padded == (8, 8) and windows.shape == (2 * 2 * 2, 4, 4, 3)
    torch.testing.assert_close(windows[0], x[0, :4, :4])
    assert torch.all(windows[3, 1:] == 0) and torch.all(windows[3, :, 3:] == 0)  # padding of window (1, 1)
    assert torch.equal(merge_windows(windows, 4, padded, (5, 7)), x)


def test_point_encoding_uses_pixel_centres():
    """A point at pixel (x, y) is encoded at ((x + 0.5) / S, (y + 0.5) / S), plus its label's embedding."""
    sam = _tiny_sam()
    pe, s = sam.prompt_encoder.pe_layer, TINY.img_size
    xy = torch.tensor([[[10.0, 100.0], [0.0, 0.0]]])
    tokens = sam.prompt_encoder.embed_points(xy, torch.tensor([[1, 0]]), pad=False)
    u = (xy + 0.5) / s
    expected = pe.encode(u) + torch.stack([sam.prompt_encoder.point_embeddings[1].weight[0],
                                           sam.prompt_encoder.point_embeddings[0].weight[0]])
    torch.testing.assert_close(tokens, expected)
    # a padding point is the not-a-point embedding alone, wherever it is
    pad = sam.prompt_encoder.embed_points(xy[:, :1], torch.tensor([[-1]]), pad=False)
    torch.testing.assert_close(pad[0, 0], sam.prompt_encoder.not_a_point_embed.weight[0])


def test_multimask_selects_outputs_1_to_3_and_single_output_0():
    sam = _tiny_sam()
    embeddings = sam.encode(sam.normalize_and_pad(_rand(1, 3, 128, 128) * 255))
    sparse, dense = sam.prompt_encoder(boxes=torch.tensor([[20.0, 30.0, 90.0, 100.0]]))
    with torch.no_grad():
        masks, iou = sam.mask_decoder.predict_all(embeddings, sam.prompt_encoder.get_dense_pe(), sparse, dense)
        multi, multi_iou = sam.decode(embeddings, boxes=torch.tensor([[20.0, 30.0, 90.0, 100.0]]))
        single, single_iou = sam.decode(embeddings, boxes=torch.tensor([[20.0, 30.0, 90.0, 100.0]]),
                                        multimask=False)
    assert masks.shape == (1, 4, 32, 32) and multi.shape == (1, 3, 32, 32) and single.shape == (1, 1, 32, 32)
    torch.testing.assert_close(multi, masks[:, 1:])
    torch.testing.assert_close(multi_iou, iou[:, 1:])
    torch.testing.assert_close(single, masks[:, :1])
    torch.testing.assert_close(single_iou, iou[:, :1])


def test_normalize_and_pad():
    sam = SAM("tiny")
    x = _rand(2, 3, 128, 90) * 255
    out = sam.normalize_and_pad(x)
    assert out.shape == (2, 3, 128, 128)
    mean = torch.tensor(TINY.pixel_mean).view(3, 1, 1)
    std = torch.tensor(TINY.pixel_std).view(3, 1, 1)
    torch.testing.assert_close(out[..., :90], (x - mean) / std)
    assert torch.all(out[..., 90:] == 0)


# ------------------------------------------------------------------------------ 2. invariants
def test_one_window_over_the_whole_grid_is_global_attention():
    """window = grid: one window, no padding, so the block computes global attention."""
    windowed = _tiny_sam(window_size=8)
    global_ = SAM(dataclasses.replace(TINY, global_attn_indexes=(0, 1, 2, 3)))
    global_.load_state_dict(windowed.state_dict())
    x = sam_input = windowed.normalize_and_pad(_rand(1, 3, 128, 128) * 255)
    with torch.no_grad():
        torch.testing.assert_close(windowed.encode(x), global_.eval().encode(sam_input), atol=1e-5, rtol=1e-5)


def test_one_image_shared_by_many_prompts_equals_repeated_embeddings():
    sam = _tiny_sam()
    with torch.no_grad():
        embeddings = sam.encode(sam.normalize_and_pad(_rand(1, 3, 128, 128) * 255))
        points = torch.tensor([[[10.0, 20.0]], [[64.0, 64.0]], [[120.0, 5.0]]])
        labels = torch.ones(3, 1)
        shared = sam.decode(embeddings, points=points, point_labels=labels)
        repeated = sam.decode(embeddings.expand(3, -1, -1, -1), points=points, point_labels=labels)
        one = sam.decode(embeddings, points=points[1:2], point_labels=labels[1:2])
    for a, b in zip(shared, repeated, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(shared[0][1:2], one[0], atol=1e-5, rtol=1e-5)


def test_padding_points_ignore_their_coordinates():
    sam = _tiny_sam()
    embeddings = torch.randn(1, 128, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([[1, -1]])
    with torch.no_grad():
        a = sam.decode(embeddings, points=torch.tensor([[[30.0, 40.0], [0.0, 0.0]]]), point_labels=labels)
        b = sam.decode(embeddings, points=torch.tensor([[[30.0, 40.0], [99.0, 7.0]]]), point_labels=labels)
    torch.testing.assert_close(a, b)


def test_decode_is_differentiable_end_to_end():
    sam = _tiny_sam().train()
    images = sam.normalize_and_pad(_rand(2, 3, 128, 128) * 255)
    logits, iou = sam(images, boxes=torch.tensor([[10.0, 10.0, 60.0, 70.0], [0.0, 5.0, 127.0, 90.0]]),
                      mask_input=torch.zeros(2, 1, 32, 32), multimask=False)
    (logits.mean() + iou.mean()).backward()
    no_grad = [n for n, p in sam.named_parameters() if p.grad is None]
    # the single-mask output uses mask token 0: the other hypernetworks and the point labels get no gradient
    assert all(n.startswith(("mask_decoder.output_hypernetworks_mlps.", "prompt_encoder.point_embeddings.",
                             "prompt_encoder.not_a_point_embed", "prompt_encoder.no_mask_embed"))
               for n in no_grad), no_grad
    assert sam.image_encoder.blocks[0].attn.rel_pos_h.grad.abs().sum() > 0
    assert sam.image_encoder.patch_embed.proj.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ 3. oracle: segment-anything
def _reference_like(cfg: SAMConfig):
    """segment-anything's Sam assembled from its modules with the sizes of ``cfg`` (any img_size)."""
    modeling = pytest.importorskip("segment_anything.modeling")
    g = cfg.grid_size
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.encoder_dim, depth=cfg.encoder_depth,
            num_heads=cfg.encoder_heads, mlp_ratio=cfg.mlp_ratio, out_chans=cfg.prompt_dim, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=cfg.window_size,
            global_attn_indexes=cfg.global_attn_indexes),
        prompt_encoder=modeling.PromptEncoder(embed_dim=cfg.prompt_dim, image_embedding_size=(g, g),
                                              input_image_size=(cfg.img_size, cfg.img_size),
                                              mask_in_chans=cfg.mask_in_chans),
        mask_decoder=modeling.MaskDecoder(
            transformer_dim=cfg.prompt_dim, num_multimask_outputs=cfg.num_multimask_outputs,
            transformer=modeling.TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=cfg.prompt_dim,
                                                   num_heads=cfg.decoder_heads, mlp_dim=cfg.decoder_mlp_dim),
            iou_head_depth=cfg.iou_head_depth, iou_head_hidden_dim=cfg.iou_head_hidden_dim),
    ).eval()


def _prompt_sets(size: int, low_res: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    points = torch.rand(2, 3, 2, generator=g) * (size - 1)
    labels = torch.tensor([[1, 0, 1], [1, -1, 0]])
    corners = torch.rand(2, 2, 2, generator=g) * (size - 1)
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    masks = torch.randn(2, 1, low_res, low_res, generator=g)
    return [
        {"points": points, "point_labels": labels},
        {"boxes": boxes},
        {"mask_input": masks},
        {"points": points, "point_labels": labels, "boxes": boxes},
        {"points": points[:, :1], "point_labels": labels[:, :1], "boxes": boxes, "mask_input": masks},
    ]


def _reference_prompts(ref, prompts: dict) -> tuple[torch.Tensor, torch.Tensor]:
    pts = (prompts["points"], prompts["point_labels"]) if "points" in prompts else None
    return ref.prompt_encoder(points=pts, boxes=prompts.get("boxes"), masks=prompts.get("mask_input"))


def _compare(ref, ours: SAM, image: torch.Tensor, *,
             sets: tuple[tuple[int, tuple[bool, ...]], ...] = tuple((i, (True, False)) for i in range(5))) -> None:
    with torch.no_grad():
        ref_embedding = ref.image_encoder(ref.preprocess(image))
        embedding = ours.encode(ours.normalize_and_pad(image))
        torch.testing.assert_close(embedding, ref_embedding, atol=1e-4, rtol=0)
        torch.testing.assert_close(ours.prompt_encoder.get_dense_pe(), ref.prompt_encoder.get_dense_pe(),
                                   atol=1e-5, rtol=0)
        all_sets = _prompt_sets(ours.img_size, ours.config.low_res_size)
        for i, modes in sets:
            prompts = all_sets[i]
            ref_sparse, ref_dense = _reference_prompts(ref, prompts)
            sparse, dense = ours.prompt_encoder(**prompts)
            torch.testing.assert_close(sparse, ref_sparse, atol=1e-5, rtol=0)
            torch.testing.assert_close(dense, ref_dense, atol=1e-5, rtol=0)
            for multimask in modes:
                ref_logits, ref_iou = ref.mask_decoder(ref_embedding, ref.prompt_encoder.get_dense_pe(),
                                                       ref_sparse, ref_dense, multimask)
                logits, iou = ours.decode(embedding, multimask=multimask, **prompts)
                assert logits.shape == ref_logits.shape == (2, 3 if multimask else 1, *ref_logits.shape[2:])
                torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=0)
                torch.testing.assert_close(iou, ref_iou, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def official_small(tmp_path_factory):
    """segment-anything's own builder (1024 px, official decoder) with a 2-block, 32-wide encoder."""
    build_sam = pytest.importorskip("segment_anything.build_sam")
    torch.manual_seed(0)
    ref = _randomise(build_sam._build_sam(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
                                          encoder_global_attn_indexes=[1]), seed=1)
    path = tmp_path_factory.mktemp("sam") / "small_official.pth"
    torch.save(ref.state_dict(), path)
    return ref, load_sam_checkpoint(path)


def test_official_builder_same_outputs(official_small):
    ref, ours = official_small
    assert ours.config == dataclasses.replace(SAM_CONFIGS["vit_b"], encoder_dim=32, encoder_depth=2,
                                              encoder_heads=2, global_attn_indexes=(1,))
    image = _rand(1, 3, 1024, 700, seed=11) * 255  # a portrait image: the encoder input is padded
    # 1024 px decodes are slow on CPU: points alone (with the padding point) for three masks, and
    # point + box + mask for one; every prompt kind and both outputs are compared at 128 px below
    _compare(ref, ours, image, sets=((0, (True,)), (4, (False,))))


@pytest.mark.parametrize("changes", [{}, {"window_size": 3, "global_attn_indexes": (2,)}],
                         ids=["tiny", "padded-windows"])
def test_tiny_configuration_same_outputs(changes, tmp_path):
    cfg = dataclasses.replace(TINY, **changes)  # window 3 on an 8 x 8 grid: padded to 9 x 9
    torch.manual_seed(3)
    ref = _randomise(_reference_like(cfg), seed=4)
    torch.save(ref.state_dict(), tmp_path / "tiny.pth")
    ours = load_sam_checkpoint(tmp_path / "tiny.pth")
    assert ours.config == cfg
    _compare(ref, ours, _rand(1, 3, 96, 128, seed=5) * 255)


# ------------------------------------------------------------------------------ 4. bad input
_SAM = SAM("tiny").eval()
_EMB = torch.zeros(1, 128, 8, 8)


def _shapes(valid):
    """Shapes (up to 5 axes of size 0..5) for which ``valid(shape)`` is False."""
    return st.lists(st.integers(0, 5), min_size=1, max_size=5).map(tuple).filter(lambda s: not valid(s))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_shapes(lambda s: len(s) == 3 and s[-1] == 2))
def test_bad_points_shape(shape):
    with pytest.raises(ValueError, match="points"):
        _SAM.decode(_EMB, points=torch.zeros(shape), point_labels=torch.ones(shape[:2]))


@settings(max_examples=25, deadline=None)
@given(shape=_shapes(lambda s: s == (2, 3)))
def test_bad_point_labels_shape(shape):
    with pytest.raises(ValueError, match="point_labels"):
        _SAM.decode(_EMB, points=torch.zeros(2, 3, 2), point_labels=torch.ones(shape))


@settings(max_examples=25, deadline=None)
@given(shape=_shapes(lambda s: len(s) == 2 and s[-1] == 4))
def test_bad_boxes_shape(shape):
    with pytest.raises(ValueError, match="boxes"):
        _SAM.decode(_EMB, boxes=torch.zeros(shape))


@settings(max_examples=25, deadline=None)
@given(shape=_shapes(lambda s: len(s) == 4 and s[1:] == (1, 32, 32)))
def test_bad_mask_input_shape(shape):
    with pytest.raises(ValueError, match="mask_input"):
        _SAM.decode(_EMB, mask_input=torch.zeros(shape))


@settings(max_examples=20, deadline=None)
@given(x0=st.floats(0, 127), y0=st.floats(0, 127), dx=st.floats(0.01, 50), dy=st.floats(-50, 50))
def test_inverted_boxes(x0, y0, dx, dy):
    box = torch.tensor([[x0 + dx, y0, x0, y0 + dy]])  # x1 < x0
    with pytest.raises(ValueError, match="boxes must satisfy x0 <= x1"):
        _SAM.decode(_EMB, boxes=box)


@pytest.mark.parametrize("label", [2, 3, -2, 0.5])
def test_bad_point_label_values(label):
    with pytest.raises(ValueError, match="point_labels must hold 1"):
        _SAM.decode(_EMB, points=torch.zeros(1, 1, 2), point_labels=torch.tensor([[label]]))


@pytest.mark.parametrize("kwargs, name", [
    ({"points": torch.zeros(1, 1, 2)}, "point_labels"),
    ({"point_labels": torch.ones(1, 1)}, "points"),
    ({"points": torch.full((1, 1, 2), float("nan")), "point_labels": torch.ones(1, 1)}, "points"),
    ({"boxes": torch.tensor([[0.0, 0.0, float("inf"), 4.0]])}, "boxes"),
    ({"mask_input": torch.zeros(1, 1, 32, 32, dtype=torch.long)}, "mask_input"),
    ({"boxes": [[0, 0, 4, 4]]}, "boxes"),
    ({"boxes": torch.zeros(2, 4), "mask_input": torch.zeros(3, 1, 32, 32)}, "batch size"),
])
def test_bad_prompt_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _SAM.decode(_EMB, **kwargs)


def test_bad_embeddings_and_images():
    with pytest.raises(ValueError, match=r"embeddings must have shape \(B, 128, 8, 8\)"):
        _SAM.decode(torch.zeros(1, 64, 8, 8))
    with pytest.raises(ValueError, match="embeddings must have batch 1 or the prompts' batch 3"):
        _SAM.decode(torch.zeros(2, 128, 8, 8), boxes=torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 128, 128\)"):
        _SAM.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="images must be at most 128 x 128"):
        _SAM.normalize_and_pad(torch.zeros(1, 3, 130, 64))
    with pytest.raises(ValueError, match="config must be"):
        SAM("vit_x")


@pytest.mark.parametrize("changes, name", [
    ({"img_size": 100}, "img_size"),
    ({"encoder_heads": 5}, "encoder_heads"),
    ({"global_attn_indexes": (4,)}, "global_attn_indexes"),
    ({"prompt_dim": 60}, "prompt_dim"),
    ({"mask_in_chans": 6}, "mask_in_chans"),
    ({"decoder_heads": 3}, "decoder_heads"),
    ({"window_size": 0}, "window_size"),
    ({"pixel_std": (1.0, 0.0, 1.0)}, "pixel_std"),
])
def test_bad_config(changes, name):
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(TINY, **changes)


def test_no_prompt_gives_the_no_mask_embedding_per_image():
    sparse, dense = _SAM.prompt_encoder(batch_size=2)
    assert sparse.shape == (2, 0, 128) and dense.shape == (2, 128, 8, 8)
    torch.testing.assert_close(dense[1, :, 3, 4], _SAM.prompt_encoder.no_mask_embed.weight[0])
    assert check_prompts(mask_size=32) is None
    logits, iou = _SAM.decode(torch.zeros(2, 128, 8, 8), multimask=False)
    assert logits.shape == (2, 1, 32, 32) and iou.shape == (2, 1)
    assert F.interpolate(logits, scale_factor=4).shape == (2, 1, 128, 128)
