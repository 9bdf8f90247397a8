"""SAM training: prompts from ground-truth masks, focal + Dice + IoU loss, the fit step (mlimaging.models.sam.train)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Subset

from mlimaging.models.sam.predictor import SAMPredictor, preprocess_shape
from mlimaging.models.sam.train import (
    SAMStep,
    binary_dice_loss,
    mask_iou,
    pick_structures,
    predict_masks,
    prepare_images,
    sam_loss,
    sample_prompts,
    sigmoid_focal_loss,
)


def _square(h=16, w=16, r0=4, r1=9, c0=5, c1=12):
    m = torch.zeros(1, h, w, dtype=torch.bool)
    m[0, r0:r1, c0:c1] = True
    return m


# ------------------------------------------------------------------------------ prompt sampling
def test_box_prompt_of_a_square_mask_is_its_bounding_box():
    boxes = sample_prompts(_square(), kind="box", box_jitter=0.0)["boxes"]
    assert boxes.tolist() == [[5.0, 4.0, 11.0, 8.0]]  # x0 = first column, x1 = last column (inclusive)


def test_box_in_sam_frame_is_scaled_like_resize_longest_side():
    # 16 x 32 image -> longest side 64: factor 2 on both axes (h' = 32, w' = 64).
    m = torch.zeros(1, 16, 32, dtype=torch.bool)
    m[0, 2:6, 10:20] = True
    out = sample_prompts(m, kind="box", box_jitter=0.0, target_size=64)
    assert out["boxes"].tolist() == [[20.0, 4.0, 38.0, 10.0]]
    assert out["points"] is None and out["point_labels"] is None


def test_point_prompts_lie_inside_the_mask_and_are_distinct():
    m = _square()
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        out = sample_prompts(m, kind="points", num_points=3, generator=g)
        pts = out["points"][0].long()
        assert all(bool(m[0, y, x]) for x, y in pts.tolist())
        assert len({tuple(p) for p in pts.tolist()}) == 3
        assert out["point_labels"].tolist() == [[1, 1, 1]] and out["boxes"] is None
    one = sample_prompts(m, kind="point", generator=g)
    assert one["points"].shape == (1, 1, 2)


def test_points_in_sam_frame_map_back_inside_the_mask():
    m = torch.zeros(2, 24, 40, dtype=torch.bool)
    m[0, 3:7, 30:38] = True
    m[1, 15:20, 2:5] = True
    h, w = preprocess_shape(24, 40, 128)
    out = sample_prompts(m, kind="points", num_points=5, target_size=128, generator=torch.Generator().manual_seed(0))
    back = out["points"] / torch.tensor([w / 40, h / 24])
    for b in range(2):
        for x, y in back[b].round().long().tolist():
            assert bool(m[b, y, x])


def test_same_generator_seed_same_prompts():
    m = _square()
    a = sample_prompts(m, kind="box", generator=torch.Generator().manual_seed(7))
    b = sample_prompts(m, kind="box", generator=torch.Generator().manual_seed(7))
    c = sample_prompts(m, kind="box", generator=torch.Generator().manual_seed(8))
    assert torch.equal(a["boxes"], b["boxes"]) and not torch.equal(a["boxes"], c["boxes"])


@settings(max_examples=40, deadline=None)
@given(h=st.integers(4, 24), w=st.integers(4, 24), seed=st.integers(0, 2**16),
       jitter=st.floats(0.0, 2.0), cap=st.floats(0.0, 5.0))
def test_jittered_box_stays_in_the_image_ordered_and_within_the_cap(h, w, seed, jitter, cap):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(1, h, w, generator=g) > 0.7
    m[0, h // 2, w // 2] = True
    exact = sample_prompts(m, kind="box", box_jitter=0.0)["boxes"][0]
    box = sample_prompts(m, kind="box", box_jitter=jitter, max_jitter=cap, generator=g)["boxes"][0]
    x0, y0, x1, y1 = box.tolist()
    assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
    assert float((box - exact).abs().max()) <= cap + 1e-5
    # The exact box is tight: every foreground pixel inside, each side touching one.
    rows, cols = torch.nonzero(m[0], as_tuple=True)
    assert exact.tolist() == [cols.min().item(), rows.min().item(), cols.max().item(), rows.max().item()]


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["point", "points", "box"]), seed=st.integers(0, 1000))
def test_empty_mask_is_rejected_for_every_kind(kind, seed):
    m = _square().repeat(2, 1, 1)
    m[1] = False
    with pytest.raises(ValueError, match=r"masks: mask\(s\) \[1\] are empty"):
        sample_prompts(m, kind=kind, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "scribble"}, "kind must be one of"),
    ({"kind": "point", "num_points": 3}, "num_points must be 1"),
    ({"kind": "points", "num_points": 0}, "num_points must be a positive integer"),
    ({"kind": "box", "box_jitter": -0.1}, "box_jitter must be"),
])
def test_bad_prompt_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_prompts(_square(), **kwargs)


def test_masks_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"masks must be a tensor \(B, H, W\)"):
        sample_prompts(torch.ones(4, 4), kind="box")


def test_pick_structures_takes_one_present_label_per_sample():
    lab = torch.zeros(3, 8, 8, dtype=torch.long)
    lab[0, :4], lab[0, 4:, :2] = 1, 3
    lab[1, 2:5, 2:5] = 2
    lab[2, 0, 0] = 1  # a binary mask gives itself
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        m = pick_structures(lab, generator=g)
        chosen = [int(torch.unique(lab[i][m[i]]).item()) for i in range(3)]
        assert chosen[0] in (1, 3) and chosen[1:] == [2, 1]
        assert all(torch.equal(m[i], lab[i] == chosen[i]) for i in range(3))
        seen.add(chosen[0])
    assert seen == {1, 3}
    with pytest.raises(ValueError, match="sample 0 has no foreground label"):
        pick_structures(torch.zeros(1, 4, 4, dtype=torch.long))


# ------------------------------------------------------------------------------ losses
def test_focal_loss_hand_values():
    x = torch.zeros(1, 1, 2)  # p = 0.5
    t = torch.tensor([[[1.0, 0.0]]])
    # t = 1: 0.25 * 0.5^2 * log 2; t = 0: 0.75 * 0.5^2 * log 2; mean of the two pixels.
    expected = (0.25 + 0.75) * 0.25 * math.log(2) / 2
    assert sigmoid_focal_loss(x, t).item() == pytest.approx(expected)
    # A confident right pixel costs almost nothing, a confident wrong one about alpha_t * |x|.
    assert sigmoid_focal_loss(torch.tensor([[10.0]]), torch.tensor([[1.0]])).item() < 1e-9
    assert sigmoid_focal_loss(torch.tensor([[-10.0]]), torch.tensor([[1.0]])).item() == pytest.approx(0.25 * 10, rel=1e-3)


def test_focal_loss_without_focusing_is_the_cross_entropy():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 3, 5, 5, generator=g), (torch.rand(2, 3, 5, 5, generator=g) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none").mean((-2, -1))
    torch.testing.assert_close(sigmoid_focal_loss(x, t, alpha=-1, gamma=0.0), bce)


def test_focal_loss_matches_torchvision():
    ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(3, 8, 8, generator=g) * 3, (torch.rand(3, 8, 8, generator=g) > 0.6).float()
    ref = ops.sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="none").mean((-2, -1))
    torch.testing.assert_close(sigmoid_focal_loss(x, t), ref)


def test_dice_loss_hand_values_and_perfect_prediction():
    x = torch.full((1, 2, 2), -30.0)
    x[0, 0, 0] = 30.0  # p = [1, 0, 0, 0]
    t = torch.tensor([[[1, 1], [0, 0]]])
    assert binary_dice_loss(x, t, smooth=0.0).item() == pytest.approx(1 - 2 / 3)  # 1 - 2*1/(1+2)
    assert binary_dice_loss(x, t, smooth=1.0).item() == pytest.approx(1 - 3 / 4)  # 1 - (2+1)/(1+2+1)
    assert binary_dice_loss(30 * (2 * t.float() - 1), t, smooth=0.0).item() == pytest.approx(0.0, abs=1e-6)


def test_mask_iou_hand_values():
    x = torch.tensor([[[1.0, 1.0], [1.0, -1.0]], [[-1.0, -1.0], [-1.0, -1.0]]])
    t = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]])
    assert mask_iou(x, t).tolist() == [pytest.approx(1 / 3), 1.0]  # both empty: 1


def _three_masks():
    t = torch.zeros(1, 8, 8)
    t[0, 2:6, 2:6] = 1
    right = 8 * (2 * t - 1)
    half = right.clone()
    half[0, 2:4] = -8  # misses half the object
    wrong = -right
    return torch.stack([half, wrong, right], 1), t


def test_chosen_multimask_output_is_the_lowest_loss_and_alone_gets_mask_gradient():
    logits, t = _three_masks()
    logits.requires_grad_(True)
    iou_pred = torch.zeros(1, 3, requires_grad=True)
    parts = sam_loss(logits, iou_pred, t)
    per_mask = 20 * sigmoid_focal_loss(logits, t[:, None]) + binary_dice_loss(logits, t[:, None])
    assert parts.chosen.tolist() == [2] == per_mask.argmin(1).tolist()
    parts.loss.backward()
    assert logits.grad[0, :2].abs().max() == 0 and logits.grad[0, 2].abs().max() > 0
    assert parts.iou.tolist() == [[pytest.approx(0.5), 0.0, 1.0]]
    # All three IoU predictions are supervised (zero predicted, actual 0.5, 0, 1).
    assert iou_pred.grad.tolist() == [[pytest.approx(2 * -0.5 / 3), 0.0, pytest.approx(2 * -1.0 / 3)]]


def test_sam_loss_value_is_the_weighted_sum():
    logits, t = _three_masks()
    iou_pred = torch.tensor([[0.5, 0.2, 0.7]])
    parts = sam_loss(logits, iou_pred, t, supervise_all_iou=False)
    f = sigmoid_focal_loss(logits[:, 2], t)
    d = binary_dice_loss(logits[:, 2], t)
    assert parts.loss.item() == pytest.approx((20 * f + d + (0.7 - 1.0) ** 2).item())
    assert parts.iou_mse.item() == pytest.approx(0.09)


def test_sam_loss_shape_errors():
    with pytest.raises(ValueError, match="iou_predictions must have shape"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="targets must have shape"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, 5, 4))


# ------------------------------------------------------------------------------ pre/post-processing
def test_prepare_images_windows_replicates_and_resizes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 20, 30, generator=g) * 100 + 40
    out, size = prepare_images(x, img_size=60)
    assert size == (40, 60) and out.shape == (2, 3, 40, 60)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert 0 <= float(out.min()) and float(out.max()) <= 255
    # The window is affine-invariant: a rescaled, shifted image gives the same input.
    torch.testing.assert_close(prepare_images(3 * x - 7, img_size=60)[0], out, atol=1e-3, rtol=0)
    const, _ = prepare_images(torch.full((1, 1, 8, 8), 5.0), img_size=8)
    assert float(const.abs().max()) == 0
    # Percentiles equal (a mostly constant image): the full range is used, as to_sam_rgb does.
    spot = torch.zeros(1, 1, 20, 20)
    spot[0, 0, 3, 4] = 2.0
    out, _ = prepare_images(spot, img_size=20)
    assert out[0, 0, 3, 4] == 255 and float(out.sum()) == 3 * 255
    fixed, _ = prepare_images(torch.tensor([[[[0.0, 50.0], [100.0, 200.0]]]]), img_size=2, window=(0, 100))
    assert fixed[0, 0].tolist() == [[0.0, 127.5], [255.0, 255.0]]


def test_prepare_images_bad_input():
    with pytest.raises(ValueError, match=r"images must be a tensor \(B, 1 or 3, H, W\)"):
        prepare_images(torch.zeros(1, 2, 8, 8), img_size=8)
    with pytest.raises(ValueError, match="NaN"):
        prepare_images(torch.full((1, 1, 4, 4), float("nan")), img_size=8)
    with pytest.raises(ValueError, match="window must be"):
        prepare_images(torch.zeros(1, 1, 4, 4), img_size=8, window=(1, 1))


# ------------------------------------------------------------------------------ the step with sam_tiny
def _sam(seed=0):
    from mlimaging.models import create_model

    return create_model("sam_tiny", seed=seed)


def _phantoms(n=8, seed=0):
    from mlimaging.data import PhantomDataset

    return PhantomDataset(n, (32, 32), seed=seed, n_structures=3, noise=0.05)


def _fit(sam, data, step, *, epochs=3, **kw):
    from mlimaging.training import fit

    return fit(sam, data, step=step, optimizer=lambda p: torch.optim.AdamW(p, lr=2e-3), epochs=epochs,
               batch_size=4, metrics=(), progress=False, grad_clip=1.0, **kw)


def test_training_through_fit_reduces_the_validation_loss():
    data = _phantoms()
    sam, step = _sam(), SAMStep(prompt_kinds=("box", "point"), seed=0)
    batch = (torch.stack([data[i][0] for i in range(4)]), torch.stack([data[i][1] for i in range(4)]))
    sam.eval()
    with torch.no_grad():
        before = step.validation_loss(sam, batch).item()
        again = step.validation_loss(sam, batch).item()
    assert before == again  # validation prompts are repeatable
    history = _fit(sam, data, step, epochs=4)
    sam.eval()
    with torch.no_grad():
        after = step.validation_loss(sam, batch).item()
    assert after < 0.8 * before
    assert {"loss", "focal", "dice_loss", "iou_mse", "mask_iou"} <= set(history.epochs[-1])
    assert history["loss"][-1] < history["loss"][0]
    assert step.calls == 4 * 2


def test_validation_data_gives_val_loss():
    data = _phantoms(4)
    history = _fit(_sam(), data, SAMStep(prompt_kinds=("box",), seed=1), epochs=1, val_data=Subset(data, [0, 1]))
    assert math.isfinite(history["val_loss"][0])


def test_resume_gives_identical_weights(tmp_path):
    data = _phantoms(4, seed=2)
    full = _sam()
    _fit(full, data, SAMStep(seed=5), epochs=3)
    part = _sam()
    _fit(part, data, SAMStep(seed=5), epochs=2, checkpoint_dir=tmp_path)
    resumed, step = _sam(), SAMStep(seed=5)
    _fit(resumed, data, step, epochs=3, checkpoint_dir=tmp_path, resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert step.calls == 3  # one batch per epoch: 2 (restored with the generator) + 1


def test_state_dict_round_trip_restores_the_prompt_stream():
    a = SAMStep(seed=3)
    torch.randn(5, generator=a.generator)
    state = a.state_dict()
    b = SAMStep(seed=99)
    b.load_state_dict(state)
    assert torch.equal(torch.randn(4, generator=a.generator), torch.randn(4, generator=b.generator))
    with pytest.raises(ValueError, match="state must hold 'generator'"):
        b.load_state_dict({})


def test_step_bad_options_and_batches():
    with pytest.raises(ValueError, match="prompt_kinds must be"):
        SAMStep(prompt_kinds=("lasso",))
    with pytest.raises(ValueError, match="multimask must be"):
        SAMStep(multimask="sometimes")
    step, sam = SAMStep(seed=0), _sam()
    opt = torch.optim.SGD(sam.parameters(), lr=0.0)
    with pytest.raises(ValueError, match=r"masks must have shape \(B, H, W\)"):
        step(sam, (torch.zeros(2, 1, 16, 16), torch.ones(2, 8, 8, dtype=torch.long)), optimizer=opt)
    with pytest.raises(ValueError, match="batch must be"):
        step(sam, torch.zeros(2, 1, 16, 16), optimizer=opt)
    with pytest.raises(ValueError, match="model must be a SAM"):
        step(torch.nn.Linear(2, 2), (torch.zeros(1, 1, 8, 8), torch.ones(1, 8, 8, dtype=torch.long)), optimizer=opt)


def test_predict_masks_shapes_and_multimask_choice():
    sam = _sam().eval()
    data = _phantoms(2)
    images = torch.stack([data[i][0] for i in range(2)])
    target = torch.stack([data[i][1] for i in range(2)]) == 1
    prompts = sample_prompts(target, kind="point", target_size=sam.img_size, generator=torch.Generator().manual_seed(0))
    masks, iou = predict_masks(sam, images, prompts, multimask=True)
    assert masks.shape == (2, 32, 32) and masks.dtype == torch.bool and iou.shape == (2,)
    x, size = prepare_images(images, img_size=sam.img_size)
    with torch.no_grad():
        _, all_iou = sam(sam.normalize_and_pad(x), multimask=True, **{k: v for k, v in prompts.items() if v is not None})
    assert torch.equal(iou, all_iou.max(1).values)
    assert sam.training is False


def test_step_sends_the_bounding_box_of_the_chosen_structure_in_sam_frame():
    # The box prompts SAMStep sends are those of sample_prompts on the chosen structure: check through
    # a recording model that the boxes bound the structure of each image (no jitter).
    class Recorder(torch.nn.Module):
        img_size, mask_threshold = 64, 0.0

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen = None

        def normalize_and_pad(self, x):
            return torch.nn.functional.pad(x, (0, 64 - x.shape[-1], 0, 64 - x.shape[-2]))

        def decode(self, *a, **k):  # pragma: no cover - presence only
            raise NotImplementedError

        def forward(self, x, *, boxes=None, multimask=True, **_):
            self.seen = boxes
            return self.w + torch.zeros(len(x), 1, 16, 16), self.w + torch.zeros(len(x), 1)

    lab = np.zeros((2, 32, 32), dtype=np.int64)
    lab[0, 4:10, 6:20] = 1
    lab[1, 20:30, 1:5] = 2
    model = Recorder()
    step = SAMStep(prompt_kinds=("box",), box_jitter=0.0, seed=0)
    step(model, (torch.rand(2, 1, 32, 32), torch.from_numpy(lab)), optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert model.seen.tolist() == [[12.0, 8.0, 38.0, 18.0], [2.0, 40.0, 8.0, 58.0]]  # x2 for 32 -> 64


def test_windowing_matches_the_predictors_to_sam_rgb():
    from mlimaging.models.sam.predictor import to_sam_rgb

    g = torch.Generator().manual_seed(4)
    image = torch.randn(1, 1, 24, 24, generator=g) * 300 - 100
    ours, _ = prepare_images(image, img_size=24)
    ref = to_sam_rgb(image[0, 0].numpy())  # rounded to uint8
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), ref, atol=0.5 + 1e-3)


def test_predict_masks_agrees_with_the_predictor_on_a_phantom():
    # Same network, same box: the batch path of training and SAMPredictor (uint8 rounding, PIL
    # resampling) give nearly the same mask.
    sam = _sam(seed=3).eval()
    image, lab = _phantoms(1, seed=4)[0]
    target = (lab == 1)[None]
    prompts = sample_prompts(target, kind="box", box_jitter=0.0, target_size=sam.img_size)
    ours, _ = predict_masks(sam, image[None], prompts, multimask=False)
    box = sample_prompts(target, kind="box", box_jitter=0.0)["boxes"][0].numpy()
    predictor = SAMPredictor(sam)
    predictor.set_image(image[0].numpy())
    ref, _, _ = predictor.predict(boxes=box, multimask=False)
    assert ref.shape == (1, 32, 32)
    assert 0.05 < ours.float().mean() < 0.95  # a mask with both values, not a trivial agreement
    assert (ours[0].numpy() != ref[0]).mean() < 0.02
