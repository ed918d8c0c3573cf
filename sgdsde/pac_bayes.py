"""The PAC-Bayes generalisation bound of He, Liu & Tao (NeurIPS 2019) for SGD (docs/theory.md §6).

SGD near a minimum with Hessian A and per-example gradient covariance C is modelled by
the OU process whose stationary law is Q = N(θ*, Σ) with

    A Σ + Σ A = (η/S) C                       (continuous Lyapunov equation)

(learning rate η, batch size S; the same Σ on either clock). With N training examples,
d parameters and confidence 1 − δ, for a loss bounded in [0, 1]:

- Theorem 1:  R(Q) ≤ R̂(Q) + sqrt( [ (η/S) tr(CA⁻¹) − 2 log det Σ − 2d + 4 log(1/δ)
                                     + 4 log N + 8 ] / (8N − 4) ),
- Theorem 2 (A and Σ commute):
              R(Q) ≤ R̂(Q) + sqrt( [ (η/2S) tr(CA⁻¹) + d log(2S/η) − log det(CA⁻¹) − d
                                     + 2 log(1/δ) + 2 log N + 4 ] / (4N − 2) ).

Theorem 1 is McAllester's bound sqrt((KL + log(1/δ) + log N + 2)/(2N − 1)) with
KL = KL(N(θ*, Σ) ‖ N(θ*, I)) = ½ (tr Σ − d − log det Σ) and the trace identity
tr Σ = (η/2S) tr(CA⁻¹); Theorem 2 substitutes Σ = (η/2S) C A⁻¹, the solution when A and
Σ commute, so the two agree exactly then. Both grow with S/η where
d > (η/2S) tr(CA⁻¹) (the paper's Assumption 2): the numerator, as a function of
x = S/η, is tr(CA⁻¹)/x + 2d log x + const, smallest at x* = tr(CA⁻¹)/(2d).

Dense linear algebra on d × d matrices, in float64 NumPy (a post-training analysis, not
jitted): d up to a few thousand (O(d³): about a second per symmetric eigendecomposition at
d = 2000). Σ is solved in A's eigenbasis (A = U diag(a) Uᵀ: Σ = U [ (Uᵀ(η/S)CU)_ij / (a_i + a_j) ] Uᵀ),
which is what :func:`sgdsde.theory.continuous_lyapunov` does for a symmetric A.

Extreme but valid η/S (its logarithm is what enters) give an infinite bound with a
:class:`PacBayesRangeWarning` rather than an overflow: log det Σ = d log(η/S) + log det Σ₁,
Σ₁ the solution for η/S = 1, is formed in logs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Float

from . import curvature
from .problem import Problem

PyTree = Any

__all__ = ["PacBayesBound", "PacBayesRangeWarning", "bound", "bound_from_matrices", "lyapunov_sigma"]


class PacBayesRangeWarning(RuntimeWarning):
    """A bound or one of its terms overflowed float64 at extreme (valid) parameters: inf."""


class PacBayesBound(NamedTuple):
    """Both theorems' bounds on the expected risk R(Q), and their ingredients (float64).

    theorem1, theorem2: the bounds R̂(Q) + gap; gap1, gap2: the square-root terms.
    sigma (d, d): the stationary covariance Σ. trace_term: (η/S) tr(CA⁻¹) (= 2 tr Σ).
    log_det_sigma: log det Σ. log_det_c_ainv: log det(CA⁻¹) = log det C − log det A.
    kl: KL(N(θ*, Σ) ‖ N(θ*, I)) = ½(tr Σ − d − log det Σ), the KL of Theorem 1;
    kl_commuting: the same with Σ → (η/2S) CA⁻¹, the KL of Theorem 2.
    commutation_error: ‖AΣ − ΣA‖_F / (‖AΣ‖_F + ‖ΣA‖_F), 0 where Theorem 2's assumption
    holds exactly (then theorem2 = theorem1). assumption2: whether d > (η/2S) tr(CA⁻¹),
    where the bounds grow with S/η. min_hessian_eigenvalue, dimension, num_examples,
    learning_rate, batch_size, delta, empirical_risk: the inputs and A's smallest eigenvalue.
    """

    theorem1: float
    theorem2: float
    gap1: float
    gap2: float
    sigma: np.ndarray
    trace_term: float
    log_det_sigma: float
    log_det_c_ainv: float
    kl: float
    kl_commuting: float
    commutation_error: float
    assumption2: bool
    min_hessian_eigenvalue: float
    dimension: int
    num_examples: int
    learning_rate: float
    batch_size: float
    delta: float
    empirical_risk: float


# ----------------------------------------------------------------------------- validation
def _positive_number(value, name: str) -> float:
    if isinstance(value, bool) or np.ndim(value) != 0:
        raise ValueError(f"{name}: must be a scalar, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be a finite positive number, got {value}")
    return value


def _check_inputs(learning_rate, batch_size, num_examples, delta, empirical_risk):
    eta = _positive_number(learning_rate, "learning_rate")
    s = _positive_number(batch_size, "batch_size")
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
        raise ValueError(f"num_examples: must be a positive integer, got {num_examples!r}")
    delta = _positive_number(delta, "delta")
    if not delta < 1:
        raise ValueError(f"delta: the confidence level is 1 − delta, so delta must lie in (0, 1), got {delta}")
    if isinstance(empirical_risk, bool) or np.ndim(empirical_risk) != 0:
        raise ValueError(f"empirical_risk: must be a scalar, got {empirical_risk!r}")
    risk = float(empirical_risk)
    if not (0.0 <= risk <= 1.0):
        raise ValueError(
            f"empirical_risk: R̂(Q) of a loss bounded in [0, 1] (e.g. the training error rate), must lie in [0, 1], got {risk}"
        )
    return eta, s, int(num_examples), delta, risk


def _symmetric(matrix, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"{name}: must be a non-empty square matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: contains non-finite values")
    scale = np.max(np.abs(m))
    if np.max(np.abs(m - m.T)) > 1e-6 * max(scale, np.finfo(np.float64).tiny):
        raise ValueError(f"{name}: must be symmetric (max |M − Mᵀ| = {np.max(np.abs(m - m.T)):.3g})")
    return 0.5 * (m + m.T)


def _positive_definite(matrix: np.ndarray, name: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(matrix)
    if values[0] <= 0:
        raise ValueError(f"{name}: {what} (smallest eigenvalue {values[0]:.4g})")
    return values, vectors


# ----------------------------------------------------------------------------- Σ
def lyapunov_sigma(
    hessian: Float[ArrayLike, "d d"], noise_cov: Float[ArrayLike, "d d"], *, learning_rate: float, batch_size: float
) -> np.ndarray:
    """Σ solving AΣ + ΣA = (η/S) C for a symmetric positive definite A, in A's eigenbasis
    (float64, O(d³)); Σ is positive definite when C is."""
    eta = _positive_number(learning_rate, "learning_rate")
    s = _positive_number(batch_size, "batch_size")
    a = _symmetric(hessian, "hessian")
    c = _symmetric(noise_cov, "noise_cov")
    if c.shape != a.shape:
        raise ValueError(f"noise_cov: shape {c.shape} does not match hessian shape {a.shape}")
    values, vectors = _positive_definite(a, "hessian", _NOT_PD)
    return _solve_sigma(values, vectors, c, eta / s)


def _solve_sigma(a_values, a_vectors, c, scale):
    rotated = a_vectors.T @ (scale * c) @ a_vectors
    sigma = a_vectors @ (rotated / (a_values[:, None] + a_values[None, :])) @ a_vectors.T
    return 0.5 * (sigma + sigma.T)


_NOT_PD = (
    "the Hessian A is not positive definite, so the stationary covariance Σ (AΣ + ΣA = (η/S)C) does "
    "not exist; the bound needs a strict local minimum"
)


# ----------------------------------------------------------------------------- bounds
_LOG_MAX = math.log(np.finfo(np.float64).max)


def _gap(numerator: float, denominator: int, quantity: str, params: str) -> float:
    """sqrt(max(numerator, 0)/denominator); inf with a PacBayesRangeWarning when a term overflowed."""
    if not math.isfinite(numerator):
        warnings.warn(
            f"{quantity}: a term of the bound overflows float64 at {params}: the bound is inf (vacuous)",
            PacBayesRangeWarning,
            stacklevel=3,
        )
        return math.inf
    return math.sqrt(max(numerator, 0.0) / denominator)


def bound_from_matrices(
    hessian: Float[ArrayLike, "d d"],
    noise_cov: Float[ArrayLike, "d d"],
    *,
    learning_rate: float,
    batch_size: float,
    num_examples: int,
    delta: float = 0.05,
    empirical_risk: float,
) -> PacBayesBound:
    """He et al.'s Theorems 1 and 2 (module docstring) from a Hessian A and a per-example
    gradient covariance C (both d × d, symmetric positive definite), learning rate η,
    batch size S, N examples, confidence 1 − δ and the empirical risk R̂(Q) in [0, 1].

    Raises ValueError, naming the argument, for a non-positive-definite A (no stationary
    law) or C (a singular C gives a singular Σ: log det Σ = −∞ and both bounds infinite —
    always the case when d ≥ N, since C then has rank ≤ N − 1).
    """
    eta, s, n, delta, risk = _check_inputs(learning_rate, batch_size, num_examples, delta, empirical_risk)
    a = _symmetric(hessian, "hessian")
    c = _symmetric(noise_cov, "noise_cov")
    if c.shape != a.shape:
        raise ValueError(f"noise_cov: shape {c.shape} does not match hessian shape {a.shape}")
    d = a.shape[0]
    a_values, a_vectors = _positive_definite(a, "hessian", _NOT_PD)
    c_values, _ = _positive_definite(
        c, "noise_cov",
        "the gradient covariance C is not positive definite, so Σ is singular, log det Σ = −∞ and both "
        f"bounds are infinite (vacuous); C has rank ≤ N − 1, so this always happens when d ≥ N (d = {d}, N = {n})",
    )
    # Σ = (η/S) Σ₁ with Σ₁ the solution for η/S = 1: the logs of η/S enter, never η/S · (…)
    log_scale = math.log(eta) - math.log(s)
    sigma_unit = _solve_sigma(a_values, a_vectors, c, 1.0)
    unit_values = np.linalg.eigvalsh(sigma_unit)
    if unit_values[0] <= 0:  # only through rounding, for a nearly singular C
        raise ValueError(f"noise_cov: Σ is numerically singular (smallest eigenvalue {unit_values[0]:.4g})")
    params = f"learning_rate={eta:.6g}, batch_size={s:.6g}, delta={delta:.6g}, num_examples={n}"
    with np.errstate(over="ignore"):
        scale = math.exp(log_scale) if log_scale <= _LOG_MAX else math.inf
        sigma = scale * sigma_unit
        c_ainv_trace = float(np.trace(a_vectors @ ((a_vectors.T @ c @ a_vectors) / a_values[None, :]) @ a_vectors.T))
        trace_term = scale * c_ainv_trace
    log_det_sigma = d * log_scale + float(np.sum(np.log(unit_values)))
    log_det_c_ainv = float(np.sum(np.log(c_values)) - np.sum(np.log(a_values)))
    log_terms = -math.log(delta) + math.log(n)

    numerator1 = trace_term - 2 * log_det_sigma - 2 * d + 4 * log_terms + 8
    numerator2 = trace_term / 2 - d * (log_scale - math.log(2.0)) - log_det_c_ainv - d + 2 * log_terms + 4
    gap1 = _gap(numerator1, 8 * n - 4, "theorem 1's gap", params)
    gap2 = _gap(numerator2, 4 * n - 2, "theorem 2's gap", params)

    trace_sigma = 0.5 * trace_term  # tr Σ = (η/2S) tr(CA⁻¹)
    kl = 0.5 * (trace_sigma - d - log_det_sigma)
    kl_commuting = 0.5 * (trace_term / 2 - d - d * (log_scale - math.log(2.0)) - log_det_c_ainv)
    a_sigma = a @ sigma_unit  # scale-free: the same for Σ = (η/S) Σ₁
    commutation = np.linalg.norm(a_sigma - a_sigma.T) / (2 * np.linalg.norm(a_sigma))
    return PacBayesBound(
        theorem1=risk + gap1,
        theorem2=risk + gap2,
        gap1=gap1,
        gap2=gap2,
        sigma=sigma,
        trace_term=trace_term,
        log_det_sigma=log_det_sigma,
        log_det_c_ainv=log_det_c_ainv,
        kl=kl,
        kl_commuting=kl_commuting,
        commutation_error=float(commutation),
        assumption2=bool(d > trace_term / 2),
        min_hessian_eigenvalue=float(a_values[0]),
        dimension=d,
        num_examples=n,
        learning_rate=eta,
        batch_size=s,
        delta=delta,
        empirical_risk=risk,
    )


def bound(
    problem: Problem,
    params: PyTree,
    *,
    learning_rate: float,
    batch_size: float,
    delta: float = 0.05,
    empirical_risk: float,
) -> PacBayesBound:
    """Both bounds for a model trained to ``params`` (a minimum of ``problem.loss``).

    A = the dense Hessian of the full loss L at params (:func:`sgdsde.curvature.dense_hessian`,
    regulariser included), C = ``problem.gradient_covariance(params)`` (the per-example
    gradient covariance, no regulariser), N = ``problem.num_examples``. Both are formed
    in the dtype of params (enable float64 for a Hessian with a wide spectrum) and the
    bound in float64. ``empirical_risk``: R̂(Q) in [0, 1], e.g. the training error rate.
    Raises ValueError when A is not positive definite (params not at a strict minimum)
    or C is singular (always when d ≥ N).
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: must be an sgdsde.Problem, got {type(problem).__name__}")
    problem.check_params(params, "params")
    _check_inputs(learning_rate, batch_size, problem.num_examples, delta, empirical_risk)
    hessian = np.asarray(curvature.dense_hessian(problem.loss, params), dtype=np.float64)
    values = np.linalg.eigvalsh(0.5 * (hessian + hessian.T))
    if values[0] <= 0:
        raise ValueError(
            f"params: the Hessian of the loss at params is not positive definite (smallest eigenvalue "
            f"{values[0]:.4g}); He et al.'s bound needs a strict local minimum (train further, or add weight decay)"
        )
    noise_cov = np.asarray(problem.gradient_covariance(params, "full"), dtype=np.float64)
    return bound_from_matrices(
        hessian,
        noise_cov,
        learning_rate=learning_rate,
        batch_size=batch_size,
        num_examples=problem.num_examples,
        delta=delta,
        empirical_risk=empirical_risk,
    )
