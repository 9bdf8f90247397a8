"""k-anonymity, l-diversity, generalisation, Mondrian, information loss and local DP
(mlimaging.privacy.anonymity), with pycanon as the oracle for k and l."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from mlimaging.privacy.anonymity import (
    Hierarchy,
    age_hierarchy,
    discernibility_metric,
    generalize,
    generalize_to_k,
    k_anonymity,
    l_diversity,
    laplace_estimates,
    laplace_mechanism,
    mondrian,
    normalized_certainty_penalty,
    randomized_response,
    randomized_response_frequencies,
    site_hierarchy,
    suppress,
    synthetic_metadata,
)

pycanon = pytest.importorskip("pycanon")
from pycanon import anonymity as canon  # noqa: E402

# pycanon groups by a one-element list, which pandas 3 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:In a future version, the keys of `groups`")

QI = ["age", "sex", "site"]
HIER = {"age": age_hierarchy(), "sex": Hierarchy([lambda v: "*"], name="sex"), "site": site_hierarchy()}


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    return synthetic_metadata(600, seed=7)


@pytest.fixture
def six() -> pd.DataFrame:
    """The course's 6-row table."""
    return pd.DataFrame({"age": [25, 25, 32, 32, 32, 47], "sex": ["F", "F", "M", "M", "M", "F"],
                         "dx": ["flu", "cold", "flu", "flu", "hiv", "cold"]})


# ------------------------------------------------------------------ worked examples
def test_six_row_table_by_hand(six):
    # classes (25,F): 2 rows {flu, cold}; (32,M): 3 rows {flu, hiv}; (47,F): 1 row {cold}
    assert k_anonymity(six, ["age", "sex"]) == 1
    assert l_diversity(six, ["age", "sex"], "dx") == 1
    assert k_anonymity(six, ["sex"]) == 3
    assert l_diversity(six, ["sex"], "dx") == 2
    # age -> 20-year bands: (20-39,F) 2, (20-39,M) 3, (40-59,F) 1
    g3 = generalize(six, {"age": age_hierarchy()}, {"age": 3})
    assert g3["age"].tolist() == ["20-39"] * 5 + ["40-59"]
    assert k_anonymity(g3, ["age", "sex"]) == 1
    # age -> "*": (*,F) rows 0,1,5 {flu,cold}; (*,M) rows 2,3,4 {flu,hiv}
    g4 = generalize(six, {"age": age_hierarchy()}, {"age": 4})
    assert (k_anonymity(g4, ["age", "sex"]), l_diversity(g4, ["age", "sex"], "dx")) == (3, 2)
    # suppression of the singleton (47, F) gives k = 2 with 5 rows
    s = suppress(six, ["age", "sex"], 2)
    assert s.index.tolist() == [0, 1, 2, 3, 4] and k_anonymity(s, ["age", "sex"]) == 2
    # NCP: age fully generalised (cover 25..47 = whole range) on every row, sex intact: 6/12
    assert normalized_certainty_penalty(six, g4, ["age", "sex"]) == pytest.approx(0.5)
    # DM: classes of 3 and 3 -> 18; suppressed version: 2^2 + 3^2 + 1 * 6 = 19
    assert discernibility_metric(six, g4, ["age", "sex"]) == 18
    assert discernibility_metric(six, s, ["age", "sex"]) == 19
    assert discernibility_metric(six, six, ["age", "sex"]) == 4 + 9 + 1


def test_mondrian_worked_example(six):
    m = mondrian(six, ["age", "sex"], 2)
    # widest normalised QI: age (range 22 of 22) ties sex (2 of 2); the median cut age <= 25 / > 25
    # gives {25,25} and {32,32,32,47}; the right half splits no further on age (3+1) nor sex (3+1).
    assert m["age"].tolist() == ["25", "25", "32-47", "32-47", "32-47", "32-47"]
    assert m["sex"].tolist() == ["F", "F", "{F,M}", "{F,M}", "{F,M}", "{F,M}"]
    assert m["dx"].tolist() == six["dx"].tolist()
    assert k_anonymity(m, ["age", "sex"]) == 2


def test_hierarchies_by_hand():
    a = age_hierarchy((5, 10, 20))
    assert [a.generalize_value(59, lv) for lv in range(5)] == [59, "55-59", "50-59", "40-59", "*"]
    s = site_hierarchy()
    assert [s.generalize_value("Munich", lv) for lv in range(4)] == ["Munich", "Bavaria", "Germany", "*"]
    h = Hierarchy.from_parents({"a": "x", "b": "x", "c": "y"}, {"x": "top", "y": "top"}, top="ALL")
    assert h.height == 3 and h.generalize(pd.Series(["a", "c"]), 2).tolist() == ["top", "top"]
    assert h.generalize(pd.Series(["a", "c"]), 3).tolist() == ["ALL", "ALL"]


# ------------------------------------------------------------------ oracle: pycanon
def test_oracle_pycanon_on_synthetic_and_generalised(meta):
    tables = [meta] + [generalize(meta, HIER, dict(zip(QI, lv, strict=True)))
                       for lv in [(1, 0, 0), (2, 1, 1), (3, 0, 2), (4, 1, 3), (0, 1, 1)]]
    for t in tables:
        for qi in (QI, ["age", "sex"], ["site", "scanner"], ["sex"]):
            assert k_anonymity(t, qi) == canon.k_anonymity(t, qi)
            assert l_diversity(t, qi, "diagnosis") == canon.l_diversity(t, qi, ["diagnosis"])
        assert l_diversity(t, ["sex"], ["diagnosis", "scanner"]) == canon.l_diversity(
            t, ["sex"], ["diagnosis", "scanner"])


def test_oracle_pycanon_on_mondrian_output(meta):
    for k in (2, 5, 17):
        m = mondrian(meta, QI, k, hierarchies={"site": site_hierarchy()})
        assert k_anonymity(m, QI) == canon.k_anonymity(m, QI)
        assert l_diversity(m, QI, "diagnosis") == canon.l_diversity(m, QI, ["diagnosis"])


@pytest.mark.parametrize("seed", range(20))
def test_oracle_pycanon_seeded_random_tables(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    t = pd.DataFrame({"a": rng.integers(0, rng.integers(1, 6), n), "b": rng.choice(list("xyz"), n),
                      "c": rng.integers(0, 3, n).astype(float), "s": rng.choice(list("pqrst"), n)})
    for qi in (["a"], ["a", "b"], ["a", "b", "c"]):
        assert k_anonymity(t, qi) == canon.k_anonymity(t, qi)
        assert l_diversity(t, qi, "s") == canon.l_diversity(t, qi, ["s"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from("FM"), st.sampled_from("abc")), min_size=1, max_size=40))
def test_oracle_pycanon_hypothesis(rows):
    t = pd.DataFrame(rows, columns=["age", "sex", "dx"])
    assert k_anonymity(t, ["age", "sex"]) == canon.k_anonymity(t, ["age", "sex"])
    assert l_diversity(t, ["age", "sex"], "dx") == canon.l_diversity(t, ["age", "sex"], ["dx"])


# ------------------------------------------------------------------ invariants
def test_generalising_never_lowers_k_or_l(meta):
    heights = [HIER[c].height for c in QI]
    for node in itertools.product(*(range(h + 1) for h in heights)):
        t = generalize(meta, HIER, dict(zip(QI, node, strict=True)))
        k, ell = k_anonymity(t, QI), l_diversity(t, QI, "diagnosis")
        for i in range(len(QI)):  # one step up in any QI
            if node[i] < heights[i]:
                up = list(node)
                up[i] += 1
                u = generalize(meta, HIER, dict(zip(QI, up, strict=True)))
                assert k_anonymity(u, QI) >= k and l_diversity(u, QI, "diagnosis") >= ell
    top = generalize(meta, HIER, {c: HIER[c].height for c in QI})
    assert k_anonymity(top, QI) == len(meta)
    assert normalized_certainty_penalty(meta, top, QI) == pytest.approx(1.0)
    assert normalized_certainty_penalty(meta, meta, QI) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10, 33, 100, 600])
def test_mondrian_is_k_anonymous_for_every_k(meta, k):
    for hierarchies in (None, {"site": site_hierarchy()}):
        qi = [*QI, "scanner"]
        m = mondrian(meta, qi, k, hierarchies=hierarchies)
        assert k_anonymity(m, qi) >= k
        assert m.index.equals(meta.index) and m["diagnosis"].equals(meta["diagnosis"])
        assert 0.0 <= normalized_certainty_penalty(meta, m, qi) <= 1.0
        # a class's age range holds every original age of the class
        for label, ages in meta["age"].groupby(m["age"].to_numpy()):
            lo, _, hi = label.partition("-")
            assert float(lo) <= ages.min() and ages.max() <= float(hi or lo)
    assert k > 1 or mondrian(meta, ["age"], 1)["age"].tolist() == meta["age"].astype(str).tolist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 90), st.sampled_from("FM"), st.sampled_from(["Leeds", "Paris", "Lyon"])),
                min_size=1, max_size=50), st.integers(1, 8))
def test_mondrian_k_anonymous_hypothesis(rows, k):
    t = pd.DataFrame(rows, columns=QI)
    k = min(k, len(t))
    m = mondrian(t, QI, k, hierarchies={"site": site_hierarchy()} if len(t) % 2 else None)
    assert k_anonymity(m, QI) >= k


def test_information_loss_grows_with_k_under_generalize_to_k(meta):
    losses, dms = [], []
    for k in (2, 5, 20, 80):
        anon, levels = generalize_to_k(meta, HIER, k, max_suppression=0.02)
        assert k_anonymity(anon, QI) >= k and len(meta) - len(anon) <= 0.02 * len(meta)
        assert set(levels) == set(QI)
        losses.append(normalized_certainty_penalty(meta, anon, QI))
        dms.append(discernibility_metric(meta, anon, QI))
    assert losses == sorted(losses)  # a node valid for larger k is valid for smaller k
    assert all(d >= len(meta) for d in dms)


# ------------------------------------------------------------------ synthetic data
def test_synthetic_metadata_distributions():
    t = synthetic_metadata(4000, seed=1)
    assert t.equals(synthetic_metadata(4000, seed=1)) and not t.equals(synthetic_metadata(4000, seed=2))
    assert list(t.columns) == ["age", "sex", "site", "scanner", "diagnosis"] and t["age"].dtype == np.int64
    assert t["age"].between(0, 99).all() and t.notna().all().all()
    assert abs((t["sex"] == "F").mean() - 0.52) < 0.03
    assert abs((t["age"] < 18).mean() - 0.08) < 0.02
    site = site_hierarchy()
    assert {site.generalize_value(s, 2) for s in t["site"].unique()} == {"UK", "Germany", "France"}
    assert t.groupby("site")["scanner"].nunique().max() <= 3
    old, young = t[t["age"] >= 70], t[(t["age"] >= 18) & (t["age"] < 40)]
    assert (old["diagnosis"] == "malignant").mean() > 2 * (young["diagnosis"] == "malignant").mean()


# ------------------------------------------------------------------ local DP
@pytest.mark.parametrize(("epsilon", "cats"), [(0.5, ["F", "M"]), (1.0, ["a", "b", "c", "d", "e"]), (3.0, [0, 1, 2])])
def test_randomized_response_frequency_estimator_is_unbiased(epsilon, cats):
    rng = np.random.default_rng(0)
    truth_p = np.linspace(1, 2, len(cats)) / np.linspace(1, 2, len(cats)).sum()
    n, reps = 400, 300
    truth = np.asarray(cats, dtype=object)[rng.choice(len(cats), size=n, p=truth_p)]
    true_freq = pd.Series(truth).value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy(float)
    est = np.array([randomized_response_frequencies(randomized_response(truth, epsilon=epsilon, categories=cats,
                                                                        seed=rng), epsilon=epsilon, categories=cats)
                    for _ in range(reps)])
    e = math.exp(epsilon)
    p, q = e / (e + len(cats) - 1), 1 / (e + len(cats) - 1)
    lam = true_freq * p + (1 - true_freq) * q
    se = np.sqrt(lam * (1 - lam) / n) / (p - q) / np.sqrt(reps)  # SE of the mean of the estimates
    assert np.all(np.abs(est.mean(axis=0) - true_freq) < 5 * se)
    assert_allclose(est.sum(axis=1), 1.0, atol=1e-9)
    naive = np.array([pd.Series(randomized_response(truth, epsilon=epsilon, categories=cats, seed=s)).value_counts(
        normalize=True).reindex(cats, fill_value=0).to_numpy(float) for s in range(50)]).mean(axis=0)
    assert np.abs(naive - true_freq).max() > np.abs(est.mean(axis=0) - true_freq).max()  # raw counts are biased


def test_randomized_response_keep_probability_and_seed():
    x = np.array(["a"] * 20000, dtype=object)
    r = randomized_response(x, epsilon=1.0, categories=["a", "b", "c"], seed=3)
    p = math.e / (math.e + 2)
    assert abs((r == "a").mean() - p) < 0.01 and abs((r == "b").mean() - (r == "c").mean()) < 0.02
    assert (r == randomized_response(x, epsilon=1.0, categories=["a", "b", "c"], seed=3)).all()


def test_laplace_mechanism_and_estimates_are_unbiased():
    rng = np.random.default_rng(0)
    x = rng.uniform(20, 80, size=500)
    eps, lo, hi = 0.8, 0.0, 100.0
    b = (hi - lo) / eps
    means, variances = [], []
    for _ in range(400):
        est = laplace_estimates(laplace_mechanism(x, epsilon=eps, bounds=(lo, hi), seed=rng), epsilon=eps,
                                sensitivity=hi - lo)
        means.append(est["mean"])
        variances.append(est["variance"])
        assert est["scale"] == pytest.approx(b)
    se_mean = math.sqrt((x.var() + 2 * b * b) / len(x) / 400)
    assert abs(np.mean(means) - x.mean()) < 5 * se_mean
    assert abs(np.mean(variances) - x.var(ddof=1)) < 0.05 * 2 * b * b
    noise = laplace_mechanism(np.zeros(200000), epsilon=2.0, sensitivity=1.0, seed=1)
    assert abs(noise.var() - 2 * 0.5**2) < 0.01 and abs(np.median(np.abs(noise)) - 0.5 * math.log(2)) < 0.01
    assert laplace_mechanism([150.0], epsilon=1e9, bounds=(0, 100), seed=0)[0] == pytest.approx(100.0, abs=1e-5)


# ------------------------------------------------------------------ bad input
names = st.text(alphabet="abcdefgh", min_size=1, max_size=4)


@settings(max_examples=30, deadline=None)
@given(names)
def test_missing_columns_raise(col):
    t = pd.DataFrame({"age": [1, 2], "sex": ["F", "M"], "dx": ["x", "y"]})
    if col in t.columns:
        return
    for call in (lambda: k_anonymity(t, [col]), lambda: l_diversity(t, ["age"], col),
                 lambda: mondrian(t, [col], 1), lambda: suppress(t, ["age", col], 1)):
        with pytest.raises(ValueError, match=col):
            call()


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans(), st.integers(min_value=4)))
def test_bad_k_raises(k):
    t = pd.DataFrame({"age": [1, 2, 3], "sex": ["F", "M", "F"]})
    with pytest.raises(ValueError, match="k"):
        mondrian(t, ["age"], k)
    with pytest.raises(ValueError, match="k"):
        generalize_to_k(t, {"age": age_hierarchy()}, k)
    if not (isinstance(k, int) and k >= 4):
        with pytest.raises(ValueError, match="k must"):
            suppress(t, ["age"], k)


def test_empty_and_other_bad_tables():
    empty = pd.DataFrame({"age": [], "sex": [], "dx": []})
    for call in (lambda: k_anonymity(empty, ["age"]), lambda: l_diversity(empty, ["age"], "dx"),
                 lambda: mondrian(empty, ["age"], 1)):
        with pytest.raises(ValueError, match="empty"):
            call()
    assert len(suppress(empty, ["age"], 2)) == 0
    with pytest.raises(ValueError, match="DataFrame"):
        k_anonymity([[1, 2]], ["age"])
    t = pd.DataFrame({"age": [1.0, np.nan], "dx": ["a", "b"]})
    with pytest.raises(ValueError, match="missing"):
        mondrian(t, ["age"], 1)
    with pytest.raises(ValueError, match="overlaps"):
        l_diversity(t, ["age"], "age")
    with pytest.raises(ValueError, match="quasi_identifiers is empty"):
        k_anonymity(t, [])
    with pytest.raises(ValueError, match="level"):
        generalize(t, {"age": age_hierarchy()}, {"age": 9})
    with pytest.raises(ValueError, match="Oslo"):
        generalize(pd.DataFrame({"site": ["Oslo"]}), {"site": site_hierarchy()}, {"site": 1})
    with pytest.raises(ValueError, match="hierarchies is empty"):
        generalize_to_k(t, {}, 1)
    with pytest.raises(ValueError, match="levels"):
        generalize(t, {}, {"nope": 1})
    assert generalize(t, {}, {}).equals(t)
    with pytest.raises(ValueError, match="divide"):
        age_hierarchy((5, 8))
    with pytest.raises(ValueError, match="no generalisation"):
        generalize_to_k(pd.DataFrame({"age": [1, 2, 3]}), {"age": Hierarchy([{1: 1, 2: 2, 3: 3}])}, 2)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.floats(max_value=0), st.just(float("inf")), st.just(float("nan"))))
def test_bad_epsilon_raises(eps):
    with pytest.raises(ValueError, match="epsilon"):
        randomized_response(["a"], epsilon=eps, categories=["a", "b"])
    with pytest.raises(ValueError, match="epsilon"):
        laplace_mechanism([1.0], epsilon=eps, sensitivity=1.0)


def test_local_dp_bad_input():
    with pytest.raises(ValueError, match="not in categories"):
        randomized_response(["z"], epsilon=1.0, categories=["a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        randomized_response(["a"], epsilon=1.0, categories=["a"])
    with pytest.raises(ValueError, match="empty"):
        randomized_response_frequencies([], epsilon=1.0, categories=["a", "b"])
    with pytest.raises(ValueError, match="sensitivity"):
        laplace_mechanism([1.0], epsilon=1.0)
    with pytest.raises(ValueError, match="bounds"):
        laplace_mechanism([1.0], epsilon=1.0, bounds=(1, 1))
    with pytest.raises(ValueError, match="finite"):
        laplace_mechanism([np.nan], epsilon=1.0, sensitivity=1.0)
    with pytest.raises(ValueError, match="n must"):
        synthetic_metadata(0, seed=0)
