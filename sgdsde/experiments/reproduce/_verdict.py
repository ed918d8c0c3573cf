"""Verdicts: the paper's claim against the measured effect, with its statistic.

Three kinds of evidence, each a small function returning a :class:`Verdict`:

- :func:`correlation_verdict` — Spearman ρ of two samples with its two-sided p-value
  (``scipy.stats.spearmanr``); the claim is a sign of ρ.
- :func:`slope_verdict` — ordinary least-squares slope of y on x with its Student-t
  confidence interval; the claim is a sign, or a value the interval should contain.
- :func:`difference_verdict` — a difference of two means with its standard error
  sqrt(se_a² + se_b²); the claim is a sign.

Verdict rule (one for all three): **confirmed** when the effect has the claimed sign (or
the interval contains the claimed value) at the stated significance; **contradicted**
when it is significant with the opposite sign (or the interval excludes the claimed
value); **not confirmed** otherwise (too noisy to tell). Significance: p < ``alpha`` for
a correlation; the (1 − alpha) interval for a slope; |difference| > z·se for a
difference (z = 2 by default, about 95 % two-sided)."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats

__all__ = ["CONFIRMED", "NOT_CONFIRMED", "CONTRADICTED", "Verdict", "correlation_verdict", "slope_verdict",
           "difference_verdict", "mean_stderr", "paired_difference"]

CONFIRMED, NOT_CONFIRMED, CONTRADICTED = "confirmed", "not confirmed", "contradicted"


class Verdict(NamedTuple):
    """One claim against one measurement.

    ``statistic``: what was computed ("spearman", "slope", "difference"); ``value``: its
    estimate; ``interval``: (low, high) confidence interval, or None; ``p_value``: or
    None; ``verdict``: confirmed / not confirmed / contradicted; ``text``: one line for
    the console (the statistic and its uncertainty)."""

    claim: str
    statistic: str
    value: float
    interval: tuple[float, float] | None
    p_value: float | None
    verdict: str
    text: str

    def as_dict(self) -> dict:
        return self._asdict()


def _check_sign(expected_sign) -> int:
    if expected_sign not in (1, -1) or isinstance(expected_sign, bool):
        raise ValueError(f"expected_sign: must be +1 or -1, got {expected_sign!r}")
    return int(expected_sign)


def _check_level(value, name: str, low: float, high: float) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and low < float(value) < high):
        raise ValueError(f"{name}: must be a number in ({low:g}, {high:g}), got {value!r}")
    return float(value)


def mean_stderr(values, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error s/√n (s with n − 1) along ``axis`` (the replicas); the
    standard error is NaN where n < 2."""
    values = np.asarray(values, float)
    n = values.shape[axis]
    se = values.std(axis=axis, ddof=1) / math.sqrt(n) if n > 1 else np.full(np.delete(values.shape, axis), np.nan)
    return values.mean(axis=axis), se


def paired_difference(a, b) -> tuple[float, float]:
    """Mean and standard error of the paired differences a_r − b_r (common random numbers)."""
    mean, se = mean_stderr(np.ravel(np.asarray(a, float) - np.asarray(b, float)))
    return float(mean), float(se)


def _sign_verdict(significant: bool, sign: float, expected_sign: int) -> str:
    if not significant or sign == 0:
        return NOT_CONFIRMED
    return CONFIRMED if np.sign(sign) == np.sign(expected_sign) else CONTRADICTED


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def correlation_verdict(claim: str, x: Sequence[float], y: Sequence[float], expected_sign: int,
                        alpha: float = 0.05) -> Verdict:
    """Spearman ρ of (x, y) (non-finite pairs dropped), its two-sided p-value, and the
    verdict on the claim "ρ has sign ``expected_sign``" (+1 or −1) at level ``alpha``
    (p < alpha). Fewer than 3 finite pairs, or a constant sample: ρ = NaN, not confirmed."""
    expected_sign, alpha = _check_sign(expected_sign), _check_level(alpha, "alpha", 0.0, 1.0)
    x, y = _finite_pairs(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Verdict(claim, "spearman", math.nan, None, None, NOT_CONFIRMED,
                       f"Spearman ρ undefined ({x.size} finite pairs, or a constant sample)")
    rho, p = stats.spearmanr(x, y)
    rho, p = float(rho), float(p)
    verdict = _sign_verdict(p < alpha, rho, expected_sign)
    return Verdict(claim, "spearman", rho, None, p, verdict, f"Spearman ρ = {rho:+.3f} (p = {p:.2g}, n = {x.size})")


def slope_verdict(claim: str, x: Sequence[float], y: Sequence[float], *, expected_sign: int | None = None,
                  expected_value: float | None = None, alpha: float = 0.05) -> Verdict:
    """OLS slope of y on x with its (1 − alpha) Student-t interval (n − 2 degrees of
    freedom). Give ``expected_sign`` (the interval must exclude 0 on that side) or
    ``expected_value`` (the interval must contain it; contradicted when it excludes it)."""
    if (expected_sign is None) == (expected_value is None):
        raise ValueError("give exactly one of expected_sign and expected_value")
    if expected_sign is not None:
        expected_sign = _check_sign(expected_sign)
    elif not math.isfinite(expected_value):
        raise ValueError(f"expected_value: must be finite, got {expected_value!r}")
    alpha = _check_level(alpha, "alpha", 0.0, 1.0)
    x, y = _finite_pairs(x, y)
    if x.size < 3 or np.ptp(x) == 0:
        return Verdict(claim, "slope", math.nan, None, None, NOT_CONFIRMED,
                       f"slope undefined ({x.size} finite points)")
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(1 - alpha / 2, x.size - 2) * fit.stderr)
    low, high = float(fit.slope) - half, float(fit.slope) + half
    if expected_value is not None:
        verdict = CONFIRMED if low <= expected_value <= high else CONTRADICTED
    else:
        verdict = _sign_verdict(low > 0 or high < 0, fit.slope, expected_sign)
    level = round(100 * (1 - alpha))
    return Verdict(claim, "slope", float(fit.slope), (low, high), float(fit.pvalue), verdict,
                   f"slope = {fit.slope:+.3g}, {level}% CI [{low:+.3g}, {high:+.3g}] (n = {x.size})")


def difference_verdict(claim: str, mean_a: float, se_a: float, mean_b: float, se_b: float, expected_sign: int,
                       z: float = 2.0) -> Verdict:
    """The difference a − b with standard error sqrt(se_a² + se_b²) (independent
    estimates); significant when |a − b| > z·se; the claim is "a − b has sign
    ``expected_sign``" (+1 or −1). A non-finite mean or standard error (e.g. from one
    replica): not confirmed, value NaN; a negative standard error: ValueError."""
    expected_sign, z = _check_sign(expected_sign), _check_level(z, "z", 0.0, math.inf)
    if float(se_a) < 0 or float(se_b) < 0:
        raise ValueError(f"se_a, se_b: standard errors must be ≥ 0, got {se_a!r} and {se_b!r}")
    difference = float(mean_a) - float(mean_b)
    se = math.hypot(float(se_a), float(se_b))
    if not (math.isfinite(difference) and math.isfinite(se)):
        return Verdict(claim, "difference", math.nan, None, None, NOT_CONFIRMED,
                       f"difference undefined (a − b = {difference:.4g}, se = {se:.2g})")
    significant = se == 0 and difference != 0 or abs(difference) > z * se
    verdict = _sign_verdict(significant, difference, expected_sign)
    p = float(2 * stats.norm.sf(abs(difference) / se)) if se > 0 else (0.0 if difference else 1.0)
    return Verdict(claim, "difference", difference, (difference - z * se, difference + z * se), p, verdict,
                   f"difference = {difference:+.4g} ± {se:.2g} (se; z = {abs(difference) / se if se else math.inf:.1f})")
