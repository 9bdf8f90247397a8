r"""Anonymisation of image metadata tables: k-anonymity, l-diversity, generalisation,
suppression, Mondrian partitioning, information loss and local differential privacy.

The tables are pandas DataFrames with one row per image (or patient) and columns such as
``age``, ``sex``, ``site``, ``scanner`` and ``diagnosis``. The *quasi-identifiers* (QIs) are the
columns an attacker can link to outside data (age, sex, site); the *sensitive* attribute is
what must not be learnt about a person (diagnosis).

Definitions used throughout:

- An **equivalence class** is a maximal set of rows with equal values on every QI. A missing
  value (NaN/None) is a value of its own here (pycanon, through ``groupby``, drops such rows).
- A table is **k-anonymous** when every equivalence class has at least k rows
  (Samarati and Sweeney 1998; Sweeney 2002, doi:10.1142/S0218488502001648).
- It is **(distinct) l-diverse** when every class holds at least l distinct sensitive values
  (Machanavajjhala et al. 2007, doi:10.1145/1217299.1217302).
- **Generalisation** replaces a value by a coarser one from a hierarchy (age 37 -> "35-39" ->
  "30-39" -> "20-39" -> "*"); **suppression** removes the rows of classes smaller than k.
- **Mondrian** (LeFevre, DeWitt and Ramakrishnan 2006, doi:10.1109/ICDE.2006.101) partitions
  the QI space recursively and generalises each partition to its range.
- **Local differential privacy** perturbs each record before it leaves its owner:
  randomised response (Warner 1965, doi:10.1080/01621459.1965.10480775) for categories and the
  Laplace mechanism (Dwork, McSherry, Nissim and Smith 2006, doi:10.1007/11681878_14) for numbers,
  with the estimators that remove the bias the noise puts into aggregates.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Hierarchy",
    "age_hierarchy",
    "discernibility_metric",
    "generalize",
    "generalize_to_k",
    "k_anonymity",
    "l_diversity",
    "laplace_estimates",
    "laplace_mechanism",
    "mondrian",
    "normalized_certainty_penalty",
    "randomized_response",
    "randomized_response_frequencies",
    "site_hierarchy",
    "suppress",
    "synthetic_metadata",
]

# The synthetic hospitals: site -> (region, country, relative size, {scanner: probability}).
_SITES: dict[str, tuple[str, str, float, dict[str, float]]] = {
    "London": ("South England", "UK", 3.0, {"Siemens Skyra": 0.5, "GE Signa Premier": 0.3, "Philips Ingenia": 0.2}),
    "Oxford": ("South England", "UK", 1.5, {"Siemens Prisma": 0.7, "Siemens Skyra": 0.3}),
    "Leeds": ("North England", "UK", 1.5, {"Philips Ingenia": 0.6, "GE Signa Premier": 0.4}),
    "Manchester": ("North England", "UK", 2.0, {"Siemens Skyra": 0.6, "Philips Achieva": 0.4}),
    "Edinburgh": ("Scotland", "UK", 1.0, {"GE Discovery MR750": 1.0}),
    "Munich": ("Bavaria", "Germany", 2.0, {"Siemens Prisma": 0.6, "Siemens Vida": 0.4}),
    "Nuremberg": ("Bavaria", "Germany", 1.0, {"Siemens Vida": 1.0}),
    "Berlin": ("Berlin-Brandenburg", "Germany", 2.5, {"Siemens Skyra": 0.4, "Philips Ingenia": 0.3,
                                                      "GE Signa Premier": 0.3}),
    "Paris": ("Ile-de-France", "France", 3.0, {"GE Signa Premier": 0.5, "Siemens Vida": 0.3, "Philips Achieva": 0.2}),
    "Versailles": ("Ile-de-France", "France", 0.8, {"GE Discovery MR750": 1.0}),
    "Lyon": ("Auvergne-Rhone-Alpes", "France", 1.5, {"Philips Ingenia": 0.5, "Siemens Skyra": 0.5}),
    "Grenoble": ("Auvergne-Rhone-Alpes", "France", 0.7, {"Philips Achieva": 1.0}),
}
# Diagnosis: multinomial logit, logit_j(age) = a_j + b_j * (age - 50) / 10.
_DIAGNOSES = {"normal": (1.2, -0.35), "benign": (0.0, 0.0), "inflammatory": (-0.5, -0.15),
              "vascular": (-1.6, 0.45), "malignant": (-1.4, 0.55)}


# --------------------------------------------------------------------------- checks
def _check_table(df: Any, columns: Sequence[Hashable] | Hashable, argument: str = "quasi_identifiers",
                 *, allow_empty: bool = False) -> list[Hashable]:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if not allow_empty and len(df) == 0:
        raise ValueError("df is empty; expected a table with at least one row")
    cols = [columns] if isinstance(columns, (str, int)) else list(columns)
    if not cols:
        raise ValueError(f"{argument} is empty; expected at least one column name")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{argument}: columns {missing} are not in the table (columns: {list(df.columns)})")
    if len(set(cols)) != len(cols):
        raise ValueError(f"{argument} names a column twice: {cols}")
    return cols


def _check_k(k: Any, n: int | None = None) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if n is not None and k > n:
        raise ValueError(f"k={k} exceeds the number of rows ({n}); no table of {n} rows is {k}-anonymous")
    return int(k)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _class_sizes(df: pd.DataFrame, qi: list[Hashable]) -> pd.Series:
    """Size of each row's equivalence class, aligned with ``df``'s rows."""
    return df.groupby(qi, dropna=False, sort=False)[qi[0]].transform("size")


# --------------------------------------------------------------------------- measures
def k_anonymity(df: pd.DataFrame, quasi_identifiers: Sequence[Hashable]) -> int:
    r"""The k of k-anonymity: the size of the smallest equivalence class.

    .. math:: k = \min_{E \in \mathcal{E}(T, QI)} |E|

    where :math:`\mathcal{E}(T, QI)` are the groups of rows of table :math:`T` with equal
    quasi-identifier values (Sweeney 2002, doi:10.1142/S0218488502001648). Equals pycanon's
    ``anonymity.k_anonymity`` on tables without missing values.

    Parameters
    ----------
    df
        The table (one row per record).
    quasi_identifiers
        Column names of the quasi-identifiers.

    Returns
    -------
    int
        k >= 1.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"age": [30, 30, 40, 40, 40], "sex": ["F", "F", "M", "M", "M"]})
    >>> k_anonymity(t, ["age", "sex"])
    2
    """
    qi = _check_table(df, quasi_identifiers)
    return int(df.groupby(qi, dropna=False, sort=False).size().min())


def l_diversity(df: pd.DataFrame, quasi_identifiers: Sequence[Hashable],
                sensitive: Hashable | Sequence[Hashable]) -> int:
    r"""The l of distinct l-diversity: the fewest distinct sensitive values in a class.

    .. math:: l = \min_{E \in \mathcal{E}(T, QI)} \; \min_{S} \; |\{ t[S] : t \in E \}|

    over the sensitive attributes :math:`S` (Machanavajjhala et al. 2007,
    doi:10.1145/1217299.1217302). Equals pycanon's ``anonymity.l_diversity`` (``gen=True``).

    Parameters
    ----------
    df
        The table.
    quasi_identifiers
        Column names of the quasi-identifiers.
    sensitive
        One sensitive column name, or several.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"age": [30, 30, 40, 40], "dx": ["flu", "flu", "flu", "cancer"]})
    >>> l_diversity(t, ["age"], "dx")
    1
    """
    qi = _check_table(df, quasi_identifiers)
    sens = _check_table(df, sensitive, "sensitive")
    if set(sens) & set(qi):
        raise ValueError(f"sensitive {sens} overlaps quasi_identifiers {qi}; expected disjoint columns")
    counts = df.groupby(qi, dropna=False, sort=False)[sens].nunique(dropna=False)
    return int(counts.to_numpy().min())


# --------------------------------------------------------------------------- hierarchies
class Hierarchy:
    r"""A generalisation hierarchy: level 0 is the value itself, each higher level coarser.

    ``levels[i - 1]`` maps an *original* value to its level-``i`` generalisation (a callable
    or a mapping). Levels must nest (a coarser label is a function of a finer one) for
    generalisation to never split an equivalence class; the constructors below guarantee it.

    Parameters
    ----------
    levels
        One callable or mapping per level above 0, finest first; conventionally the last
        maps everything to ``"*"``.
    name
        Shown in messages.

    Examples
    --------
    >>> h = Hierarchy.from_parents({"Leeds": "North", "York": "North", "Bath": "South"},
    ...                            name="site")
    >>> h.height, [h.generalize_value("York", i) for i in range(3)]
    (2, ['York', 'North', '*'])
    """

    def __init__(self, levels: Sequence[Callable[[Any], Any] | Mapping[Any, Any]], *, name: str = "") -> None:
        if not levels:
            raise ValueError("levels is empty; expected at least one generalisation level")
        for i, level in enumerate(levels):
            if not (callable(level) or isinstance(level, Mapping)):
                raise ValueError(f"levels[{i}] must be a callable or a mapping, got {type(level).__name__}")
        self.levels = tuple(levels)
        self.name = name

    @classmethod
    def from_parents(cls, *parents: Mapping[Any, Any], top: Any = "*", name: str = "") -> Hierarchy:
        """A hierarchy from parent maps: ``parents[0]`` maps values to their parents, ``parents[1]``
        those parents to theirs, ...; a last level mapping everything to ``top`` is added."""
        chains: list[dict[Any, Any]] = []
        current = {v: v for v in parents[0]} if parents else {}
        for depth, parent in enumerate(parents):
            nxt = {}
            for value, node in current.items():
                if node not in parent:
                    raise ValueError(f"hierarchy {name!r}: {node!r} has no parent at level {depth + 1}")
                nxt[value] = parent[node]
            chains.append(nxt)
            current = nxt
        return cls([*chains, (lambda _v: top)], name=name)

    @property
    def height(self) -> int:
        """Number of levels above the original values."""
        return len(self.levels)

    def generalize_value(self, value: Any, level: int) -> Any:
        """``value`` at ``level`` (0 = unchanged)."""
        if level == 0:
            return value
        step = self.levels[level - 1]
        if isinstance(step, Mapping):
            if value not in step:
                raise ValueError(f"hierarchy {self.name!r}: value {value!r} is not in its level-{level} mapping")
            return step[value]
        return step(value)

    def generalize(self, values: pd.Series, level: int) -> pd.Series:
        """Every value of a column at ``level``."""
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= self.height:
            raise ValueError(f"level for hierarchy {self.name!r} must be an integer in [0, {self.height}], got {level!r}")
        if level == 0:
            return values.copy()
        uniques = pd.unique(values)
        table = {u: self.generalize_value(u, int(level)) for u in uniques}
        return values.map(table)


def age_hierarchy(widths: Sequence[int] = (5, 10, 20), *, name: str = "age") -> Hierarchy:
    r"""Age (years) -> bands of ``widths[0]`` -> ``widths[1]`` -> ... -> ``"*"``.

    The band of width :math:`w` holding age :math:`a` is :math:`[w\lfloor a/w \rfloor,\,
    w\lfloor a/w \rfloor + w)`, written ``"lo-hi"`` with ``hi = lo + w - 1`` (integer ages).
    Each width must divide the next, so the bands nest.

    Examples
    --------
    >>> h = age_hierarchy()
    >>> [h.generalize_value(37, level) for level in range(5)]
    [37, '35-39', '30-39', '20-39', '*']
    """
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive integers, got {widths}")
    for a, b in itertools.pairwise(widths):
        if b % a:
            raise ValueError(f"widths {widths}: each width must divide the next so the bands nest")

    def band(w: int) -> Callable[[Any], str]:
        def f(age: Any) -> str:
            if age is None or (isinstance(age, float) and math.isnan(age)):
                return "*"
            lo = int(math.floor(float(age) / w)) * w
            return f"{lo}-{lo + w - 1}"
        return f

    return Hierarchy([*(band(w) for w in widths), (lambda _v: "*")], name=name)


def site_hierarchy(site_to_region: Mapping[str, str] | None = None,
                   region_to_country: Mapping[str, str] | None = None, *, name: str = "site") -> Hierarchy:
    """Site -> region -> country -> ``"*"`` (default: the sites of :func:`synthetic_metadata`).

    Examples
    --------
    >>> h = site_hierarchy()
    >>> [h.generalize_value("Leeds", level) for level in range(4)]
    ['Leeds', 'North England', 'UK', '*']
    """
    if site_to_region is None:
        site_to_region = {s: v[0] for s, v in _SITES.items()}
    if region_to_country is None:
        region_to_country = {v[0]: v[1] for v in _SITES.values()}
    return Hierarchy.from_parents(site_to_region, region_to_country, name=name)


def generalize(df: pd.DataFrame, hierarchies: Mapping[Hashable, Hierarchy],
               levels: Mapping[Hashable, int]) -> pd.DataFrame:
    """A copy of ``df`` with column ``c`` generalised to ``levels[c]`` of ``hierarchies[c]``.

    With nested hierarchies, raising a level merges equivalence classes and never splits one,
    so k-anonymity and l-diversity never decrease.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"age": [31, 34, 38], "sex": ["F", "F", "F"]})
    >>> generalize(t, {"age": age_hierarchy()}, {"age": 2})["age"].tolist()
    ['30-39', '30-39', '30-39']
    """
    if levels:
        _check_table(df, list(levels), "levels", allow_empty=True)
    out = df.copy()
    for col, level in levels.items():
        if col not in hierarchies:
            raise ValueError(f"levels names {col!r} but hierarchies has no hierarchy for it")
        out[col] = hierarchies[col].generalize(df[col], level)
    return out


def suppress(df: pd.DataFrame, quasi_identifiers: Sequence[Hashable], k: int) -> pd.DataFrame:
    """The rows of ``df`` whose equivalence class has at least ``k`` rows (the others are
    suppressed); the result is k-anonymous or empty.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"age": [30, 30, 40], "sex": ["F", "F", "M"]})
    >>> len(suppress(t, ["age", "sex"], 2))
    2
    """
    qi = _check_table(df, quasi_identifiers, allow_empty=True)
    k = _check_k(k)
    if len(df) == 0:
        return df.copy()
    return df[_class_sizes(df, qi).to_numpy() >= k].copy()


def generalize_to_k(df: pd.DataFrame, hierarchies: Mapping[Hashable, Hierarchy], k: int, *,
                    max_suppression: float = 0.0) -> tuple[pd.DataFrame, dict[Hashable, int]]:
    r"""Full-domain generalisation plus suppression reaching k-anonymity with least information loss.

    Searches every node of the generalisation lattice (one level per QI; the QIs are the
    keys of ``hierarchies``), suppresses the rows of classes smaller than ``k`` when at most
    ``max_suppression`` of the rows go, and keeps the node with the smallest
    :func:`normalized_certainty_penalty` (ties: lower total level). Samarati (2001,
    doi:10.1109/69.971193) with an information-loss criterion instead of minimal height.

    Returns
    -------
    (table, levels)
        The k-anonymous table (suppressed rows dropped) and the chosen level of each QI.

    Examples
    --------
    >>> t = synthetic_metadata(200, seed=0)
    >>> h = {"age": age_hierarchy(), "sex": Hierarchy([lambda v: "*"]), "site": site_hierarchy()}
    >>> anon, levels = generalize_to_k(t, h, 5, max_suppression=0.05)
    >>> k_anonymity(anon, list(h)) >= 5, len(anon) >= 190
    (True, True)
    """
    qi = _check_table(df, list(hierarchies), "hierarchies")
    k = _check_k(k, len(df))
    if not 0.0 <= max_suppression < 1.0:
        raise ValueError(f"max_suppression must be a fraction in [0, 1), got {max_suppression}")
    best: tuple[float, int, pd.DataFrame, dict[Hashable, int]] | None = None
    cache = {c: [hierarchies[c].generalize(df[c], lv) for lv in range(hierarchies[c].height + 1)] for c in qi}
    for node in itertools.product(*(range(hierarchies[c].height + 1) for c in qi)):
        table = df.copy()
        for c, lv in zip(qi, node, strict=True):
            table[c] = cache[c][lv]
        kept = suppress(table, qi, k)
        if len(df) - len(kept) > max_suppression * len(df) or len(kept) == 0:
            continue
        loss = normalized_certainty_penalty(df, kept, qi)
        if best is None or (loss, sum(node)) < (best[0], best[1]):
            best = (loss, sum(node), kept, dict(zip(qi, node, strict=True)))
    if best is None:
        raise ValueError(f"no generalisation of {qi} reaches k={k} with max_suppression={max_suppression}")
    return best[2], best[3]


# --------------------------------------------------------------------------- Mondrian
def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def mondrian(df: pd.DataFrame, quasi_identifiers: Sequence[Hashable], k: int, *,
             hierarchies: Mapping[Hashable, Hierarchy] | None = None) -> pd.DataFrame:
    r"""Strict Mondrian multidimensional k-anonymisation (LeFevre, DeWitt and Ramakrishnan 2006).

    Starting from the whole table, a partition is split recursively on the QI of widest
    normalised range, :math:`(\max_P x - \min_P x) / (\max_T x - \min_T x)` for numbers and
    :math:`|\{x\}_P| / |\{x\}_T|` for categories, at the cut nearest the median such that
    both halves keep at least ``k`` rows (numeric cut ``x <= v`` / ``x > v``; a categorical QI
    without hierarchy is cut in its sorted order of values; with a hierarchy it is split into
    the children of its current node, every child group needing ``k`` rows). When no QI
    allows a cut the partition is final, and its values are generalised: numbers to
    ``"lo-hi"`` (or the single value), categories to ``"{a,b}"``, hierarchies to the lowest node
    covering the partition's values.

    Parameters
    ----------
    df
        The table; numeric QIs must hold no missing values.
    quasi_identifiers
        Column names of the QIs; numeric dtype columns are treated as ordered.
    k
        Minimum class size, ``1 <= k <= len(df)``.
    hierarchies
        Optional hierarchy per categorical QI.

    Returns
    -------
    pandas.DataFrame
        Same index and columns; QI columns generalised (as strings). Every class has >= k rows.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"age": [21, 23, 35, 38, 52, 57], "sex": list("FMFMFM")})
    >>> mondrian(t, ["age", "sex"], 2)["age"].tolist()  # median cut; 3-row halves cannot split again
    ['21-35', '21-35', '21-35', '38-57', '38-57', '38-57']
    """
    qi = _check_table(df, quasi_identifiers)
    k = _check_k(k, len(df))
    hierarchies = dict(hierarchies or {})
    for c in hierarchies:
        if c not in qi:
            raise ValueError(f"hierarchies names {c!r}, which is not a quasi-identifier {qi}")
    numeric = {c: _numeric(df[c]) and c not in hierarchies for c in qi}
    for c in qi:
        if numeric[c] and df[c].isna().any():
            raise ValueError(f"quasi-identifier {c!r} holds missing values; Mondrian needs numbers in every row")
    codes: dict[Hashable, np.ndarray] = {}
    spans: dict[Hashable, float] = {}
    for c in qi:
        if numeric[c]:
            codes[c] = df[c].to_numpy(dtype=float)
            spans[c] = float(codes[c].max() - codes[c].min()) or 1.0
        elif c not in hierarchies:
            cats = sorted(pd.unique(df[c].astype(object)), key=lambda v: (str(type(v)), str(v)))
            lookup = {v: i for i, v in enumerate(cats)}
            codes[c] = np.array([lookup[v] for v in df[c].astype(object)], dtype=float)
            spans[c] = float(len(cats))
        else:
            spans[c] = float(df[c].nunique(dropna=False))
    levels = {c: [hierarchies[c].generalize(df[c], lv).to_numpy(object) for lv in range(hierarchies[c].height + 1)]
              for c in hierarchies}
    # Each partition: (row positions, {hierarchical QI: current level}).
    todo: list[tuple[np.ndarray, dict[Hashable, int]]] = [
        (np.arange(len(df)), {c: hierarchies[c].height for c in hierarchies})]
    final: list[tuple[np.ndarray, dict[Hashable, int]]] = []
    while todo:
        rows, node = todo.pop()
        widths = {}
        for c in qi:
            if c in hierarchies:
                widths[c] = len(pd.unique(levels[c][0][rows])) / spans[c] if node[c] > 0 else 0.0
            elif numeric[c]:
                widths[c] = float(np.ptp(codes[c][rows])) / spans[c]
            else:
                widths[c] = len(np.unique(codes[c][rows])) / spans[c]
        parts = None
        for c in sorted(qi, key=lambda c: -widths[c]):
            if widths[c] <= 0:
                break
            parts = _split(rows, node, c, k, codes.get(c), levels.get(c))
            if parts is not None:
                break
        if parts is None:
            final.append((rows, node))
        else:
            todo.extend(parts)
    out = df.copy()
    for c in qi:
        col = np.empty(len(df), dtype=object)
        for rows, node in final:
            if c in hierarchies:  # the lowest node that still covers the partition's values
                lv = node[c]
                while lv > 0 and len(pd.unique(levels[c][lv - 1][rows])) == 1:
                    lv -= 1
                col[rows] = levels[c][lv][rows[0]]
            elif numeric[c]:
                lo, hi = df[c].to_numpy()[rows].min(), df[c].to_numpy()[rows].max()
                col[rows] = _fmt(lo) if lo == hi else f"{_fmt(lo)}-{_fmt(hi)}"
            else:
                vals = sorted({str(v) for v in df[c].to_numpy()[rows]})
                col[rows] = vals[0] if len(vals) == 1 else "{" + ",".join(vals) + "}"
        out[c] = col
    return out


def _split(rows: np.ndarray, node: dict[Hashable, int], c: Hashable, k: int, codes: np.ndarray | None,
           levels: list[np.ndarray] | None) -> list[tuple[np.ndarray, dict[Hashable, int]]] | None:
    """An allowable split of a partition on QI ``c`` (both/all sides >= k rows), or None."""
    if levels is not None:  # hierarchical categorical: split into the children of the current node
        child = {**node, c: node[c] - 1}
        labels = levels[node[c] - 1][rows]
        groups = pd.Series(np.arange(len(rows))).groupby(pd.Series(labels, dtype=object), sort=True).indices
        if len(groups) < 2 or min(len(g) for g in groups.values()) < k:
            return None
        return [(rows[np.asarray(g)], child) for g in groups.values()]
    x = codes[rows]
    values, counts = np.unique(x, return_counts=True)
    left = np.cumsum(counts)[:-1]  # rows at or below each candidate cut values[i]
    ok = (left >= k) & (len(rows) - left >= k)
    if not ok.any():
        return None
    cut = np.flatnonzero(ok)[np.argmin(np.abs(left[ok] - len(rows) / 2))]
    mask = x <= values[cut]
    return [(rows[mask], node), (rows[~mask], node)]


# --------------------------------------------------------------------------- information loss
def normalized_certainty_penalty(original: pd.DataFrame, anonymized: pd.DataFrame,
                                 quasi_identifiers: Sequence[Hashable]) -> float:
    r"""Normalised certainty penalty (Xu et al. 2006, doi:10.1145/1150402.1150504), in [0, 1].

    Each generalised cell covers the set of original values of the rows that share its
    generalised value in that column (its *cover*). For a numeric QI the penalty is
    :math:`(\max \text{cover} - \min \text{cover}) / (\max_T - \min_T)`; for a categorical QI
    it is 0 when the cover is one value and :math:`|\text{cover}| / |\text{domain}|` otherwise.
    A suppressed row (in ``original``, not in ``anonymized``, matched by index) costs 1 per QI.

    .. math:: \mathrm{NCP} = \frac{1}{n\,|QI|} \sum_{t \in T} \sum_{A \in QI} \mathrm{NCP}_A(t)

    0 means no loss (the original table), 1 everything generalised to ``"*"`` or suppressed.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"age": [20, 30, 40, 60]})
    >>> g = pd.DataFrame({"age": ["20-40", "20-40", "20-40", "60"]})
    >>> round(normalized_certainty_penalty(t, g, ["age"]), 3)  # 3 rows x (40-20)/(60-20)
    0.375
    """
    qi = _check_table(original, quasi_identifiers)
    _check_table(anonymized, qi, allow_empty=True)
    if not anonymized.index.isin(original.index).all() or not anonymized.index.is_unique:
        raise ValueError("anonymized must hold a subset of original's rows, matched by a unique index")
    total = float(len(original) - len(anonymized)) * len(qi)
    kept = original.loc[anonymized.index]
    for c in qi:
        if len(anonymized) == 0:
            break
        o, g = kept[c], anonymized[c].astype(object).fillna("<NA>")
        grouped = o.groupby(g.to_numpy(), dropna=False, sort=False)
        if _numeric(original[c]):
            span = float(original[c].max() - original[c].min())
            if span > 0:
                total += float(((grouped.transform("max") - grouped.transform("min")) / span).sum())
        else:
            cover = grouped.transform(lambda s: s.nunique(dropna=False))
            domain = original[c].nunique(dropna=False)
            total += float(np.where(cover > 1, cover / domain, 0.0).sum())
    return total / (len(original) * len(qi))


def discernibility_metric(original: pd.DataFrame, anonymized: pd.DataFrame,
                          quasi_identifiers: Sequence[Hashable]) -> int:
    r"""Discernibility metric (Bayardo and Agrawal 2005, doi:10.1109/ICDE.2005.42).

    .. math:: C_{DM} = \sum_{E} |E|^2 + |S|\, n

    over the equivalence classes :math:`E` of the anonymised table, with :math:`S` the
    suppressed rows of the :math:`n`-row original. Lowest (= n) for all-distinct rows.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"a": [1, 1, 2, 3]})
    >>> discernibility_metric(t, t.iloc[:3], ["a"])  # classes 2, 1 and one suppressed row
    9
    """
    qi = _check_table(original, quasi_identifiers)
    _check_table(anonymized, qi, allow_empty=True)
    sizes = anonymized.groupby(qi, dropna=False, sort=False).size().to_numpy() if len(anonymized) else np.zeros(0)
    return int((sizes.astype(np.int64) ** 2).sum() + (len(original) - len(anonymized)) * len(original))


# --------------------------------------------------------------------------- synthetic data
def synthetic_metadata(n: int, *, seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    r"""A synthetic table of imaging metadata: ``age``, ``sex``, ``site``, ``scanner``, ``diagnosis``.

    Generating distributions (all draws from one seeded generator):

    - ``site``: 12 hospitals in 3 countries (UK, Germany, France; 8 regions, see
      :func:`site_hierarchy`), with probabilities proportional to fixed sizes 0.7 to 3.0.
    - ``age`` (integer years): with probability 0.08 paediatric, uniform on 0..17; otherwise
      :math:`\mathcal{N}(58, 17^2)` rounded and clipped to 18..99.
    - ``sex``: ``"F"`` with probability 0.52, else ``"M"``.
    - ``scanner``: from the site's own fixed list of 1 to 3 MR models and probabilities.
    - ``diagnosis``: multinomial logit in age,
      :math:`P(j \mid a) \propto \exp(\alpha_j + \beta_j (a - 50)/10)` over normal, benign,
      inflammatory, vascular, malignant (malignant and vascular rise with age).

    Examples
    --------
    >>> t = synthetic_metadata(5, seed=0)
    >>> list(t.columns), len(t)
    (['age', 'sex', 'site', 'scanner', 'diagnosis'], 5)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = _rng(seed)
    sites = list(_SITES)
    size = np.array([_SITES[s][2] for s in sites])
    site = rng.choice(len(sites), size=n, p=size / size.sum())
    child = rng.random(n) < 0.08
    age = np.where(child, rng.integers(0, 18, size=n), np.clip(np.rint(rng.normal(58.0, 17.0, size=n)), 18, 99))
    sex = np.where(rng.random(n) < 0.52, "F", "M")
    scanner = np.empty(n, dtype=object)
    for i, s in enumerate(sites):
        idx = np.flatnonzero(site == i)
        models, probs = zip(*_SITES[s][3].items(), strict=True)
        scanner[idx] = np.asarray(models, dtype=object)[rng.choice(len(models), size=len(idx), p=probs)]
    names = list(_DIAGNOSES)
    a = np.array([_DIAGNOSES[d][0] for d in names])
    b = np.array([_DIAGNOSES[d][1] for d in names])
    logits = a[None, :] + b[None, :] * ((age[:, None] - 50.0) / 10.0)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dx = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(max=len(names) - 1)
    return pd.DataFrame({"age": age.astype(np.int64), "sex": sex, "site": np.asarray(sites, dtype=object)[site],
                         "scanner": scanner, "diagnosis": np.asarray(names, dtype=object)[dx]})


# --------------------------------------------------------------------------- local DP
def _epsilon(epsilon: Any) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.number)) or not (
            math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return float(epsilon)


def _rr_probs(epsilon: float, n_categories: int) -> tuple[float, float]:
    e = math.exp(epsilon)
    return e / (e + n_categories - 1), 1.0 / (e + n_categories - 1)


def randomized_response(values: Sequence[Any] | pd.Series, *, epsilon: float, categories: Sequence[Any],
                        seed: int | np.random.Generator | None = None) -> np.ndarray:
    r"""Randomised response: each value is reported truthfully with probability p, otherwise
    as one of the other categories uniformly (Warner 1965; k-ary form, Kairouz et al. 2016).

    With :math:`K` categories and privacy parameter :math:`\varepsilon`,

    .. math:: p = \frac{e^\varepsilon}{e^\varepsilon + K - 1}, \qquad
              q = \frac{1}{e^\varepsilon + K - 1}

    (the probability of reporting each particular other category), so
    :math:`p / q = e^\varepsilon`: every report is :math:`\varepsilon`-locally differentially
    private. For :math:`K = 2` this is Warner's design.

    Examples
    --------
    >>> r = randomized_response(["F", "M", "F"], epsilon=50.0, categories=["F", "M"], seed=0)
    >>> r.tolist()
    ['F', 'M', 'F']
    """
    eps = _epsilon(epsilon)
    cats = list(categories)
    if len(cats) < 2 or len(set(cats)) != len(cats):
        raise ValueError(f"categories must hold at least 2 distinct values, got {cats}")
    lookup = {c: i for i, c in enumerate(cats)}
    vals = list(values)
    bad = [v for v in vals if v not in lookup]
    if bad:
        raise ValueError(f"values holds {bad[:3]} not in categories {cats}")
    idx = np.array([lookup[v] for v in vals], dtype=np.int64)
    rng = _rng(seed)
    p, _ = _rr_probs(eps, len(cats))
    keep = rng.random(len(idx)) < p
    other = (idx + rng.integers(1, len(cats), size=len(idx))) % len(cats)  # uniform over the K-1 others
    out = np.where(keep, idx, other)
    return np.asarray(cats, dtype=object)[out]


def randomized_response_frequencies(reports: Sequence[Any] | pd.Series, *, epsilon: float,
                                    categories: Sequence[Any]) -> pd.Series:
    r"""Unbiased estimate of the true category frequencies from randomised-response reports.

    If :math:`\hat\lambda_j` is the observed fraction of reports equal to category :math:`j`,
    then :math:`E[\hat\lambda_j] = \pi_j p + (1 - \pi_j) q`, so

    .. math:: \hat\pi_j = \frac{\hat\lambda_j - q}{p - q}, \qquad
              \operatorname{Var}(\hat\pi_j) = \frac{\lambda_j (1 - \lambda_j)}{n (p - q)^2}

    is unbiased (Warner 1965). The estimates sum to 1 and can fall outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array(["F"] * 700 + ["M"] * 300)
    >>> r = randomized_response(truth, epsilon=1.0, categories=["F", "M"], seed=0)
    >>> est = randomized_response_frequencies(r, epsilon=1.0, categories=["F", "M"])
    >>> bool(abs(est["F"] - 0.7) < 0.1)
    True
    """
    eps = _epsilon(epsilon)
    cats = list(categories)
    if len(cats) < 2 or len(set(cats)) != len(cats):
        raise ValueError(f"categories must hold at least 2 distinct values, got {cats}")
    s = pd.Series(list(reports), dtype=object)
    if len(s) == 0:
        raise ValueError("reports is empty; expected at least one report")
    if not s.isin(cats).all():
        raise ValueError(f"reports holds values not in categories {cats}")
    lam = s.value_counts(normalize=True).reindex(cats, fill_value=0.0).astype(float)
    p, q = _rr_probs(eps, len(cats))
    return (lam - q) / (p - q)


def laplace_mechanism(values: Sequence[float] | np.ndarray | pd.Series, *, epsilon: float,
                      sensitivity: float | None = None, bounds: tuple[float, float] | None = None,
                      seed: int | np.random.Generator | None = None) -> np.ndarray:
    r"""The Laplace mechanism applied to each value (local DP; Dwork et al. 2006).

    .. math:: \tilde x_i = \operatorname{clip}(x_i) + \eta_i, \quad
              \eta_i \sim \operatorname{Laplace}(0, b), \quad b = \frac{\Delta}{\varepsilon}

    With ``bounds = (lo, hi)`` each value is clipped to them and the sensitivity of one
    record's value is :math:`\Delta = hi - lo`; otherwise give ``sensitivity`` (the largest
    change one person can make to their value). Each report is
    :math:`\varepsilon`-differentially private; noise has mean 0 and variance :math:`2b^2`.

    Returns
    -------
    numpy.ndarray
        float64 noisy values.

    Examples
    --------
    >>> x = laplace_mechanism([40.0, 50.0], epsilon=1.0, bounds=(0, 100), seed=0)
    >>> x.shape, x.dtype.name
    ((2,), 'float64')
    """
    eps = _epsilon(epsilon)
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("values must be a non-empty array of finite numbers")
    if bounds is not None:
        lo, hi = (float(b) for b in bounds)
        if not hi > lo:
            raise ValueError(f"bounds must be (lo, hi) with hi > lo, got {bounds}")
        x = np.clip(x, lo, hi)
        delta = hi - lo if sensitivity is None else float(sensitivity)
    elif sensitivity is None:
        raise ValueError("give sensitivity (the largest change of one value) or bounds=(lo, hi)")
    else:
        delta = float(sensitivity)
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"sensitivity must be a finite number > 0, got {delta}")
    return x + _rng(seed).laplace(0.0, delta / eps, size=x.size)


def laplace_estimates(reports: Sequence[float] | np.ndarray, *, epsilon: float, sensitivity: float) -> dict[str, float]:
    r"""Unbiased mean and variance of the true values from Laplace-noised reports.

    With :math:`b = \Delta/\varepsilon`, the noise adds nothing to the mean and
    :math:`2b^2` to the variance, so

    .. math:: \hat\mu = \bar{\tilde x}, \qquad \hat\sigma^2 = s^2_{\tilde x} - 2b^2, \qquad
              \operatorname{SE}(\hat\mu) = s_{\tilde x} / \sqrt{n}

    (:math:`s^2` the unbiased sample variance). Returns ``{"mean", "variance", "std_error", "scale"}``.

    Examples
    --------
    >>> r = laplace_mechanism([50.0] * 2000, epsilon=1.0, sensitivity=10.0, seed=0)
    >>> est = laplace_estimates(r, epsilon=1.0, sensitivity=10.0)
    >>> bool(abs(est["mean"] - 50.0) < 1.0), est["scale"]
    (True, 10.0)
    """
    eps = _epsilon(epsilon)
    x = np.asarray(reports, dtype=float).ravel()
    if x.size < 2 or not np.isfinite(x).all():
        raise ValueError("reports must hold at least 2 finite numbers")
    if not (math.isfinite(sensitivity) and sensitivity > 0):
        raise ValueError(f"sensitivity must be a finite number > 0, got {sensitivity}")
    b = float(sensitivity) / eps
    var = float(x.var(ddof=1))
    return {"mean": float(x.mean()), "variance": var - 2 * b * b, "std_error": math.sqrt(var / x.size), "scale": b}
