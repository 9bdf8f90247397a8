"""Experiment ``transformers``: a tiny smoke run (the pieces are tested in tests/models/test_vit.py and tests/models/sam/)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from mlimaging.experiments import ExperimentFailed, run_experiment
from mlimaging.experiments.transformers import RandomShiftRotate

# The quick run's code path on smaller data: 64 digits, two patch sizes, 32 x 32 phantoms.
TINY = dict(n_train=64, n_val=32, n_test=32, budget=0.2, max_epochs=1, data_sizes=(64,), patch_sizes=(7, 14),
            rollout_digits=3, phantom_size=32, sam_train=8, sam_test=2, points_per_side=2)
FIGURES = {"vit-vs-lenet-learning-curves.png", "augmentation-and-data-size.png", "patch-size-ablation.png",
           "attention-rollout.png", "sam-prompts-and-masks.png", "sam-training.png", "sam-automatic-masks.png"}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


def test_quick_smoke_run_writes_every_table_and_figure(tmp_path):
    run = run_experiment("transformers", quick=True, seed=0, out=tmp_path / "tf", **TINY)
    folder = tmp_path / "tf"
    assert run.report_path.exists()
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    html = run.report_path.read_text()
    assert html.count("<img") == len(FIGURES)

    budget = {r["model"]: r for r in _rows(folder, "same-time-budget")}
    assert list(budget) == ["lenet", "vit_tiny"]
    for r in budget.values():
        assert 0.0 <= float(r["test accuracy"]) <= 1.0 and int(r["epochs"]) == 1 and int(r["parameters"]) > 0

    aug = _rows(folder, "augmentation-and-data-size")
    assert [(r["model"], r["augmentation"]) for r in aug] == [
        ("lenet", "off"), ("lenet", "on"), ("vit_tiny", "off"), ("vit_tiny", "on")]
    assert all(r["training images"] == "64" and 0 <= float(r["test accuracy"]) <= 1 for r in aug)

    patches = _rows(folder, "patch-size-ablation")
    assert [(int(r["patch size"]), int(r["tokens"])) for r in patches] == [(7, 17), (14, 5)]  # (28/p)^2 + 1
    assert all(float(r["seconds per epoch"]) > 0 for r in patches)

    dice = {r["method"]: r for r in _rows(folder, "dice-per-prompt-type-on-held-out-phantoms")}
    assert list(dice) == ["1 point", "3 points", "box", "U-Net"]
    for r in dice.values():
        assert 0.0 <= float(r["mean Dice"]) <= 1.0
        assert all(math.isnan(float(r[c])) or 0.0 <= float(r[c]) <= 1.0
                   for c in ("Dice body", "Dice organ", "Dice lesion"))

    # the trained sam_tiny is saved in SAM's checkpoint format, loadable by `mlimaging sam predict`
    from mlimaging.models.sam import load_sam_checkpoint

    assert load_sam_checkpoint(folder / "sam_tiny.pth", variant="tiny").img_size == 128

    auto = _rows(folder, "automatic-masks")
    assert [r["image"] for r in auto] == ["phantom", "camera"]
    assert auto[0]["size"] == "32 x 32" and auto[1]["size"] == "512 x 512"

    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["sam_dice"]) == set(dice)
    assert metrics["sam_parameters"] > 0 and metrics["n_train"] == 64
    assert {"loss", "focal", "dice_loss", "iou_mse", "mask_iou"} <= set(metrics["sam_history"][0])
    assert set(metrics["automatic_masks"]) == {"phantom", "camera"}
    # Rollout maps are distributions over the patches (plus the class token's own share): means in (0, 1).
    assert all(0 < v < 1 for v in metrics["rollout_map_means"])


def test_sam_section_is_repeatable(tmp_path):
    cfg = dict(TINY, sections=("sam",))
    a = run_experiment("transformers", quick=True, seed=2, out=tmp_path / "a", **cfg)
    b = run_experiment("transformers", quick=True, seed=2, out=tmp_path / "b", **cfg)
    ma, mb = (json.loads((r.path / "metrics.json").read_text()) for r in (a, b))
    assert ma["sam_dice"] == mb["sam_dice"] and ma["automatic_masks"] == mb["automatic_masks"]
    assert "budget_accuracy" not in ma


@pytest.mark.parametrize("override, match", [
    ({"sections": ("vit", "gan")}, "sections must be"),
    ({"patch_sizes": (5,)}, "patch_sizes must divide 28"),
    ({"budget": 0.0}, "budget must be"),
])
def test_bad_settings_are_rejected(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("transformers", quick=True, out=tmp_path / "x", **override)


def test_augmentation_keeps_labels_and_is_seeded():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0
    ds = RandomShiftRotate(x, torch.arange(4))
    torch.manual_seed(0)
    a = [ds[i] for i in range(4)]
    torch.manual_seed(0)
    b = [ds[i] for i in range(4)]
    assert all(torch.equal(u[0], v[0]) and int(u[1]) == i for i, (u, v) in enumerate(zip(a, b, strict=True)))
    assert any(not torch.equal(u[0], x[i]) for i, u in enumerate(a))  # images do move
    # Rotation and shift keep the stroke's mass up to resampling (nothing leaves a 28 px canvas here).
    assert all(abs(float(u[0].sum()) - 32.0) < 4.0 for u in a)
    with pytest.raises(ValueError, match="same length"):
        RandomShiftRotate(x, torch.arange(3))
