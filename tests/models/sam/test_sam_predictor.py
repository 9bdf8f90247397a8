"""SAMPredictor and SAM preprocessing: segment-anything's SamPredictor as the oracle.

Small reference SAMs with random weights are built with segment-anything's own modules, saved
as state dicts, loaded with ``load_sam_checkpoint``, and both predictors get the same image
and prompts: same masks, IoU predictions and low-resolution logits (atol 1e-4).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.models.sam.predictor import (
    SAMPredictor,
    postprocess_masks,
    preprocess_shape,
    resize_boxes,
    resize_coords,
    resize_longest_side,
    to_sam_rgb,
)

ATOL = 1e-4


# =========================================================================== helpers
def _reference():
    path = Path(__file__).with_name("_sam_reference.py")
    spec = importlib.util.spec_from_file_location("_sam_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_REF = _reference()


def _image() -> np.ndarray:
    """A non-square RGB uint8 photograph, smaller than the encoder (upsampled by PIL)."""
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[::6, ::5])  # (86, 103, 3)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    pytest.importorskip("segment_anything")
    ref = _REF.reference_sam()
    ours = _REF.load_ours(ref, tmp_path_factory.mktemp("sam") / "small.pth")
    return ref, ours


@pytest.fixture(scope="module")
def predictors(models):
    from segment_anything import SamPredictor

    ref, ours = models
    image = _image()
    p_ref = SamPredictor(ref)
    p_ref.set_image(image)
    p_ours = SAMPredictor(ours)
    p_ours.set_image(image)
    return p_ref, p_ours


def _assert_same(ours, ref, *, logits_ours=None, logits_ref=None):
    masks, iou, low = (np.asarray(v) if not isinstance(v, torch.Tensor) else v.numpy()
                       for v in ours)
    r_masks, r_iou, r_low = (np.asarray(v) if not isinstance(v, torch.Tensor) else v.numpy()
                             for v in ref)
    assert masks.shape == r_masks.shape and masks.dtype == r_masks.dtype
    np.testing.assert_allclose(iou, r_iou, atol=ATOL, rtol=0)
    np.testing.assert_allclose(low, r_low, atol=ATOL, rtol=0)
    if masks.dtype == bool:
        differ = masks != r_masks
        if differ.any():  # only where the reference logit is within rounding of the threshold
            assert logits_ref is not None, f"{differ.sum()} mask pixels differ"
            assert np.abs(np.asarray(logits_ref)[differ]).max() < ATOL
    else:
        np.testing.assert_allclose(masks, r_masks, atol=ATOL, rtol=0)


# =========================================================================== pure functions
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 3000), st.sampled_from([64, 128, 1024]))
def test_preprocess_shape_matches_reference(h, w, long_side):
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    expected = transforms.ResizeLongestSide.get_preprocess_shape(h, w, long_side)
    assert preprocess_shape(h, w, long_side) == expected


def test_preprocess_shape_by_hand():
    assert preprocess_shape(300, 400, 1024) == (768, 1024)
    assert preprocess_shape(1000, 3, 1024) == (1024, 3)  # 3.072 rounds to 3
    assert preprocess_shape(128, 128, 128) == (128, 128)


@pytest.mark.parametrize("shape", [(86, 103), (400, 600), (128, 50), (7, 9), (128, 128)])
def test_resize_longest_side_matches_reference(shape):
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    expected = transforms.ResizeLongestSide(128).apply_image(image)
    out = resize_longest_side(image, 128)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_resize_coords_and_boxes_match_reference():
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    t = transforms.ResizeLongestSide(1024)
    rng = np.random.default_rng(0)
    coords = rng.random((2, 5, 2)) * 300
    boxes = rng.random((4, 4)) * 300
    for size in [(300, 400), (77, 1000), (513, 512)]:
        np.testing.assert_array_equal(resize_coords(coords, size, 1024),
                                      t.apply_coords(coords, size))
        np.testing.assert_array_equal(resize_boxes(boxes, size, 1024),
                                      t.apply_boxes(boxes, size))
        np.testing.assert_array_equal(resize_boxes(torch.as_tensor(boxes[0]), size, 1024),
                                      t.apply_boxes(boxes[0], size))
    # inputs are not modified
    before = coords.copy()
    resize_coords(coords, (300, 400), 1024)
    np.testing.assert_array_equal(coords, before)


def test_postprocess_masks_matches_reference():
    modeling = pytest.importorskip("segment_anything.modeling")
    from types import SimpleNamespace

    fake = SimpleNamespace(image_encoder=SimpleNamespace(img_size=128))
    low = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = modeling.Sam.postprocess_masks(fake, low, (107, 128), (86, 103))
    out = postprocess_masks(low, img_size=128, input_size=(107, 128), original_size=(86, 103))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- to_sam_rgb
def test_to_sam_rgb_keeps_rgb_uint8():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_sam_rgb(image), image)
    np.testing.assert_array_equal(to_sam_rgb(torch.as_tensor(image)), image)


def test_to_sam_rgb_gray_uint8_is_replicated_unchanged():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = to_sam_rgb(gray)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    np.testing.assert_array_equal(to_sam_rgb(gray[..., None]), out)


def test_to_sam_rgb_window_by_hand():
    ct = np.array([[-1000.0, -160.0, 40.0], [240.0, 3000.0, 80.0]])
    out = to_sam_rgb(ct, window=(-160, 240))[..., 0]
    # (x + 160) / 400 * 255, clipped and rounded: 0, 0, 127.5 -> 128, 255, 255, 153
    np.testing.assert_array_equal(out, [[0, 0, 128], [255, 255, 153]])


def test_to_sam_rgb_robust_percentiles():
    rng = np.random.default_rng(1)
    mri = rng.normal(500.0, 50.0, size=(40, 40)).astype(np.uint16)
    mri[0, 0] = 60000  # one hot voxel does not set the window
    out = to_sam_rgb(mri)[..., 0]
    lo, hi = np.percentile(mri.astype(np.float64), [0.5, 99.5])
    expected = np.rint(np.clip((mri - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out[0, 0] == 255 and 100 < np.median(out) < 155


def test_to_sam_rgb_constant_and_binary_images():
    np.testing.assert_array_equal(to_sam_rgb(np.full((4, 4), 7.5)), np.zeros((4, 4, 3)))
    mask = np.zeros((50, 50), bool)
    mask[10, 10] = True  # below the 0.5 % tail: the percentiles coincide, min/max are used
    out = to_sam_rgb(mask)
    assert out[10, 10, 0] == 255 and out.sum() == 3 * 255


@pytest.mark.parametrize(
    ("image", "window", "match"),
    [
        (np.array([[0.0, np.nan]]), None, "finite"),
        (np.array([[0.0, np.inf]]), (0, 1), "finite"),
        (np.zeros((3, 4, 5)), None, "shape"),
        (np.zeros((2, 3, 4, 5)), None, "shape"),
        (np.zeros((0, 4)), None, "empty"),
        (np.zeros((4, 4), complex), None, "real"),
        (np.zeros((4, 4)), (1, 0), "window"),
        (np.zeros((4, 4)), (0, float("nan")), "window"),
        (np.zeros((4, 4)), "ab", "window"),
    ],
)
def test_to_sam_rgb_bad_input(image, window, match):
    with pytest.raises(ValueError, match=match):
        to_sam_rgb(image, window=window)


# =========================================================================== oracle: predict
def _ref_logits(p_ref, **kw):
    """The reference's upsampled logits for the same prompts (to locate threshold ties)."""
    return p_ref.predict(**kw, return_logits=True)[0]


def test_set_image_sizes_and_embedding(predictors):
    p_ref, p_ours = predictors
    assert p_ours.original_size == tuple(p_ref.original_size)
    assert p_ours.input_size == tuple(p_ref.input_size)
    torch.testing.assert_close(p_ours.features, p_ref.features, atol=ATOL, rtol=0)


@pytest.mark.parametrize("multimask", [True, False])
def test_point_prompts_match_reference(predictors, multimask):
    p_ref, p_ours = predictors
    for pts, labels in [([[50.0, 40.0]], [1]), ([[20.5, 70.0], [90.0, 10.0], [0.0, 85.0]], [1, 0, 1])]:
        kw = dict(point_coords=np.array(pts), point_labels=np.array(labels),
                  multimask_output=multimask)
        ref = p_ref.predict(**kw)
        ours = p_ours.predict(points=np.array(pts), point_labels=np.array(labels),
                              multimask=multimask)
        assert ours[0].shape == (3 if multimask else 1, 86, 103)
        _assert_same(ours, ref, logits_ref=_ref_logits(p_ref, **kw))


def test_box_and_mask_prompts_match_reference(predictors):
    p_ref, p_ours = predictors
    box = np.array([10.0, 15.0, 80.0, 70.0])
    kw = dict(box=box, multimask_output=False)
    ref = p_ref.predict(**kw)
    _assert_same(p_ours.predict(boxes=box, multimask=False), ref,
                 logits_ref=_ref_logits(p_ref, **kw))
    # box with a point, torch inputs
    kw = dict(point_coords=np.array([[40.0, 40.0]]), point_labels=np.array([0]), box=box)
    ours = p_ours.predict(points=torch.tensor([[40.0, 40.0]]), point_labels=torch.tensor([0]),
                          boxes=torch.as_tensor(box))
    _assert_same(ours, p_ref.predict(**kw), logits_ref=_ref_logits(p_ref, **kw))
    # a previous low-res output as mask prompt (the iterative refinement SAM describes)
    best = ref[2][[int(np.argmax(ref[1]))]]
    kw = dict(point_coords=np.array([[60.0, 30.0]]), point_labels=np.array([1]), mask_input=best)
    ours = p_ours.predict(points=[[60.0, 30.0]], point_labels=[1], mask_input=best)
    _assert_same(ours, p_ref.predict(**kw), logits_ref=_ref_logits(p_ref, **kw))
    # mask prompt alone, (h, w) accepted as (1, h, w)
    kw = dict(mask_input=best)
    _assert_same(p_ours.predict(mask_input=best[0]), p_ref.predict(**kw),
                 logits_ref=_ref_logits(p_ref, **kw))


def test_return_logits_matches_reference(predictors):
    p_ref, p_ours = predictors
    ours = p_ours.predict(points=[[30.0, 60.0]], return_logits=True)
    ref = p_ref.predict(point_coords=np.array([[30.0, 60.0]]), point_labels=np.array([1]),
                        return_logits=True)
    assert ours[0].dtype == np.float32
    _assert_same(ours, ref)
    masks = p_ours.predict(points=[[30.0, 60.0]])[0]
    np.testing.assert_array_equal(masks, ours[0] > 0)


def test_batched_prompts_match_predict_torch(predictors):
    p_ref, p_ours = predictors
    size = p_ref.original_size
    boxes = np.array([[0.0, 0.0, 103.0, 86.0], [10.0, 20.0, 50.0, 60.0], [60.0, 5.0, 100.0, 40.0]])
    t_boxes = torch.as_tensor(p_ref.transform.apply_boxes(boxes, size), dtype=torch.float)
    ref = p_ref.predict_torch(None, None, boxes=t_boxes, multimask_output=False)
    ref_logits = p_ref.predict_torch(None, None, boxes=t_boxes, multimask_output=False,
                                     return_logits=True)[0]
    ours = p_ours.predict(boxes=boxes, multimask=False)
    assert all(isinstance(v, torch.Tensor) for v in ours)
    assert ours[0].shape == (3, 1, 86, 103) and ours[1].shape == (3, 1)
    _assert_same(ours, ref, logits_ref=ref_logits)
    # a batch of point sets, and one point shared by every box
    pts = np.array([[[10.0, 10.0], [50.0, 40.0]], [[80.0, 70.0], [5.0, 80.0]]])
    labels = np.array([[1, 0], [1, 1]])
    t_pts = torch.as_tensor(p_ref.transform.apply_coords(pts, size), dtype=torch.float)
    t_lab = torch.as_tensor(labels, dtype=torch.int)
    ref = p_ref.predict_torch(t_pts, t_lab)
    _assert_same(p_ours.predict(points=pts, point_labels=labels), ref,
                 logits_ref=p_ref.predict_torch(t_pts, t_lab, return_logits=True)[0])
    t_one = torch.as_tensor(p_ref.transform.apply_coords(pts[0, :1], size),
                            dtype=torch.float)[None].expand(3, -1, -1)
    kw = dict(boxes=t_boxes, multimask_output=True)
    ref = p_ref.predict_torch(t_one, torch.ones(3, 1, dtype=torch.int), **kw)
    ours = p_ours.predict(points=pts[0, :1], boxes=boxes)
    _assert_same(ours, ref, logits_ref=p_ref.predict_torch(
        t_one, torch.ones(3, 1, dtype=torch.int), **kw, return_logits=True)[0])


def test_downsampled_image_matches_reference(models):
    from segment_anything import SamPredictor

    data = pytest.importorskip("skimage.data")
    ref, ours = models
    image = data.coffee()  # (400, 600, 3): shrunk to (85, 128) by PIL with antialiasing
    p_ref, p_ours = SamPredictor(ref), SAMPredictor(ours)
    p_ref.set_image(image)
    p_ours.set_image(image)
    kw = dict(point_coords=np.array([[300.0, 200.0]]), point_labels=np.array([1]),
              box=np.array([100.0, 50.0, 500.0, 380.0]))
    ours_out = p_ours.predict(points=[[300.0, 200.0]], boxes=[100.0, 50.0, 500.0, 380.0])
    _assert_same(ours_out, p_ref.predict(**kw), logits_ref=_ref_logits(p_ref, **kw))


@pytest.mark.parametrize("kind", ["uint16", "hu"])
def test_windowed_images_go_through_the_reference_path(models, kind):
    from segment_anything import SamPredictor

    ref, ours = models
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:70, :90]
    disk = (yy - 35) ** 2 + (xx - 45) ** 2 < 20**2
    if kind == "uint16":
        image, window = (disk * 3000 + rng.integers(0, 400, disk.shape)).astype(np.uint16), None
    else:
        image, window = np.where(disk, 60.0, -1000.0) + rng.normal(0, 20, disk.shape), (-160, 240)
    rgb = to_sam_rgb(image, window=window)
    assert rgb.shape == (70, 90, 3) and rgb.dtype == np.uint8
    p_ref, p_ours = SamPredictor(ref), SAMPredictor(ours)
    p_ref.set_image(rgb)
    p_ours.set_image(image, window=window)
    kw = dict(point_coords=np.array([[45.0, 35.0]]), point_labels=np.array([1]))
    _assert_same(p_ours.predict(points=[[45.0, 35.0]]), p_ref.predict(**kw),
                 logits_ref=_ref_logits(p_ref, **kw))


def test_official_geometry_matches_reference(tmp_path):
    """segment-anything's own builder (1024 px, 256-dim decoder) with a tiny encoder."""
    build_sam = pytest.importorskip("segment_anything.build_sam")
    from segment_anything import SamPredictor

    torch.manual_seed(1)
    ref = build_sam._build_sam(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
                               encoder_global_attn_indexes=[1])
    ours = _REF.load_ours(ref, tmp_path / "official_geometry.pth")
    assert ours.img_size == 1024
    image = np.ascontiguousarray(_image()[:40, :60])
    p_ref, p_ours = SamPredictor(ref), SAMPredictor(ours)
    p_ref.set_image(image)
    p_ours.set_image(image)
    kw = dict(point_coords=np.array([[30.0, 20.0]]), point_labels=np.array([1]),
              box=np.array([5.0, 5.0, 50.0, 35.0]))
    ours_out = p_ours.predict(points=[[30.0, 20.0]], boxes=[5.0, 5.0, 50.0, 35.0])
    assert ours_out[2].shape == (3, 256, 256)
    _assert_same(ours_out, p_ref.predict(**kw), logits_ref=_ref_logits(p_ref, **kw))


def test_sam_methods_delegate_to_the_predictor(models, predictors):
    _, ours = models
    _, p_ours = predictors
    ours.set_image(_image())
    a = ours.predict(points=[[50.0, 40.0]], boxes=[10.0, 15.0, 80.0, 70.0])
    b = p_ours.predict(points=[[50.0, 40.0]], boxes=[10.0, 15.0, 80.0, 70.0])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# =========================================================================== bad prompts
@pytest.fixture(scope="module")
def tiny_predictor():
    from mlimaging.models.sam import SAM

    torch.manual_seed(0)
    predictor = SAMPredictor(SAM("tiny").eval())
    predictor.set_image(np.zeros((40, 60), np.float32))
    return predictor


def test_predict_before_set_image():
    from mlimaging.models.sam import SAM

    with pytest.raises(ValueError, match="set_image"):
        SAMPredictor(SAM("tiny")).predict(points=[[1.0, 1.0]])
    with pytest.raises(ValueError, match="sam"):
        SAMPredictor(torch.nn.Linear(2, 2))


@settings(max_examples=40, deadline=None)
@given(st.floats(-1e4, 1e4, allow_nan=False), st.floats(-1e4, 1e4, allow_nan=False))
def test_points_outside_the_image_are_rejected(tiny_predictor, x, y):
    inside = 0 <= x <= 60 and 0 <= y <= 40
    if inside:
        masks, iou, _ = tiny_predictor.predict(points=[[x, y]], point_labels=[1])
        assert masks.shape == (3, 40, 60) and iou.shape == (3,)
    else:
        with pytest.raises(ValueError, match="points.*outside the image"):
            tiny_predictor.predict(points=[[x, y]], point_labels=[1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 40, allow_nan=False), min_size=4, max_size=4))
def test_boxes_with_swapped_corners_are_rejected(tiny_predictor, box):
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        with pytest.raises(ValueError, match="boxes.*x1 >= x0"):
            tiny_predictor.predict(boxes=box)
        with pytest.raises(ValueError, match="boxes"):
            tiny_predictor.predict(boxes=[[0.0, 0.0, 10.0, 10.0], box])
    else:
        assert tiny_predictor.predict(boxes=box, multimask=False)[0].shape == (1, 40, 60)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.integers(-5, 5), st.floats(-3, 3), st.just(float("nan"))))
def test_labels_outside_0_1_are_rejected(tiny_predictor, label):
    if label in (0, 1):
        tiny_predictor.predict(points=[[5.0, 5.0]], point_labels=[label])
    else:
        with pytest.raises(ValueError, match="point_labels"):
            tiny_predictor.predict(points=[[5.0, 5.0]], point_labels=[label])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"point_labels": [1]}, "point_labels.*without points"),
        ({}, "at least one prompt"),
        ({"points": [[1.0, 2.0]], "point_labels": [1, 0]}, "point_labels.*shape"),
        ({"points": [1.0, 2.0]}, "points.*shape"),
        ({"points": np.zeros((0, 2))}, "points.*shape"),
        ({"points": [[np.nan, 2.0]]}, "points.*finite"),
        ({"points": [["a", "b"]]}, "points"),
        ({"boxes": [0.0, 0.0, 70.0, 10.0]}, "boxes.*outside the image"),
        ({"boxes": [0.0, 0.0, 1.0]}, "boxes.*shape"),
        ({"mask_input": np.zeros((3, 32, 32))}, "mask_input"),
        ({"mask_input": np.zeros((1, 64, 64))}, "mask_input.*32 x 32"),
        ({"points": np.ones((2, 1, 2)), "boxes": np.ones((3, 4))},
         "same batch size"),
        ({"points": [[1.0, 1.0]], "multimask": 1}, "multimask"),
        ({"points": [[1.0, 1.0]], "return_logits": "yes"}, "return_logits"),
    ],
)
def test_bad_prompts(tiny_predictor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_predictor.predict(**kwargs)


def test_image_with_extreme_aspect_ratio_is_rejected(tiny_predictor):
    with pytest.raises(ValueError, match="aspect ratio"):
        tiny_predictor.set_image(np.zeros((1, 500), np.uint8))
