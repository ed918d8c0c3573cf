"""Linear matrix equations behind the stationary covariances: Lyapunov and Stein solvers.

Solved in O(d³) on the host in float64 (``jax.pure_callback`` inside
``lax.custom_linear_solve``, so jit, vmap and derivatives still work): in A's eigenbasis
when A is symmetric, otherwise by Bartels–Stewart (scipy's Schur-based
``solve_continuous_lyapunov``). The discrete equations are solved in their "shifted" form
(e.g. AΣ + ΣAᵀ − η AΣAᵀ = (η/S) C instead of Σ = PΣPᵀ + (η²/S) C), which avoids the
cancellation in I − P⊗P when η is small; heavy-ball momentum, for a non-symmetric A, through
the 2d × 2d Stein equation of the state (θ, v).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from ._validate import check_square, float_dtype

__all__ = ["continuous_lyapunov", "discrete_lyapunov"]


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

# ----------------------------------------------------------------------- Lyapunov solvers


def _square_pair(m, q, name: str):
    """Check two square matrices of one shape; return them in a common float dtype and I."""
    check_square(m, name)
    check_square(q, "q")
    if np.shape(m) != np.shape(q):
        raise ValueError(f"q: shape {np.shape(q)} does not match {name} shape {np.shape(m)}")
    dt = float_dtype(m, q)
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
