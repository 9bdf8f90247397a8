"""DICOM de-identification (PS3.15 Annex E basic profile) on pydicom's shipped files and on
series built for the test."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mlimaging.data.samples import sample_paths
from mlimaging.privacy._dicom_profile import ACTIONS, BASIC_PROFILE, TAGS
from mlimaging.privacy.deidentify import (
    deidentify_dataset,
    deidentify_dicom,
    read_dicom,
    resolve_action,
)

# pydicom's shipped files include deliberately odd values (80-char LO, '1A' as IS, ...).
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:pydicom"),
              pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR")]

KEY = b"test-key"
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DUMMIES = {"ANONYMIZED", "ANONYMOUS", "000Y", "19000101", "19000101000000", "000000", "0", 0,
           "urn:anonymized", b"\x00" * 8}


def _testdata_files() -> list[str]:
    """The .dcm files shipped inside pydicom's wheel (``get_testdata_files`` would also try to
    download pydicom-data's, which an offline machine cannot)."""
    return [str(p) for p in sample_paths("*.dcm", package="pydicom")]


def _elements(ds: Dataset) -> Iterator[pydicom.DataElement]:
    """Every data element of ``ds`` and its file meta, nested sequence items included."""
    meta = getattr(ds, "file_meta", None)
    for d in ([meta] if meta is not None else []) + [ds]:
        for elem in d:
            yield elem
            if elem.VR == "SQ":
                for item in elem.value:
                    yield from _elements(item)


def _uids(ds: Dataset) -> set[str]:
    out = set()
    for e in _elements(ds):
        if e.VR == "UI" and not e.is_empty:
            out.update(str(v) for v in (e.value if isinstance(e.value, (list, pydicom.multival.MultiValue))
                                        else [e.value]))
    return out


def assert_basic_profile(original: Dataset, out: Dataset, *, conformance: bool = True) -> None:
    """Every attribute of Table E.1-1 is absent, empty, a dummy or a new UID per its action; no
    private attribute, curve or overlay data; the de-identification marks are set."""
    old_uids = _uids(original)
    for e in _elements(out):
        t = int(e.tag)
        assert not e.tag.is_private, f"private {e.tag} left"
        assert not (0x5000 <= t >> 16 <= 0x501E), f"curve {e.tag} left"
        assert not (0x6000 <= t >> 16 <= 0x601E and t & 0xFFFF in (0x3000, 0x4000)), f"overlay {e.tag} left"
        if t not in TAGS:
            continue
        keyword, code = TAGS[t]
        action = resolve_action(code, conformance=conformance)
        assert action != "X", f"{keyword} ({code}) should be removed"
        if action == "Z":
            assert e.is_empty, f"{keyword} should be empty, is {e.value!r}"
        elif action in ("D", "C") and e.VR == "SQ":
            assert len(e.value) == 1 and len(e.value[0]) == 0, keyword
        elif action in ("D", "C") and e.VR != "UI":
            value = str(e.value) if e.VR == "PN" else e.value
            assert value in DUMMIES, f"{keyword} should be a dummy, is {e.value!r}"
        elif action in ("U", "D", "C") and not e.is_empty:
            values = e.value if isinstance(e.value, (list, pydicom.multival.MultiValue)) else [e.value]
            for v in values:
                assert str(v).startswith("2.25.") and str(v) not in old_uids and len(str(v)) <= 64, keyword
    if "PixelData" in original or "SOPClassUID" in original:
        assert out.PatientIdentityRemoved == "YES"
        code = out.DeidentificationMethodCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[dict[str, Dataset], dict[str, Dataset], object]:
    """pydicom's shipped .dcm files, de-identified as one folder in one run."""
    src = tmp_path_factory.mktemp("in")
    for f in _testdata_files():
        shutil.copy(f, src / Path(f).name)
    dst = tmp_path_factory.mktemp("out") / "deid"
    with pytest.warns(UserWarning, match="skipped: not DICOM"):
        summary = deidentify_dicom(src, dst, uid_key=KEY)
    originals, outputs = {}, {}
    for path in summary.written:
        originals[path.name] = read_dicom(src / path.name)
        outputs[path.name] = read_dicom(path)
    return originals, outputs, summary


# ------------------------------------------------------------------ the table itself
def test_table_is_well_formed_and_has_the_standards_examples():
    assert len(BASIC_PROFILE) == len(TAGS) > 300
    assert set(BASIC_PROFILE.values()) <= set(ACTIONS)
    # a few rows of Table E.1-1, Basic Profile column
    for keyword, action in [("PatientName", "Z"), ("PatientID", "Z"), ("PatientBirthDate", "Z"),
                            ("StudyInstanceUID", "U"), ("SOPInstanceUID", "U"), ("InstitutionName", "X/Z/D"),
                            ("ReferencedImageSequence", "X/Z/U*"), ("ContentDate", "Z/D"),
                            ("AccessionNumber", "Z"), ("PatientAge", "X"), ("OtherPatientIDs", "X")]:
        assert BASIC_PROFILE[keyword] == action
    assert TAGS[0x00100010] == ("PatientName", "Z")


def test_resolve_action():
    assert [resolve_action(a) for a in ("X", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")] == [
        "X", "D", "Z", "D", "D", "U*"]
    assert [resolve_action(a, conformance=False) for a in ("Z/D", "X/Z", "X/Z/U*")] == ["Z", "X", "X"]
    with pytest.raises(ValueError, match="action"):
        resolve_action("Q")


# ------------------------------------------------------------------ pydicom's shipped files
def test_shipped_files_leave_no_identifying_attribute(shipped):
    originals, outputs, summary = shipped
    assert len(outputs) >= 70 and summary.files_written == len(outputs)
    assert [p.name for p in summary.skipped] == ["no_meta.dcm"]  # a bare data fragment, no instance
    for name in outputs:
        assert_basic_profile(originals[name], outputs[name])
    assert summary.private_removed > 0 and summary.uids_replaced > 0 and summary.emptied > 0


def test_shipped_files_pixel_data_unchanged(shipped):
    originals, outputs, _ = shipped
    checked = 0
    for name, ds in originals.items():
        for kw in PIXEL_TAGS:
            if kw in ds:
                assert outputs[name][kw].value == ds[kw].value, name
                assert outputs[name].file_meta.get("TransferSyntaxUID") == ds.file_meta.get("TransferSyntaxUID")
                checked += 1
    assert checked >= 60, checked


def test_shipped_files_uids_are_consistent(shipped):
    originals, outputs, _ = shipped
    mapping: dict[str, set[str]] = defaultdict(set)
    for name, ds in originals.items():
        out = outputs[name]
        for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
            if kw in ds and not ds[kw].is_empty:
                mapping[str(ds[kw].value)].add(str(out[kw].value))
        if "SOPInstanceUID" in ds and getattr(ds, "file_meta", None) is not None \
                and ds.file_meta.get("MediaStorageSOPInstanceUID") == ds.SOPInstanceUID:
            assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert all(len(new) == 1 for new in mapping.values())  # one input UID -> one output UID
    news = [next(iter(v)) for v in mapping.values()]
    assert len(set(news)) == len(news)  # distinct inputs stay distinct
    series = defaultdict(set)
    for name, ds in originals.items():
        if "SeriesInstanceUID" in ds:
            series[ds.SeriesInstanceUID].add(outputs[name].SeriesInstanceUID)
    assert any(len(names) for names in series.values()) and all(len(v) == 1 for v in series.values())


# ------------------------------------------------------------------ a series built for the test
def _series(folder: Path, n: int = 3) -> list[Dataset]:
    from pydicom.data import get_testdata_file

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = []
    for i in range(n):
        ds = base.copy()
        ds.SOPInstanceUID = f"1.2.3.4.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID = "1.2.3.100", "1.2.3.200"
        ds.PatientName, ds.OtherPatientNames = "Doe^Secretname", "Secretname^J"
        ds.InstitutionName, ds.PatientAge, ds.AcquisitionDateTime = "Secretname Hospital", "042Y", "20200101120000"
        ds.add_new(0x00091001, "LO", "Secretname private")
        op = Dataset()
        op.OperatorsName = "Secretname^Op"
        op.ReferencedSOPInstanceUID = "1.2.3.4.0"
        ds.ReferencedImageSequence = Sequence([op])
        sub = folder / ("a" if i < 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        ds.save_as(sub / f"im{i}.dcm", enforce_file_format=True)
        out.append(ds)
    (folder / "README.txt").write_text("not dicom")
    return out


def test_series_references_and_no_identifying_bytes(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    originals = _series(src)
    with pytest.warns(UserWarning, match="1 of 4 files skipped"):
        s = deidentify_dicom(src, dst, uid_key=KEY)
    assert sorted(p.relative_to(dst).as_posix() for p in s.written) == ["a/im0.dcm", "a/im1.dcm", "b/c/im2.dcm"]
    assert not (dst / "README.txt").exists() and s.files_skipped == 1
    outs = [pydicom.dcmread(p) for p in sorted(s.written)]
    for o, ds in zip(outs, originals, strict=True):
        assert b"Secretname" not in Path(o.filename).read_bytes()
        assert_basic_profile(ds, o)
        assert o.PixelData == ds.PixelData and "PatientAge" not in o and o.PatientName == ""
        assert o.InstitutionName == "ANONYMIZED" and o.AcquisitionDateTime == "19000101000000"
    assert len({o.SeriesInstanceUID for o in outs}) == 1 and len({o.SOPInstanceUID for o in outs}) == 3
    assert all(o.ReferencedImageSequence[0].ReferencedSOPInstanceUID == outs[0].SOPInstanceUID for o in outs)
    assert "OperatorsName" in outs[0].ReferencedImageSequence[0]  # X/Z/D -> D inside the kept sequence
    # the same key maps the same way; a fresh random key does not
    again = deidentify_dicom(src / "a" / "im0.dcm", tmp_path / "again.dcm", uid_key=KEY)
    assert pydicom.dcmread(again.written[0]).SOPInstanceUID == outs[0].SOPInstanceUID
    fresh = deidentify_dicom(src / "a" / "im0.dcm", tmp_path / "fresh.dcm")
    assert pydicom.dcmread(fresh.written[0]).SOPInstanceUID != outs[0].SOPInstanceUID


def test_remove_when_not_keeping_conformance(tmp_path):
    (original,) = _series(tmp_path / "in", 1)
    out = deidentify_dataset(original, uid_key=KEY, conformance=False)
    assert_basic_profile(original, out, conformance=False)
    for kw in ("InstitutionName", "AcquisitionDateTime", "ReferencedImageSequence", "PatientAge"):
        assert kw not in out
    assert original.PatientName == "Doe^Secretname"  # the input is not modified
    assert out.PixelData == original.PixelData


def test_overwrite_needs_force_and_progress(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    _series(src, 2)
    calls = []
    with pytest.warns(UserWarning):
        deidentify_dicom(src, dst, uid_key=KEY, progress=lambda i, n, p: calls.append((i, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(FileExistsError, match="force"):
        deidentify_dicom(src, dst)
    with pytest.warns(UserWarning):
        assert deidentify_dicom(src, dst, force=True).files_written == 2
    one = src / "a" / "im0.dcm"
    deidentify_dicom(one, tmp_path / "single")  # a file into a new path
    with pytest.raises(FileExistsError, match="force"):
        deidentify_dicom(one, tmp_path / "single")
    folder = tmp_path / "into"
    folder.mkdir()
    assert deidentify_dicom(one, folder).written == [folder / "im0.dcm"]  # a file into an existing folder


# ------------------------------------------------------------------ bad input
def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="src"):
        deidentify_dicom(tmp_path / "missing", tmp_path / "out")
    text = tmp_path / "x.dcm"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a DICOM"):
        deidentify_dicom(text, tmp_path / "y.dcm")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no DICOM"):
        deidentify_dicom(empty, tmp_path / "o")
    with pytest.raises(ValueError, match="inside src"):
        deidentify_dicom(empty, empty / "sub")
    with pytest.raises(ValueError, match="is src"):
        deidentify_dicom(empty, empty)
    with pytest.raises(NotADirectoryError):
        deidentify_dicom(empty, text)
    with pytest.raises(ValueError, match="Dataset"):
        deidentify_dataset("not a dataset")
    with pytest.raises(ValueError, match="uid_key"):
        deidentify_dataset(Dataset(), uid_key=b"")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_random_bytes_are_not_dicom(tmp_path, data):
    f = tmp_path / "blob.dcm"
    f.write_bytes(b"DICM" + data)
    with pytest.raises(ValueError, match="not a DICOM"):
        deidentify_dicom(f, tmp_path / "blob_out.dcm", force=True)
