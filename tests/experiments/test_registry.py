from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from mlimaging.experiments import ExperimentConfig, ExperimentFailed


def _register(registry):
    @dataclass
    class Cfg(ExperimentConfig):
        scale: float = 1.0

    @registry.experiment("ok", config=Cfg)
    def ok(cfg, run):
        """Logs a value."""
        run.log(value=cfg.scale * (2 if cfg.quick else 1), seed=cfg.seed)
        run.table("t", [{"a": 1}])

    @registry.experiment("broken")
    def broken(cfg, run):
        """Fails halfway."""
        run.log(before=1)
        raise RuntimeError("boom halfway")


def test_run_experiment_writes_report_and_config(isolated_registry, tmp_path):
    _register(isolated_registry)
    run = isolated_registry.run_experiment("ok", quick=True, seed=7, root=tmp_path, scale=3.0)
    assert run.report_path.exists()
    assert json.loads((run.path / "metrics.json").read_text()) == {"value": 6.0, "seed": 7}
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["config"] == {"quick": True, "seed": 7, "scale": 3.0}
    assert cfg["command"] == "mlimaging run ok --seed 7 --quick"


def test_unknown_names_list_the_valid_ones(isolated_registry, tmp_path):
    _register(isolated_registry)
    with pytest.raises(ValueError, match=r"broken.*data.*ok"):
        isolated_registry.get_experiment("nope")
    with pytest.raises(ValueError, match="unknown option"):
        isolated_registry.run_experiment("ok", root=tmp_path, colour="red")


def test_failure_keeps_the_report(isolated_registry, tmp_path):
    _register(isolated_registry)
    with pytest.raises(ExperimentFailed, match="boom halfway") as info:
        isolated_registry.run_experiment("broken", root=tmp_path)
    run = info.value.run
    assert "boom halfway" in run.report_path.read_text()
    assert json.loads((run.path / "metrics.json").read_text()) == {"before": 1}


def test_run_all_continues_after_a_failure_and_links_each_report(isolated_registry, tmp_path):
    _register(isolated_registry)
    index, entries = isolated_registry.run_all(quick=True, names=["broken", "ok"], out=tmp_path / "all")
    assert [(e["name"], e["status"]) for e in entries] == [("broken", "failed"), ("ok", "done")]
    html = index.read_text()
    assert "broken/report.html" in html and "ok/report.html" in html
    assert (tmp_path / "all" / "ok" / "report.html").exists()
    assert (tmp_path / "all" / "broken" / "report.html").exists()
    with pytest.raises(FileExistsError):
        isolated_registry.run_all(names=["ok"], out=tmp_path / "all")


def test_config_must_be_an_experiment_config_dataclass(isolated_registry):
    with pytest.raises(TypeError):
        isolated_registry.experiment("bad", config=dict)
