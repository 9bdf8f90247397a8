r"""Evaluate many segmentations at once: one row per case and label, plus a summary.

:func:`evaluate_segmentation` takes predicted and reference integer label maps, splits
each into one binary mask per label, and computes the requested metrics from
:data:`METRICS`. Cases are **never dropped**: a structure that is missed (empty
prediction) or hallucinated (empty reference) gets Dice 0 and, for the distances,
``empty_distance`` (default: the image diagonal in physical units), so it makes the
mean worse instead of vanishing from it. When both masks are empty the overlap
metrics are 1 and the distances 0. The summary counts such cases in ``n_empty``.

Label encodings are checked, not guessed: a case whose prediction and reference hold
different sets of labels (a 0/255 reference against a 0/1 prediction, or a missed
structure) is named in a ``UserWarning``, and a requested label found in no case at all
is an error. Distances are in mm when a spacing is given and in voxels otherwise
(``metadata["distance_units"]``).

References
----------
Taha A. A., Hanbury A. (2015). Metrics for evaluating 3D medical image segmentation:
analysis, selection, and tool. BMC Medical Imaging 15:29. DOI 10.1186/s12880-015-0068-x.

Maier-Hein L. et al. (2024). Metrics reloaded: recommendations for image analysis
validation. Nature Methods 21:195-212. DOI 10.1038/s41592-023-02151-z.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlimaging.metrics._empty import check_empty_distance, empty_distance_value, empty_overlap
from mlimaging.metrics._validation import as_label_map, check_spacing
from mlimaging.metrics.overlap import (
    dice_from_counts,
    jaccard_from_counts,
    volume_similarity_from_counts,
)
from mlimaging.metrics.surface import reduce_distances, surface_distances
from mlimaging.utils import as_numpy

__all__ = ["METRICS", "EvaluationResult", "evaluate_segmentation"]

#: Metric names accepted by :func:`evaluate_segmentation`, with their definitions.
#: Overlap metrics are computed from the voxel counts of the label's masks; the
#: distances (in the units of ``spacing``) come from :mod:`mlimaging.metrics.surface`.
METRICS: dict[str, str] = {
    "dice": "Dice coefficient 2|A∩B| / (|A| + |B|)",
    "jaccard": "Jaccard index (IoU) |A∩B| / |A∪B|",
    "volume_similarity": "volume similarity 1 - ||A| - |B|| / (|A| + |B|)",
    "precision": "voxel-wise precision TP / (TP + FP)",
    "recall": "voxel-wise recall (sensitivity) TP / (TP + FN)",
    "specificity": "voxel-wise specificity TN / (TN + FP)",
    "hd": "Hausdorff distance (maximum, symmetric)",
    "hd95": "95th-percentile Hausdorff distance",
    "assd": "average symmetric surface distance",
    "asd": "average surface distance from pred to target (directed)",
    "rmssd": "root-mean-square symmetric surface distance",
}
_SURFACE = ("hd", "hd95", "assd", "asd", "rmssd")


# --------------------------------------------------------------------------- result


@dataclass
class EvaluationResult:
    """Per-case results of :func:`evaluate_segmentation`.

    Attributes
    ----------
    rows
        One dict per case and label, in case order then label order, with keys
        ``case``, ``label``, ``pred_empty``, ``target_empty``, ``pred_voxels``,
        ``target_voxels`` and one key per metric (a float).
    metrics
        The metric names, in the order requested.
    labels
        The labels evaluated, sorted as given.
    cases
        The case names, in input order.
    metadata
        Settings of the run (spacing per case, ``distance_units``: ``"mm"``,
        ``"voxels"`` or ``"mixed (...)"``, ``empty_distance``, version), written by
        :meth:`to_json`.
    """

    rows: list[dict[str, Any]]
    metrics: tuple[str, ...]
    labels: tuple[int, ...]
    cases: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of rows (cases x labels)."""
        return len(self.rows)

    def values(self, metric: str, label: int) -> np.ndarray:
        """The values of ``metric`` for ``label`` over all cases (float64, case order)."""
        if metric not in self.metrics:
            raise ValueError(f"metric must be one of {self.metrics}, got {metric!r}")
        return np.array([r[metric] for r in self.rows if r["label"] == label], dtype=np.float64)

    def summary(self) -> list[dict[str, Any]]:
        """One dict per (label, metric) with ``mean``, ``std``, ``median``, ``min``, ``max``.

        Every case counts: ``n`` is the number of cases, ``n_empty`` those where the
        prediction or the reference of that label was empty, ``n_nan`` those whose value
        is NaN (only possible with ``empty_distance=nan``). NaN is not skipped: a single
        NaN makes ``mean``, ``std``, ``median``, ``min`` and ``max`` NaN, so no case is
        silently dropped. ``std`` is the population standard deviation (``ddof=0``).
        """
        out = []
        for label in self.labels:
            rows = [r for r in self.rows if r["label"] == label]
            n_empty = sum(1 for r in rows if r["pred_empty"] or r["target_empty"])
            for metric in self.metrics:
                v = np.array([r[metric] for r in rows], dtype=np.float64)
                stats = {"mean": np.mean, "std": np.std, "median": np.median, "min": np.min, "max": np.max}
                entry: dict[str, Any] = {"label": label, "metric": metric}
                for key, fn in stats.items():
                    entry[key] = float(fn(v)) if v.size else float("nan")
                entry.update(n=int(v.size), n_empty=n_empty, n_nan=int(np.isnan(v).sum()))
                out.append(entry)
        return out

    def units_note(self) -> str | None:
        """What the distances are measured in, e.g. ``"distances in mm"``; ``None`` without
        distance metrics."""
        if not any(m in _SURFACE for m in self.metrics):
            return None
        return f"distances in {self.metadata.get('distance_units', 'mm')}"

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows to a CSV file (overwriting it) and return its path.

        Floats are written with ``repr`` (exact round trip through ``float``); NaN as
        ``nan`` and infinities as ``inf``.
        """
        path = _check_out(path)
        columns = ["case", "label", "pred_empty", "target_empty", "pred_voxels", "target_voxels", *self.metrics]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: r[k] for k in columns})
        return path

    def to_json(self, path: str | Path) -> Path:
        """Write ``{"metadata", "summary", "rows"}`` as strict JSON and return its path.

        Non-finite floats (NaN, infinity) are written as ``null``; the summary's ``n_nan``
        still counts the NaN values.
        """
        path = _check_out(path)
        data = {
            "metadata": {
                "metrics": list(self.metrics),
                "labels": list(self.labels),
                "cases": list(self.cases),
                **self.metadata,
            },
            "summary": self.summary(),
            "rows": self.rows,
        }
        path.write_text(json.dumps(_finite_or_none(data), indent=2, allow_nan=False) + "\n")
        return path

    def to_table(self, *, title: str | None = None):
        """The summary as a :class:`rich.table.Table` (for ``rich.print``); the default title
        states the cases, rows and the units of the distances (:meth:`units_note`)."""
        from rich.table import Table

        table = Table("label", "metric", "mean", "std", "median", "min", "max", "n", "n_empty",
                      title=title or "; ".join(filter(None, (f"{len(self.cases)} cases, {len(self.rows)} rows",
                                                                 self.units_note()))))
        for s in self.summary():
            table.add_row(str(s["label"]), s["metric"], *(f"{s[k]:.4g}" for k in ("mean", "std", "median", "min", "max")),
                          str(s["n"]), str(s["n_empty"]))
        return table


def _check_out(path: str | Path) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: folder {path.parent} does not exist")
    return path


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- inputs


def _present(arr: np.ndarray) -> set[int]:
    """The non-zero labels present in a label map."""
    top = int(arr.max())
    if top <= 32:  # few labels (the usual case): one cheap comparison per candidate
        return {v for v in range(1, top + 1) if (arr == v).any()}
    if arr.dtype != np.uint64 and top < 1 << 16:
        return {int(v) for v in np.flatnonzero(np.bincount(arr.reshape(-1))) if v}
    return {int(v) for v in np.unique(arr) if v}


def _check_labels(labels: Any) -> tuple[int, ...]:
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        labels = (labels,)
    try:
        seq = list(labels)
    except TypeError:
        raise ValueError(f"labels must be a sequence of integers >= 1, got {labels!r}") from None
    out = []
    for v in seq:
        if isinstance(v, torch.Tensor) and v.ndim == 0 and not v.is_floating_point():
            v = int(v)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"labels must be integers >= 1 (0 is background), got {v!r}")
        out.append(int(v))
    if not out:
        raise ValueError("labels must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"labels must be unique, got {out}")
    return tuple(out)


def _check_metrics(metrics: Any) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid metrics are: {', '.join(METRICS)}")
    if not names:
        raise ValueError(f"metrics must not be empty; valid metrics are: {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"metrics must be unique, got {list(names)}")
    return names


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor))


def _is_per_case(spacing: Any) -> bool:
    """Whether ``spacing`` (arrays already converted to lists) is a sequence of per-case spacings."""
    return (
        spacing is not None
        and not np.isscalar(spacing)
        and isinstance(spacing, Sequence)
        and len(spacing) > 0
        and all(s is None or not np.isscalar(s) for s in spacing)
    )


def _distance_units(spacing: Any, n: int) -> str:
    """``"mm"`` when every case has a spacing, ``"voxels"`` when none has, else ``"mixed (...)"``."""
    if _is_array(spacing):
        spacing = as_numpy(spacing).tolist()
    known = [s is not None for s in spacing] if _is_per_case(spacing) else [spacing is not None] * n
    if all(known):
        return "mm"
    if not any(known):
        return "voxels"
    return f"mixed (mm for {sum(known)} cases, voxels for {known.count(False)} without a spacing)"


def _label_mismatch(names: Sequence[str], case_labels: Sequence[tuple[set[int], set[int]]]) -> str | None:
    """A warning text listing the cases whose pred and target hold different label sets."""
    lines = []
    for name, (in_pred, in_target) in zip(names, case_labels, strict=True):
        if in_pred != in_target:
            parts = []
            if in_pred - in_target:
                parts.append(f"only in pred: {sorted(in_pred - in_target)}")
            if in_target - in_pred:
                parts.append(f"only in target: {sorted(in_target - in_pred)}")
            lines.append(f"case {name!r} ({'; '.join(parts)})")
    if not lines:
        return None
    shown = "; ".join(lines[:10]) + (f"; and {len(lines) - 10} more cases" if len(lines) > 10 else "")
    return (
        f"pred and target hold different labels in {len(lines)} of {len(names)} cases: {shown}. "
        "A label on one side only scores Dice 0 there: if this is not a missed or extra structure, "
        "check that both use the same label values (e.g. 0/1 against 0/255)."
    )


def _case_spacings(spacing: Any, n: int, ndims: list[int], names: list[str]) -> list[tuple[float, ...]]:
    """One validated spacing tuple per case from None / a scalar / one tuple / per-case tuples."""
    if _is_array(spacing):
        spacing = as_numpy(spacing).tolist()
    try:
        if _is_per_case(spacing):
            if len(spacing) != n:
                raise ValueError(f"spacing: got {len(spacing)} per-case spacings for {n} cases")
            return [check_spacing(s, d, name=f"spacing of case {c!r}")
                    for s, d, c in zip(spacing, ndims, names, strict=True)]
        return [check_spacing(spacing, d, name=f"spacing (case {c!r})") for d, c in zip(ndims, names, strict=True)]
    except (TypeError, ValueError) as err:
        if isinstance(err, ValueError) and "spacing" in str(err):
            raise
        raise ValueError(
            f"spacing must be None, a number, one tuple per axis or one such tuple per case, got {spacing!r}"
        ) from None


# --------------------------------------------------------------------------- one case


def _ratio(num: int, den: int, n_pred: int, n_target: int) -> float:
    """``num / den`` for the label's masks, with the empty-mask policy (:mod:`._empty`)."""
    policy = empty_overlap(n_pred, n_target)
    if policy is not None:
        return policy
    return num / den if den else 0.0


def _surface_values(
    pm: np.ndarray,
    tm: np.ndarray,
    n_p: int,
    n_t: int,
    spacing: tuple[float, ...],
    wanted: Sequence[str],
    empty_distance: float | None,
) -> dict[str, float]:
    """The requested distance metrics of one pair of masks, from one distance computation.

    The boundary distances of :func:`mlimaging.metrics.surface.surface_distances` are
    computed once and every metric is reduced from them with the definitions of
    :mod:`mlimaging.metrics.surface` (HD: maximum of the two directed maxima; HD95:
    maximum of the two directed 95th percentiles; ASSD and RMSSD: pooled over both
    directions; ASD: ``pred`` to ``target``), with its empty-mask policy.
    """
    policy = empty_distance_value(n_p, n_t, pm.shape, spacing, empty_distance)
    if policy is not None:
        return dict.fromkeys(wanted, policy)
    d_pt, d_tp = surface_distances(pm, tm, spacing=spacing)
    return {m: reduce_distances(d_pt, d_tp, m) for m in wanted}


def _evaluate_case(
    name: str,
    pred: np.ndarray,
    target: np.ndarray,
    spacing: tuple[float, ...],
    labels: tuple[int, ...],
    metrics: tuple[str, ...],
    empty_distance: float | None,
) -> list[dict[str, Any]]:
    """Rows of one case (validated inputs)."""
    wanted_surface = [m for m in metrics if m in _SURFACE]
    n = int(target.size)
    rows = []
    for label in labels:
        pm = pred == label
        tm = target == label
        tp = int(np.count_nonzero(pm & tm))
        n_p, n_t = int(np.count_nonzero(pm)), int(np.count_nonzero(tm))
        fp, fn = n_p - tp, n_t - tp
        tn = n - tp - fp - fn
        values = {
            "dice": dice_from_counts(tp, n_p, n_t),
            "jaccard": jaccard_from_counts(tp, n_p, n_t),
            "volume_similarity": volume_similarity_from_counts(n_p, n_t),
            "precision": _ratio(tp, n_p, n_p, n_t),
            "recall": _ratio(tp, n_t, n_p, n_t),
            "specificity": tn / (tn + fp) if tn + fp else 1.0,  # the reference covers the image
        }
        if wanted_surface:
            values.update(_surface_values(pm, tm, n_p, n_t, spacing, wanted_surface, empty_distance))
        row: dict[str, Any] = {
            "case": name,
            "label": label,
            "pred_empty": n_p == 0,
            "target_empty": n_t == 0,
            "pred_voxels": n_p,
            "target_voxels": n_t,
        }
        row.update({m: float(values[m]) for m in metrics})
        rows.append(row)
    return rows


def _evaluate_case_star(args: tuple) -> list[dict[str, Any]]:
    return _evaluate_case(*args)


# --------------------------------------------------------------------------- many cases


def evaluate_segmentation(
    preds: Any,
    targets: Any,
    *,
    labels: Sequence[int] | None = None,
    spacing: Any = None,
    metrics: Sequence[str] = ("dice", "jaccard", "hd", "hd95", "assd"),
    names: Sequence[str] | None = None,
    empty_distance: float | None = None,
    jobs: int = 1,
) -> EvaluationResult:
    r"""Evaluate predicted label maps against reference label maps, per case and label.

    For each case and each label :math:`l` the masks :math:`A = (\text{pred} = l)` and
    :math:`B = (\text{target} = l)` are compared with every metric in ``metrics``
    (see :data:`METRICS`), e.g.

    .. math::

        \text{Dice} = \frac{2|A \cap B|}{|A| + |B|}, \qquad
        \text{HD} = \max\Big(\max_{a \in \partial A} d(a, \partial B),
                             \max_{b \in \partial B} d(b, \partial A)\Big).

    Parameters
    ----------
    preds, targets
        Sequences (same length) of integer label maps (NumPy or torch; 0 = background),
        or one label map each for a single case. A single array is always **one** case:
        pass ``list(batch)`` to evaluate a stacked batch case by case. Within a case both
        maps must have the same shape; cases may differ in shape and dimension.
    labels
        Labels to evaluate (integers >= 1). Default: every non-zero label present in any
        prediction or reference, sorted. A given label found in no case at all raises
        ``ValueError`` (most likely a typo or another label encoding; it would otherwise
        score "both empty": Dice 1). Zero, negative or non-integer labels raise
        ``ValueError``. Whatever ``labels`` is, a case whose prediction and reference
        hold different sets of non-zero labels is listed in one ``UserWarning`` (which
        labels are only in one of them).
    spacing
        Voxel spacing in mm: ``None`` (distances in voxels), a scalar, one tuple for all
        cases, or a sequence of per-case tuples (e.g. from each file's header; a ``None``
        entry means that case's distances are in voxels, and a mix warns). The units are
        stored in ``metadata["distance_units"]``.
    metrics
        Metric names (keys of :data:`METRICS`); the row keys follow this order.
    names
        Per-case names (default ``"case0"``, ``"case1"``, ...); must be unique.
    empty_distance
        Distance given when exactly one mask of a label is empty. Default ``None``: the
        image diagonal, :math:`\sqrt{\sum_i (n_i s_i)^2}`. ``float("nan")`` makes those
        values NaN, which then shows in the summary's mean (never skipped) and ``n_nan``.
    jobs
        Number of worker processes; ``jobs > 1`` evaluates cases in parallel with a
        process pool. The result is identical to ``jobs=1`` and in input order.

    Overlap metrics where a denominator is 0 follow the same policy: 1.0 if both masks
    are empty, 0.0 if exactly one is (so a missed structure scores precision and recall
    0); specificity is 1.0 when the reference covers the whole image.

    Returns
    -------
    EvaluationResult
        ``.rows`` (one dict per case and label), ``.summary()``, ``.to_csv()``,
        ``.to_json()``.

    Raises
    ------
    ValueError
        Different numbers of predictions and references, shapes that differ within a
        case (naming the case), non-integer / negative / NaN label maps, an unknown
        metric (listing the valid ones), a bad label or spacing, or a label in
        ``labels`` that no case holds (naming it).

    Warns
    -----
    UserWarning
        When a case's prediction and reference hold different label sets (naming the
        cases and the labels only in one of them), and when some cases have a spacing
        and others not.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((4, 4), dtype=int); gt[:2, :3] = 1; gt[3, 3] = 2
    >>> pred = np.zeros((4, 4), dtype=int); pred[:2, :2] = 1
    >>> res = evaluate_segmentation([pred], [gt], metrics=("dice", "jaccard"))
    >>> [(r["label"], round(r["dice"], 3), r["pred_empty"]) for r in res.rows]
    [(1, 0.8, False), (2, 0.0, True)]
    >>> [(s["label"], s["metric"], round(s["mean"], 3), s["n_empty"]) for s in res.summary()]
    [(1, 'dice', 0.8, 0), (1, 'jaccard', 0.667, 0), (2, 'dice', 0.0, 1), (2, 'jaccard', 0.0, 1)]
    """
    if _is_array(preds) != _is_array(targets):
        raise ValueError(
            "preds and targets must both be sequences of label maps, or both a single label map; "
            f"got {type(preds).__name__} and {type(targets).__name__}"
        )
    if _is_array(preds):
        preds, targets = [preds], [targets]
    preds, targets = list(preds), list(targets)
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have the same length, got {len(preds)} and {len(targets)}")
    n = len(preds)
    if n == 0:
        raise ValueError("preds and targets are empty; expected at least one case")

    if names is None:
        case_names = [f"case{i}" for i in range(n)]
    else:
        case_names = [str(c) for c in names]
        if len(case_names) != n:
            raise ValueError(f"names must have one name per case ({n}), got {len(case_names)}")
        if len(set(case_names)) != n:
            raise ValueError("names must be unique")
    metric_names = _check_metrics(metrics)
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    empty_distance = check_empty_distance(empty_distance)

    p_maps, t_maps = [], []
    for i, (p, t, c) in enumerate(zip(preds, targets, case_names, strict=True)):
        pa = as_label_map(p, f"preds[{i}] (case {c!r})")
        ta = as_label_map(t, f"targets[{i}] (case {c!r})")
        if pa.shape != ta.shape:
            raise ValueError(f"case {c!r} (index {i}): pred shape {pa.shape} differs from target shape {ta.shape}")
        p_maps.append(pa)
        t_maps.append(ta)
    spacings = _case_spacings(spacing, n, [t.ndim for t in t_maps], case_names)

    case_labels = [(_present(p), _present(t)) for p, t in zip(p_maps, t_maps, strict=True)]
    present: set[int] = set().union(*(p | t for p, t in case_labels))
    if labels is None:
        label_tuple = tuple(sorted(present))
        if not label_tuple:
            raise ValueError("no foreground label (value >= 1) in any pred or target; pass labels= explicitly")
    else:
        label_tuple = _check_labels(labels)
        absent = [v for v in label_tuple if v not in present]
        if absent:
            raise ValueError(
                f"labels: {', '.join(map(str, absent))} found in no prediction and no reference "
                f"(labels present: {', '.join(map(str, sorted(present))) or 'none'})"
            )
    mismatch = _label_mismatch(case_names, case_labels)
    if mismatch:
        warnings.warn(mismatch, UserWarning, stacklevel=2)

    tasks = [
        (c, p, t, s, label_tuple, metric_names, empty_distance)
        for c, p, t, s in zip(case_names, p_maps, t_maps, spacings, strict=True)
    ]
    if jobs == 1 or n == 1:
        per_case = [_evaluate_case_star(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=min(int(jobs), n)) as pool:
            per_case = list(pool.map(_evaluate_case_star, tasks))
    rows = [row for case_rows in per_case for row in case_rows]
    from mlimaging import __version__

    units = _distance_units(spacing, n)
    if units.startswith("mixed") and any(m in _SURFACE for m in metric_names):
        warnings.warn(f"distances are {units}: their summary mixes units", UserWarning, stacklevel=2)
    metadata = {
        "n_cases": n,
        "spacing": [list(s) for s in spacings],
        "distance_units": units,
        "empty_distance": "image diagonal" if empty_distance is None else empty_distance,
        "std": "population (ddof=0)",
        "mlimaging_version": __version__,
    }
    return EvaluationResult(rows=rows, metrics=metric_names, labels=label_tuple, cases=tuple(case_names),
                            metadata=metadata)
