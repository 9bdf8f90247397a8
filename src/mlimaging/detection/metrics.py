r"""Mean average precision for object detection, COCO style, vectorised.

:func:`mean_average_precision` takes the inputs of torchmetrics' ``MeanAveragePrecision``
(one dict per image) and reproduces its pycocotools backend (``COCOeval`` for ``bbox``):

1. *Per image and class*, detections are sorted by decreasing score (stable: ties keep
   their input order) and only the first ``max_detection_thresholds[-1]`` are kept.
2. *Matching* (for every IoU threshold :math:`t` and area range at once): each detection in
   turn takes the still unmatched ground truth with the highest IoU :math:`\ge t` (the last
   one on ties), preferring ground truths that are not ignored. A ground truth is ignored
   when it is a crowd (``iscrowd=1``: IoU is then :math:`|d \cap g| / |d|`, and it may be
   matched many times) or its area is outside the range; a detection matched to an ignored
   ground truth, or unmatched with its area outside the range, is ignored.
3. *Accumulation* per class: the detections of all images sorted by decreasing score
   (stable, images in input order), cumulative true and false positives give
   :math:`P_i = TP_i / (TP_i + FP_i)` and :math:`R_i = TP_i / N_{gt}`; precision is made
   monotone, :math:`\tilde P_i = \max_{j \ge i} P_j`, and read at the recall thresholds
   :math:`r` (101 points): :math:`p(r) = \tilde P_{i(r)}`, :math:`i(r) = \min\{i : R_i \ge r\}`
   (0 when recall never reaches :math:`r`).

.. math::
    \mathrm{AP}_{k,t} = \frac{1}{101}\sum_{r} p_{k,t}(r),\qquad
    \mathrm{mAP} = \frac{1}{|K'|\,|T|}\sum_{k \in K'}\sum_{t \in T} \mathrm{AP}_{k,t}

over the classes :math:`K'` that have a (non-ignored) ground truth, :math:`T` = IoU
.50:.05:.95. Recall ``mar_m`` is the final recall with at most ``m`` detections per image and
class, averaged the same way. Values that cannot be computed (no ground truth) are ``-1``,
as in COCO.

Where it differs from pycocotools: only where ``max_detection_thresholds`` does not contain
100: pycocotools' ``summarize()`` reads ``map`` at 100 detections whatever the caps (and so
gives -1), here ``map`` uses the last cap like every other ``map*`` value. The default thresholds are the
float32-rounded values torchmetrics passes to pycocotools (``torch.linspace(...).tolist()``:
0.550000011920929, ...), not the decimal ones of ``COCOeval``; they differ only when an IoU
or a recall equals a threshold exactly. IoU is computed like ``pycocotools.mask.iou`` on
``xywh`` boxes converted in the input dtype, as torchmetrics does.

Speed: the IoU of each image-class group is computed at once, matching runs over detection
ranks (at most ``max_detection_thresholds[-1]`` steps) for all groups, thresholds and area
ranges together, and the PR curves are cumulative sums per class.

References
----------
Everingham et al. (2010), "The PASCAL Visual Object Classes (VOC) challenge", IJCV 88,
DOI 10.1007/s11263-009-0275-4.
Lin et al. (2014), "Microsoft COCO: common objects in context", ECCV, arXiv:1405.0312.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["mean_average_precision"]

# The values torchmetrics hands to COCOeval (float32 linspace converted to Python floats).
_IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10).tolist()
_REC_THRESHOLDS = torch.linspace(0.0, 1.0, 101).tolist()
# COCO area ranges: all, small, medium, large (inclusive bounds).
_AREA_RANGES = np.array([[0.0, 1e5**2], [0.0, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e5**2]])
_AREA_NAMES = ("all", "small", "medium", "large")


def _tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x.detach().cpu()


def _flatten(
    items: Sequence[Mapping[str, Any]], name: str, *, with_scores: bool
) -> dict[str, np.ndarray]:
    """Concatenate the per-image dicts into flat arrays (with the image index of each box)."""
    boxes, labels, scores, crowds, areas, counts = [], [], [], [], [], []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{name}[{i}] must be a dict, got {type(item).__name__}")
        keys = ("boxes", "labels", "scores") if with_scores else ("boxes", "labels")
        for key in keys:
            if key not in item:
                raise ValueError(f"{name}[{i}] has no {key!r} (expected keys {keys})")
        b = _tensor(item["boxes"], f"{name}[{i}]['boxes']")
        if b.numel() == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{name}[{i}]['boxes'] must have shape (N, 4), got {tuple(b.shape)}")
        n = b.shape[0]
        lab = _tensor(item["labels"], f"{name}[{i}]['labels']").reshape(-1)
        if lab.shape[0] != n:
            raise ValueError(
                f"{name}[{i}]['labels'] must have {n} values (one per box), got {lab.shape[0]}"
            )
        if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
            raise ValueError(f"{name}[{i}]['labels'] must be integers, got dtype {lab.dtype}")
        boxes.append(b.double() if not b.is_floating_point() else b)
        labels.append(lab.long())
        counts.append(n)
        if with_scores:
            s = _tensor(item["scores"], f"{name}[{i}]['scores']").reshape(-1)
            if s.shape[0] != n:
                raise ValueError(
                    f"{name}[{i}]['scores'] must have {n} values (one per box), got {s.shape[0]}"
                )
            if not s.is_floating_point():
                raise ValueError(
                    f"{name}[{i}]['scores'] must be floating point, got dtype {s.dtype}"
                )
            if bool(torch.isnan(s).any()):
                raise ValueError(f"{name}[{i}]['scores'] must not contain NaN")
            scores.append(s.double())
        else:
            c = item.get("iscrowd")
            crowds.append(
                torch.zeros(n, dtype=torch.bool)
                if c is None
                else _tensor(c, "iscrowd").reshape(-1) != 0
            )
            a = item.get("area")
            areas.append(
                torch.zeros(n, dtype=torch.float64)
                if a is None
                else _tensor(a, "area").reshape(-1).double()
            )
            if crowds[-1].shape[0] != n or areas[-1].shape[0] != n:
                raise ValueError(
                    f"{name}[{i}]['iscrowd'] and ['area'] must have {n} values (one per box)"
                )
    if not boxes:
        out = {
            "boxes": np.zeros((0, 4)),
            "labels": np.zeros(0, np.int64),
            "image": np.zeros(0, np.int64),
        }
        out.update(scores=np.zeros(0), crowd=np.zeros(0, bool), area=np.zeros(0))
        return out
    dtype = torch.float64 if any(b.dtype == torch.float64 for b in boxes) else boxes[0].dtype
    b = torch.cat([x.to(dtype) for x in boxes])
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{name} boxes must be finite (no NaN or inf)")
    # xyxy -> xywh in the input dtype (as torchmetrics' conversion), then float64 (as pycocotools).
    xywh = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1).double().numpy()
    bad = np.flatnonzero((xywh[:, 2:] < 0).any(axis=1))
    image = np.repeat(np.arange(len(counts)), counts)
    if bad.size:
        j = bad[0]
        raise ValueError(
            f"{name}[{image[j]}]['boxes'] must be xyxy with x2 >= x1 and y2 >= y1; got {b[j].tolist()}"
        )
    out = {"boxes": xywh, "labels": torch.cat(labels).numpy(), "image": image}
    box_area = xywh[:, 2] * xywh[:, 3]
    if with_scores:
        out.update(scores=torch.cat(scores).numpy(), area=box_area)
    else:
        given = torch.cat(areas).numpy()
        out.update(crowd=torch.cat(crowds).numpy(), area=np.where(given > 0, given, box_area))
    return out


def _coco_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of ``(..., 4)`` xywh detections against ``(..., G, 4)`` ground truths, as pycocotools."""
    dx, dy, dw, dh = (d[..., None, i] for i in range(4))
    gx, gy, gw, gh = (g[..., i] for i in range(4))
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = np.where(crowd, dw * dh, dw * dh + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _match(dt, gt, d_key, g_key, d_keep, thr):
    """Greedy COCO matching of all image-class groups at once.

    Returns ``matched`` and ``ignored`` of shape ``(n_dets, A, T)`` for the kept detections
    (sorted by group and rank)."""
    n_a, n_t = len(_AREA_RANGES), len(thr)
    nd = d_keep.size
    matched = np.zeros((nd, n_a, n_t), dtype=bool)
    ignored = np.zeros((nd, n_a, n_t), dtype=bool)
    if nd == 0 or g_key.size == 0:
        return matched, ignored
    # Ground truths grouped (stable) and padded per group.
    g_order = np.argsort(g_key, kind="stable")
    gk = g_key[g_order]
    g_groups, g_start, g_count = np.unique(gk, return_index=True, return_counts=True)
    dk = d_key[d_keep]
    d_groups, d_start, d_count = np.unique(dk, return_index=True, return_counts=True)
    common, di, gi = np.intersect1d(d_groups, g_groups, assume_unique=True, return_indices=True)
    if common.size == 0:
        return matched, ignored
    # Groups by decreasing number of detections: at rank r the active groups are a prefix.
    by = np.argsort(-d_count[di], kind="stable")
    ds, dc = d_start[di][by], d_count[di][by]
    gs, gc = g_start[gi][by], g_count[gi][by]
    n_g, g_max = common.size, int(gc.max())
    slot = np.arange(g_max)
    valid = slot[None, :] < gc[:, None]
    gidx = g_order[np.where(valid, gs[:, None] + slot[None, :], 0)]
    g_box = np.where(valid[..., None], gt["boxes"][gidx], 0.0)
    g_crowd = gt["crowd"][gidx] & valid
    g_area = gt["area"][gidx]
    out_of_range = (g_area[:, None, :] < _AREA_RANGES[None, :, 0, None]) | (
        g_area[:, None, :] > _AREA_RANGES[None, :, 1, None]
    )
    g_ignore = (out_of_range | g_crowd[:, None, :]) & valid[:, None, :]  # (G, A, S)
    taken = np.zeros((n_g, n_a, n_t, g_max), dtype=bool)
    t_eff = np.minimum(thr, 1 - 1e-10)[None, None, :, None]
    d_box = dt["boxes"][d_keep]
    for r in range(int(dc[0])):
        n_act = int(np.searchsorted(-dc, -r, side="left"))  # groups with more than r detections
        rows = ds[:n_act] + r
        iou = _coco_iou(d_box[rows], g_box[:n_act], g_crowd[:n_act])  # (n, S)
        avail = (~taken[:n_act] | g_crowd[:n_act, None, None, :]) & valid[:n_act, None, None, :]
        cand = (iou[:, None, None, :] >= t_eff) & avail  # (n, A, T, S)
        ig = g_ignore[:n_act, :, None, :]
        pref = cand & ~ig
        use = np.where(pref.any(-1, keepdims=True), pref, cand)
        score = np.where(use, iou[:, None, None, :], -1.0)
        pick = g_max - 1 - np.argmax(score[..., ::-1], axis=-1)  # the last of equal best IoUs
        found = use.any(-1)
        n_i, a_i, t_i = np.nonzero(found)
        taken[n_i, a_i, t_i, pick[n_i, a_i, t_i]] = True
        matched[rows] = found
        ignored[rows] = found & np.take_along_axis(g_ignore[:n_act], pick, axis=-1)
    return matched, ignored


def _check_thresholds(values, name: str, default: list[float]) -> np.ndarray:
    if values is None:
        return np.asarray(default, dtype=np.float64)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"{name} must be a non-empty list of values in [0, 1], got {values!r}")
    return arr


def mean_average_precision(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    *,
    iou_thresholds: Sequence[float] | None = None,
    rec_thresholds: Sequence[float] | None = None,
    max_detection_thresholds: Sequence[int] = (1, 10, 100),
) -> dict[str, torch.Tensor]:
    r"""COCO mean average precision and recall of box detections (see the module docstring).

    Parameters
    ----------
    preds
        One dict per image: ``boxes`` ``(N, 4)`` xyxy pixels, ``scores`` ``(N,)``, ``labels``
        ``(N,)`` integers (torch tensors or NumPy arrays).
    targets
        One dict per image: ``boxes`` ``(M, 4)`` xyxy pixels, ``labels`` ``(M,)``; optional
        ``iscrowd`` ``(M,)`` (0/1) and ``area`` ``(M,)`` (used for the area ranges when > 0,
        else the box area).
    iou_thresholds
        IoU thresholds :math:`T` (default .50:.05:.95, as torchmetrics passes them).
    rec_thresholds
        Recall thresholds (default 101 points 0:.01:1, as torchmetrics passes them).
    max_detection_thresholds
        Three increasing caps on detections per image and class (``mar_*`` keys); the last
        one also applies to every ``map*`` value.

    Returns
    -------
    dict of torch.Tensor
        The keys of torchmetrics' ``MeanAveragePrecision(class_metrics=True)``: ``map``,
        ``map_50``, ``map_75``, ``map_small``, ``map_medium``, ``map_large``, ``mar_1``,
        ``mar_10``, ``mar_100``, ``mar_small``, ``mar_medium``, ``mar_large`` (0-d float32),
        ``map_per_class`` and ``mar_100_per_class`` (float32, one per class in ``classes``) and
        ``classes`` (int32, every label seen in ``preds`` or ``targets``). ``-1`` where there
        is no ground truth to measure against.

    Raises
    ------
    ValueError
        ``preds`` and ``targets`` of different lengths, a missing key, boxes that are not
        ``(N, 4)`` finite xyxy with ``x2 >= x1``, ``y2 >= y1``, NaN scores, non-integer labels,
        thresholds outside [0, 1].

    References
    ----------
    Lin et al. (2014), "Microsoft COCO: common objects in context", ECCV, arXiv:1405.0312.

    Examples
    --------
    >>> preds = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]),
    ...           "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 1])}]
    >>> targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]), "labels": torch.tensor([1])}]
    >>> m = mean_average_precision(preds, targets)
    >>> float(m["map"]), float(m["map_50"]), float(m["mar_1"])  # the best-scored box is exact
    (1.0, 1.0, 1.0)
    """
    if isinstance(preds, Mapping) or isinstance(targets, Mapping):
        raise ValueError(
            "preds and targets must be sequences of dicts (one per image), not a single dict"
        )
    if len(preds) != len(targets):
        raise ValueError(
            f"preds and targets must have one dict per image each, got {len(preds)} and {len(targets)}"
        )
    thr = _check_thresholds(iou_thresholds, "iou_thresholds", _IOU_THRESHOLDS)
    rec = _check_thresholds(rec_thresholds, "rec_thresholds", _REC_THRESHOLDS)
    mdt = [int(m) for m in max_detection_thresholds]
    if len(mdt) != 3 or any(m < 1 for m in mdt) or sorted(mdt) != mdt:
        raise ValueError(
            f"max_detection_thresholds must be 3 increasing positive ints, got {max_detection_thresholds!r}"
        )
    dt = _flatten(preds, "preds", with_scores=True)
    gt = _flatten(targets, "targets", with_scores=False)
    classes = np.unique(np.concatenate([dt["labels"], gt["labels"]]))
    names = [f"mar_{m}" for m in mdt]
    result_keys = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", *names]
    result_keys += ["mar_small", "mar_medium", "mar_large"]
    if len(preds) == 0:
        out = {k: torch.tensor(-1.0) for k in result_keys}
        out.update(
            map_per_class=torch.tensor([-1.0]), **{f"mar_{mdt[-1]}_per_class": torch.tensor([-1.0])}
        )
        out["classes"] = torch.tensor(classes.tolist(), dtype=torch.int32)
        return out
    n_k, n_a, n_t, n_r = classes.size, len(_AREA_RANGES), thr.size, rec.size
    d_cls = np.searchsorted(classes, dt["labels"])
    g_cls = np.searchsorted(classes, gt["labels"])
    d_key = dt["image"] * n_k + d_cls
    g_key = gt["image"] * n_k + g_cls
    # Rank of each detection within its image-class group (decreasing score, stable).
    order = np.lexsort((-dt["scores"], d_key))
    sk = d_key[order]
    start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1] if sk.size else np.zeros(0, np.int64)
    rank_sorted = np.arange(sk.size) - np.repeat(start, np.diff(np.r_[start, sk.size]))
    keep_sorted = rank_sorted < mdt[-1]
    d_keep = order[keep_sorted]  # kept detections, by group then rank
    rank = rank_sorted[keep_sorted]
    matched, ig = _match(dt, gt, d_key, g_key, d_keep, thr)
    d_area = dt["area"][d_keep]
    d_out = (d_area[:, None] < _AREA_RANGES[None, :, 0]) | (
        d_area[:, None] > _AREA_RANGES[None, :, 1]
    )
    ig |= ~matched & d_out[:, :, None]
    tp = matched & ~ig
    fp = ~matched & ~ig
    # Ground truths that count (per class and area range).
    g_area = gt["area"]
    g_ok = (
        ~gt["crowd"][:, None]
        & (g_area[:, None] >= _AREA_RANGES[None, :, 0])
        & (g_area[:, None] <= _AREA_RANGES[None, :, 1])
    )
    npig = np.zeros((n_k, n_a), dtype=np.int64)
    np.add.at(npig, g_cls, g_ok.astype(np.int64))
    # Per class: detections of all images by decreasing score (stable; image, then rank).
    kcls = d_cls[d_keep]
    acc = np.lexsort((rank, dt["image"][d_keep], -dt["scores"][d_keep], kcls))
    kcls, rank, tp, fp = kcls[acc], rank[acc], tp[acc], fp[acc]
    bounds = np.searchsorted(kcls, np.arange(n_k + 1))
    precision = -np.ones((n_t, n_r, n_k, n_a))
    recall = -np.ones((n_t, n_k, n_a, len(mdt)))
    eps = np.spacing(1)
    for k in range(n_k):
        s, e = bounds[k], bounds[k + 1]
        for m_i, m in enumerate(mdt):
            sel = slice(s, e) if m_i == len(mdt) - 1 else np.flatnonzero(rank[s:e] < m) + s
            tps, fps = tp[sel], fp[sel]  # (n, A, T)
            n = tps.shape[0]
            tpc = np.cumsum(tps, axis=0, dtype=np.float64)
            fpc = np.cumsum(fps, axis=0, dtype=np.float64)
            for a in range(n_a):
                if npig[k, a] == 0:
                    continue
                recall[:, k, a, m_i] = tpc[-1, a] / npig[k, a] if n else 0.0
                if m_i != len(mdt) - 1:
                    continue
                if n == 0:
                    precision[:, :, k, a] = 0.0
                    continue
                rc = tpc[:, a] / npig[k, a]  # (n, T)
                pr = tpc[:, a] / (fpc[:, a] + tpc[:, a] + eps)
                pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]
                for t in range(n_t):
                    idx = np.searchsorted(rc[:, t], rec, side="left")
                    precision[t, :, k, a] = np.where(idx < n, pr[np.minimum(idx, n - 1), t], 0.0)

    def mean_valid(x: np.ndarray) -> float:
        x = x[x > -1]
        return float(x.mean()) if x.size else -1.0

    def at(t: float) -> np.ndarray:
        return precision[np.flatnonzero(thr == t)]

    last = len(mdt) - 1
    stats = [
        mean_valid(precision[..., 0]),
        mean_valid(at(0.5)[..., 0]),
        mean_valid(at(0.75)[..., 0]),
        *(mean_valid(precision[..., a]) for a in (1, 2, 3)),
        *(mean_valid(recall[:, :, 0, m_i]) for m_i in range(len(mdt))),
        *(mean_valid(recall[:, :, a, last]) for a in (1, 2, 3)),
    ]
    out = {k: torch.tensor(v, dtype=torch.float32) for k, v in zip(result_keys, stats, strict=True)}
    ap_k = [mean_valid(precision[:, :, k, 0]) for k in range(n_k)]
    ar_k = [mean_valid(recall[:, k, 0, last]) for k in range(n_k)]
    out["map_per_class"] = torch.tensor(ap_k, dtype=torch.float32)
    out[f"mar_{mdt[-1]}_per_class"] = torch.tensor(ar_k, dtype=torch.float32)
    out["classes"] = torch.tensor(classes.tolist(), dtype=torch.int32)
    return out
