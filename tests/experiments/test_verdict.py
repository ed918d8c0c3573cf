"""The verdict statistics of the reproductions (sgdsde/experiments/reproduce/_verdict.py) on
constructed data with known answers."""

import math

import numpy as np
import pytest
from scipy import stats

from sgdsde.experiments.reproduce._verdict import (CONFIRMED, CONTRADICTED, NOT_CONFIRMED, Verdict,
                                                   correlation_verdict, difference_verdict, slope_verdict)

FIELDS = ("claim", "statistic", "value", "interval", "p_value", "verdict", "text")


def check_fields(v: Verdict, statistic: str) -> None:
    assert isinstance(v, Verdict) and tuple(v.as_dict()) == FIELDS
    assert v.statistic == statistic and v.verdict in (CONFIRMED, NOT_CONFIRMED, CONTRADICTED)
    assert isinstance(v.text, str) and v.text


# ------------------------------------------------------------------ correlation
def test_correlation_perfect_monotone_is_plus_or_minus_one():
    x = np.arange(1.0, 11.0)
    up = correlation_verdict("rises", x, np.exp(x), +1)       # monotone, not linear: ranks only
    down = correlation_verdict("falls", x, -x ** 3, -1)
    check_fields(up, "spearman")
    assert up.value == pytest.approx(1.0, abs=1e-12) and down.value == pytest.approx(-1.0, abs=1e-12)
    assert up.verdict == down.verdict == CONFIRMED
    assert up.p_value < 1e-10 and up.interval is None
    assert correlation_verdict("falls", x, np.exp(x), -1).verdict == CONTRADICTED


def test_correlation_matches_scipy_and_alpha_decides():
    rng = np.random.default_rng(15)  # seed chosen for p between 0.005 and 0.05
    x = rng.normal(size=30)
    y = 0.4 * x + rng.normal(size=30)
    rho, p = stats.spearmanr(x, y)
    v = correlation_verdict("rises", x, y, +1)
    assert v.value == pytest.approx(rho, rel=1e-12) and v.p_value == pytest.approx(p, rel=1e-12)
    assert 0.005 < p < 0.05  # the data are chosen so: confirmed at 5 %, not at 0.5 %
    assert v.verdict == CONFIRMED
    assert correlation_verdict("rises", x, y, +1, alpha=0.005).verdict == NOT_CONFIRMED


def test_correlation_zero_is_not_confirmed():
    # ranks (0, 1, 2, 3, 4) against (0, 4, 3, 2, 1): Σ d² = 20 = n(n² − 1)/12, so ρ = 1 − 6·20/120 = 0
    x = np.arange(5.0)
    y = np.array([0.0, 4.0, 3.0, 2.0, 1.0])
    rho = stats.spearmanr(x, y).statistic
    assert rho == pytest.approx(0.0, abs=1e-12)
    assert correlation_verdict("rises", x, y, +1).verdict == NOT_CONFIRMED


def test_correlation_drops_non_finite_pairs():
    x = np.array([1.0, 2.0, np.nan, 3.0, 4.0, 5.0, np.inf])
    y = np.array([2.0, 1.0, 7.0, 4.0, np.nan, 3.0, 9.0])
    v = correlation_verdict("rises", x, y, +1)
    clean = stats.spearmanr([1.0, 2.0, 3.0, 5.0], [2.0, 1.0, 4.0, 3.0])
    assert v.value == pytest.approx(clean.statistic) and v.p_value == pytest.approx(clean.pvalue)
    assert "n = 4" in v.text


def test_correlation_undefined_cases():
    few = correlation_verdict("rises", [1.0, 2.0, np.nan], [1.0, 2.0, 3.0], +1)
    constant = correlation_verdict("rises", [1.0, 2.0, 3.0], [5.0, 5.0, 5.0], +1)
    for v in (few, constant):
        check_fields(v, "spearman")
        assert math.isnan(v.value) and v.p_value is None and v.verdict == NOT_CONFIRMED


@pytest.mark.parametrize("kwargs, match", [
    ({"x": [1, 2, 3], "y": [1, 2]}, "differ in length"),
    ({"expected_sign": 0}, "expected_sign"),
    ({"expected_sign": 2}, "expected_sign"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 1.5}, "alpha"),
])
def test_correlation_bad_input(kwargs, match):
    args = {"x": [1, 2, 3, 4], "y": [1, 3, 2, 4], "expected_sign": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        correlation_verdict("claim", args.pop("x"), args.pop("y"), **args)


# ------------------------------------------------------------------------ slope
def test_slope_interval_is_linregress_with_t_quantile():
    rng = np.random.default_rng(1)
    x = np.linspace(0.0, 1.0, 12)
    y = 2.0 * x + 0.5 + 0.3 * rng.normal(size=12)
    fit = stats.linregress(x, y)
    for alpha in (0.05, 0.01):
        half = stats.t.ppf(1 - alpha / 2, 10) * fit.stderr
        v = slope_verdict("slope 2", x, y, expected_value=2.0, alpha=alpha)
        check_fields(v, "slope")
        assert v.value == pytest.approx(fit.slope, rel=1e-12)
        assert v.interval == pytest.approx((fit.slope - half, fit.slope + half), rel=1e-12)
        assert v.p_value == pytest.approx(fit.pvalue, rel=1e-12)
    assert f"{round(100 * (1 - 0.01))}% CI" in v.text


def test_slope_verdicts_all_three():
    x = np.arange(10.0)
    noise = np.array([0.1, -0.2, 0.05, 0.15, -0.1, 0.0, 0.2, -0.15, 0.1, -0.05])
    y = 3.0 * x + noise
    assert slope_verdict("rises", x, y, expected_sign=+1).verdict == CONFIRMED
    assert slope_verdict("falls", x, y, expected_sign=-1).verdict == CONTRADICTED
    assert slope_verdict("is 3", x, y, expected_value=3.0).verdict == CONFIRMED
    assert slope_verdict("is 1", x, y, expected_value=1.0).verdict == CONTRADICTED
    flat = np.array([0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.4, -0.3, 0.1])  # slope CI straddles 0
    v = slope_verdict("rises", x, flat, expected_sign=+1)
    assert v.interval[0] < 0 < v.interval[1] and v.verdict == NOT_CONFIRMED


def test_slope_exact_line_and_non_finite():
    x = np.array([0.0, 1.0, 2.0, np.nan, 3.0, 4.0])
    y = np.array([1.0, 3.0, 5.0, 2.0, 7.0, np.inf])
    v = slope_verdict("is 2", x, y, expected_value=2.0)
    assert v.value == pytest.approx(2.0) and v.interval == pytest.approx((2.0, 2.0), abs=1e-12)
    assert v.verdict == CONFIRMED and "n = 4" in v.text
    undefined = slope_verdict("rises", [1.0, 1.0, 1.0], [1.0, 2.0, 3.0], expected_sign=1)
    assert math.isnan(undefined.value) and undefined.verdict == NOT_CONFIRMED


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one"),
    ({"expected_sign": 1, "expected_value": 1.0}, "exactly one"),
    ({"expected_sign": 0}, "expected_sign"),
    ({"expected_value": math.nan}, "expected_value"),
    ({"expected_sign": 1, "alpha": 1.0}, "alpha"),
])
def test_slope_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slope_verdict("claim", [1, 2, 3, 4], [1, 3, 2, 4], **kwargs)
    with pytest.raises(ValueError, match="differ in length"):
        slope_verdict("claim", [1, 2, 3, 4], [1, 3, 2], expected_sign=1)


# ------------------------------------------------------------------- difference
def test_difference_known_standard_error():
    # se = sqrt(0.3² + 0.4²) = 0.5 exactly; z = 2: significant beyond |a − b| = 1
    v = difference_verdict("a > b", 1.2, 0.3, 0.0, 0.4, +1)
    check_fields(v, "difference")
    assert v.value == pytest.approx(1.2) and v.interval == pytest.approx((0.2, 2.2))
    assert v.p_value == pytest.approx(2 * stats.norm.sf(1.2 / 0.5))
    assert v.verdict == CONFIRMED
    assert difference_verdict("a < b", 1.2, 0.3, 0.0, 0.4, -1).verdict == CONTRADICTED
    assert difference_verdict("a > b", 0.9, 0.3, 0.0, 0.4, +1).verdict == NOT_CONFIRMED  # 1.8 se
    assert difference_verdict("a > b", 0.9, 0.3, 0.0, 0.4, +1, z=1.5).verdict == CONFIRMED


def test_difference_zero_and_non_finite_standard_errors():
    exact = difference_verdict("a > b", 2.0, 0.0, 1.0, 0.0, +1)
    assert exact.verdict == CONFIRMED and exact.p_value == 0.0
    tie = difference_verdict("a > b", 1.0, 0.0, 1.0, 0.0, +1)
    assert tie.verdict == NOT_CONFIRMED and tie.p_value == 1.0
    one_replica = difference_verdict("a > b", 2.0, math.nan, 1.0, 0.1, +1)
    assert one_replica.verdict == NOT_CONFIRMED and math.isnan(one_replica.value) and one_replica.p_value is None


@pytest.mark.parametrize("args, kwargs, match", [
    ((1.0, -0.1, 0.0, 0.1, 1), {}, "standard errors"),
    ((1.0, 0.1, 0.0, 0.1, 0), {}, "expected_sign"),
    ((1.0, 0.1, 0.0, 0.1, 1), {"z": 0.0}, "z"),
])
def test_difference_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        difference_verdict("claim", *args, **kwargs)


def test_mean_stderr_and_paired_difference_against_numpy():
    from sgdsde.experiments.reproduce._verdict import mean_stderr, paired_difference

    values = np.arange(12.0).reshape(3, 4) ** 1.5
    mean, se = mean_stderr(values, axis=0)
    np.testing.assert_array_equal(mean, values.mean(axis=0))
    np.testing.assert_array_equal(se, values.std(axis=0, ddof=1) / np.sqrt(3))
    assert np.isnan(mean_stderr(values[:1], axis=0)[1]).all()  # one replica: no standard error
    a, b = np.array([1.0, 2.0, 4.0]), np.array([0.5, 1.0, 1.0])
    assert paired_difference(a, b) == (float(np.mean(a - b)), float(np.std(a - b, ddof=1) / np.sqrt(3)))
