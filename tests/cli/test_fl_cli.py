"""``mlimaging fl simulate``."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.cli.fl import parse_batch_size

runner = CliRunner()
BASE = ["fl", "simulate", "--dataset", "digits", "--clients", "5", "--rounds", "2", "--fraction", "0.4",
        "--local-epochs", "1", "--seed", "1"]


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


def test_simulate_writes_the_run_folder(tmp_path):
    out = tmp_path / "fl"
    result = runner.invoke(app, [*BASE, "--scheme", "shards", "--secure", "--target", "0.05", "--out", str(out)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "metrics.json", "report.html", "history.json", "tables/history.csv",
                 "tables/partition.csv", "figures/accuracy-vs-round.png", "figures/partition.png"):
        assert (out / name).is_file(), name
    with open(out / "tables" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["round"]) for r in rows] == [1, 2]
    assert all(int(r["clients"]) == 2 and 0 <= float(r["accuracy"]) <= 1 for r in rows)
    hist = json.loads((out / "history.json").read_text())
    assert hist["settings"]["secure"] is True and len(hist["clients"]) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rounds_to_target"] == 1  # any model beats 5% on ten classes
    with open(out / "tables" / "partition.csv") as fh:
        part = list(csv.DictReader(fh))
    assert len(part) == 5
    counts = [[int(v) for k, v in r.items() if k.startswith("label")] for r in part]
    assert sum(map(sum, counts)) == metrics["n_train"]  # every training image in exactly one client
    assert sum(sum(c > 0 for c in row) for row in counts) / 5 < 6  # shards: two label-sorted shards per client
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["algorithm"] == "fedavg" and "fl simulate" in config["command"]


def test_fedsgd_forces_one_full_batch_epoch(tmp_path):
    out = tmp_path / "sgd"
    result = runner.invoke(app, [*BASE, "--algorithm", "fedsgd", "--batch-size", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    s = json.loads((out / "history.json").read_text())["settings"]
    assert s["batch_size"] == "all" and s["local_epochs"] == 1 and s["lr"] == 0.3


def test_existing_out_needs_force(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    _one_red_line(runner.invoke(app, [*BASE, "--out", str(out)]))


def _history(out):
    return json.loads((out / "history.json").read_text())


def test_resume_continues_to_the_weights_of_an_uninterrupted_run(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    more = ["--rounds", "3"]
    assert runner.invoke(app, [*BASE, *more, "--out", str(whole)]).exit_code == 0
    assert runner.invoke(app, [*BASE, "--out", str(part)]).exit_code == 0  # 2 rounds, then 3 with --resume
    result = runner.invoke(app, ["fl", "simulate", *more, "--out", str(part), "--resume"])
    assert result.exit_code == 0, result.output
    a, b = _history(whole), _history(part)
    assert [r["round"] for r in b["history"]] == [1, 2, 3] and b["clients"] == a["clients"]
    assert [r["accuracy"] for r in b["history"]] == [r["accuracy"] for r in a["history"]]
    wa = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    changed = runner.invoke(app, ["fl", "simulate", "--clients", "7", "--out", str(part), "--resume"])
    _one_red_line(changed)
    assert "--clients 7 (the run used 5)" in changed.output
    _one_red_line(runner.invoke(app, [*BASE, "--out", str(tmp_path / "none"), "--resume"]))
    assert runner.invoke(app, [*BASE, "--out", str(whole), "--force"]).exit_code == 0  # its own folder: history.json


@pytest.mark.parametrize(("args", "needle"), [
    (["--clients", "0"], "--clients"), (["--scheme", "sorted"], "--scheme"), (["--algorithm", "fedadam"], "--algorithm"),
    (["--fraction", "1.5"], "--fraction"), (["--batch-size", "abc"], "--batch-size"), (["--mu", "-1"], "--mu"),
    (["--target", "2"], "--target"), (["--lr", "0"], "--lr"), (["--clients", "100000"], "--clients"),
    (["--dataset", "cifar"], "--dataset"),
])
def test_bad_input_is_one_red_line(tmp_path, args, needle):
    result = runner.invoke(app, [*BASE, *args, "--out", str(tmp_path / "bad")], terminal_width=200)
    _one_red_line(result)
    assert needle in result.output
    assert not (tmp_path / "bad").exists()


def test_parse_batch_size():
    assert parse_batch_size(" 50 ") == 50 and parse_batch_size("inf") == "all"
    with pytest.raises(ValueError, match="--batch-size"):
        parse_batch_size("0")
