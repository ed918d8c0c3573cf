"""Laplace (harmonic) probabilities of the minima and the critical noise (docs/theory.md §4).

With isotropic gradient noise σ² and noise scale n = η/S the stationary law of the SDE is
Boltzmann, P(θ) ∝ exp(−2L(θ)/(nσ²)) (temperature T = nσ²/2). Expanding L to second order
about each minimum A gives the unnormalised probability of its basin

    p̃_A = det(H_A)^(−1/2) exp(−2 L_A / (n σ²))

(the factor (2πT)^(d/2) is common to all minima and cancels). Probabilities are
normalised over the minima given, in log space (log det from the eigenvalues, logsumexp).

Critical noise. With L_A > L_B and det H_A < det H_B (A higher but flatter), A is more
probable exactly when n > n*, where p_A = p_B:

    ½ ln(det H_B / det H_A) = 2 (L_A − L_B)/(n σ²)   ⇔   n* = 4 (L_A − L_B) / (σ² ln(det H_B / det H_A)).

Jastrzębski et al.'s eq. (4) (and their Y) state n > (L_A − L_B)/(2σ² log √(det H_B/det H_A))
= (L_A − L_B)/(σ² ln(det H_B/det H_A)): a factor 4 smaller, inconsistent with their own
eq. (3) (Theorem 2), from which the line above follows in one step. The library uses the
consistent value; :func:`critical_noise` also reports the paper's for comparison.

Everything here is NumPy float64 post-processing of concrete minima (no tracing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple, Sequence

import numpy as np
from jaxtyping import ArrayLike

from ._common import check_noise, curvature_of, exp_or_limit, format_point, positive_logdet
from .minima import Minima

__all__ = [
    "CriticalNoise",
    "laplace_log_weights",
    "laplace_log_probabilities",
    "laplace_probabilities",
    "laplace_ratio",
    "critical_noise",
]


class CriticalNoise(NamedTuple):
    """The crossover noise of two minima (docs/theory.md §4).

    noise_scale: n* = 4(L_A − L_B)/(σ² ln(det H_B/det H_A)), ``inf`` when no crossover.
    exists: whether 0 < n* < ∞ (one minimum deeper, the other flatter).
    favoured_above, favoured_below: which minimum has the larger probability for n > n*
      and n < n* (indices into the minima, or 0 = A, 1 = B for explicit values; the same
      index twice when one minimum wins at every n; −1 when p_A = p_B at every n).
    paper_noise_scale: the value of the paper's eq. (4), n*/4 (``inf`` when none).
    reason: a sentence saying which case holds.
    """

    noise_scale: float
    exists: bool
    favoured_above: int
    favoured_below: int
    paper_noise_scale: float
    reason: str


def laplace_log_weights(minima) -> tuple[np.ndarray, np.ndarray]:
    """(losses L_A, log det H_A) of the minima, checked: every Hessian positive definite
    and non-singular (``ValueError`` naming the minimum otherwise).

    minima: a :class:`Minima`; a sequence of critical points (``CriticalPoint``, e.g.
    ``minima.at(i)``, or mappings with "loss" and "hessian", e.g. a problem's
    ``info["minima"]``); or a pair of arrays (losses, logdets).
    """
    if isinstance(minima, Minima):
        if minima.num_minima == 0:
            raise ValueError("minima: empty")
        bad = np.flatnonzero(minima.degenerate | ~np.isfinite(minima.logdets))
        if bad.size:
            where = "; ".join(
                f"minimum {i} at θ = {format_point(minima.points[i])} (smallest eigenvalue "
                f"{minima.eigenvalues[i, 0]:.3g})" for i in bad
            )
            raise ValueError(f"minima: singular Hessian, det H = 0, so the Laplace probability is undefined: {where}")
        return np.asarray(minima.losses, np.float64), np.asarray(minima.logdets, np.float64)
    if isinstance(minima, (list, tuple)) and minima and all(
        isinstance(m, Mapping) or hasattr(m, "hessian") for m in minima
    ):
        losses, logdets = [], []
        for i, item in enumerate(minima):
            value, hess, point = curvature_of(item)
            where = f"minimum {i}" + ("" if point is None else f" (θ = {format_point(point)})")
            losses.append(value)
            logdets.append(positive_logdet(hess, where))
        return np.array(losses), np.array(logdets)
    if isinstance(minima, (list, tuple)) and len(minima) == 2:
        losses = np.asarray(minima[0], np.float64).reshape(-1)
        logdets = np.asarray(minima[1], np.float64).reshape(-1)
        if losses.shape != logdets.shape or losses.size == 0:
            raise ValueError(
                f"minima: (losses, logdets) must be two arrays of one length, got shapes {losses.shape}, {logdets.shape}"
            )
        if not np.all(np.isfinite(losses)):
            raise ValueError("minima: losses must be finite")
        if not np.all(np.isfinite(logdets)):
            bad = np.flatnonzero(~np.isfinite(logdets)).tolist()
            raise ValueError(f"minima: log det H must be finite (a singular Hessian has none) at minima {bad}")
        return losses, logdets
    raise TypeError(
        "minima: expected a Minima, a sequence of critical points, or a pair (losses, logdets); "
        f"got {type(minima).__name__}"
    )


def laplace_log_probabilities(minima, noise_scale: float | ArrayLike, sigma2: float) -> np.ndarray:
    """log p_A = log p̃_A − logsumexp_B log p̃_B, log p̃_A = −½ log det H_A − 2 L_A/(nσ²).

    noise_scale: n = η/S, a scalar or an array; the result has shape shape(n) + (k,).
    """
    losses, logdets = laplace_log_weights(minima)
    n, s2 = check_noise(noise_scale, sigma2)
    logw = -0.5 * logdets - 2.0 * losses / (n[..., None] * s2)
    top = np.max(logw, axis=-1, keepdims=True)
    return logw - (top + np.log(np.sum(np.exp(logw - top), axis=-1, keepdims=True)))


def laplace_probabilities(minima, noise_scale: float | ArrayLike, sigma2: float) -> np.ndarray:
    """Normalised Laplace probabilities p_A of the minima, shape shape(n) + (k,)."""
    return np.exp(laplace_log_probabilities(minima, noise_scale, sigma2))


def _pair(minima, pair) -> tuple[float, float, float, float, tuple[int, int]]:
    """(L_a, logdet_a, L_b, logdet_b, (a, b)) from minima + pair, or four explicit values."""
    scalar = lambda v: isinstance(v, (int, float, np.number)) or (isinstance(v, np.ndarray) and v.ndim == 0)
    if isinstance(minima, (list, tuple)) and not isinstance(minima, Minima) and len(minima) == 4 and all(
        scalar(v) for v in minima
    ):
        values = [float(v) for v in minima]
        if not all(np.isfinite(values)):
            raise ValueError(f"minima: (L_A, logdet_A, L_B, logdet_B) must be finite, got {tuple(minima)}")
        return (*values, (0, 1))
    losses, logdets = laplace_log_weights(minima)
    k = losses.size
    a, b = (0, 1) if pair is None else pair
    if k < 2:
        raise ValueError(f"minima: need at least two minima, got {k}")
    if pair is None and k > 2:
        raise ValueError(f"pair: {k} minima given, say which two to compare, e.g. pair=(1, 0)")
    if not all(isinstance(i, (int, np.integer)) and 0 <= i < k for i in (a, b)) or a == b:
        raise ValueError(f"pair: two distinct indices in [0, {k}), got {pair!r}")
    return losses[a], logdets[a], losses[b], logdets[b], (int(a), int(b))


def laplace_ratio(
    minima, noise_scale: float | ArrayLike, sigma2: float, *, pair: Sequence[int] | None = None
) -> np.ndarray:
    """p_A/p_B = √(det H_B/det H_A) · exp(2(L_B − L_A)/(nσ²)) for the minima ``pair`` = (A, B)
    (default the two minima given), or for explicit values (L_A, logdet_A, L_B, logdet_B).
    Shape of ``noise_scale``; overflows to ``inf`` (never NaN)."""
    la, da, lb, db, _ = _pair(minima, pair)
    n, s2 = check_noise(noise_scale, sigma2)
    with np.errstate(over="ignore"):
        return np.exp(0.5 * (db - da) + 2.0 * (lb - la) / (n * s2))


def critical_noise(minima, sigma2: float, *, pair: Sequence[int] | None = None) -> CriticalNoise:
    """The noise n* at which p_A = p_B (module docstring), with the consistent factor 4.

    minima: a :class:`Minima` or a sequence of critical points, with ``pair`` = (A, B)
    (default the two given); or explicit values (L_A, logdet_A, L_B, logdet_B).
    Returns a :class:`CriticalNoise`; ``noise_scale`` is ``inf`` and ``exists`` False when
    no crossover exists (one minimum is both deeper and flatter, or they tie).
    """
    la, da, lb, db, (a, b) = _pair(minima, pair)
    check_noise(1.0, sigma2)
    s2 = float(sigma2)
    dl, dd = la - lb, db - da  # A higher by dl; A flatter by dd (log det units)
    if dl * dd > 0:
        n_star = exp_or_limit(  # 4 dl/(σ² dd) in logs: σ² dd may underflow
            math.log(4.0) + math.log(abs(dl)) - math.log(s2) - math.log(abs(dd)), "critical_noise n*", f"sigma2={s2:.6g}"
        )
        flatter, deeper = (a, b) if dl > 0 else (b, a)
        return CriticalNoise(
            n_star, True, flatter, deeper, n_star / 4.0,
            f"minimum {flatter} is higher but flatter: favoured for n > n* = {n_star:.6g}, minimum {deeper} below",
        )
    if dl == 0 and dd == 0:
        return CriticalNoise(np.inf, False, -1, -1, np.inf, "equal losses and determinants: p_A = p_B at every noise level")
    # one minimum is at least as deep and at least as flat: it wins at every noise level
    winner = a if (dl < 0 or (dl == 0 and dd > 0)) else b
    return CriticalNoise(
        np.inf, False, winner, winner, np.inf,
        f"minimum {winner} is both deeper (or equal) and flatter (or equal): favoured at every noise level, no crossover",
    )
