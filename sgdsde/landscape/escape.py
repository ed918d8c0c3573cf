"""Escape from a minimum: Eyring–Kramers rates and the exact 1-D mean first-passage time.

The SDE of SGD with isotropic noise σ² in SGD-step time (docs/theory.md §2, §4) is overdamped
Langevin dynamics dθ = −∇U dt + √(2D) dW with U = ηL and D = η²σ²/(2S); U/D = 2L/(nσ²),
n = η/S. Times are in SGD steps; ``clock="sme"`` gives SME time t_sme = η · t_steps.

Eyring–Kramers (asymptotic as the barrier grows against the temperature nσ²/2): the rate
of escape from minimum A over an index-1 saddle s is

    k = (η |λ_s| / 2π) √(det H_A / |det H_s|) exp(−2 (L_s − L_A)/(nσ²))   per step,

λ_s the negative Hessian eigenvalue at s; over several saddles the rates add, and the
mean escape time is 1/k. Its relative error is O(nσ²/(L_s − L_A)) (about 10 % at
moderate barriers), so tests compare simulations with the exact 1-D result instead:

    T(a → c) = (1/D) ∫_a^c e^{U(y)/D} ∫_b^y e^{−U(z)/D} dz dy       (a < c),

the mean first-passage time from a to c with a reflecting wall at b (b → −∞: put b where
e^{−U/D} is negligible). For c < a the mirror image holds, with the wall above.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._common import (
    check_clock,
    check_loss_shape,
    _LOG_MAX,
    check_positive,
    curvature_of,
    exp_or_limit,
    format_point,
    positive_logdet,
    resolve_loss,
    warn,
)
from .saddles import Saddles
from .quadrature import evaluate_on_points

__all__ = ["PassageTime", "kramers_escape_time", "mean_first_passage_time_1d"]


class PassageTime(NamedTuple):
    """A mean first-passage time by quadrature.

    time: on ``clock`` (Richardson-extrapolated from two grids); error: the estimated
    quadrature error (absolute, on ``clock``; the fine-grid error, conservative for the
    extrapolated value); relative_error = error/time; log_time: ln(time) (finite even
    when time overflows to inf); clock: "steps" or "sme".
    """

    time: float
    error: float
    relative_error: float
    log_time: float
    clock: str


def _kramers_inputs(minimum, saddle):
    l_a, h_a, p_a = curvature_of(minimum)
    logdet_a = positive_logdet(h_a, "the minimum" + ("" if p_a is None else f" at θ = {format_point(p_a)}"), "minimum")
    if isinstance(saddle, Saddles):
        items = [saddle.at(i) for i in range(saddle.num_saddles)]
    elif isinstance(saddle, (list, tuple)) and saddle and not isinstance(saddle[0], (int, float, np.number)) and (
        not hasattr(saddle, "_fields")
    ):
        items = list(saddle)
    else:
        items = [saddle]
    if not items:
        raise ValueError("saddle: no saddle given")
    out = []
    for i, item in enumerate(items):
        l_s, h_s, p_s = curvature_of(item)
        if h_s.shape != h_a.shape:
            raise ValueError(f"saddle: Hessian shape {h_s.shape} does not match the minimum's {h_a.shape}")
        lam_s = np.linalg.eigvalsh(h_s)
        where = f"saddle {i}" + ("" if p_s is None else f" at θ = {format_point(p_s)}")
        tiny = h_s.shape[0] * np.finfo(np.float64).eps * np.max(np.abs(lam_s))
        if np.sum(lam_s < 0) != 1 or np.any(np.abs(lam_s) <= tiny):
            raise ValueError(
                f"saddle: {where} is not an index-1 saddle with a non-singular Hessian "
                f"(eigenvalues {np.array2string(lam_s, precision=4)})"
            )
        if l_s <= l_a:
            raise ValueError(f"saddle: {where} has loss {l_s:.6g}, not above the minimum's {l_a:.6g}")
        out.append((l_s, lam_s[0], float(np.sum(np.log(np.abs(lam_s))))))
    return l_a, logdet_a, out


def kramers_escape_time(
    minimum,
    saddle,
    *,
    learning_rate: float,
    batch_size: float,
    sigma2: float,
    clock: str = "steps",
) -> float:
    """Eyring–Kramers mean escape time from ``minimum`` over ``saddle`` (module docstring).

    minimum, saddle: critical points — ``minima.at(i)``, ``saddles.at(j)``, or mappings
    with "loss" and "hessian" (e.g. ``problem.info["minima"][0]``); ``saddle`` may also be
    a sequence of them or a :class:`Saddles` (escape over any of them: the rates add).
    Returns 1/k in SGD steps (``clock="sme"``: η/k); ``inf`` if it overflows. Warns
    (:class:`LandscapeWarning`) when a barrier is below the temperature nσ²/2, where the
    formula is no approximation at all.
    """
    eta = check_positive(learning_rate, "learning_rate")
    s = check_positive(batch_size, "batch_size")
    s2 = check_positive(sigma2, "sigma2")
    clock = check_clock(clock)
    l_a, logdet_a, saddles = _kramers_inputs(minimum, saddle)
    params = f"learning_rate={eta:.6g}, batch_size={s:.6g}, sigma2={s2:.6g}"
    # in logs throughout: η, S, σ² may be extreme where their products are not representable
    log_temperature = math.log(0.5) + math.log(eta) - math.log(s) + math.log(s2)  # nσ²/2
    log_rates = []
    for l_s, lam_s, logabsdet_s in saddles:
        log_barrier = math.log(l_s - l_a)
        if log_barrier < log_temperature:
            warn(
                f"kramers_escape_time: barrier {l_s - l_a:.3g} is below the temperature nσ²/2 = "
                f"{0.5 * (eta / s) * s2:.3g}; Eyring–Kramers is asymptotic in barrier/temperature"
            )
        barrier_over_t = math.exp(min(log_barrier - log_temperature, _LOG_MAX))  # inf → capped
        log_rates.append(
            math.log(eta) + math.log(abs(lam_s)) - math.log(2 * math.pi) + 0.5 * (logdet_a - logabsdet_s) - barrier_over_t
        )
    top = max(log_rates)
    log_time = -(top + math.log(sum(math.exp(r - top) for r in log_rates)))
    if clock == "sme":
        log_time += math.log(eta)
    return exp_or_limit(log_time, f"kramers_escape_time (clock={clock!r})", params)


def _log_cumulative_trapezoid(logf: np.ndarray, h: np.ndarray) -> np.ndarray:
    """log ∫_{x_0}^{x_j} f for every j (trapezoid, in log space; −inf at j = 0)."""
    pieces = np.log(0.5 * h) + np.logaddexp(logf[:-1], logf[1:])
    return np.concatenate([[-np.inf], np.logaddexp.accumulate(pieces)])


def _log_passage(phi: np.ndarray, h: np.ndarray, start_index: int) -> float:
    """log ∫_{s_a}^{s_c} e^{φ} ∫_0^s e^{−φ} (trapezoid rules on the given grid)."""
    log_inner = _log_cumulative_trapezoid(-phi, h)
    log_outer = phi + log_inner
    f = log_outer[start_index:]
    pieces = np.log(0.5 * h[start_index:]) + np.logaddexp(f[:-1], f[1:])
    top = pieces.max()
    return float(top + np.log(np.sum(np.exp(pieces - top))))


def _odd(count: float) -> int:
    n = max(int(round(count)), 3)
    return n if n % 2 else n + 1


def mean_first_passage_time_1d(
    loss,
    start: float,
    target: float,
    *,
    learning_rate: float,
    batch_size: float,
    sigma2: float,
    lower: float | None = None,
    upper: float | None = None,
    points: int = 4001,
    clock: str = "steps",
) -> PassageTime:
    """Exact mean first-passage time of the 1-D SDE from ``start`` to ``target`` (module
    docstring), by nested trapezoid rules on ``points`` nodes and Richardson extrapolation
    against every other node (the difference is the error estimate).

    loss: ``θ (1,) -> scalar`` or a 1-D Problem. lower: the reflecting wall below when
    target > start; upper: the wall above when target < start — put it where the
    Boltzmann weight e^{−2L/(nσ²)} is negligible (a warning says when it is not).
    Times in SGD steps; ``clock="sme"`` multiplies by η.
    """
    fn = resolve_loss(loss)
    check_loss_shape(fn, np.zeros(1))
    eta = check_positive(learning_rate, "learning_rate")
    s = check_positive(batch_size, "batch_size")
    s2 = check_positive(sigma2, "sigma2")
    clock = check_clock(clock)
    a, c = float(start), float(target)
    if not (math.isfinite(a) and math.isfinite(c)) or a == c:
        raise ValueError(f"start/target: need two different finite points, got {start!r}, {target!r}")
    if isinstance(points, (bool, np.bool_)) or not isinstance(points, (int, np.integer)) or points < 9:
        raise ValueError(f"points: must be an integer ≥ 9, got {points!r}")
    if c > a:
        if lower is None or not math.isfinite(float(lower)) or float(lower) >= a:
            raise ValueError(f"lower: target > start needs a finite reflecting wall lower < start = {a}, got {lower!r}")
        wall, name = float(lower), "lower"
    else:
        if upper is None or not math.isfinite(float(upper)) or float(upper) <= a:
            raise ValueError(f"upper: target < start needs a finite reflecting wall upper > start = {a}, got {upper!r}")
        wall, name = float(upper), "upper"
    # s runs from the wall through the start to the target (s = |x − wall|)
    span1, span2 = abs(a - wall), abs(c - a)
    n1 = _odd(points * span1 / (span1 + span2))
    n2 = _odd(points * span2 / (span1 + span2))
    x = np.concatenate([np.linspace(wall, a, n1), np.linspace(a, c, n2)[1:]])
    values = np.asarray(evaluate_on_points(fn, x[:, None]), np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"loss: not finite somewhere between {name} = {wall} and target = {c}")
    params = f"learning_rate={eta:.6g}, batch_size={s:.6g}, sigma2={s2:.6g}"
    # U/D = 2L/(nσ²) and log D = log(η²σ²/(2S)) in logs: η, S, σ² may be extreme
    with np.errstate(over="ignore", invalid="ignore"):
        phi = values * math.exp(min(math.log(2.0) - math.log(eta) + math.log(s) - math.log(s2), _LOG_MAX))
    if not np.all(np.isfinite(phi)):
        warn(
            f"mean_first_passage_time_1d: the temperature nσ²/2 underflows against the loss (U/D overflows) "
            f"at {params}: returning inf"
        )
        return PassageTime(math.inf, math.nan, math.nan, math.inf, clock)
    log_d = 2.0 * math.log(eta) + math.log(s2) - math.log(2.0) - math.log(s)
    start_index = n1 - 1
    fine = _log_passage(phi, np.abs(np.diff(x)), start_index)
    coarse = _log_passage(phi[::2], np.abs(np.diff(x[::2])), start_index // 2)
    if coarse - fine < math.log(4.0):  # Richardson: T ≈ T_fine (1 + (1 − T_coarse/T_fine)/3)
        correction = (1.0 - math.exp(coarse - fine)) / 3.0
        relative = abs(correction)
    else:  # the grids disagree by 4× or more: no extrapolation, no error estimate
        correction, relative = 0.0, math.inf
    log_time = fine + math.log1p(correction) - log_d + (math.log(eta) if clock == "sme" else 0.0)
    time = exp_or_limit(log_time, f"mean_first_passage_time_1d (clock={clock!r})", params)
    well = phi[: start_index + 1].min()
    if math.exp(-(phi[0] - well)) > 1e-8:
        warn(
            f"mean_first_passage_time_1d: the Boltzmann weight at the wall {name} = {wall} is "
            f"{math.exp(-(phi[0] - well)):.2g} of the well's; the result depends on the wall, move it further out"
        )
    if relative > 1e-3:
        warn(f"mean_first_passage_time_1d: quadrature error estimate {relative:.2g} (relative); raise points")
    return PassageTime(time, time * relative, relative, log_time, clock)
