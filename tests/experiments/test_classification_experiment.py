from __future__ import annotations

import csv
import json

import pytest
import torch

from mlimaging.experiments import ExperimentFailed, get_experiment, run_experiment
from mlimaging.experiments.classification import (
    ClassificationConfig,
    class_subset,
    load_images,
    make_canvas,
)

# A tiny version of the quick run: same code path, a few hundred images and one epoch per model.
TINY = dict(max_train=300, max_test=100, epochs=1, pretrain_epochs=1, transfer_epochs=1, transfer_per_class=5)
FIGURES = {"learning-curves", "confusion-matrices", "logistic-regression-weights", "shift-test",
           "fclenet-score-maps", "transfer-learning"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "run"
    return run_experiment("classification", quick=True, seed=3, out=out, **TINY)


def _rows(run, name):
    with open(run.path / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


def test_registered_with_its_config():
    exp = get_experiment("classification")
    assert exp.config_class is ClassificationConfig
    assert "LeNet" in exp.description


def test_tiny_run_writes_report_figures_and_tables(tiny_run):
    assert tiny_run.report_path.is_file()
    assert {p.stem for p in (tiny_run.path / "figures").glob("*.png")} == FIGURES
    html = tiny_run.report_path.read_text()
    for title in ("Test accuracy", "Accuracy under translation", "Digits on the canvas",
                  "Learning new classes from few labels"):
        assert title in html
    assert html.count("seed 3") >= len(FIGURES)  # every figure and table states its seed


def test_tiny_run_metrics_are_sane(tiny_run):
    m = json.loads((tiny_run.path / "metrics.json").read_text())
    assert m["dataset"] == "digits" and m["seed"] == 3 and m["image_size"] == 28
    assert m["n_train"] == 300 and m["n_test"] == 100
    assert set(m["test_accuracy"]) == {"logistic_regression", "feature_linear", "lenet", "alexnet"}
    assert all(0.0 <= a <= 1.0 for a in m["test_accuracy"].values())
    # one epoch on 300 images: logistic regression already beats chance (10%) by far
    assert m["test_accuracy"]["logistic_regression"] > 0.3
    for name, shift in m["shift_accuracy"].items():
        assert shift["original"] == pytest.approx(m["test_accuracy"][name])
        assert 0.0 <= shift["shifted"] <= 1.0
    assert m["fcn_map_shape"] == [10, 9, 9]
    assert m["fcn_max_abs_difference"] < 1e-4  # FCLeNet == LeNet on 32 x 32 inputs
    assert set(m["transfer_accuracy"]) == {"head only", "full fine-tuning", "from scratch"}
    assert all(len(h) == 1 for h in m["histories"].values())


def test_tiny_run_tables(tiny_run):
    acc = _rows(tiny_run, "test-accuracy")
    assert [r["model"] for r in acc] == ["logistic_regression", "feature_linear", "lenet", "alexnet"]
    assert {r["seed"] for r in acc} == {"3"}
    params = {r["model"]: int(r["parameters"]) for r in acc}
    assert params["logistic_regression"] == 28 * 28 * 10 + 10 and params["lenet"] == 61706
    transfer = {r["method"]: int(r["trainable parameters"]) for r in _rows(tiny_run, "learning-new-classes-from-few-labels")}
    assert transfer["head only"] == 84 * 5 + 5 and transfer["full fine-tuning"] == transfer["from scratch"]
    canvas = _rows(tiny_run, "digits-on-the-canvas")
    assert len(canvas) == 3 and len({r["digit"] for r in canvas}) == 3


def test_same_seed_same_numbers(tiny_run, tmp_path):
    again = run_experiment("classification", quick=True, seed=3, out=tmp_path / "again", **TINY)
    a = json.loads((tiny_run.path / "metrics.json").read_text())
    b = json.loads((again.path / "metrics.json").read_text())
    for key in ("test_accuracy", "shift_accuracy", "transfer_accuracy", "fcn_max_abs_difference"):
        assert a[key] == b[key]


def test_bad_image_size_names_the_option(tmp_path):
    with pytest.raises(ExperimentFailed, match="image_size"):
        run_experiment("classification", quick=True, out=tmp_path / "bad", image_size=64, **TINY)


# ------------------------------------------------------------------------------ helpers
def test_class_subset_per_class_and_stratified_total():
    y = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)
    idx = class_subset(y, classes=[1, 2], per_class=5, seed=0)
    assert torch.bincount(y[idx], minlength=3).tolist() == [0, 5, 5]
    assert torch.equal(idx, class_subset(y, classes=[1, 2], per_class=5, seed=0))
    assert not torch.equal(idx, class_subset(y, classes=[1, 2], per_class=5, seed=1))
    total = class_subset(y, total=30, seed=0)
    assert len(total) == 30 and torch.bincount(y[total]).tolist() == [5, 10, 15]
    with pytest.raises(ValueError, match="class 7"):
        class_subset(y, classes=[7], seed=0)


def test_make_canvas_places_digits_and_checks_bounds():
    d = torch.ones(2, 1, 4, 4)
    c = make_canvas(d, [(0, 0), (2, 2)], size=8)
    assert c.shape == (1, 1, 8, 8) and c.sum() == 4 * 4 * 2 - 2 * 2  # overlap counted once (max)
    with pytest.raises(ValueError, match="positions"):
        make_canvas(d, [(0, 0), (6, 0)], size=8)


def test_load_images_resizes_small_digits():
    x, y, classes = load_images("digits", "val", seed=0, image_size=16)
    assert x.shape[1:] == (1, 16, 16) and x.dtype == torch.float32 and len(x) == len(y)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and classes == [str(k) for k in range(10)]
