"""Stationary covariances of SGD on a quadratic and of its OU (SDE) limit (docs/theory.md §1, §5).

Exact discrete-SGD covariances for ``iid``, ``subset`` and ``epoch`` sampling and heavy-ball
momentum, the OU covariance, their 1-D closed forms and the trace identity. The matrix
equations are solved by :mod:`sgdsde.theory.solvers`; an unstable iteration (or a Hessian
without a stationary law) raises ``ValueError`` where the inputs are concrete.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from ._validate import (
    IntScalar,
    Scalar,
    check_batch,
    check_momentum,
    check_pair,
    check_positive,
    check_scalar,
    float_dtype,
    is_concrete,
    scalars,
)
from .solvers import _solve, continuous_lyapunov

__all__ = [
    "ou_stationary_cov",
    "sgd_stationary_cov",
    "ou_stationary_variance_1d",
    "sgd_stationary_variance_1d",
    "sgd_momentum_variance_1d",
    "lyapunov_trace",
]

Sampling = Literal["iid", "subset", "epoch"]
_SAMPLINGS = ("iid", "subset", "epoch")


# ------------------------------------------------------------------------ stability checks


def _positive_definite(m: np.ndarray) -> bool:
    """Whether a symmetric m is positive definite (a Cholesky factorisation: d³/3 flops)."""
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return False
    return True


def _check_hessian_stable(hessian) -> np.ndarray | None:
    """Hessian eigenvalues (numpy) if concrete; raises unless all have Re λ > 0."""
    if not is_concrete(hessian):
        return None
    a = np.asarray(hessian, dtype=np.float64)
    lam = np.linalg.eigvalsh(a) if np.array_equal(a, a.T) else np.linalg.eigvals(a)
    if np.min(lam.real) <= 0:
        raise ValueError(
            "hessian: needs eigenvalues with positive real part for a stationary "
            f"distribution, smallest real part is {np.min(lam.real):.4g}"
        )
    return lam


def _check_ou_stable(hessian) -> None:
    """Raise unless every Hessian eigenvalue has Re λ > 0 (a Cholesky factorisation when A is
    symmetric; eigenvalues only for the message or a non-symmetric A)."""
    if is_concrete(hessian):
        a = np.asarray(hessian, dtype=np.float64)
        if np.array_equal(a, a.T) and _positive_definite(a):
            return
    _check_hessian_stable(hessian)


def _check_sgd_stable(hessian, learning_rate, momentum=0.0) -> None:
    """Raise if heavy-ball SGD on ½θᵀAθ is unstable (spectral radius ≥ 1).

    Symmetric A: stable iff 0 < ηλ < 2(1 + β) for every eigenvalue, i.e. A ≻ 0 and
    2(1 + β)/η · I − A ≻ 0: two Cholesky factorisations; eigenvalues only for the message.
    """
    if is_concrete(hessian, learning_rate, momentum):
        a = np.asarray(hessian, dtype=np.float64)
        bound = 2.0 * (1.0 + float(np.asarray(momentum))) / float(np.asarray(learning_rate))
        if np.array_equal(a, a.T) and _positive_definite(a) and _positive_definite(bound * np.eye(a.shape[0]) - a):
            return
    lam = _check_hessian_stable(hessian)
    if lam is None or not is_concrete(learning_rate, momentum):
        return
    eta = float(np.asarray(learning_rate))
    beta = float(np.asarray(momentum))
    if beta == 0.0:
        rho = np.max(np.abs(1.0 - eta * lam))
        what, bound = "I − ηA", "2"
    else:
        # det(μI − M) = Π_λ (μ² − (1 + β − ηλ) μ + β) for M = [[I − ηA, βI], [−ηA, βI]]
        # (its blocks are polynomials in A), so ρ(M) comes from A's eigenvalues: O(d³), not (2d)³
        b = 1.0 + beta - eta * lam.astype(np.complex128)
        root = np.sqrt(b * b - 4.0 * beta)
        rho = max(np.max(np.abs(0.5 * (b + root))), np.max(np.abs(0.5 * (b - root))))
        what, bound = "the momentum iteration matrix", f"2(1 + β) = {2 * (1 + beta):.4g}"
    if rho >= 1.0:
        raise ValueError(
            f"learning_rate: SGD is unstable at learning_rate={eta:.4g}: "
            f"η·λ_max = {eta * np.max(lam.real):.4g} (spectral radius of {what} is "
            f"{rho:.6g} >= 1; stability needs η·λ < {bound} for every Hessian eigenvalue λ)"
        )


# ------------------------------------------------------------ the discrete equations


def _shifted_discrete(b, eta, rhs):
    """Solve B X + X Bᵀ − η B X Bᵀ = R, i.e. X = (I − ηB) X (I − ηB)ᵀ + η R."""
    return _solve("stein", b, rhs, eta)


def _heavy_ball_cov(a, rhs, eta, beta):
    """θ-block of the heavy-ball stationary covariance (β = 0: plain SGD); see
    :func:`sgd_stationary_cov` for the equation."""
    return _solve("heavy_ball", a, rhs * ((1 + beta) / (1 - beta)), eta, beta)


@partial(jax.jit, static_argnums=(3,))
def _power_sums(a, c, eta, num_batches: int):
    """G = Σ_{a<m} P^a and H = Σ_{a<m} P^a C (P^a)ᵀ, P = I − ηA (m static)."""
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    p = eye - eta * a

    def body(_, carry):
        pa, g, h = carry
        return p @ pa, g + pa, h + pa @ c @ pa.T

    zero = jnp.zeros_like(a)
    _, g, h = lax.fori_loop(0, num_batches, body, (eye, zero, zero))
    return g, h


def _epoch_cov(a, c, eta, s, num_batches: int, n):
    """Epoch-boundary covariance; see :func:`sgd_stationary_cov`."""
    g, h = _power_sums(a, c, eta, num_batches)
    d = -(g @ c @ g.T) / (n - 1) + (n / (s * (n - 1))) * h
    return _shifted_discrete(a @ g, eta, eta * d)


# ------------------------------------------------------------------ stationary covariances


def ou_stationary_cov(
    hessian: Float[ArrayLike, "d d"],
    noise_cov: Float[ArrayLike, "d d"],
    learning_rate: Scalar,
    batch_size: IntScalar,
) -> Float[Array, "d d"]:
    """Stationary covariance Σ of the OU/SDE limit: A Σ + Σ Aᵀ = (η/S) C.

    Same on both clocks (step time: ηAΣ + ΣηAᵀ = (η²/S) C; SME time: divide by η).
    1-D: Σ = η σ² / (2 S h).
    """
    check_pair(hessian, noise_cov)
    check_positive(learning_rate, "learning_rate")
    check_batch(batch_size)
    _check_ou_stable(hessian)
    dt = float_dtype(hessian, noise_cov, learning_rate)
    a = jnp.asarray(hessian, dt)
    c = jnp.asarray(noise_cov, dt)
    scale = jnp.asarray(learning_rate, dt) / jnp.asarray(batch_size, dt)
    return continuous_lyapunov(a, scale * c)


def sgd_stationary_cov(
    hessian: Float[ArrayLike, "d d"],
    noise_cov: Float[ArrayLike, "d d"],
    learning_rate: Scalar,
    batch_size: IntScalar,
    *,
    sampling: Sampling = "iid",
    num_examples: IntScalar | None = None,
    momentum: Scalar = 0.0,
) -> Float[Array, "d d"]:
    """Exact stationary covariance of θ for discrete SGD on L = ½θᵀAθ (parameter units).

    With P = I − ηA:

    - ``"iid"``:    Σ = P Σ Pᵀ + (η²/S) C  ⇔  AΣ + ΣAᵀ − η AΣAᵀ = (η/S) C.
    - ``"subset"``: the same with C → C (N−S)/(N−1).
    - ``"epoch"``:  covariance at epoch boundaries, m = ⌊N/S⌋ batches per epoch:
      X = P^m X (P^m)ᵀ + η² D, D = Σ_{j,k<m} P^{m−1−j} Cov(ξ_j, ξ_k) (P^{m−1−k})ᵀ
      = −G C Gᵀ/(N−1) + N/(S(N−1)) Σ_{a<m} P^a C (P^a)ᵀ, G = Σ_{a<m} P^a
      (write Cov(ξ_j, ξ_k) = −C/(N−1) + δ_jk N C/(S(N−1)); the first part sums to the
      rank-structured G C Gᵀ term, the second to the single sum: O(m) matrix products).
      Solved as B X + X Bᵀ − η B X Bᵀ = η D with B = A G (P^m = I − ηB).
    - ``momentum`` β > 0 (iid/subset): heavy ball v' = βv − η(Aθ + ξ), θ' = θ + v'.
      Eliminating v (state (θ_k, θ_{k−1}), lag-1 covariance (1−β²)Σ₁ = KΣ − βΣKᵀ,
      K = (1+β)I − ηA), the θ-block Σ of the 2d×2d discrete Lyapunov equation solves
      (1+β)(AΣ + ΣAᵀ) − η AΣAᵀ + ηβ/(1−β)² (A²Σ + Σ(A²)ᵀ − 2AΣAᵀ) = (1+β)/(1−β) (η/S) C′
      (β = 0 gives the plain equation; the last term is the double commutator
      ηβ/(1−β)² [A, [A, Σ]], zero when C commutes with A).
      1-D: η σ² (1+β) / (S h (1−β)(2(1+β) − η h)).

    Raises ValueError when the iteration is unstable (spectral radius ≥ 1) and the
    inputs are concrete. For ``"epoch"``, ``batch_size`` and ``num_examples`` must be
    concrete integers (m is a loop length).
    """
    check_pair(hessian, noise_cov)
    if sampling not in _SAMPLINGS:
        raise ValueError(f"sampling: must be one of {_SAMPLINGS}, got {sampling!r}")
    check_positive(learning_rate, "learning_rate")
    check_batch(
        batch_size,
        num_examples,
        required=sampling != "iid",
        what=f"sampling={sampling!r}",
    )
    check_momentum(momentum)
    if sampling == "epoch":
        if not is_concrete(momentum) or float(np.asarray(momentum)) != 0.0:
            raise ValueError("momentum: sampling='epoch' supports only momentum=0.0")
        if not is_concrete(batch_size, num_examples):
            raise ValueError(
                "batch_size: sampling='epoch' needs concrete (static) batch_size and num_examples"
            )
    _check_sgd_stable(hessian, learning_rate, momentum)

    dt = float_dtype(hessian, noise_cov, learning_rate)
    a = jnp.asarray(hessian, dt)
    c = jnp.asarray(noise_cov, dt)
    eta = jnp.asarray(learning_rate, dt)
    s = jnp.asarray(batch_size, dt)

    if sampling == "epoch":
        n_int, s_int = int(np.asarray(num_examples)), int(np.asarray(batch_size))
        return _epoch_cov(a, c, eta, s, n_int // s_int, jnp.asarray(n_int, dt))

    if sampling == "subset":
        n = jnp.asarray(num_examples, dt)
        c = c * (n - s) / (n - 1)
    rhs = (eta / s) * c
    if is_concrete(momentum) and float(np.asarray(momentum)) == 0.0:
        return _shifted_discrete(a, eta, rhs)
    return _heavy_ball_cov(a, rhs, eta, jnp.asarray(momentum, dt))


def _check_1d(curvature, sigma2, learning_rate, batch_size) -> None:
    check_positive(curvature, "curvature")
    check_scalar(sigma2, "sigma2")
    if is_concrete(sigma2) and np.asarray(sigma2) < 0:
        raise ValueError(f"sigma2: must be non-negative, got {np.asarray(sigma2)}")
    check_positive(learning_rate, "learning_rate")
    check_batch(batch_size)


def _check_sgd_stable_1d(curvature, learning_rate, momentum=0.0) -> None:
    if is_concrete(curvature):
        _check_sgd_stable(np.reshape(np.asarray(curvature, np.float64), (1, 1)), learning_rate, momentum)


def ou_stationary_variance_1d(
    curvature: Scalar, sigma2: Scalar, learning_rate: Scalar, batch_size: IntScalar
) -> Float[Array, ""]:
    """1-D OU stationary variance η σ² / (2 S h) (parameter units; clock-free)."""
    _check_1d(curvature, sigma2, learning_rate, batch_size)
    h, s2, eta, s = scalars(curvature, sigma2, learning_rate, batch_size)
    return eta * s2 / (2 * s * h)


def sgd_stationary_variance_1d(
    curvature: Scalar, sigma2: Scalar, learning_rate: Scalar, batch_size: IntScalar
) -> Float[Array, ""]:
    """1-D exact discrete-SGD stationary variance η σ² / (S h (2 − η h)); needs 0 < ηh < 2."""
    _check_1d(curvature, sigma2, learning_rate, batch_size)
    _check_sgd_stable_1d(curvature, learning_rate)
    h, s2, eta, s = scalars(curvature, sigma2, learning_rate, batch_size)
    return eta * s2 / (s * h * (2 - eta * h))


def sgd_momentum_variance_1d(
    curvature: Scalar,
    sigma2: Scalar,
    learning_rate: Scalar,
    batch_size: IntScalar,
    momentum: Scalar,
) -> Float[Array, ""]:
    """1-D heavy-ball stationary variance η σ² (1+β) / (S h (1−β) (2(1+β) − η h)).

    Needs 0 ≤ β < 1 and 0 < ηh < 2(1+β).
    """
    _check_1d(curvature, sigma2, learning_rate, batch_size)
    check_momentum(momentum)
    _check_sgd_stable_1d(curvature, learning_rate, momentum)
    h, s2, eta, s, beta = scalars(curvature, sigma2, learning_rate, batch_size, momentum)
    return eta * s2 * (1 + beta) / (s * h * (1 - beta) * (2 * (1 + beta) - eta * h))


# ----------------------------------------------------------------------------- identities


def lyapunov_trace(
    hessian: Float[ArrayLike, "d d"],
    noise_cov: Float[ArrayLike, "d d"],
    learning_rate: Scalar,
    batch_size: IntScalar,
) -> Float[Array, ""]:
    """tr Σ = (η/(2S)) tr(C A⁻¹) for the continuous Lyapunov solution (A symmetric).

    Follows from A Σ + Σ A = (η/S) C by multiplying with A⁻¹ and taking the trace.
    """
    check_pair(hessian, noise_cov)
    check_positive(learning_rate, "learning_rate")
    check_batch(batch_size)
    dt = float_dtype(hessian, noise_cov, learning_rate)
    a = jnp.asarray(hessian, dt)
    c = jnp.asarray(noise_cov, dt)
    eta, s = jnp.asarray(learning_rate, dt), jnp.asarray(batch_size, dt)
    return eta / (2 * s) * jnp.trace(jnp.linalg.solve(a, c))
