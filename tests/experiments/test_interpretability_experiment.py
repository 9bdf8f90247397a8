"""Experiment ``interpretability``: a small smoke run (the methods are tested in tests/interpretability/)."""

from __future__ import annotations

import csv
import json

import pytest

from mlimaging.experiments import list_experiments, run_experiment
from mlimaging.experiments.interpretability import METHODS, SEG_METHODS

# The quick run's code path with fewer images and steps (LeNet still trains on all 3,500 digits).
TINY = dict(epochs=2, digits=3, smoothgrad_samples=4, sanity_images=4, deletion_images=8, deletion_steps=6,
            ablation_images=300, tsne_points=150, tsne_iter=300, cmv_steps=10, dream_size=48, dream_octaves=2,
            dream_steps=2, phantoms=8, phantom_size=32, unet_epochs=6)
FIGURES = {"attribution-maps.png", "sanity-checks.png", "deletion-insertion.png", "occlusion.png",
           "filters-and-class-models.png", "deepdream-camera.png", "channel-ablation.png",
           "tsne-pixels-vs-features.png", "lesion-attributions.png"}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


def test_quick_smoke_run_writes_every_section(tmp_path):
    assert "interpretability" in list_experiments()
    run = run_experiment("interpretability", quick=True, seed=0, out=tmp_path / "x", **TINY)
    folder = tmp_path / "x"
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    assert run.report_path.read_text().count("<img") == len(FIGURES)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["lenet_test_accuracy"] > 0.8

    # one sanity-check row per method; correlations are 1 at the trained model and within [-1, 1]
    sanity = {r["method"]: r for r in _rows(folder, "sanity-check-per-method")}
    assert list(sanity) == list(METHODS)
    for curve in metrics["sanity"].values():
        assert curve[0]["layer"] == "(trained)" and curve[0]["spearman"] == pytest.approx(1.0)
        assert [c["layer"] for c in curve[1:]] == ["fc3", "fc2", "fc1", "conv2", "conv1"]
        assert all(-1.0 <= c["spearman"] <= 1.0 for c in curve)
    # randomising every layer decorrelates Grad-CAM more than guided backprop (the known failure)
    assert float(sanity["grad_cam"]["all layers random"]) < float(sanity["guided_backprop"]["all layers random"])

    # deletion / insertion: every method and the random reference; integrated gradients beats random
    areas = {r["method"]: r for r in _rows(folder, "deletion-and-insertion-areas")}
    assert set(areas) == set(METHODS) | {"random"}
    gap = {m: float(r["insertion - deletion"]) for m, r in areas.items()}
    assert gap["integrated_gradients"] > gap["random"] + 0.2

    # t-SNE: LeNet's features separate the classes better than raw pixels do
    tsne = {r["features"]: r for r in _rows(folder, "t-sne-maps")}
    assert float(tsne["LeNet penultimate"]["5-NN accuracy in the map"]) > float(tsne["raw pixels"]["5-NN accuracy in the map"])
    assert 0.5 < float(tsne["LeNet penultimate"]["trustworthiness"]) <= 1.0

    ablation = {r["layer"]: r for r in _rows(folder, "channel-ablation")}
    assert int(ablation["conv1"]["channels"]) == 6 and int(ablation["conv2"]["channels"]) == 16

    lesion = _rows(folder, "lesion-attributions")
    assert {r["method"] for r in lesion} == set(SEG_METHODS)
    assert all(0.0 <= float(r["attribution in lesion + 3 px"]) <= 1.0 + 1e-6 for r in lesion)
    structures = {r["structure ablated"] for r in _rows(folder, "structure-ablation")}
    assert "lesion" in structures or not metrics["unet_lesion_dice"]
    assert len(metrics["class_model_probability"]) == 10


def test_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(Exception, match="methods"):
        run_experiment("interpretability", quick=True, out=tmp_path / "a", methods=("saliency", "magic"))
    with pytest.raises(Exception, match="tsne_points"):
        run_experiment("interpretability", quick=True, out=tmp_path / "b", tsne_points=5)
