"""Automatic masks: segment-anything's SamAutomaticMaskGenerator as the oracle.

The same small random-weight SAM (segment-anything's modules, saved and loaded with
``load_sam_checkpoint``) runs the reference generator (``output_mode="binary_mask"``, one crop)
and ``automatic_masks`` on a phantom; the record lists must agree entry by entry.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from mlimaging.models.sam._boxes import box_xyxy_to_xywh, masks_to_boxes
from mlimaging.models.sam.automatic import (
    automatic_masks,
    build_point_grid,
    remove_small_regions,
    stability_score,
)
from mlimaging.models.sam.predictor import SAMPredictor, resize_coords, to_sam_rgb


def _helpers():
    """The small reference SAMs shared with test_sam_predictor.py."""
    path = Path(__file__).with_name("_sam_reference.py")
    spec = importlib.util.spec_from_file_location("_sam_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _phantom() -> np.ndarray:
    """A 2-D phantom (three ellipsoids, noise) as SAM's RGB uint8, 72 x 96."""
    from mlimaging.data.phantoms import make_phantom

    image, _ = make_phantom((72, 96), seed=3, n_structures=3, noise=0.05)
    return to_sam_rgb(image)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    pytest.importorskip("segment_anything")
    helpers = _helpers()
    ref = helpers.reference_sam(seed=4)
    # Random weights give logits within about +-0.3, so every stability score would be ~0:
    # scale the mask head's output (the hypernetwork MLPs) so that the scores spread over
    # 0.5..0.85 and the stability filter has something to separate.
    with torch.no_grad():
        for mlp in ref.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(300.0)
            mlp.layers[-1].bias.mul_(300.0)
    ours = helpers.load_ours(ref, tmp_path_factory.mktemp("sam_auto") / "small.pth")
    return ref, ours


def _reference_records(ref, image, **kw):
    from segment_anything import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(ref, output_mode="binary_mask", **kw).generate(image)


def _our_logits(sam, image, **set_image_kw):
    """Logits (H, W) of our model for one record's point and mask (to locate rounding ties)."""
    predictor = SAMPredictor(sam)
    predictor.set_image(image, **set_image_kw)

    def logits(record):
        point = resize_coords(record["point_coords"], predictor.original_size,
                              predictor.img_size)
        z, iou, _ = predictor.predict_resized(
            points=torch.as_tensor(point)[None], point_labels=torch.ones(1, 1, dtype=torch.int),
            return_logits=True)
        k = int(torch.argmin((iou[0] - record["predicted_iou"]).abs()))
        return z[0, k].numpy()

    return logits


def _assert_same_records(ours, ref, *, logits=None):
    """Equal record lists; a mask pixel may differ only where our logit is a rounding tie.

    Our encoder and the reference's agree to about 1e-6 relative (other summation orders),
    so a pixel whose logit is within that of the threshold can flip; its area and box then
    follow the mask, and a pixel within that of t +- offset moves the stability score by
    1 / |z > t - offset| (< 2e-3 here).
    """
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        assert set(a) == set(b)
        assert a["segmentation"].dtype == bool and isinstance(a["area"], int)
        assert a["crop_box"] == b["crop_box"]
        assert a["point_coords"] == b["point_coords"]
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-4)
        np.testing.assert_allclose(a["stability_score"], b["stability_score"], atol=2e-3)
        differ = a["segmentation"] != b["segmentation"]
        if not differ.any():
            assert a["area"] == b["area"] and a["bbox"] == b["bbox"]
            continue
        assert logits is not None, f"{differ.sum()} mask pixels differ"
        assert np.abs(logits(a)[differ]).max() < 1e-3
        assert abs(a["area"] - b["area"]) <= differ.sum()
        assert a["area"] == int(a["segmentation"].sum())
        assert a["bbox"] == box_xyxy_to_xywh(masks_to_boxes(a["segmentation"])).tolist()


# =========================================================================== pure functions
@pytest.mark.parametrize("n", [1, 2, 3, 8, 32])
def test_point_grid_matches_reference(n):
    amg = pytest.importorskip("segment_anything.utils.amg")
    np.testing.assert_array_equal(build_point_grid(n), amg.build_point_grid(n))


def test_point_grid_by_hand():
    np.testing.assert_allclose(build_point_grid(1), [[0.5, 0.5]])
    grid = build_point_grid(4)
    assert grid.shape == (16, 2)
    np.testing.assert_allclose(grid[:4, 0], [0.125, 0.375, 0.625, 0.875])  # x fastest
    np.testing.assert_allclose(grid[::4, 1], [0.125, 0.375, 0.625, 0.875])


def test_stability_score_matches_reference():
    amg = pytest.importorskip("segment_anything.utils.amg")
    logits = torch.randn(4, 3, 20, 30, generator=torch.Generator().manual_seed(0)) * 3
    logits[0, 0] = -10.0  # empty: 0 / 0
    for offset in (0.5, 1.0, 2.0):
        expected = amg.calculate_stability_score(logits, 0.0, offset)
        torch.testing.assert_close(stability_score(logits, offset=offset), expected,
                                   equal_nan=True)
    assert torch.isnan(stability_score(logits)[0, 0])


def test_stability_score_by_hand():
    z = torch.tensor([[2.0, 0.5, -0.5, -2.0]])
    # > 1: one pixel; > -1: three pixels
    assert stability_score(z).item() == pytest.approx(1 / 3)
    assert stability_score(z, threshold=0.5, offset=0.25).item() == pytest.approx(1 / 2)


def test_remove_small_regions_by_hand():
    mask = np.zeros((8, 8), bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False  # a one-pixel hole
    mask[7, 7] = True  # a one-pixel island
    filled, changed = remove_small_regions(mask, 2, mode="holes")
    assert changed and filled[3, 3] and filled.sum() == mask.sum() + 1
    cleaned, changed = remove_small_regions(filled, 2, mode="islands")
    assert changed and not cleaned[7, 7] and cleaned.sum() == 25
    same, changed = remove_small_regions(cleaned, 2, mode="islands")
    assert not changed and np.array_equal(same, cleaned)
    # 8-connectivity: a diagonal pair is one island of 2 pixels
    diag = np.zeros((5, 5), bool)
    diag[1, 1] = diag[2, 2] = True
    assert not remove_small_regions(diag, 2, mode="islands")[1]
    # every island small: the largest (first in raster order on a tie) is kept
    two = np.zeros((6, 6), bool)
    two[0, 0] = True
    two[4:6, 4:6] = True
    kept, changed = remove_small_regions(two, 10, mode="islands")
    assert changed and kept.sum() == 4 and kept[5, 5]
    with pytest.raises(ValueError, match="mode"):
        remove_small_regions(two, 10, mode="both")


# =========================================================================== oracle
@pytest.mark.parametrize(
    "kw",
    [
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.95),
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.99),
        dict(pred_iou_thresh=-1.0, stability_score_thresh=0.6, box_nms_thresh=1.0),
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.78, stability_score_offset=0.5,
             box_nms_thresh=0.99),
    ],
)
def test_automatic_masks_match_reference(models, kw):
    ref, ours = models
    image = _phantom()
    expected = _reference_records(ref, image, points_per_side=6, points_per_batch=16, **kw)
    got = automatic_masks(ours, image, points_per_side=6, points_per_batch=16, **kw)
    # the filters and NMS removed some masks, not all (random weights give masks whose
    # boxes nearly all span the image, so NMS keeps several only near an IoU of 1)
    everything = automatic_masks(ours, image, points_per_side=6, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, box_nms_thresh=1.0)
    assert 0 < len(got) < len(everything) == 6 * 6 * 3
    _assert_same_records(got, expected, logits=_our_logits(ours, image))


def test_iou_filter_matches_reference(models):
    ref, ours = models
    image = _phantom()
    ious = [r["predicted_iou"] for r in automatic_masks(ours, image, points_per_side=4,
                                                        pred_iou_thresh=0.0,
                                                        stability_score_thresh=0.0,
                                                        box_nms_thresh=1.0)]
    thresh = float(np.median(ious))  # a threshold that removes about half of the masks
    kw = dict(points_per_side=4, pred_iou_thresh=thresh, stability_score_thresh=0.0)
    got = automatic_masks(ours, image, **kw)
    assert 0 < len(got) < len(ious)
    _assert_same_records(got, _reference_records(ref, image, **kw),
                         logits=_our_logits(ours, image))


def _fake_cv2(monkeypatch):
    """OpenCV's connected components (8-connectivity, background label 0) for the reference.

    cv2 is not installed; the reference's small-region step only calls
    ``connectedComponentsWithStats``. Labelled with scipy in raster order (as cv2 numbers
    them), this checks the rest of the step: rescoring, NMS, new boxes, order of records.
    """
    def connected_components_with_stats(image, connectivity):
        labels, n = ndimage.label(image, structure=np.ones((3, 3), dtype=int))
        stats = np.zeros((n + 1, 5), dtype=np.int32)
        stats[:, 4] = np.bincount(labels.ravel(), minlength=n + 1)
        return n + 1, labels.astype(np.int32), stats, np.zeros((n + 1, 2))

    module = types.ModuleType("cv2")
    module.connectedComponentsWithStats = connected_components_with_stats
    monkeypatch.setitem(sys.modules, "cv2", module)


def test_min_mask_region_area_matches_reference(models, monkeypatch):
    _fake_cv2(monkeypatch)
    ref, ours = models
    image = _phantom()
    kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
              min_mask_region_area=40)
    got = automatic_masks(ours, image, **kw)
    plain = automatic_masks(ours, image, **{**kw, "min_mask_region_area": 0})
    assert any(not np.array_equal(a["segmentation"], b["segmentation"])
               for a, b in zip(got, plain, strict=False)) or len(got) != len(plain)
    _assert_same_records(got, _reference_records(ref, image, **kw),
                         logits=_our_logits(ours, image))


def _disc_logits(predictor, points_s):
    """Logits of discs around each point: radii 6, 12, 24 (S-frame pixels), slope 5 / pixel.

    A stand-in for the decoder with localised masks of known stability, fed to both
    generators in place of their decoding step, so that the IoU and stability filters, the
    boxes and NMS run on masks like a trained SAM's (random weights give image-wide masks).
    """
    h, w = predictor.original_size
    in_h, in_w = predictor.input_size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64) * in_h / h,
                            torch.arange(w, dtype=torch.float64) * in_w / w, indexing="ij")
    p = torch.as_tensor(points_s, dtype=torch.float64)[:, 0, :]  # (B, 2)
    dist = torch.hypot(xx[None] - p[:, 0, None, None], yy[None] - p[:, 1, None, None])
    radii = torch.tensor([6.0, 12.0, 24.0], dtype=torch.float64)
    logits = (5.0 * (radii[None, :, None, None] - dist[:, None])).float()
    iou = (0.8 + 0.05 * torch.arange(3.0)[None] + 1e-4 * p[:, :1]).float()
    return logits, iou, torch.zeros(len(p), 3, 4, 4)


def test_pipeline_on_disc_masks_matches_reference(models, monkeypatch):
    from segment_anything import SamPredictor

    ref, ours = models

    def fake_ref(self, point_coords, point_labels, boxes=None, mask_input=None,
                 multimask_output=True, return_logits=False):
        assert return_logits and multimask_output
        return _disc_logits(self, point_coords)

    def fake_ours(self, *, points=None, point_labels=None, boxes=None, mask_input=None,
                  multimask=True, return_logits=False):
        assert return_logits and multimask
        return _disc_logits(self, points)

    monkeypatch.setattr(SamPredictor, "predict_torch", fake_ref)
    monkeypatch.setattr(SAMPredictor, "predict_resized", fake_ours)
    image = _phantom()
    for kw in [{}, dict(box_nms_thresh=0.3), dict(pred_iou_thresh=0.0, stability_score_thresh=0.9)]:
        got = automatic_masks(ours, image, points_per_side=6, **kw)  # default thresholds
        assert len(got) > 1
        _assert_same_records(got, _reference_records(ref, image, points_per_side=6, **kw))


def test_windowed_float_image_and_batches(models):
    ref, ours = models
    from mlimaging.data.phantoms import make_phantom

    ct, _ = make_phantom((60, 50), seed=5, noise=0.02)
    ct = ct * 1000.0 - 500.0  # an HU-like range
    kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    got = automatic_masks(ours, ct, window=(-500, 500), points_per_batch=5, **kw)
    _assert_same_records(got, _reference_records(ref, to_sam_rgb(ct, window=(-500, 500)), **kw),
                         logits=_our_logits(ours, ct, window=(-500, 500)))
    # the batch size does not change the result; a predictor is reused; progress bar runs
    predictor = SAMPredictor(ours)
    again = automatic_masks(predictor, ct, window=(-500, 500), points_per_batch=64,
                            progress=True, **kw)
    _assert_same_records(again, got)
    assert predictor.original_size == (60, 50)


def test_records_by_hand(models):
    _, ours = models
    records = automatic_masks(ours, _phantom(), points_per_side=3, pred_iou_thresh=0.0,
                              stability_score_thresh=0.0)
    ious = [r["predicted_iou"] for r in records]
    assert ious == sorted(ious, reverse=True)
    for r in records:
        seg = r["segmentation"]
        assert seg.shape == (72, 96) and r["area"] == int(seg.sum())
        assert r["crop_box"] == [0, 0, 96, 72]
        if r["area"]:
            rows, cols = np.nonzero(seg)
            assert r["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min(),
                                 rows.max() - rows.min()]
        (x, y), = r["point_coords"]
        assert 0 < x < 96 and 0 < y < 72


# =========================================================================== bad input
@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["points_per_side", "points_per_batch"]),
       st.one_of(st.integers(-3, 0), st.floats(0.5, 3.0), st.booleans()))
def test_bad_counts(name, value):
    with pytest.raises(ValueError, match=name):
        automatic_masks(object(), np.zeros((8, 8), np.uint8), **{name: value})


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"pred_iou_thresh": float("nan")}, "pred_iou_thresh"),
        ({"stability_score_thresh": "high"}, "stability_score_thresh"),
        ({"box_nms_thresh": float("inf")}, "box_nms_thresh"),
        ({"min_mask_region_area": -1}, "min_mask_region_area"),
        ({"stability_score_offset": None}, "stability_score_offset"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        automatic_masks(object(), np.zeros((8, 8), np.uint8), **kw)


def test_not_a_model():
    with pytest.raises(ValueError, match="sam"):
        automatic_masks(object(), np.zeros((8, 8), np.uint8))
