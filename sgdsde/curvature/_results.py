"""Result types of the curvature estimators (NamedTuples, pytrees)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

PyTree = Any


# ----------------------------------------------------------------------------- results
class PowerIteration(NamedTuple):
    """Dominant eigenpair from power iteration: ``eigenvalue`` (the Rayleigh quotient vᵀHv
    of the last iterate v) and ``eigenvector`` (Hv/‖Hv‖, a unit pytree like params)."""

    eigenvalue: Float[Array, ""]
    eigenvector: PyTree


class Lanczos(NamedTuple):
    """m Lanczos steps: H V ≈ V T with T = tridiag(beta, alpha, beta).

    alpha (m,): diagonal of T; beta (m − 1,): its off-diagonal (0 where the Krylov space
    was exhausted and the iteration restarted with a fresh orthogonal vector);
    residual (): β_m, the norm of the part of H v_m outside the basis; basis (m, d):
    the orthonormal Lanczos vectors (rows, flattened params order); dropped (): the
    largest residual set to 0 at a restart (rounding level), part of every error bound.
    """

    alpha: Float[Array, " m"]
    beta: Float[Array, " m1"]
    residual: Float[Array, ""]
    basis: Float[Array, "m d"]
    dropped: Float[Array, ""]

    def tridiagonal(self) -> Float[Array, "m m"]:
        """T as a dense m × m matrix."""
        return jnp.diag(self.alpha) + jnp.diag(self.beta, 1) + jnp.diag(self.beta, -1)

    def ritz(self) -> tuple[Array, Array, Array]:
        """(values, weights, bounds), values in decreasing order.

        values: Ritz values θ_i (eigenvalues of T); weights: τ_i², the squared first
        components of T's eigenvectors (the Gauss quadrature weights of the start
        vector); bounds: β_m |s_{m,i}| + dropped + m·eps·max|θ| — for each i some
        eigenvalue of H lies within this distance of θ_i (the a-posteriori Lanczos bound,
        plus a rounding allowance for the computed basis).
        """
        values, weights, bounds = _ritz(self.tridiagonal(), self.residual.reshape(1, 1), self.dropped)
        return values, weights[0], bounds


@jax.jit
def _ritz(tridiagonal, residual, dropped):
    """Rayleigh–Ritz on a (block) tridiagonal T (m × m) with last residual block R (p × p).

    Returns values θ_i (decreasing), weights (p, m): squared components of T's
    eigenvectors s_i in the first block, and bounds ‖R s_i^(last block)‖ + dropped +
    m·eps·max|θ| = the norm of the Ritz residual H y_i − θ_i y_i, so (Weyl / Bauer–Fike
    for symmetric H) some eigenvalue of H lies within bounds[i] of θ_i.
    """
    values, vectors = jnp.linalg.eigh(tridiagonal)
    values, vectors = values[::-1], vectors[:, ::-1]  # eigh sorts ascending
    p = residual.shape[0]
    weights = vectors[:p] ** 2
    rounding = jnp.finfo(values.dtype).eps * values.shape[0] * jnp.max(jnp.abs(values))
    bounds = jnp.linalg.norm(residual @ vectors[-p:], axis=0) + dropped + rounding
    return values, weights, bounds


class BlockLanczos(NamedTuple):
    """s block-Lanczos steps with blocks of p vectors: H V ≈ V T, T block tridiagonal.

    diagonal (s, p, p): the blocks A_j = V_jᵀ H V_j; offdiagonal (s − 1, p, p): the
    blocks B_j = V_{j+1}ᵀ H V_j below the diagonal (B_jᵀ above; rows of B_j are 0 where a
    block was rank deficient and fresh vectors were put in); residual (p, p): B_s, the
    part of H V_s outside the basis; basis (s·p, d): orthonormal rows, block j in rows
    jp … jp + p − 1; dropped (): the largest singular value set to 0 at a restart.
    """

    diagonal: Float[Array, "s p p"]
    offdiagonal: Float[Array, "s1 p p"]
    residual: Float[Array, "p p"]
    basis: Float[Array, "m d"]
    dropped: Float[Array, ""]

    def tridiagonal(self) -> Float[Array, "m m"]:
        """T as a dense (s·p) × (s·p) matrix."""
        return _block_tridiagonal(self.diagonal, self.offdiagonal)

    def ritz(self) -> tuple[Array, Array, Array]:
        """(values, weights, bounds), values in decreasing order; weights (p, m) are the
        squared first-block components of T's eigenvectors; for each i some eigenvalue of
        H lies within bounds[i] = ‖B_s s_i^(last block)‖ + dropped + rounding of values[i]."""
        return _ritz(self.tridiagonal(), self.residual, self.dropped)


def _block_tridiagonal(diagonal: Array, offdiagonal: Array) -> Array:
    s, p, _ = diagonal.shape
    below = jnp.concatenate([offdiagonal, jnp.zeros((1, p, p), diagonal.dtype)])  # pad to s blocks
    t = (jnp.einsum("ij,iab->iajb", jnp.eye(s, dtype=diagonal.dtype), diagonal)
         + jnp.einsum("ij,jab->iajb", jnp.eye(s, k=-1, dtype=diagonal.dtype), below)
         + jnp.einsum("ij,iba->iajb", jnp.eye(s, k=1, dtype=diagonal.dtype), below))
    return t.reshape(s * p, s * p)


class Estimate(NamedTuple):
    """A Monte-Carlo estimate: mean over independent probes, its standard error
    (sample standard deviation / √n), and the per-probe values."""

    mean: Float[Array, ""]
    stderr: Float[Array, ""]
    samples: Float[Array, " n"]


TraceEstimate = Estimate  # tr H by Hutchinson's method


class HutchppEstimate(NamedTuple):
    """tr H by Hutch++ (:func:`~sgdsde.curvature.hutchpp_trace`): ``mean`` = ``deflated`` +
    the mean of ``samples``; ``deflated`` = tr(QᵀHQ), exact, over the sketched basis Q;
    ``samples``: the residual probes wᵀHw, w = (I − QQᵀ)z; ``stderr``: their sample standard
    deviation / √(number of residual probes) (the only random error given Q)."""

    mean: Float[Array, ""]
    stderr: Float[Array, ""]
    samples: Float[Array, " r"]
    deflated: Float[Array, ""]


def _estimate(samples: Array, xp=jnp) -> Estimate:
    """Mean and standard error (sample s.d./√n) of the probe values, in ``xp`` (jax.numpy
    in a trace; NumPy for probes gathered on the host, returned as JAX arrays)."""
    n = samples.shape[0]
    mean = xp.mean(samples)
    # one sample has no spread to estimate an error from: NaN, not 0
    std = xp.std(samples, ddof=1) if n > 1 else xp.full((), xp.nan, samples.dtype)
    stderr = std / xp.sqrt(xp.asarray(n, samples.dtype))
    return Estimate(*(jnp.asarray(x, samples.dtype) for x in (mean, stderr, samples)))



class LogDetEstimate(NamedTuple):
    """log det H by SLQ: mean and standard error over probes, per-probe values, and the
    smallest Ritz value seen (> 0 for a positive definite H; see :func:`log_determinant`)."""

    mean: Float[Array, ""]
    stderr: Float[Array, ""]
    samples: Float[Array, " n"]
    min_ritz_value: Float[Array, ""]


class SpectralDensity(NamedTuple):
    """Stochastic Lanczos quadrature of the spectral density φ(t) = (1/d) Σ_i δ(t − λ_i).

    nodes, weights (P, m): per probe, the Ritz values θ_lj and quadrature weights τ_lj²
    (each row of weights sums to 1); ``dimension``: d. For a function f,
    (1/d) tr f(H) ≈ (1/P) Σ_l Σ_j τ_lj² f(θ_lj), unbiased over the Rademacher probes when
    f is a polynomial of degree ≤ 2m − 1 (Gauss quadrature is exact there).
    """

    nodes: Float[Array, "P m"]
    weights: Float[Array, "P m"]
    dimension: int

    def expectation(self, f: Callable[[Array], Array]) -> Estimate:
        """(1/d) tr f(H): mean over probes with its standard error."""
        per_probe = jnp.sum(self.weights * f(self.nodes), axis=-1)
        return _estimate(per_probe)

    def moment(self, p: int) -> Estimate:
        """The p-th spectral moment (1/d) tr H^p (exact per probe for p ≤ 2m − 1)."""
        return self.expectation(lambda x: x**p)

    def density(self, grid: Float[ArrayLike, " G"], width: float) -> Float[Array, " G"]:
        """φ smoothed by a Gaussian of standard deviation ``width`` on ``grid`` (integrates
        to 1 over the real line)."""
        grid = jnp.asarray(grid)
        z = (grid[:, None, None] - self.nodes[None]) / width
        kernel = jnp.exp(-0.5 * z**2) / (width * jnp.sqrt(2 * jnp.pi))
        return jnp.sum(self.weights[None] * kernel, axis=(1, 2)) / self.nodes.shape[0]


class HessianNorm(NamedTuple):
    """‖H‖_F estimated from E_v ‖Hv‖² = ‖H‖_F² (v ~ N(0, I_d)): ``squared_norm`` (the
    unbiased mean over probes), its ``squared_norm_stderr``, ``norm`` = √squared_norm,
    and the per-probe ‖Hv‖² values."""

    norm: Float[Array, ""]
    squared_norm: Float[Array, ""]
    squared_norm_stderr: Float[Array, ""]
    samples: Float[Array, " n"]


