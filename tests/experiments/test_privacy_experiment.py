"""Experiment ``privacy``: a tiny smoke run as on a base install (the methods are tested in tests/privacy/)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch.utils.data import TensorDataset

import mlimaging.experiments.privacy as privacy_experiment  # registers `privacy`
from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment
from mlimaging.privacy.accounting import epsilon
from mlimaging.privacy.anonymity import k_anonymity, synthetic_metadata

# The quick run's code path on smaller data: 300 digits, 8 x 8 attacks, two k values.
TINY = dict(n_train=300, n_test=100, epochs=1, batch_size=100, epsilons=(1.0, 8.0), clip_norms=(1.0,), sigmas=(2.0,),
            attack_images=2, attack_size=8, dlg_iterations=3, ig_iterations=5, ig_restarts=1,
            defence_strengths={"noise": (None, 0.5), "dp": (None, 1.0), "topk": (None, 0.1)},
            he_images=1, he_cryptonet=False, paillier_values=50, table_rows=200, ks=(2, 5), dicom_files=2)
FIGURES = {"accuracy-vs-epsilon.png", "clipping-and-noise.png", "inversion-gallery.png", "psnr-vs-defence.png",
           "information-loss-vs-k.png"}
TABLES = {"accuracy-against-epsilon.csv", "clipping-and-noise-ablation.csv", "gradient-inversion.csv",
          "psnr-against-defence-strength.csv", "k-anonymity-before-and-after.csv", "example-rows.csv",
          "de-identification-summary.csv"}
HE_TABLES = {"encrypted-against-plain-inference.csv", "paillier-aggregation.csv"}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("privacy") / "run"
    assert "privacy" in list_experiments()
    run_experiment("privacy", quick=True, seed=0, out=folder, **TINY)
    return folder


def test_writes_every_figure_table_and_the_report(tiny_run):
    assert {p.name for p in (tiny_run / "figures").iterdir()} == FIGURES
    tables = {p.name for p in (tiny_run / "tables").iterdir()}
    assert TABLES <= tables
    he = not privacy_experiment.missing_packages(privacy_experiment.HE_PACKAGES)
    assert (HE_TABLES <= tables) if he else not (HE_TABLES & tables)
    html = (tiny_run / "report.html").read_text()
    for title in ("Accuracy against epsilon", "Gradient inversion", "Homomorphic encryption", "k-anonymity"):
        assert title in html
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["n_train"] == 300 and metrics["n_test"] == 100 and isinstance(metrics["ordering_holds"], bool)


def test_each_run_spends_its_budget_by_the_accountant(tiny_run):
    rows = _rows(tiny_run, "accuracy-against-epsilon")
    assert [r["training"] for r in rows] == ["DP-SGD, epsilon 1", "DP-SGD, epsilon 8", "non-private (dp_cnn, Adam, batch 64)"]
    sigmas = []
    for r, target in zip(rows[:2], (1.0, 8.0), strict=True):
        sigma, q, steps = float(r["noise multiplier"]), float(r["sample rate"]), int(r["steps"])
        assert q == pytest.approx(100 / 300) and steps == 3
        spent = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5)
        assert float(r["epsilon spent"]) == pytest.approx(spent, rel=1e-9)
        assert 0.98 * target <= spent <= target
        assert 0 <= float(r["test accuracy"]) <= 1
        sigmas.append(sigma)
    assert sigmas[0] > sigmas[1]  # a smaller budget needs more noise
    ablation = {r["knob"]: r for r in _rows(tiny_run, "clipping-and-noise-ablation")}
    assert float(ablation["noise multiplier"]["epsilon"]) == pytest.approx(
        epsilon(noise_multiplier=2.0, sample_rate=1 / 3, steps=3, delta=1e-5), rel=1e-9)


def test_inversion_recovers_labels_and_defences_cost_quality(tiny_run):
    rows = {r["attack"]: r for r in _rows(tiny_run, "gradient-inversion")}
    assert float(rows["DLG (+iDLG label)"]["labels recovered"]) == 1.0  # iDLG's rule is exact for one image
    assert int(rows["Inverting Gradients"]["images per gradient"]) == 2
    curve = _rows(tiny_run, "psnr-against-defence-strength")
    noise = {r["strength"]: float(r["PSNR dB"]) for r in curve if r["defence"].startswith("Gaussian")}
    assert noise["none"] > noise["0.5"]
    assert {r["strength"] for r in curve if r["defence"].startswith("DP")} == {"clip only", "1.0"}


def test_k_anonymity_is_reached_and_costs_information(tiny_run):
    rows = _rows(tiny_run, "k-anonymity-before-and-after")
    assert int(rows[0]["k-anonymity"]) == k_anonymity(synthetic_metadata(200, seed=0), ["age", "sex", "site"])
    assert float(rows[0]["NCP"]) == 0.0
    for r in rows[1:]:
        assert int(r["k-anonymity"]) >= int(r["k"]) and 0 < float(r["NCP"]) <= 1
    for method in ("generalised + suppressed", "Mondrian"):
        ncp = [float(r["NCP"]) for r in rows if r["table"] == method]
        assert ncp == sorted(ncp)  # a larger k never loses less here
    deid = {r["what"]: int(r["count"]) for r in _rows(tiny_run, "de-identification-summary")}
    assert deid["files written"] == 2


def test_without_the_he_extra_the_report_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(privacy_experiment, "HE_PACKAGES", ("a_package_that_is_not_installed",))
    tiny = dict(TINY, epsilons=(8.0,), clip_norms=(1.0,), sigmas=(1.0,), attack_images=1, ig_iterations=1,
                dlg_iterations=1, defence_strengths={"noise": (None,)}, ks=(2,), dicom_files=0)
    run = run_experiment("privacy", quick=True, seed=0, out=tmp_path / "run", **tiny)
    html = run.report_path.read_text()
    assert "pip install &#x27;mlimaging[he]&#x27;" in html or "pip install 'mlimaging[he]'" in html
    assert not any((tmp_path / "run" / "tables" / t).exists() for t in HE_TABLES)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["he"] == {
        "skipped": ["a_package_that_is_not_installed"]}


def test_train_private_is_seeded_and_accounts_exactly():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(60, 1, 28, 28, generator=g), torch.arange(60) % 10)
    kw = dict(epochs=2, batch_size=20, lr=0.1, max_grad_norm=1.0, delta=1e-5, noise_multiplier=1.5, seed=3)
    a, b = privacy_experiment.train_private(data, data, **kw), privacy_experiment.train_private(data, data, **kw)
    assert a["accuracy"] == b["accuracy"] and a["history"]["loss"] == b["history"]["loss"]
    assert a["steps"] == 2 * math.ceil(60 / 20)
    assert a["epsilon"] == pytest.approx(epsilon(noise_multiplier=1.5, sample_rate=1 / 3, steps=6, delta=1e-5),
                                         rel=1e-12)


@pytest.mark.parametrize(("override", "match"), [({"epsilons": ()}, "epsilons"), ({"epochs": 0}, "epochs"),
                                                 ({"delta": 1.0}, "delta"),
                                                 ({"defence_strengths": {"blur": (None,)}}, "defence_strengths")])
def test_bad_settings_fail_with_a_named_setting(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("privacy", quick=True, out=tmp_path / "x", **override)
