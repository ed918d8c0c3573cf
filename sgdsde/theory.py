"""Closed forms for SGD on a quadratic and its Ornstein–Uhlenbeck (SDE) limit.

Model (docs/theory.md §1, §2, §5): L(θ) = ½ θᵀ A θ, per-example gradient covariance C,
learning rate η, batch size S, N examples. SGD is θ' = (I − ηA) θ − η ξ with
Cov(ξ) = C/S (``iid``) or (C/S)(N−S)/(N−1) (``subset``); ``epoch`` noise is
correlated inside an epoch (Cov(ξ_j, ξ_k) = −C/(N−1), j ≠ k).

Clocks. Times are SGD steps (t = k) unless a function says otherwise; the SME clock
is t_sme = η · t_steps. Covariances are in parameter units and carry no clock.

Every function can be jitted, differentiated and vmapped (all pure ``jax.numpy`` except
the matrix-equation solves below, which are host callbacks with JAX derivative rules),
and its result has the floating dtype of its inputs (float32 or float64). Bad input
raises ``ValueError`` naming the argument; value checks (positivity, stability) run
only where the inputs are concrete, so they never break ``jax.jit``.

Linear matrix equations are solved in O(d³) on the host in float64 (``jax.pure_callback``
inside ``lax.custom_linear_solve``, so jit, vmap and derivatives still work): in A's
eigenbasis when A is symmetric, otherwise by Bartels–Stewart (scipy's Schur-based
``solve_continuous_lyapunov``). The discrete equations are solved in their "shifted" form
(e.g. AΣ + ΣAᵀ − η AΣAᵀ = (η/S) C instead of Σ = PΣPᵀ + (η²/S) C), which avoids the
cancellation in I − P⊗P when η is small; heavy-ball momentum, for a non-symmetric A, through
the 2d × 2d Stein equation of the state (θ, v).
"""

from __future__ import annotations

from functools import partial
from typing import Literal, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax
from jax.scipy.linalg import expm
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "OUTransition",
    "continuous_lyapunov",
    "discrete_lyapunov",
    "ou_stationary_cov",
    "sgd_stationary_cov",
    "ou_stationary_variance_1d",
    "sgd_stationary_variance_1d",
    "sgd_momentum_variance_1d",
    "ou_transition",
    "noise_scale",
    "effective_noise_scale",
    "smith_le_noise_scale",
    "step_to_sme_time",
    "sme_to_step_time",
    "lyapunov_trace",
]

Scalar = Union[float, Float[ArrayLike, ""]]
IntScalar = Union[int, ArrayLike]
Sampling = Literal["iid", "subset", "epoch"]
Clock = Literal["steps", "sme"]
_SAMPLINGS = ("iid", "subset", "epoch")
_CLOCKS = ("steps", "sme")


class OUTransition(NamedTuple):
    """Gaussian law of θ_t given θ_0 for the OU process: N(mean, cov)."""

    mean: Float[Array, " d"]
    cov: Float[Array, "d d"]


# ----------------------------------------------------------------------------- helpers


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _float_dtype(*xs):
    """Floating dtype the result should have: that of the inputs, at least float32."""
    dt = jnp.result_type(*(jnp.asarray(x) if isinstance(x, (list, tuple)) else x for x in xs))
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(dt, 1.0)
    if not jnp.issubdtype(dt, jnp.floating) or jnp.finfo(dt).bits < 32:
        dt = jnp.dtype(jnp.float32)
    return dt


def _check_square(x, name: str) -> None:
    if np.ndim(x) != 2 or np.shape(x)[0] != np.shape(x)[1]:
        raise ValueError(f"{name}: must be a square matrix, got shape {np.shape(x)}")


def _check_pair(hessian, noise_cov) -> None:
    _check_square(hessian, "hessian")
    _check_square(noise_cov, "noise_cov")
    if np.shape(noise_cov) != np.shape(hessian):
        raise ValueError(
            f"noise_cov: shape {np.shape(noise_cov)} does not match hessian shape {np.shape(hessian)}"
        )


def _check_scalar(x, name: str) -> None:
    if np.ndim(x) != 0:
        raise ValueError(f"{name}: must be a scalar, got shape {np.shape(x)}")


def _check_positive(x, name: str) -> None:
    _check_scalar(x, name)
    if _is_concrete(x):
        v = np.asarray(x)
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: must be a finite positive number, got {v}")


def _check_batch(batch_size, num_examples=None, *, required: bool = False, what: str = "") -> None:
    _check_positive(batch_size, "batch_size")
    if num_examples is None:
        if required:
            raise ValueError(f"num_examples: required for {what}")
        return
    _check_scalar(num_examples, "num_examples")
    if _is_concrete(num_examples):
        n = np.asarray(num_examples)
        if n < 2:
            raise ValueError(f"num_examples: needs at least 2 examples, got {n}")
        if _is_concrete(batch_size) and np.asarray(batch_size) > n:
            raise ValueError(
                f"num_examples: must be >= batch_size, got num_examples={n}, batch_size={np.asarray(batch_size)}"
            )


def _check_momentum(momentum) -> None:
    _check_scalar(momentum, "momentum")
    if _is_concrete(momentum):
        b = np.asarray(momentum)
        if not (0.0 <= b < 1.0):
            raise ValueError(f"momentum: must lie in [0, 1), got {b}")


def _positive_definite(m: np.ndarray) -> bool:
    """Whether a symmetric m is positive definite (a Cholesky factorisation: d³/3 flops)."""
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return False
    return True


def _check_hessian_stable(hessian) -> np.ndarray | None:
    """Hessian eigenvalues (numpy) if concrete; raises unless all have Re λ > 0."""
    if not _is_concrete(hessian):
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
    if _is_concrete(hessian):
        a = np.asarray(hessian, dtype=np.float64)
        if np.array_equal(a, a.T) and _positive_definite(a):
            return
    _check_hessian_stable(hessian)


def _check_sgd_stable(hessian, learning_rate, momentum=0.0) -> None:
    """Raise if heavy-ball SGD on ½θᵀAθ is unstable (spectral radius ≥ 1).

    Symmetric A: stable iff 0 < ηλ < 2(1 + β) for every eigenvalue, i.e. A ≻ 0 and
    2(1 + β)/η · I − A ≻ 0: two Cholesky factorisations; eigenvalues only for the message.
    """
    if _is_concrete(hessian, learning_rate, momentum):
        a = np.asarray(hessian, dtype=np.float64)
        bound = 2.0 * (1.0 + float(np.asarray(momentum))) / float(np.asarray(learning_rate))
        if np.array_equal(a, a.T) and _positive_definite(a) and _positive_definite(bound * np.eye(a.shape[0]) - a):
            return
    lam = _check_hessian_stable(hessian)
    if lam is None or not _is_concrete(learning_rate, momentum):
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


# Linear matrix equations L(X) = Q with L(X) = Σ_kl P_kl A^k X (Aᵀ)^l, p(x, y) = Σ P_kl x^k y^l:
#   "stein"       p = x + y − γ x y                 (A X + X Aᵀ − γ A X Aᵀ; γ = 0: continuous)
#   "heavy_ball"  p = (1+β)(x + y) − η x y + ηβ/(1−β)² (x − y)²
# Symmetric A = U diag(λ) Uᵀ: X = U [(Uᵀ Q U)_ij / p(λ_i, λ_j)] Uᵀ (eigh, O(d³)). Otherwise
# Bartels–Stewart (scipy's Schur-based solve_continuous_lyapunov, O(d³)) after the Cayley
# transform below. Both run on the host (pure_callback) inside lax.custom_linear_solve, whose
# matvec is L itself: jit, vmap, and forward/reverse derivatives in A, Q and the coefficients
# (implicit differentiation, dX = L⁻¹(dQ − dL X)) all work.
_KINDS = ("stein", "heavy_ball")


def _symbol(kind: str, coefs, x, y):
    """p(x, y) of the operator (numpy or jax arrays)."""
    if kind == "stein":
        (gamma,) = coefs
        return x + y - gamma * x * y
    eta, beta = coefs
    return (1 + beta) * (x + y) - eta * x * y + (eta * beta / (1 - beta) ** 2) * (x - y) ** 2


def _apply(kind: str, coefs, a, x):
    """L(X). The double commutator [A, [A, X]] is applied as A D − D Aᵀ with D = AX − XAᵀ, so
    its large coefficient ηβ/(1−β)² multiplies a term that is exactly zero where it should be
    (d = 1, A ∝ I), not a cancellation."""
    ax, xa = a @ x, x @ a.T
    if kind == "stein":
        (gamma,) = coefs
        return ax + xa - gamma * (a @ xa)
    eta, beta = coefs
    comm = ax - xa
    return (1 + beta) * (ax + xa) - eta * (a @ xa) + (eta * beta / (1 - beta) ** 2) * (a @ comm - comm @ a.T)


def _stein_schur(n: np.ndarray, w: np.ndarray, gamma: float) -> np.ndarray:
    """Solve N X + X Nᵀ − γ N X Nᵀ = W for a general N (float64, O(d³)).

    With M = I − (γ/2) N the left side is N X Mᵀ + M X Nᵀ; M and N commute, so
    (M⁻¹N) X + X (M⁻¹N)ᵀ = M⁻¹ W M⁻ᵀ: a continuous Lyapunov equation (Cayley transform),
    formed from N itself, so nothing cancels when N is small (X = PXPᵀ + W, P = I − N, at
    small steps). Solved by Bartels–Stewart (scipy.linalg.solve_continuous_lyapunov).
    """
    if gamma != 0.0:
        m = np.eye(n.shape[0]) - (0.5 * gamma) * n
        n = np.linalg.solve(m, n)
        w = np.linalg.solve(m, np.linalg.solve(m, w).T).T
    return scipy.linalg.solve_continuous_lyapunov(n, w)


def _host_solve(kind: str, a, q, *coefs) -> np.ndarray:
    """L(X) = Q on the host in float64 (see the comment above ``_KINDS``); result in Q's dtype.

    Symmetric Q gives an exactly symmetric X (antisymmetric: antisymmetric), as L commutes
    with transposition.
    """
    dtype = np.asarray(q).dtype
    a, q = np.asarray(a, np.float64), np.asarray(q, np.float64)
    coefs = tuple(float(c) for c in coefs)
    if np.array_equal(a, a.T):
        lam, u = np.linalg.eigh(a)
        x = u @ ((u.T @ q @ u) / _symbol(kind, coefs, lam[:, None], lam[None, :])) @ u.T
    elif kind == "stein":
        x = _stein_schur(a, q, coefs[0])
    else:
        # θ-block of the 2d × 2d Stein equation Z = M Z Mᵀ + W of the state (θ, v),
        # M = [[I − ηA, βI], [−ηA, βI]] (heavy ball, see sgd_stationary_cov), written with
        # N = I − M; W = c [[Q, Q], [Q, Q]] with c = η(1−β)/(1+β) gives L(Z_θθ) = Q for every Q
        # (A's eigenpairs decouple both equations into the same scalar ones).
        eta, beta = coefs
        d, eye = a.shape[0], np.eye(a.shape[0])
        n = np.block([[eta * a, -beta * eye], [eta * a, (1 - beta) * eye]])
        w = np.tile(q * (eta * (1 - beta) / (1 + beta)), (2, 2))
        x = _stein_schur(n, w, 1.0)[:d, :d]
    if np.array_equal(q, q.T):
        x = 0.5 * (x + x.T)
    elif np.array_equal(q, -q.T):
        x = 0.5 * (x - x.T)
    return x.astype(dtype)


def _solve(kind: str, a: Float[Array, "d d"], q: Float[Array, "d d"], *coefs) -> Float[Array, "d d"]:
    """X with L(X) = Q, L of ``kind`` with coefficients ``coefs`` (O(d³), differentiable)."""
    coefs = tuple(jnp.asarray(c, q.dtype) for c in coefs)

    def host(m):
        def solve(_, rhs):
            out = jax.ShapeDtypeStruct(rhs.shape, rhs.dtype)
            return jax.pure_callback(partial(_host_solve, kind), out, m, rhs, *coefs, vmap_method="sequential")

        return solve

    # L's adjoint (Frobenius inner product) is the same operator of Aᵀ: p is symmetric.
    return lax.custom_linear_solve(lambda x: _apply(kind, coefs, a, x), q, host(a), host(a.T))


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


@jax.jit
def _transition(a, sigma, theta0, tau):
    e = expm(-tau * a)
    cov = sigma - e @ sigma @ e.T
    return e @ theta0, 0.5 * (cov + cov.T)


# ----------------------------------------------------------------------- Lyapunov solvers


def _square_pair(m, q, name: str):
    """Check two square matrices of one shape; return them in a common float dtype and I."""
    _check_square(m, name)
    _check_square(q, "q")
    if np.shape(m) != np.shape(q):
        raise ValueError(f"q: shape {np.shape(q)} does not match {name} shape {np.shape(m)}")
    dt = _float_dtype(m, q)
    return jnp.asarray(m, dt), jnp.asarray(q, dt), jnp.eye(np.shape(m)[0], dtype=dt)


def continuous_lyapunov(a: Float[ArrayLike, "d d"], q: Float[ArrayLike, "d d"]) -> Float[Array, "d d"]:
    """Solve A X + X Aᵀ = Q for a general square A in O(d³).

    Symmetric A = U diag(λ) Uᵀ: X_ij = (UᵀQU)_ij / (λ_i + λ_j) in A's eigenbasis; otherwise
    Bartels–Stewart (Schur form of A). The solution is unique iff no two eigenvalues of A sum
    to zero. A symmetric Q gives an exactly symmetric X.
    """
    a, q, _ = _square_pair(a, q, "a")
    return _solve("stein", a, q, 0.0)


def discrete_lyapunov(p: Float[ArrayLike, "d d"], q: Float[ArrayLike, "d d"]) -> Float[Array, "d d"]:
    """Solve X = P X Pᵀ + Q in O(d³).

    Written as N X + X Nᵀ − N X Nᵀ = Q with N = I − P and solved in N's eigenbasis
    (symmetric P) or by the Cayley transform to a continuous Lyapunov equation and
    Bartels–Stewart. Unique iff no product of two eigenvalues of P equals 1; for spectral
    radius ρ(P) < 1 it is Σ_k P^k Q (P^k)ᵀ. A symmetric Q gives an exactly symmetric X.
    """
    p, q, eye = _square_pair(p, q, "p")
    return _solve("stein", eye - p, q, 1.0)


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
    _check_pair(hessian, noise_cov)
    _check_positive(learning_rate, "learning_rate")
    _check_batch(batch_size)
    _check_ou_stable(hessian)
    dt = _float_dtype(hessian, noise_cov, learning_rate)
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
    _check_pair(hessian, noise_cov)
    if sampling not in _SAMPLINGS:
        raise ValueError(f"sampling: must be one of {_SAMPLINGS}, got {sampling!r}")
    _check_positive(learning_rate, "learning_rate")
    _check_batch(
        batch_size,
        num_examples,
        required=sampling != "iid",
        what=f"sampling={sampling!r}",
    )
    _check_momentum(momentum)
    if sampling == "epoch":
        if not _is_concrete(momentum) or float(np.asarray(momentum)) != 0.0:
            raise ValueError("momentum: sampling='epoch' supports only momentum=0.0")
        if not _is_concrete(batch_size, num_examples):
            raise ValueError(
                "batch_size: sampling='epoch' needs concrete (static) batch_size and num_examples"
            )
    _check_sgd_stable(hessian, learning_rate, momentum)

    dt = _float_dtype(hessian, noise_cov, learning_rate)
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
    if _is_concrete(momentum) and float(np.asarray(momentum)) == 0.0:
        return _shifted_discrete(a, eta, rhs)
    return _heavy_ball_cov(a, rhs, eta, jnp.asarray(momentum, dt))


# ------------------------------------------------------------------------ 1-D closed forms


def _scalars(*xs):
    dt = _float_dtype(*xs)
    return [jnp.asarray(x, dt) for x in xs]


def _check_1d(curvature, sigma2, learning_rate, batch_size) -> None:
    _check_positive(curvature, "curvature")
    _check_scalar(sigma2, "sigma2")
    if _is_concrete(sigma2) and np.asarray(sigma2) < 0:
        raise ValueError(f"sigma2: must be non-negative, got {np.asarray(sigma2)}")
    _check_positive(learning_rate, "learning_rate")
    _check_batch(batch_size)


def _check_sgd_stable_1d(curvature, learning_rate, momentum=0.0) -> None:
    if _is_concrete(curvature):
        _check_sgd_stable(np.reshape(np.asarray(curvature, np.float64), (1, 1)), learning_rate, momentum)


def ou_stationary_variance_1d(
    curvature: Scalar, sigma2: Scalar, learning_rate: Scalar, batch_size: IntScalar
) -> Float[Array, ""]:
    """1-D OU stationary variance η σ² / (2 S h) (parameter units; clock-free)."""
    _check_1d(curvature, sigma2, learning_rate, batch_size)
    h, s2, eta, s = _scalars(curvature, sigma2, learning_rate, batch_size)
    return eta * s2 / (2 * s * h)


def sgd_stationary_variance_1d(
    curvature: Scalar, sigma2: Scalar, learning_rate: Scalar, batch_size: IntScalar
) -> Float[Array, ""]:
    """1-D exact discrete-SGD stationary variance η σ² / (S h (2 − η h)); needs 0 < ηh < 2."""
    _check_1d(curvature, sigma2, learning_rate, batch_size)
    _check_sgd_stable_1d(curvature, learning_rate)
    h, s2, eta, s = _scalars(curvature, sigma2, learning_rate, batch_size)
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
    _check_momentum(momentum)
    _check_sgd_stable_1d(curvature, learning_rate, momentum)
    h, s2, eta, s, beta = _scalars(curvature, sigma2, learning_rate, batch_size, momentum)
    return eta * s2 * (1 + beta) / (s * h * (1 - beta) * (2 * (1 + beta) - eta * h))


# ---------------------------------------------------------------------------- transition


def ou_transition(
    hessian: Float[ArrayLike, "d d"],
    noise_cov: Float[ArrayLike, "d d"],
    learning_rate: Scalar,
    batch_size: IntScalar,
    theta0: Float[ArrayLike, " d"],
    t: Scalar,
    *,
    clock: Clock = "steps",
) -> OUTransition:
    """Exact law of θ_t for dθ = −ηAθ dt + (η/√S) B dW, BBᵀ = C (step time).

    mean = e^{−ηAt} θ0, cov = Σ − e^{−ηAt} Σ e^{−ηAᵀt}, Σ = ``ou_stationary_cov``.
    ``clock="steps"``: t counts SGD steps; ``clock="sme"``: t is SME time t_sme = η t_steps
    (then the exponent is −A t_sme). t is a scalar; vmap over t for a path.
    """
    _check_pair(hessian, noise_cov)
    if clock not in _CLOCKS:
        raise ValueError(f"clock: must be one of {_CLOCKS}, got {clock!r}")
    d = np.shape(hessian)[0]
    if np.shape(theta0) != (d,):
        raise ValueError(f"theta0: must have shape ({d},), got {np.shape(theta0)}")
    _check_scalar(t, "t")
    if _is_concrete(t) and not np.asarray(t) >= 0:
        raise ValueError(f"t: must be non-negative, got {np.asarray(t)}")
    sigma = ou_stationary_cov(hessian, noise_cov, learning_rate, batch_size)
    dt = _float_dtype(hessian, noise_cov, learning_rate, theta0, t)
    a = jnp.asarray(hessian, dt)
    eta = jnp.asarray(learning_rate, dt)
    tau = jnp.asarray(t, dt) * (eta if clock == "steps" else 1.0)  # SME time
    mean, cov = _transition(a, sigma.astype(dt), jnp.asarray(theta0, dt), tau)
    return OUTransition(mean=mean, cov=cov)


# ----------------------------------------------------------------- noise scales and clocks


def noise_scale(learning_rate: Scalar, batch_size: IntScalar) -> Float[Array, ""]:
    """Jastrzębski et al. noise scale n = η / S (the N → ∞ limit)."""
    _check_positive(learning_rate, "learning_rate")
    _check_batch(batch_size)
    eta, s = _scalars(learning_rate, batch_size)
    return eta / s


def effective_noise_scale(
    learning_rate: Scalar, batch_size: IntScalar, num_examples: IntScalar
) -> Float[Array, ""]:
    """Finite-N noise scale n_eff = (η/S)(N − S)/(N − 1) (``subset`` sampling)."""
    _check_positive(learning_rate, "learning_rate")
    _check_batch(batch_size, num_examples, required=True, what="effective_noise_scale")
    eta, s, n = _scalars(learning_rate, batch_size, num_examples)
    return (eta / s) * (n - s) / (n - 1)


def smith_le_noise_scale(
    learning_rate: Scalar, batch_size: IntScalar, num_examples: IntScalar
) -> Float[Array, ""]:
    """Smith & Le noise scale g = η (N/S − 1) ≈ N · n_eff."""
    _check_positive(learning_rate, "learning_rate")
    _check_batch(batch_size, num_examples, required=True, what="smith_le_noise_scale")
    eta, s, n = _scalars(learning_rate, batch_size, num_examples)
    return eta * (n / s - 1)


def step_to_sme_time(t_steps: Float[ArrayLike, "*shape"], learning_rate: Scalar) -> Float[Array, "*shape"]:
    """SGD-step time → SME time: t_sme = η t_steps."""
    _check_positive(learning_rate, "learning_rate")
    t, eta = _scalars(t_steps, learning_rate)
    return eta * t


def sme_to_step_time(t_sme: Float[ArrayLike, "*shape"], learning_rate: Scalar) -> Float[Array, "*shape"]:
    """SME time → SGD-step time: t_steps = t_sme / η."""
    _check_positive(learning_rate, "learning_rate")
    t, eta = _scalars(t_sme, learning_rate)
    return t / eta


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
    _check_pair(hessian, noise_cov)
    _check_positive(learning_rate, "learning_rate")
    _check_batch(batch_size)
    dt = _float_dtype(hessian, noise_cov, learning_rate)
    a = jnp.asarray(hessian, dt)
    c = jnp.asarray(noise_cov, dt)
    eta, s = jnp.asarray(learning_rate, dt), jnp.asarray(batch_size, dt)
    return eta / (2 * s) * jnp.trace(jnp.linalg.solve(a, c))
