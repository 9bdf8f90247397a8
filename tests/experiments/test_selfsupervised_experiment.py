"""Experiment ``selfsupervised``: a tiny smoke run (the pieces are tested in tests/selfsupervised/)."""

from __future__ import annotations

import csv
import json

import pytest

from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment

# The quick run's code path on smaller data: 128 digits, one temperature besides the default.
TINY = dict(n_train=128, n_test=64, temperatures=(0.2, 0.5), probe_epochs=3, tsne_points=30, batch_size=64,
            phantoms=8)
FIGURES = {"augmentation-gallery.png", "pretraining-losses.png", "label-efficiency.png", "tsne-before-after.png",
           "mae-reconstructions.png", "temperature-ablation.png", "crop-vs-full-augmentation.png"}
TABLES = {"probes-after-pretraining-all-labels.csv", "label-efficiency.csv", "nt-xent-temperature-ablation.csv",
          "crop-only-vs-full-augmentation.csv", "phantom-patches-tissue-at-the-centre.csv"}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


def test_quick_smoke_run_writes_every_table_and_figure(tmp_path):
    assert "selfsupervised" in list_experiments()
    run = run_experiment("selfsupervised", quick=True, seed=0, out=tmp_path / "ssl", **TINY)
    folder = tmp_path / "ssl"
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    assert {p.name for p in (folder / "tables").iterdir()} == TABLES
    assert run.report_path.read_text().count("<img") == len(FIGURES)

    probes = {r["method"]: r for r in _rows(folder, "probes-after-pretraining-all-labels")}
    assert list(probes) == ["SimCLR", "Triplet", "MAE", "I-JEPA", "random CNN", "random ViT"]
    for r in probes.values():
        assert 0.0 <= float(r["linear probe"]) <= 1.0 and 0.0 <= float(r["kNN"]) <= 1.0
        assert int(r["encoder parameters"]) > 0
    # the random baselines share their architecture with the pretrained encoders
    assert probes["random CNN"]["encoder parameters"] == probes["SimCLR"]["encoder parameters"]
    assert probes["random ViT"]["encoder parameters"] == probes["MAE"]["encoder parameters"]

    eff = _rows(folder, "label-efficiency")
    pairs = {(r["method"], r["probe"]) for r in eff}
    assert {("SimCLR", "linear"), ("SimCLR", "knn"), ("SimCLR", "fine_tune"), ("supervised", "scratch"),
            ("MAE", "linear"), ("I-JEPA", "knn"), ("Triplet", "linear"), ("random CNN", "linear")} <= pairs
    # 1% of 128 rounds to 1 < 10 classes: one image per class; 10% -> 13; 100% -> 128
    assert sorted({int(r["labels"]) for r in eff}) == [10, 13, 128]
    assert all(0.0 <= float(r["mean accuracy"]) <= 1.0 and int(r["seeds"]) == 1 for r in eff)

    temps = _rows(folder, "nt-xent-temperature-ablation")
    assert [float(r["temperature"]) for r in temps] == [0.2, 0.5]
    aug = _rows(folder, "crop-only-vs-full-augmentation")
    assert [r["augmentation"] for r in aug] == ["crop only", "full pipeline"]
    # the ablation reuses section 2's SimCLR at the default temperature (same images and epochs)
    assert float(temps[1]["linear probe"]) == float(probes["SimCLR"]["linear probe"])
    assert float(aug[1]["kNN"]) == float(temps[1]["kNN"])

    phantom = _rows(folder, "phantom-patches-tissue-at-the-centre")
    assert {(r["encoder"], r["probe"]) for r in phantom} == {
        ("SimCLR", "linear"), ("SimCLR", "knn"), ("supervised", "scratch"), ("random CNN", "linear"), ("random CNN", "knn")}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in phantom)

    metrics = json.loads((folder / "metrics.json").read_text())
    # one patch per tissue present: every phantom has background, body and organ, most a lesion
    assert 3 * 8 <= metrics["phantom_patches"]["n_train"] <= 4 * 8
    assert metrics["n_train"] == 128 and metrics["n_test"] == 64
    assert set(metrics["pretraining_histories"]) == {"simclr", "triplet", "mae", "ijepa"}
    assert all(len(h) == 1 for h in metrics["pretraining_histories"].values())  # quick: one epoch
    assert metrics["mae_reconstruction_mse"] >= 0.0
    raw = metrics["label_efficiency"]
    supervised = [r for r in raw if r["method"] == "supervised"]
    simclr = [r for r in raw if r["method"] == "SimCLR" and r["probe"] == "fine_tune"]
    assert [r["labels"] for r in supervised] == [r["labels"] for r in simclr]  # same subsets


@pytest.mark.parametrize("override, match", [
    ({"temperatures": (0.0, 0.5)}, "temperatures must be"),
    ({"fractions": (0.0,)}, "fractions must be"),
    ({"epochs": 0}, "epochs must be"),
    ({"vit_dim": 30}, "vit_dim must be"),
])
def test_bad_settings_are_rejected(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("selfsupervised", quick=True, out=tmp_path / "x", **override)
