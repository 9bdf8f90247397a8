"""Experiment ``robustness``: a tiny smoke run (the attacks are tested in tests/robustness/)."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment
from mlimaging.experiments.robustness import EpsRamp, HUSegmenter, attack_images
from mlimaging.robustness import PGDAdversarialStep

# The quick run's code path on smaller data: 600 digits, three budgets, tiny phantoms.
TINY = dict(n_train=600, n_test=80, epochs=2, at_epochs=2, at_steps=2, masking_n=40, restarts=2, phantoms=6,
            phantom_size=32, seg_epochs=6, eps_list=(0.0, 0.1, 0.3), hu_eps=(0.0, 40.0, 640.0),
            erase_eps=(160.0, 2000.0))
FIGURES = {"accuracy-vs-eps.png", "adversarial-digits.png", "dice-vs-eps.png"}
TABLES = {"lenet-test-accuracy-against-eps.csv", "standard-vs-adversarial-training.csv", "u-net-dice-against-eps-hu.csv",
          "smallest-perturbation-that-erases-the-lesion.csv", "gradient-masking-check.csv"}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rob") / "run"
    assert "robustness" in list_experiments()
    run = run_experiment("robustness", quick=True, seed=0, out=folder, **TINY)
    return folder, run


def test_accuracy_falls_with_eps_and_pgd_is_stronger(tiny_run):
    folder, _ = tiny_run
    curve = _rows(folder, "lenet-test-accuracy-against-eps")
    assert [float(r["eps"]) for r in curve] == [0.0, 0.1, 0.3]
    for method in ("FGSM", "PGD-10", "PGD-40"):
        acc = [float(r[method]) for r in curve]
        assert acc[0] > 0.5 and acc[0] > acc[-1]  # trained, then broken
        assert acc[0] == float(curve[0]["FGSM"])  # eps 0 is the clean accuracy for every attack
    assert float(curve[-1]["PGD-40"]) <= float(curve[-1]["FGSM"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n_train"] == 600 and metrics["n_test"] == 80
    assert metrics["curves"]["eps"] == [0.0, 0.1, 0.3]


def test_report_holds_every_table_and_figure(tiny_run):
    folder, run = tiny_run
    figures = {p.name for p in (folder / "figures").iterdir()}
    assert FIGURES <= figures <= FIGURES | {"lesion-erased.png"}
    assert {p.name for p in (folder / "tables").iterdir()} == TABLES
    assert run.report_path.read_text().count("<img") == len(figures)
    erase = _rows(folder, "smallest-perturbation-that-erases-the-lesion")
    erased = [r for r in erase if not math.isnan(float(r["smallest erasing eps (HU)"]))]
    assert ("lesion-erased.png" in figures) == bool(erased)
    assert all(float(r["smallest erasing eps (HU)"]) in TINY["erase_eps"] for r in erased)


def test_adversarial_training_and_masking_tables(tiny_run):
    folder, _ = tiny_run
    training = {r["training"]: r for r in _rows(folder, "standard-vs-adversarial-training")}
    assert list(training) == ["standard", "fast-AT (FGSM-RS)", "PGD-AT"]
    for r in training.values():
        assert 0.0 <= float(r["PGD-40 0.2"]) <= float(r["clean"]) <= 1.0
        assert float(r["PGD-40 0.2"]) <= float(r["FGSM 0.2"]) + 1 / 80
        assert "PGD-40 0.3" not in r  # quick mode: the training budget only
    masking = _rows(folder, "gradient-masking-check")
    assert {r["model"] for r in masking} == set(training)
    assert {r["check"] for r in masking} <= {"pass", "FAIL"}
    for r in masking:  # the restarts keep PGD-40's own run: never weaker
        assert float(r["PGD-40 x2"]) <= float(r["PGD-40"])
        ok = max(float(r[k]) for k in ("PGD-10", "PGD-40", "PGD-40 x2")) <= float(r["FGSM"]) + 1.5 / 40 and \
            float(r["PGD-40"]) <= float(r["PGD-10"]) + 1.5 / 40
        assert (r["check"] == "pass") == ok


def test_unet_dice_falls_with_eps_in_hu(tiny_run):
    folder, _ = tiny_run
    dice = _rows(folder, "u-net-dice-against-eps-hu")
    assert [float(r["eps (HU)"]) for r in dice] == [0.0, 40.0, 640.0]
    assert float(dice[0]["mean Dice"]) > float(dice[-1]["mean Dice"])
    assert float(dice[0]["Dice body"]) > 0.5  # the U-Net learnt something before the attack


def test_hu_segmenter_is_invariant_to_the_intensity_map():
    torch.manual_seed(0)
    net = nn.Conv2d(1, 3, 3, padding=1)
    x = torch.rand(2, 1, 8, 8)
    model = HUSegmenter(net)
    torch.testing.assert_close(model(x), model(2000 * x - 1000), rtol=1e-4, atol=1e-4)


def test_attack_images_stays_in_the_ball_and_range():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(7, 1, 4, 4), torch.randint(0, 3, (7,))
    for method in ("fgsm", "pgd"):
        x_adv = attack_images(net, x, y, method=method, eps=0.1, steps=3, batch_size=3)
        assert x_adv.shape == x.shape
        assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
        assert 0.0 <= float(x_adv.min()) and float(x_adv.max()) <= 1.0
    torch.testing.assert_close(attack_images(net, x, y, method="pgd", eps=0.0), x)
    with pytest.raises(ValueError, match="method"):
        attack_images(net, x, y, method="cw", eps=0.1)


def test_eps_ramp():
    step = PGDAdversarialStep(eps=0.2, steps=4)
    ramp = EpsRamp(step, ramp=4)
    seen = []
    for epoch in (1, 2, 4, 6):
        ramp.on_epoch_start(SimpleNamespace(epoch=epoch))
        seen.append((round(step.eps, 6), round(step.alpha, 6)))
    assert seen == [(0.05, 0.03125), (0.1, 0.0625), (0.2, 0.125), (0.2, 0.125)]


@pytest.mark.parametrize("override, match", [
    ({"eps_list": (-0.1, 0.2)}, "eps_list must be"),
    ({"train_eps": 0.0}, "train_eps must be"),
    ({"clean_weight": 1.5}, "clean_weight must be"),
    ({"at_steps": 0}, "at_steps must be"),
    ({"phantom_size": 30}, "phantom_size must be"),
])
def test_bad_settings_are_rejected(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("robustness", quick=True, out=tmp_path / "x", **override)
