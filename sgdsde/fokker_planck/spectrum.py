"""The spectral gap of a generator (:func:`spectral_gap`).

Spectral gap λ₁ = the smallest non-zero −Re λ(G) (relaxation time 1/λ₁, on the
generator's clock): shift-invert Arnoldi on K⁻¹ restricted to zero-mass vectors (where
K = −G is invertible), whose largest eigenvalues 1/λ_k converge first; the small
Hessenberg eigenproblem is solved on the host (NumPy). For gradient drift with constant
diagonal noise, G is similar to a symmetric matrix (conjugation by the Boltzmann
weights), so its spectrum is real and Arnoldi behaves like Lanczos. The Ritz pair is
checked a posteriori: ‖G y + λ y‖/(|λ|‖y‖) > 1e-4 warns (ConvergenceWarning).
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .diagnostics import ConvergenceWarning, _check_generator, _check_solver
from .equilibrium import stationary
from .linalg import direct_inverse, has_exact_1d_equilibrium, mean_zero_solve
from .operator import Generator

_GAP_TOLERANCE = 1e-4
_apply = jax.jit(lambda gen, mass: gen.apply(mass))


# --------------------------------------------------------------------- spectral gap
@partial(jax.jit, static_argnames=("tol", "solver"))
def _inverse_apply(gen: Generator, pi, v, *, tol: float, solver: str):
    """K⁻¹ v among zero-mass vectors, projected along the stationary π (x − π Σx)."""
    v = v - pi * jnp.sum(v)
    if solver == "direct":
        return direct_inverse(gen, pi, v)
    x, residual = mean_zero_solve(gen, v, tol=tol)
    return x - pi * jnp.sum(x), residual


def spectral_gap(
    gen: Generator, *, num_vectors: int = 30, tol: float = 1e-12, seed: int = 0, solver: str = "auto"
) -> float:
    """The slowest relaxation rate λ₁ > 0 of the generator (on its clock; relaxation time
    1/λ₁): the smallest −Re λ over the non-zero eigenvalues of G.

    Shift-invert Arnoldi with ``num_vectors`` steps on K⁻¹ among zero-mass vectors (each
    step one linear solve: ``solver`` as for :func:`stationary`, one LU factor for all
    steps when direct; 1-D: GMRES with an exact tridiagonal preconditioner). Deterministic
    start vector (``seed``). Not differentiable (the eigenproblem is solved with NumPy).
    The Ritz pair is checked a posteriori; a failed check is a ConvergenceWarning (a
    diagnostic of the eigen-estimate, whose error bound it gives), not an error.
    """
    gen = _check_generator(gen)
    solver = "krylov" if has_exact_1d_equilibrium(gen) else _check_solver(gen, solver)
    if isinstance(num_vectors, bool) or not isinstance(num_vectors, int) or num_vectors < 2:
        raise ValueError(f"num_vectors: must be an integer ≥ 2, got {num_vectors!r}")
    with jax.enable_x64(True):
        shape = gen.grid.shape
        k = min(num_vectors, gen.grid.size - 1)
        pi = jnp.asarray(stationary(gen, solver=solver))
        rng = np.random.default_rng(seed)
        v = rng.standard_normal(gen.grid.size)
        v -= v.mean()
        basis = [v / np.linalg.norm(v)]
        hess = np.zeros((k + 1, k))
        worst = 0.0
        for j in range(k):
            w, res = _inverse_apply(gen.structural(), pi, jnp.asarray(basis[j].reshape(shape)), tol=tol, solver=solver)
            worst = max(worst, float(res))
            w = np.asarray(w, dtype=np.float64).ravel()
            for _ in range(2):  # Gram–Schmidt twice
                for i, q in enumerate(basis):
                    c = q @ w
                    hess[i, j] += c
                    w = w - c * q
            norm = np.linalg.norm(w)
            hess[j + 1, j] = norm
            if norm < 1e-14 * np.abs(hess[: j + 2, j]).max():  # invariant subspace found
                k = j + 1
                break
            basis.append(w / norm)
        if not math.isfinite(worst):
            raise FloatingPointError("spectral_gap: the linear solver produced non-finite values")
        mu, vectors = np.linalg.eig(hess[:k, :k])
        keep = np.abs(mu) > 0
        mu, vectors = mu[keep], vectors[:, keep]
        rates = 1.0 / mu
        index = int(np.argmin(rates.real))
        gap = rates[index]
        # a-posteriori check of the Ritz pair (λ, y): ‖G y + λ y‖/(|λ|‖y‖) bounds the relative
        # error of λ (for the normal, symmetrisable generators of gradient drift); the inner
        # solves' residuals are not a good guide (K is ill-conditioned for metastable problems)
        y = np.stack(basis[:k], axis=1) @ vectors[:, index]
        plain = gen.structural()
        g_y = np.asarray(_apply(plain, jnp.asarray(y.real.reshape(shape)))).ravel()
        g_y = g_y + 1j * np.asarray(_apply(plain, jnp.asarray(y.imag.reshape(shape)))).ravel()
        relative = float(np.linalg.norm(g_y + gap * y) / (abs(gap) * np.linalg.norm(y)))
        if relative > _GAP_TOLERANCE:
            warnings.warn(
                f"spectral_gap: the Ritz pair has relative residual {relative:.3g} > {_GAP_TOLERANCE:g} (an error "
                "bound on λ₁ for symmetrisable generators); increase num_vectors",
                ConvergenceWarning,
                stacklevel=2,
            )
        return float(gap.real)
