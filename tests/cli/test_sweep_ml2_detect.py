"""detect: an image that cannot be read leaves no drawings of the images before it (found by a sweep of the
CLI: `detect good.png bad.png --draw boxes/` failed on bad.png after drawing boxes/good.png)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image

runner = CliRunner()


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    out = tmp_path_factory.mktemp("yolo") / "run"
    result = runner.invoke(app, ["train", "detector", "--epochs", "1", "--n-train", "8", "--n-val", "4",
                                 "--n-test", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "model.pt"


def test_detect_draws_nothing_when_a_later_image_is_bad(tmp_path, yolo):
    good = np.zeros((64, 64), dtype=np.uint8)
    good[20:40, 28:34] = 255
    write_image(tmp_path / "good.png", good)
    np.save(tmp_path / "volume.npy", np.zeros((8, 8, 8), dtype=np.float32))
    result = runner.invoke(app, ["detect", "--checkpoint", str(yolo), str(tmp_path / "good.png"),
                                 str(tmp_path / "volume.npy"), "--out", str(tmp_path / "boxes.json"),
                                 "--draw", str(tmp_path / "boxes")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: IMAGE") and "volume.npy" in lines[0], lines
    assert not (tmp_path / "boxes").exists() and not (tmp_path / "boxes.json").exists()


def test_detect_still_draws_every_image(tmp_path, yolo):
    for k in range(2):
        image = np.zeros((64, 48), dtype=np.uint8)
        image[10 + 10 * k:40, 20:26] = 255
        write_image(tmp_path / f"d{k}.png", image)
    result = runner.invoke(app, ["detect", "--checkpoint", str(yolo), str(tmp_path / "d0.png"), str(tmp_path / "d1.png"),
                                 "--draw", str(tmp_path / "boxes")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "boxes").iterdir()) == ["d0.png", "d1.png"]
