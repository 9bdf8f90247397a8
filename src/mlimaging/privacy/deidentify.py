r"""DICOM de-identification: the Basic Application Level Confidentiality Profile (PS3.15 Annex E).

What :func:`deidentify_dicom` does to every instance, wherever an attribute occurs (top level,
file meta information, or nested in sequence items):

- each attribute of Table E.1-1 (:mod:`mlimaging.privacy._dicom_profile`, 372 attributes)
  gets its Basic Profile action: ``X`` removed, ``Z`` emptied, ``D`` replaced by a dummy value
  of its VR (``ANONYMIZED``, ``19000101``, ``000000``, ``0``; a sequence by one empty item),
  ``U`` replaced by a new UID, ``K`` kept, ``C`` (clean) treated as ``D``;
- compound actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) depend on the IOD's Type
  of the attribute, which is not known here. With ``conformance=True`` (default) the *last*
  action is used, which keeps any IOD conformant (``Z`` for ``X/Z``, ``D`` for the others; for
  ``X/Z/U*`` the sequence is kept and the UIDs inside its items replaced); with
  ``conformance=False`` the *first* (remove whenever the table allows it);
- every private attribute, the curve groups ``50xx``, overlay data and comments ``60xx,3000``
  / ``60xx,4000``, retired group lengths, and the file meta's AE titles and private
  information are removed;
- UIDs are replaced by a keyed hash under the ``2.25`` root,

  .. math:: \text{UID}' = \texttt{2.25.}\,\operatorname{int}\big(\operatorname{HMAC\text{-}SHA256}_K(\text{UID})_{[0:16]}\big)

  so one input UID gives one output UID in every file of a run (series, studies, frames of
  reference and references between instances stay together) and, with a fresh random key
  ``K`` per run, cannot be linked back or across runs (pass ``uid_key`` to reuse one);
- Patient Identity Removed (0012,0062) = ``YES``, De-identification Method (0012,0063) and
  De-identification Method Code Sequence (0012,0064) = (113100, DCM, "Basic Application
  Confidentiality Profile") are added;
- pixel data (and every attribute not named above) is written byte for byte as it was, in
  the file's own transfer syntax.

Reference: DICOM PS3.15, Annex E, Table E.1-1 (NEMA), https://dicom.nema.org/medical/dicom/current/output/chtml/part15/chapter_E.html
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence

from mlimaging.privacy._dicom_profile import BASIC_PROFILE, REPEATING, TAGS

__all__ = ["BASIC_PROFILE", "DeidentificationSummary", "deidentify_dataset", "deidentify_dicom", "resolve_action"]

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY: dict[str, Any] = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": _DUMMY_TEXT, "DA": "19000101", "DS": "0", "DT": "19000101000000",
    "IS": "0", "LO": _DUMMY_TEXT, "LT": _DUMMY_TEXT, "PN": _DUMMY_TEXT, "SH": _DUMMY_TEXT, "ST": _DUMMY_TEXT,
    "TM": "000000", "UC": _DUMMY_TEXT, "UR": "urn:anonymized", "UT": _DUMMY_TEXT,
    "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "SV": 0, "UL": 0, "US": 0, "UV": 0, "AT": 0,
}
_TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
_DIRECTORY_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (DICOMDIR)
_META_REMOVE = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)  # AE titles, private info
METHOD = "DICOM PS3.15 Annex E Basic Profile (mlimaging)"


def resolve_action(action: str, *, conformance: bool = True) -> str:
    """The single action applied for a Table E.1-1 code: ``"X"``, ``"Z"``, ``"D"``, ``"K"``,
    ``"C"``, ``"U"`` or ``"U*"`` (keep the sequence, replace the UIDs in its items).

    Examples
    --------
    >>> resolve_action("X/Z/D"), resolve_action("X/Z/D", conformance=False), resolve_action("X/Z/U*")
    ('D', 'X', 'U*')
    """
    parts = action.split("/")
    if not set(parts) <= {"X", "Z", "D", "K", "C", "U", "U*"}:
        raise ValueError(f"action must be a Table E.1-1 code such as 'X/Z/D', got {action!r}")
    return parts[-1] if conformance else parts[0]


def _new_uid(uid: str, key: bytes) -> str:
    digest = hmac.new(key, uid.strip("\x00 ").encode("ascii", "replace"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _key(uid_key: bytes | str | None) -> bytes:
    if uid_key is None:
        return secrets.token_bytes(32)
    if isinstance(uid_key, str):
        uid_key = uid_key.encode()
    if not isinstance(uid_key, bytes) or not uid_key:
        raise ValueError("uid_key must be non-empty bytes or str (or None for a fresh random key)")
    return uid_key


def _repeating_action(tag: int) -> str | None:
    group, element = tag >> 16, tag & 0xFFFF
    for first, elem, _name, action in REPEATING:
        if first <= group <= first + 0x1E and group % 2 == 0 and (elem is None or elem == element):
            return action
    return None


class _Cleaner:
    """Applies the profile in place to a dataset and its nested items; counts the actions."""

    def __init__(self, key: bytes, conformance: bool) -> None:
        self.key = key
        self.conformance = conformance
        self.counts: Counter[str] = Counter()
        self.uids: set[str] = set()

    def uid(self, value: Any) -> Any:
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            return [self.uid(v) for v in value]
        if value is None or str(value).strip("\x00 ") == "":
            return value
        self.uids.add(str(value))
        return _new_uid(str(value), self.key)

    def clean(self, ds: Dataset) -> None:
        for tag in list(ds.keys()):
            t = int(tag)
            if tag.is_private:
                del ds[tag]
                self.counts["private"] += 1
                continue
            if (t & 0xFFFF) == 0 and (t >> 16) != 2 or t in _META_REMOVE:  # group lengths; meta AE titles
                del ds[tag]
                self.counts["removed"] += 1
                continue
            entry = TAGS.get(t)
            code = entry[1] if entry else _repeating_action(t)
            if code is None:
                elem = ds[tag]
                if elem.VR == "SQ":
                    for item in elem.value:
                        self.clean(item)
                continue
            self.apply(ds, tag, resolve_action(code, conformance=self.conformance))

    def apply(self, ds: Dataset, tag: Any, action: str) -> None:
        if action == "X":
            del ds[tag]
            self.counts["removed"] += 1
            return
        elem = ds[tag]
        vr = elem.VR
        if action in ("K", "U*") and vr == "SQ":
            for item in elem.value:
                self.clean(item)
        elif action == "K":
            pass
        elif action == "Z":
            empty = Sequence() if vr == "SQ" else "" if vr in _TEXT_VRS else None
            ds[tag] = DataElement(tag, vr, empty)
            self.counts["emptied"] += 1
        elif action in ("U", "U*") or (action in ("D", "C") and vr == "UI"):
            ds[tag] = DataElement(tag, vr, self.uid(elem.value))
            self.counts["uids"] += 1
        else:  # D, C
            if vr == "SQ":
                value: Any = Sequence([Dataset()])
            elif vr in _DUMMY:
                value = _DUMMY[vr]
            elif vr.startswith("O") or vr == "UN":
                value = b"\x00" * 8
            else:  # an ambiguous VR such as "US or SS"
                value = 0
            ds[tag] = DataElement(tag, vr, value)
            self.counts["replaced"] += 1


def _mark(ds: Dataset) -> None:
    if getattr(ds, "file_meta", None) is not None and ds.file_meta.get("MediaStorageSOPClassUID") == _DIRECTORY_CLASS:
        return
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])


def _deidentify_in_place(ds: Dataset, cleaner: _Cleaner) -> None:
    meta = getattr(ds, "file_meta", None)
    if isinstance(meta, (Dataset, FileMetaDataset)):
        cleaner.clean(meta)
    cleaner.clean(ds)
    _mark(ds)


def deidentify_dataset(ds: Dataset, *, uid_key: bytes | str | None = None,
                       conformance: bool = True) -> Dataset:
    """A de-identified copy of one pydicom dataset (the input is not modified).

    Applies the Basic Application Level Confidentiality Profile as described in
    :mod:`mlimaging.privacy.deidentify`. Pass the same ``uid_key`` to map the UIDs of several
    datasets consistently (a new random key is drawn when it is None).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    >>> out = deidentify_dataset(ds, uid_key=b"secret")
    >>> str(ds.PatientName), str(out.PatientName), out.PatientIdentityRemoved, out.StudyInstanceUID[:5]
    ('CompressedSamples^CT1', '', 'YES', '2.25.')
    >>> out.PixelData == ds.PixelData
    True
    """
    if not isinstance(ds, Dataset):
        raise ValueError(f"ds must be a pydicom Dataset, got {type(ds).__name__}")
    out = copy.deepcopy(ds)
    _deidentify_in_place(out, _Cleaner(_key(uid_key), conformance))
    return out


@dataclass
class DeidentificationSummary:
    """What :func:`deidentify_dicom` did.

    Attributes
    ----------
    written, skipped
        Output paths written; input files skipped because they are not DICOM.
    removed, emptied, replaced, uids_replaced, private_removed
        Attribute counts over all files (``X``; ``Z``; ``D``/``C``; ``U`` elements;
        private attributes).
    distinct_uids
        Number of distinct input UIDs replaced (each mapped to one new UID).
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    removed: int = 0
    emptied: int = 0
    replaced: int = 0
    uids_replaced: int = 0
    private_removed: int = 0
    distinct_uids: int = 0

    @property
    def files_written(self) -> int:
        return len(self.written)

    @property
    def files_skipped(self) -> int:
        return len(self.skipped)

    def to_rows(self) -> list[tuple[str, int]]:
        """(label, count) rows for a summary table."""
        return [("files written", self.files_written), ("files skipped (not DICOM)", self.files_skipped),
                ("attributes removed (X)", self.removed), ("attributes emptied (Z)", self.emptied),
                ("attributes replaced by dummies (D)", self.replaced), ("UID attributes replaced (U)",
                                                                        self.uids_replaced),
                ("distinct UIDs replaced", self.distinct_uids), ("private attributes removed",
                                                                 self.private_removed)]


def read_dicom(path: Path) -> Dataset | None:
    """The dataset in ``path``, or None when it is not a DICOM file pydicom can read."""
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        pass
    except Exception:  # noqa: BLE001 - a corrupt file is skipped like any non-DICOM file
        return None
    try:  # no preamble: accept only when it reads as an instance
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception:  # noqa: BLE001
        return None
    return ds if any(k in ds for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")) else None


def _plan(src: Path, dst: Path, force: bool) -> list[tuple[Path, Path]]:
    if not src.exists():
        raise FileNotFoundError(f"src {src} does not exist; expected a DICOM file or a folder of them")
    if src.resolve() == dst.resolve():
        raise ValueError(f"dst {dst} is src; write the de-identified copy elsewhere")
    if src.is_file():
        target = dst / src.name if dst.is_dir() else dst
        if target.exists() and not force:
            raise FileExistsError(f"dst {target} already exists; pass force to overwrite it")
        return [(src, target)]
    if dst.resolve().is_relative_to(src.resolve()):
        raise ValueError(f"dst {dst} lies inside src {src}; choose a folder outside it")
    if dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"dst {dst} is a file but src {src} is a folder; give a folder")
    if dst.is_dir() and any(dst.iterdir()) and not force:
        raise FileExistsError(f"dst {dst} already exists and is not empty; pass force to write into it")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    return [(p, dst / p.relative_to(src)) for p in files]


def deidentify_dicom(src: str | Path, dst: str | Path, *, force: bool = False, conformance: bool = True,
                     uid_key: bytes | str | None = None,
                     progress: Callable[[int, int, Path], None] | None = None) -> DeidentificationSummary:
    """De-identify a DICOM file, or a folder of them, with the Basic Confidentiality Profile.

    Applies PS3.15 Annex E Table E.1-1 (Basic Profile column) as described in
    :mod:`mlimaging.privacy.deidentify`; UIDs are mapped consistently across all files of
    the run, pixel data is unchanged.

    Parameters
    ----------
    src
        A DICOM file, or a folder searched recursively (relative paths are kept in ``dst``).
    dst
        The output file (or an existing folder to write ``src``'s name into) for a file
        ``src``; the output folder for a folder ``src``.
    force
        Overwrite existing outputs / write into a non-empty ``dst`` folder.
    conformance
        Resolve compound actions to their last (IOD-conformant) action; False: to the first.
    uid_key
        Key of the UID hash; None draws a fresh random key (UIDs cannot be linked across runs).
    progress
        Called as ``progress(i, n, path)`` after each of the ``n`` input files.

    Returns
    -------
    DeidentificationSummary
        Files written and skipped (non-DICOM, with one warning giving their count) and counts.

    Raises
    ------
    FileNotFoundError, FileExistsError, NotADirectoryError, ValueError
        Missing ``src``; ``dst`` exists without ``force``; ``dst`` inside ``src``; no DICOM file.

    Examples
    --------
    >>> import tempfile
    >>> from pydicom.data import get_testdata_file
    >>> out = Path(tempfile.mkdtemp()) / "ct.dcm"
    >>> s = deidentify_dicom(get_testdata_file("CT_small.dcm"), out, uid_key="k")
    >>> s.files_written, pydicom.dcmread(out).PatientIdentityRemoved
    (1, 'YES')
    """
    src, dst = Path(src), Path(dst)
    plan = _plan(src, dst, force)
    cleaner = _Cleaner(_key(uid_key), conformance)
    summary = DeidentificationSummary()
    for i, (path, target) in enumerate(plan, 1):
        with warnings.catch_warnings():  # pydicom's notes on the input's own invalid values (kept as they are)
            warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
            ds = read_dicom(path)
            if ds is not None:
                _deidentify_in_place(ds, cleaner)
                target.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(target, enforce_file_format=False)
        (summary.skipped if ds is None else summary.written).append(path if ds is None else target)
        if progress is not None:
            progress(i, len(plan), path)
    if not summary.written:
        what = f"src {src} is not a DICOM file" if src.is_file() else f"src {src} holds no DICOM file"
        raise ValueError(f"{what} that pydicom can read")
    c = cleaner.counts
    summary.removed, summary.emptied, summary.replaced = c["removed"], c["emptied"], c["replaced"]
    summary.uids_replaced, summary.private_removed, summary.distinct_uids = c["uids"], c["private"], len(cleaner.uids)
    if summary.skipped:
        warnings.warn(f"{len(summary.skipped)} of {len(plan)} files skipped: not DICOM", UserWarning, stacklevel=2)
    return summary
