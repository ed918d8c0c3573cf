"""The order of the gap in η: a generalised least-squares fit of log|Δ| = a + p log η
with the Monte-Carlo covariance of the gaps across η (:func:`fit_order`, :class:`OrderFit`)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.linalg

__all__ = ["OrderFit", "fit_order"]


@dataclasses.dataclass(frozen=True)
class OrderFit:
    """Fit of log|Δ| = a + p log η over the resolved points.

    slope p with ``stderr`` (inflated by √(χ²/dof) when that exceeds 1; ``stderr_mc`` is
    the Monte-Carlo-only value) and the ``ci`` at ``confidence`` (normal quantile);
    ``used``: which η entered; ``chi2``, ``dof``; ``note`` says why a fit is missing or
    doubtful (NaN slope when fewer than two points are resolved).
    """

    slope: float
    stderr: float
    stderr_mc: float
    ci: tuple
    confidence: float
    intercept: float
    used: np.ndarray
    chi2: float
    dof: int
    note: str = ""

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the confidence interval."""
        return bool(self.ci[0] <= value <= self.ci[1])

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _mean_covariance(values) -> np.ndarray:
    """Covariance of the means of the rows of ``values`` (G, R), from replicas paired by index."""
    ok = np.isfinite(values)
    n = ok.sum(axis=-1).astype(np.float64)
    mean = np.nansum(values, axis=-1) / np.maximum(n, 1)
    dev = np.where(ok, values - mean[:, None], 0.0)
    joint = ok.astype(np.float64) @ ok.T.astype(np.float64)
    cross = dev @ dev.T
    return cross / np.maximum(joint - 1, 1) * joint / np.maximum(np.outer(n, n), 1)


def fit_order(learning_rates, gaps, covariance, *, use=None, confidence: float = 0.95) -> OrderFit:
    """Generalised least squares of log|Δ| = a + p log η.

    covariance: (G, G) covariance of the gaps Δ (or a vector of their variances);
    propagated to log|Δ| by the delta method, Cov(Δ_g, Δ_h)/(Δ_g Δ_h). use: boolean mask
    of the points to fit (default: all with Δ ≠ 0). Returns an :class:`OrderFit`.
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence!r}")
    eta = np.asarray(learning_rates, dtype=np.float64)
    gaps = np.asarray(gaps, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    cov = np.diag(cov) if cov.ndim == 1 else cov
    use = np.isfinite(gaps) & (gaps != 0) if use is None else np.asarray(use, bool) & np.isfinite(gaps) & (gaps != 0)
    nan = float("nan")
    if use.sum() < 2:
        return OrderFit(nan, nan, nan, (nan, nan), confidence, nan, use, nan, 0,
                        f"{int(use.sum())} resolved point(s): no fit")
    x, y, d = np.log(eta[use]), np.log(np.abs(gaps[use])), gaps[use]
    v = cov[np.ix_(use, use)] / np.outer(d, d)
    design = np.stack([np.ones_like(x), x], axis=1)
    try:  # whiten by V = LLᵀ, then ordinary least squares: no explicit V⁻¹ or normal equations
        chol = np.linalg.cholesky(v)
    except np.linalg.LinAlgError:  # singular V: weights from the variances alone
        chol = np.diag(np.sqrt(np.diag(v)))
    white_design = scipy.linalg.solve_triangular(chol, design, lower=True)
    white_y = scipy.linalg.solve_triangular(chol, y, lower=True)
    beta, _, _, _ = np.linalg.lstsq(white_design, white_y, rcond=None)
    r_factor = np.linalg.qr(white_design, mode="r")  # Cov(β) = (XᵀV⁻¹X)⁻¹ = R⁻¹R⁻ᵀ
    r_inv = scipy.linalg.solve_triangular(r_factor, np.eye(2))
    beta_cov = r_inv @ r_inv.T
    resid = white_y - white_design @ beta
    chi2 = float(resid @ resid)
    dof = int(use.sum()) - 2
    stderr_mc = float(np.sqrt(beta_cov[1, 1]))
    inflate = math.sqrt(chi2 / dof) if dof > 0 and chi2 > dof else 1.0
    stderr = stderr_mc * inflate
    q = float(stats.norm.ppf(0.5 + confidence / 2))
    notes = []
    if len(set(np.sign(d))) > 1:
        notes.append("the gap changes sign across η")
    if inflate > 1:
        notes.append(f"stderr inflated ×{inflate:.2f} for χ²/dof > 1")
    if int(use.sum()) < use.size:
        notes.append(f"{use.size - int(use.sum())} point(s) left out")
    slope = float(beta[1])
    return OrderFit(slope, stderr, stderr_mc, (slope - q * stderr, slope + q * stderr), confidence,
                    float(beta[0]), use, chi2, dof, "; ".join(notes))
