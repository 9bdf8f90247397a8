"""Experiment ``generative``: a tiny smoke run (the models and metrics are tested in tests/generative/)."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch

import mlimaging.experiments.generative  # noqa: F401  (registers the experiment)
from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment
from mlimaging.experiments.generative import SaturationProbe, _grid_epochs

# The quick run's code path on smaller data: two GAN epochs (two sample grids), tiny SCM sets.
TINY = dict(n_train=128, epochs=2, width=8, latent_dim=16, n_fid=64, feature_epochs=1, n_saturation=96,
            n_morpho=64, n_causal=96, scm_epochs=1, scm_width=8, n_test=8, m=2, n_cf=1, do_t=(1.5, 4.0),
            do_i=(100.0, 200.0), batch_size=32)
FIGURES = {"gan-samples-over-training.png", "gan-losses.png", "minimax-vs-non-saturating.png", "morpho-histograms.png",
           "causal-mnist-measured-vs-true.png", "scm-training.png", "counterfactuals-do-t.png",
           "counterfactuals-do-i.png", "composition.png"}
TABLES = {"dcgan-history.csv", "fid-with-our-digit-classifier.csv", "digit-classes-among-the-samples.csv",
          "early-saturation-of-the-minimax-loss.csv", "morpho-mnist-measurements.csv",
          "measured-against-true-parents-of-causal-mnist.csv", "counterfactual-parents.csv",
          "soundness-per-model-and-parent.csv", "causal-effects-of-thickness.csv"}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen") / "run"
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:  # the feature classifier is cached here, not in the user's cache
        mp.setenv("MLIMAGING_CACHE", str(cache))
        assert "generative" in list_experiments()
        run = run_experiment("generative", quick=True, seed=0, out=folder, **TINY)
    return folder, run


def test_report_holds_every_table_and_figure(tiny_run):
    folder, run = tiny_run
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    assert {p.name for p in (folder / "tables").iterdir()} == TABLES
    html = run.report_path.read_text()
    assert html.count("<img") == len(FIGURES)
    assert "no GAN-based image mechanism" in html
    assert sorted(p.name for p in (folder / "samples").iterdir()) == ["samples_epoch_001.png", "samples_epoch_002.png"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n_train"] == 128 and metrics["n_test"] == 8
    assert set(metrics["section_seconds"]) == set(metrics["section_cpu_seconds"])


def test_fid_table_has_the_baselines_and_gan_history(tiny_run):
    folder, _ = tiny_run
    fid = {r["images"].split(" (")[0]: float(r["FID"]) for r in _rows(folder, "fid-with-our-digit-classifier")}
    assert set(fid) == {"DCGAN samples", "real vs real", "Gaussian noise"}
    assert all(v >= 0 for v in fid.values())
    assert fid["real vs real"] < fid["Gaussian noise"]  # two halves of the test split are close, noise is far
    fractions = [float(r["fraction"]) for r in _rows(folder, "digit-classes-among-the-samples")]
    assert len(fractions) == 10 and math.isclose(sum(fractions), 1.0, abs_tol=1e-9)
    history = _rows(folder, "dcgan-history")
    assert [int(r["epoch"]) for r in history] == [1, 2]
    assert all(0 <= float(r["D(x)"]) <= 1 and 0 <= float(r["D(G(z))"]) <= 1 for r in history)


def test_saturation_table_and_probe_records(tiny_run):
    folder, _ = tiny_run
    rows = {r["trained with"]: r for r in _rows(folder, "early-saturation-of-the-minimax-loss")}
    assert list(rows) == ["minimax", "non_saturating"]
    metrics = json.loads((folder / "metrics.json").read_text())
    for kind, r in rows.items():
        rec = metrics["saturation"][kind]
        assert int(r["batches"]) == len(rec) == 3  # 96 digits in batches of 32
        for x in rec:  # |d/df log(1 - s(f))| / |d/df -log s(f)| = s / (1 - s) per sample
            assert 0 < x["D(G(z))"] < 1 and x["grad_minimax"] > 0 and x["grad_non_saturating"] > 0
    # identical initialisation: the first batch of both runs is the same game
    first = [metrics["saturation"][k][0] for k in rows]
    assert first[0]["D(G(z))"] == pytest.approx(first[1]["D(G(z))"], rel=1e-4)


def test_morpho_agreement_and_soundness_reference(tiny_run):
    folder, _ = tiny_run
    agree = {r["parent"]: r for r in _rows(folder, "measured-against-true-parents-of-causal-mnist")}
    assert float(agree["thickness"]["Pearson r"]) > 0.9 and float(agree["intensity"]["Pearson r"]) > 0.9
    measures = {(r["data"], r["measure"]) for r in _rows(folder, "morpho-mnist-measurements")}
    assert len(measures) == 14
    sound = {(r["model"], r["parent"]): r for r in _rows(folder, "soundness-per-model-and-parent")}
    assert set(sound) == {(m, p) for m in ("deep SCM (conditional VAE)", "true SCM") for p in ("t", "i")}
    for p in ("t", "i"):
        true = sound[("true SCM", p)]
        assert float(true["composition L1 (1)"]) == 0.0 and float(true["composition L1 (2)"]) == 0.0
        assert float(true["reversibility L1"]) < 0.05  # do(i) undoes exactly; do(t) up to the morphology
        assert float(true["effectiveness MAE t (px)"]) < 0.5
    assert float(sound[("true SCM", "i")]["effectiveness MAE i (grey)"]) < 1.0
    assert float(sound[("deep SCM (conditional VAE)", "t")]["composition L1 (1)"]) > 0  # a VAE reconstructs


def test_counterfactual_parents_and_effects(tiny_run):
    folder, _ = tiny_run
    cf = _rows(folder, "counterfactual-parents")
    assert [r["do"] for r in cf if r["model"] == "true"] == ["t=1.5", "t=4", "i=100", "i=200"]
    for r in cf:
        if r["do"].startswith("t="):
            assert float(r["mean t'"]) == pytest.approx(float(r["do"][2:]))
        else:  # do(i) never moves t: both models keep the observed thickness
            assert float(r["mean i'"]) == pytest.approx(float(r["do"][2:]))
    same_t = {r["mean t'"] for r in cf if r["do"].startswith("i=")}
    assert len(same_t) == 1
    effects = {(r["model"], r["outcome"]): r for r in _rows(folder, "causal-effects-of-thickness")}
    true_i = effects[("true SCM", "i")]
    assert float(true_i["indirect"]) == 0.0 and float(true_i["total"]) == pytest.approx(float(true_i["direct"]))
    assert abs(float(effects[("true SCM", "intensity")]["direct"])) < 1.0  # t has no direct path to intensity


def test_saturation_probe_leaves_training_unchanged():
    from mlimaging.generative.gan import DCGANDiscriminator, DCGANGenerator, gan_loss

    torch.manual_seed(0)
    G, D = DCGANGenerator(latent_dim=8, width=4), DCGANDiscriminator(width=4)
    before = {k: v.clone() for m in (G, D) for k, v in m.state_dict().items()}
    probe = SaturationProbe(D, n=16, seed=3)
    probe.on_batch_end(SimpleNamespace(model=G))
    after = {k: v for m in (G, D) for k, v in m.state_dict().items()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in (*G.parameters(), *D.parameters()))
    # the two gradients differ exactly by the per-sample factors s and 1 - s on the same graph
    rec = probe.records[0]
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(3))
    f = D(G(z))
    params = list(G.parameters())
    g = torch.autograd.grad(gan_loss("non_saturating").generator(f), params)
    assert rec["grad_non_saturating"] == pytest.approx(float(torch.sqrt(sum(x.pow(2).sum() for x in g))), rel=1e-5)
    assert rec["D(G(z))"] == pytest.approx(float(torch.sigmoid(f.detach()).mean()), rel=1e-5)


def test_grid_epochs():
    assert _grid_epochs(1) == [1]
    assert _grid_epochs(2) == [1, 2]
    assert _grid_epochs(20) == [1, 7, 14, 20]


@pytest.mark.parametrize("override, match", [
    ({"epochs": 0}, "epochs must be"),
    ({"n_train": 4}, "n_train must be"),
    ({"do_t": (0.2,)}, "do_t must be"),
    ({"do_i": ()}, "do_i must be"),
    ({"treatment_t": 0.0}, "treatment_t must be"),
    ({"scm_lr": -1.0}, "scm_lr must be"),
])
def test_bad_settings_are_rejected(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("generative", quick=True, out=tmp_path / "x", **override)
