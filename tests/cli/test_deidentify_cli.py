"""CLI: ``mlimaging deidentify IN OUT [--force]``."""

from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

import mlimaging.cli.deidentify  # noqa: F401  (registers the command until cli/__init__ imports it)
from mlimaging.cli.app import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def assert_user_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "error:" in result.output
    for word in words:
        assert word in result.output


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "sub" / "mr.dcm")
    (src / "notes.txt").write_text("not dicom")
    return src


def test_deidentify_folder_writes_summary(folder, tmp_path):
    out = tmp_path / "out"
    result = invoke("deidentify", folder, out)
    assert result.exit_code == 0, result.output
    assert "files written" in result.output and "private attributes removed" in result.output
    assert "1 of 3 files skipped: not DICOM" in result.output
    ct = pydicom.dcmread(out / "ct.dcm")
    mr = pydicom.dcmread(out / "sub" / "mr.dcm")
    original = pydicom.dcmread(folder / "ct.dcm")
    assert ct.PatientIdentityRemoved == "YES" and str(ct.PatientName) == "" and mr.PatientIdentityRemoved == "YES"
    assert ct.PixelData == original.PixelData and ct.SOPInstanceUID != original.SOPInstanceUID
    assert not (out / "notes.txt").exists()
    # OUT exists: one red line, exit 2; --force writes again
    assert_user_error(invoke("deidentify", folder, out), "already exists", "--force")
    assert invoke("deidentify", folder, out, "--force").exit_code == 0


def test_deidentify_single_file_and_remove_conditional(folder, tmp_path):
    out = tmp_path / "ct_deid.dcm"
    result = invoke("deidentify", folder / "ct.dcm", out, "--remove-conditional")
    assert result.exit_code == 0, result.output
    ds = pydicom.dcmread(out)
    assert "InstitutionName" not in ds and ds.PatientIdentityRemoved == "YES"


def test_deidentify_bad_input(folder, tmp_path):
    assert_user_error(invoke("deidentify", tmp_path / "missing", tmp_path / "o"), "IN", "does not exist")
    assert_user_error(invoke("deidentify", folder / "notes.txt", tmp_path / "o.dcm"), "not a DICOM")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    assert_user_error(invoke("deidentify", empty, tmp_path / "o2"), "no DICOM")
    assert_user_error(invoke("deidentify", folder, folder / "inside"), "inside")
