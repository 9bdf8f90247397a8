r"""Axiomatic soundness of counterfactual image models: composition, reversibility, effectiveness.

Monteiro, Ribeiro, Pawlowski, Castro and Glocker (2023) measure a counterfactual function
:math:`f(x, \text{pa}, \text{pa}')` (an image :math:`x` with parents :math:`\text{pa}`, moved to
parents :math:`\text{pa}'`) against three axioms that a perfect one satisfies (Galles and Pearl
1998; Halpern 1998):

* **composition**: the null intervention changes nothing, :math:`f(x, \text{pa}, \text{pa}) = x`;
  measured after :math:`m` repeated applications,
  :math:`\overline{|f^{(m)}(x) - x|}` (a VAE's reconstruction error accumulates);
* **reversibility**: undoing an intervention gives the original image back,
  :math:`f(f(x, \text{pa}, \text{pa}'), \text{pa}', \text{pa}) = x`;
* **effectiveness**: the intervention does what it says, measured by a pseudo-oracle
  :math:`g` of each parent: :math:`\overline{|g(f(x, \text{pa}, \text{pa}')) - \text{pa}'|}`.

Here :math:`f` is :func:`~mlimaging.generative.scm.counterfactual` over any model with ``abduct``
and ``predict`` (a :class:`~mlimaging.generative.scm.DeepSCM`, the
:class:`~mlimaging.generative.scm.TrueSCM`), distances are mean absolute differences of pixels in
[0, 1], and the data are :func:`~mlimaging.generative.morphomnist.causal_mnist` dicts (or
``(images, parents)`` pairs). Every function returns a plain dict.

Reference: Monteiro M., Ribeiro F. D. S., Pawlowski N., Castro D. C., Glocker B. (2023).
Measuring axiomatic soundness of counterfactual image models. ICLR. arXiv:2303.01274.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from mlimaging.generative.scm import _ALIASES, PARENTS, check_inputs, counterfactual

__all__ = ["composition", "effectiveness", "measured_intensity", "measured_thickness", "reversibility",
           "soundness_table"]

Predictor = Callable[[torch.Tensor], Any]


def measured_thickness(images: torch.Tensor) -> torch.Tensor:
    """Stroke thickness (pixels) of each image by :func:`mlimaging.generative.morphomnist.measure`: ``(B,)``
    float64 (the pseudo-oracle of :math:`t`)."""
    return _measure(images, "thickness")


def measured_intensity(images: torch.Tensor) -> torch.Tensor:
    """Stroke intensity (grey levels 0-255, the median of the pixels at or above half the range) of
    each image in [0, 1], by :func:`mlimaging.generative.morphomnist.measure`: ``(B,)`` float64 (NaN
    for a blank image; the pseudo-oracle of :math:`i`)."""
    return _measure(images, "intensity")


def _measure(images: torch.Tensor, key: str) -> torch.Tensor:
    from mlimaging.generative.morphomnist import measure

    x = images.detach().cpu().double().clamp(0.0, 1.0)
    values = measure(x.numpy(), max_value=1.0) if _takes_max_value(measure) else measure(x.numpy())
    return torch.as_tensor(values[key], dtype=torch.float64).reshape(-1)


def _takes_max_value(fn: Callable) -> bool:
    import inspect

    try:
        return "max_value" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


# ----------------------------------------------------------------------------------------- data
def _unpack(data: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    if isinstance(data, Mapping) and ("images" in data or "image" in data):
        images = data.get("images", data.get("image"))
        parents = {}
        for key, value in data.items():
            k = _ALIASES.get(key, key)
            if k in PARENTS:
                parents[k] = torch.as_tensor(value)
        images = torch.as_tensor(images)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, parents = data
    else:
        raise ValueError("data must be a dict with 'images', 'thickness' and 'intensity' (as causal_mnist returns) "
                         f"or a pair (images, parents), got {type(data).__name__}")
    if isinstance(images, torch.Tensor) and not images.is_floating_point():
        raise ValueError(f"data images must be floating point in [0, 1], got dtype {images.dtype}")
    return check_inputs(images, parents)


def _parent(parent: Any) -> str:
    p = _ALIASES.get(parent, parent) if isinstance(parent, str) else parent
    if p not in PARENTS:
        raise ValueError(f"parent must be one of {PARENTS} (or 'thickness', 'intensity'), got {parent!r}")
    return p


def _new_values(pa: dict[str, torch.Tensor], parent: str, values: Any, seed: int) -> torch.Tensor:
    """Intervention values: given, or drawn from the data's marginal of ``parent`` (a seeded
    permutation, as Monteiro et al. sample :math:`\\text{pa}' \\sim p(\\text{pa})`)."""
    n = pa[parent].shape[0]
    if values is not None:
        v = torch.as_tensor(values, dtype=pa[parent].dtype)
        v = v.expand(n).clone() if v.ndim == 0 else v
        if v.shape != (n,) or not torch.isfinite(v).all():
            raise ValueError(f"values must be a finite number or one value per image ({n}), got shape {tuple(v.shape)}")
        return v
    g = torch.Generator().manual_seed(int(seed))
    return pa[parent][torch.randperm(n, generator=g)].clone()


def _chunks(n: int, batch_size: int) -> list[slice]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).abs().flatten(1).mean(1)


# ----------------------------------------------------------------------------------------- axioms
def composition(model: Any, data: Any, *, m: int = 10, batch_size: int = 256, **kw: Any) -> dict[str, Any]:
    r"""Composition: distance of the image after :math:`k = 1..m` null interventions to the original.

    .. math::
        d_k = \frac{1}{N}\sum_n \frac{1}{P}\big\lVert f^{(k)}(x_n, \text{pa}_n, \text{pa}_n) - x_n\big\rVert_1,
        \qquad f^{(k)} = f \circ \dots \circ f \ (k \text{ times}),

    each application abducting afresh from the previous result (with the original parents).
    A perfect model gives :math:`d_k = 0` for all :math:`k`.

    Parameters
    ----------
    model
        Any model with ``abduct`` and ``predict``.
    data
        A :func:`~mlimaging.generative.morphomnist.causal_mnist` dict or ``(images, parents)``.
    m
        Number of repeated null interventions.
    batch_size
        Images per call of the model.
    **kw
        Passed to :func:`~mlimaging.generative.scm.counterfactual` (``decoder_noise``).

    Returns
    -------
    dict
        ``{"axiom": "composition", "m": m, "l1": [d_1, ..., d_m]}`` (pixels in [0, 1]).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.generative.scm import TrueSCM
    >>> g = torch.Generator().manual_seed(0)
    >>> data = {"images": torch.rand(4, 1, 28, 28, generator=g), "thickness": torch.full((4,), 2.0),
    ...         "intensity": torch.full((4,), 150.0)}
    >>> composition(TrueSCM(), data, m=3)["l1"]
    [0.0, 0.0, 0.0]
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    x, pa = _unpack(data)
    sums = torch.zeros(m, dtype=torch.float64)
    for s in _chunks(x.shape[0], batch_size):
        cur, p = x[s], {k: v[s] for k, v in pa.items()}
        for k in range(m):
            cur = counterfactual(model, cur, p, {}, **kw)["image"]
            sums[k] += _l1(cur, x[s]).sum()
    return {"axiom": "composition", "m": m, "l1": (sums / x.shape[0]).tolist()}


def reversibility(model: Any, data: Any, parent: str, *, values: Any = None, cycles: int = 1, seed: int = 0,
                  batch_size: int = 256, **kw: Any) -> dict[str, Any]:
    r"""Reversibility: intervene on ``parent``, then undo the intervention; distance to the original.

    .. math::
        x' = f(x, \text{pa}, \text{pa}'), \qquad x'' = f(x', \text{pa}', \text{pa}), \qquad
        d = \frac{1}{N}\sum_n \frac{1}{P}\lVert x''_n - x_n\rVert_1,

    where :math:`\text{pa}'` changes only ``parent`` (to ``values``, default: the values of other
    samples, a seeded permutation) and the descendants its mechanism moves (do(t) moves
    :math:`i`); :math:`\text{pa}'` is what the model predicts. The cycle is repeated ``cycles``
    times; the distance after each is returned.

    Returns
    -------
    dict
        ``{"axiom": "reversibility", "parent": parent, "l1": [d after cycle 1, ...]}``.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.generative.scm import DeepSCM
    >>> _ = torch.manual_seed(0)
    >>> scm = DeepSCM(latent_dim=4, width=8)
    >>> data = (torch.rand(4, 1, 28, 28), {"t": torch.tensor([1.5, 2.0, 2.5, 3.0]), "i": torch.full((4,), 150.0)})
    >>> out = reversibility(scm, data, "t")
    >>> out["parent"], len(out["l1"]), out["l1"][0] >= 0
    ('t', 1, True)
    """
    p = _parent(parent)
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
        raise ValueError(f"cycles must be a positive integer, got {cycles!r}")
    x, pa = _unpack(data)
    new = _new_values(pa, p, values, seed)
    sums = torch.zeros(cycles, dtype=torch.float64)
    for s in _chunks(x.shape[0], batch_size):
        cur, orig = x[s], {k: v[s] for k, v in pa.items()}
        for c in range(cycles):
            fwd = counterfactual(model, cur, orig, {p: new[s]}, **kw)
            back = counterfactual(model, fwd["image"], {"t": fwd["t"], "i": fwd["i"]}, {p: orig[p]}, **kw)
            cur = back["image"]
            sums[c] += _l1(cur, x[s]).sum()
    return {"axiom": "reversibility", "parent": p, "l1": (sums / x.shape[0]).tolist()}


def effectiveness(model: Any, data: Any, parent: str, *, predictor: Predictor | Mapping[str, Predictor],
                  values: Any = None, reference: Any = None, seed: int = 0, batch_size: int = 256,
                  **kw: Any) -> dict[str, Any]:
    r"""Effectiveness: pseudo-oracle predictions on counterfactuals against the intended parents.

    .. math::
        x' = f(x, \text{pa}, \text{pa}'), \qquad
        \mathrm{MAE}_q = \frac{1}{N}\sum_n \big|g_q(x'_n) - \text{pa}'_{n,q}\big|

    for each predicted parent :math:`q` (``predictor``: one function for ``parent``, or a dict of
    functions per parent name). :math:`\text{pa}'` sets ``parent`` to ``values`` (default: a seeded
    permutation of the data's values) and takes the other parents from the counterfactual of
    ``reference`` (default: ``model`` itself): with the
    :class:`~mlimaging.generative.scm.TrueSCM`, do(t) is judged against the intensity the true
    mechanism gives, :math:`64 + 191\,\sigma(0.5\,\epsilon_i + 2t' - 5)`. Samples where a
    predictor returns NaN (a blank counterfactual) are left out and counted.

    Parameters
    ----------
    predictor
        ``images (B, 1, H, W) -> (B,)`` values of a parent: a trained regressor, or
        :func:`measured_thickness` / :func:`measured_intensity`.

    Returns
    -------
    dict
        ``{"axiom": "effectiveness", "parent": parent, "mae": {q: MAE}, "n": {q: samples used}}``.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.generative.scm import TrueSCM
    >>> x = torch.zeros(3, 1, 28, 28); x[:, :, 10:18, 12:16] = 0.6
    >>> data = (x, {"t": torch.full((3,), 2.0), "i": torch.full((3,), 153.0)})
    >>> max_grey = lambda im: 255 * im.amax((1, 2, 3))
    >>> effectiveness(TrueSCM(), data, "i", predictor=max_grey, values=100.0)["mae"]["i"] < 1e-3
    True
    """
    p = _parent(parent)
    preds = {p: predictor} if callable(predictor) else predictor
    if not isinstance(preds, Mapping) or not preds or not all(callable(f) for f in preds.values()):
        raise ValueError("predictor must be a function images -> (B,) values, or a dict parent name -> function")
    preds = {_parent(k): f for k, f in preds.items()}
    x, pa = _unpack(data)
    new = _new_values(pa, p, values, seed)
    err = {q: 0.0 for q in preds}
    count = {q: 0 for q in preds}
    for s in _chunks(x.shape[0], batch_size):
        orig = {k: v[s] for k, v in pa.items()}
        cf = counterfactual(model, x[s], orig, {p: new[s]}, **kw)
        target = cf if reference is None else counterfactual(reference, x[s], orig, {p: new[s]})
        for q, g in preds.items():
            guess = torch.as_tensor(g(cf["image"]), dtype=torch.float64).reshape(-1).cpu()
            if guess.shape != (cf["image"].shape[0],):
                raise ValueError(f"predictor[{q!r}] must return one value per image, got shape {tuple(guess.shape)}")
            d = (guess - target[q].detach().double().cpu()).abs()
            ok = torch.isfinite(d)
            err[q] += float(d[ok].sum())
            count[q] += int(ok.sum())
    mae = {q: (err[q] / count[q] if count[q] else float("nan")) for q in preds}
    return {"axiom": "effectiveness", "parent": p, "mae": mae, "n": count}


def soundness_table(models: Mapping[str, Any], data: Any, *, predictor: Mapping[str, Predictor] | None = None,
                    m: int = 10, reference: Any = None, seed: int = 0) -> list[dict[str, Any]]:
    """Composition, reversibility and effectiveness of each model and parent, as table rows.

    One row per model and parent (``parent`` is ``"none"`` for composition): ``model``, ``parent``,
    ``composition_l1`` (after 1 and ``m`` null interventions), ``reversibility_l1``, and
    ``effectiveness_mae_<q>`` for each predicted parent (default predictors: the measured
    thickness and intensity).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.generative.scm import TrueSCM
    >>> g = torch.Generator().manual_seed(0)
    >>> data = {"images": torch.rand(2, 1, 28, 28, generator=g), "thickness": torch.full((2,), 2.0),
    ...         "intensity": torch.full((2,), 150.0)}
    >>> rows = soundness_table({"true": TrueSCM()}, data, predictor={"i": lambda im: im.mean((1, 2, 3))}, m=2)
    >>> [r["parent"] for r in rows], rows[0]["composition_l1_m"]
    (['none', 't', 'i'], 0.0)
    """
    if predictor is None:
        predictor = {"t": measured_thickness, "i": measured_intensity}
    rows: list[dict[str, Any]] = []
    for name, model in models.items():
        comp = composition(model, data, m=m)["l1"]
        rows.append({"model": name, "parent": "none", "composition_l1_1": comp[0], "composition_l1_m": comp[-1]})
        for p in PARENTS:
            row: dict[str, Any] = {"model": name, "parent": p,
                                   "reversibility_l1": reversibility(model, data, p, seed=seed)["l1"][0]}
            eff = effectiveness(model, data, p, predictor=predictor, reference=reference, seed=seed)
            row.update({f"effectiveness_mae_{q}": v for q, v in eff["mae"].items()})
            rows.append(row)
    return rows
