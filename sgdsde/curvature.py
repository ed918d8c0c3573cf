"""Curvature of a loss at given parameters, through Hessian–vector products.

Every function takes ``fun: params -> scalar`` (e.g. ``problem.loss``) and a ``params``
pytree of any structure (a vector for a toy landscape, a Flax parameter tree for a
network). H = ∇²fun(params) is never formed: each method applies it to vectors, one
Hessian–vector product (HVP, forward-over-reverse) at a time, at the cost of about two
gradient evaluations. d is the total number of parameters; vectors are flattened in
the order of ``jax.flatten_util.ravel_pytree(params)``.

- :func:`hvp`: H v for a tangent pytree v; :func:`dense_hessian`: H itself (small d).
- :func:`power_iteration` and :func:`top_eigenvalues` (``method="power"``, ``"lanczos"`` or
  ``"block"``); :func:`block_lanczos` is the building block (blocks of p vectors, H applied
  to a block by ``jax.vmap`` of the HVP, full reorthogonalisation, Rayleigh–Ritz with
  residual bounds) and :func:`lanczos` its p = 1 case.
- :func:`hutchinson_trace`: tr H ≈ mean of zᵀHz over Rademacher probes z, with its
  standard error; zᵀHz = d²/dε² fun(params + εz) by forward over forward mode.
- :func:`spectral_density` and :func:`log_determinant`: stochastic Lanczos quadrature
  (SLQ): for a probe u = z/√d, uᵀ f(H) u ≈ Σ_j τ_j² f(θ_j), with θ_j the eigenvalues
  of the Lanczos tridiagonal T and τ_j the first components of its eigenvectors (exact
  for polynomials f of degree ≤ 2m − 1); averaged over probes it estimates
  (1/d) tr f(H).
- :func:`finite_difference_hessian_norm`: the Frobenius norm by finite differences of
  gradients, as in the Three Factors paper (its ref. Wu, Zhu & E 2017);
  :func:`hessian_frobenius_norm` is the same estimator with exact HVPs.
- :func:`loss_along_line`: L((1 − α) θ₁ + α θ₂) for a set of α.

All are pure and jittable (iteration counts are static Python ints) and take explicit
PRNG keys. The public functions validate their input in Python, then call a jitted
core; a bound method of a pytree (``problem.loss``) and a ``jax.tree_util.Partial``
are passed to it as arguments, so a Problem's data are not baked into the compiled
program and repeated calls reuse it. Nothing here has a clock: curvatures are in loss
units per squared parameter unit.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_int as _check_int, typed_key as _typed_key

PyTree = Any

__all__ = [
    "hvp",
    "dense_hessian",
    "PowerIteration",
    "power_iteration",
    "Lanczos",
    "lanczos",
    "BlockLanczos",
    "block_lanczos",
    "top_eigenvalues",
    "Estimate",
    "TraceEstimate",
    "hutchinson_trace",
    "SpectralDensity",
    "spectral_density",
    "LogDetEstimate",
    "log_determinant",
    "HessianNorm",
    "finite_difference_hessian_norm",
    "hessian_frobenius_norm",
    "loss_along_line",
]

_METHODS = ("lanczos", "block", "power")
_SCHEMES = ("forward", "central")


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


# ----------------------------------------------------------------------------- helpers
def _estimate(samples: Array) -> Estimate:
    n = samples.shape[0]
    mean = jnp.mean(samples)
    std = jnp.std(samples, ddof=1) if n > 1 else jnp.zeros((), samples.dtype)
    return Estimate(mean, std / jnp.sqrt(jnp.asarray(n, samples.dtype)), samples)


def _is_array_leaf(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, int, complex))


def _as_partial(fun) -> Partial:
    """``fun`` as a ``Partial`` (a pytree): a bound method of a pytree of arrays (e.g.
    ``problem.loss``) carries its object as a traced argument; other callables are static."""
    if isinstance(fun, Partial):
        return fun
    if not callable(fun):
        raise TypeError(f"fun: must be a callable params -> scalar loss, got {type(fun).__name__}")
    owner = getattr(fun, "__self__", None)
    if inspect.ismethod(fun) and owner is not None:
        leaves, treedef = jax.tree_util.tree_flatten(owner)
        if not jax.tree_util.treedef_is_leaf(treedef) and all(_is_array_leaf(x) for x in leaves):
            return Partial(fun.__func__, owner)
    return Partial(fun)


def _check_params(params: PyTree, name: str = "params") -> int:
    """Number of parameters d; raises for empty, non-float or non-finite params."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{name}: empty parameter pytree")
    d = 0
    for leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"{name}: parameters must be floating point, got dtype {dtype}")
        d += int(np.prod(np.shape(leaf)))
        if not isinstance(leaf, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
    if d == 0:
        raise ValueError(f"{name}: has no entries")
    return d


def _check_scalar_loss(fun: Partial, params: PyTree) -> None:
    try:
        out = jax.eval_shape(fun, params)
    except Exception as err:
        raise ValueError(
            f"fun: evaluating fun(params) failed ({type(err).__name__}: {err})"
        ) from err
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"fun: must return a floating-point scalar, got {out}")


def _prepare(fun, params, key=None) -> tuple[Partial, int, Any]:
    """Validation shared by the public functions: (fun as Partial, d, typed key)."""
    fun = _as_partial(fun)
    d = _check_params(params)
    _check_scalar_loss(fun, params)
    return fun, d, (None if key is None else _typed_key(key))


def _flat_operator(fun: Callable, params: PyTree):
    """(matvec, flat params, unravel): matvec(v) = H v on flat vectors. The gradient is
    linearised once at params, so each product costs one forward-mode pass over it."""
    flat, unravel = ravel_pytree(params)

    def flat_grad(x):
        return ravel_pytree(jax.grad(fun)(unravel(x)))[0]

    _, linear = jax.linearize(flat_grad, flat)
    return (lambda v: linear(v.astype(flat.dtype))), flat, unravel


def _signs(v: Array) -> Array:
    """±1 by the sign of each entry: Rademacher entries for a Gaussian v (one RNG draw for both)."""
    return jnp.where(v >= 0, 1, -1).astype(v.dtype)


def _normalize(v: Array) -> Array:
    norm = jnp.linalg.norm(v)
    return v / jnp.where(norm > 0, norm, 1)


def _orthogonalize(v: Array, basis: Array) -> Array:
    """Remove the span of basis's rows (orthonormal or zero) from v (a vector, or the rows of
    a block); twice ("twice is enough")."""
    v = v - (v @ basis.T) @ basis
    return v - (v @ basis.T) @ basis


# ----------------------------------------------------------------------------- HVP
def hvp(fun: Callable[[PyTree], Array], params: PyTree, tangent: PyTree) -> PyTree:
    """H v, with H = ∇²fun(params) and v = ``tangent`` (a pytree like params).

    Forward-over-reverse: the directional derivative of the gradient,
    d/dε ∇fun(params + ε v) at ε = 0, at about the cost of two gradients.
    """
    p_struct, t_struct = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(tangent)
    if p_struct != t_struct:
        raise ValueError(f"tangent: must have the structure of params ({p_struct}), got {t_struct}")
    for p, t in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(tangent)):
        if np.shape(p) != np.shape(t):
            raise ValueError(f"tangent: leaf shape {np.shape(t)} does not match params leaf shape {np.shape(p)}")
    tangent = jax.tree_util.tree_map(lambda p, t: jnp.asarray(t, jnp.result_type(p)), params, tangent)
    return jax.jvp(jax.grad(fun), (params,), (tangent,))[1]


@jax.jit
def _dense_hessian_core(fun, params):
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda x: fun(unravel(x)))(flat)


def dense_hessian(fun: Callable[[PyTree], Array], params: PyTree) -> Float[Array, "d d"]:
    """The full d × d Hessian ∇²fun(params) over the flattened params (d HVPs' worth of
    work and d² memory: small models only; the oracle the matrix-free methods are tested
    against, and the A of :mod:`sgdsde.pac_bayes`)."""
    fun, d, _ = _prepare(fun, params)
    return _dense_hessian_core(fun, params)


# ----------------------------------------------------------------------------- power iteration
def _power_flat(matvec, v0: Array, num_iterations: int, previous: Array) -> tuple[Array, Array]:
    """Power iteration deflated against the rows of ``previous`` (orthonormal, or zero).

    Per iteration (as PyHessian): v ← v ⟂ previous, w = H v, λ = vᵀw, v ← w/‖w‖.
    """

    def body(_, carry):
        v, _ = carry
        v = _normalize(_orthogonalize(v, previous))
        w = matvec(v)
        value = jnp.vdot(v, w)
        norm = jnp.linalg.norm(w)
        return jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1), v), value

    v, value = lax.fori_loop(0, num_iterations, body, (v0, jnp.zeros((), v0.dtype)))
    return value, v


@functools.partial(jax.jit, static_argnames=("num_iterations", "k"))
def _power_core(fun, params, key, num_iterations: int, k: int):
    matvec, flat, unravel = _flat_operator(fun, params)
    d = flat.shape[0]

    def one(found, i):
        v0 = _normalize(jax.random.normal(jax.random.fold_in(key, i), (d,), flat.dtype))
        value, vector = _power_flat(matvec, v0, num_iterations, found)
        return found.at[i].set(vector), value

    found, values = lax.scan(one, jnp.zeros((k, d), flat.dtype), jnp.arange(k))
    return values, found


def power_iteration(
    fun: Callable[[PyTree], Array], params: PyTree, *, key: Array, num_iterations: int = 100
) -> PowerIteration:
    """The dominant (largest |λ|) eigenpair of H by ``num_iterations`` HVPs.

    Start: a Gaussian random unit vector from ``key``. Each iteration: w = H v,
    λ = vᵀw, v ← w/‖w‖ (as PyHessian's ``eigenvalues``, run for exactly
    ``num_iterations`` iterations). The error of λ falls like (λ₂/λ₁)^(2n). For a
    positive semi-definite H (a minimum) the dominant eigenvalue is the largest.
    """
    fun, d, key = _prepare(fun, params, key)
    num_iterations = _check_int(num_iterations, "num_iterations", 1)
    values, vectors = _power_core(fun, params, key, num_iterations, 1)
    return PowerIteration(values[0], ravel_pytree(params)[1](vectors[0]))


# ----------------------------------------------------------------------------- Lanczos
def _block_lanczos_flat(matmat, v0: Array, steps: int, fresh: Array) -> BlockLanczos:
    """``steps`` block-Lanczos steps from the p orthonormal rows v0 (p, d), with full
    reorthogonalisation; p = 1 is ordinary Lanczos.

    Step j (p HVPs, one ``matmat`` call): W = H V_j, A_j = V_j W ᵀ, W ← W ⟂ basis (twice),
    Wᵀ = Q R (QR), R = U Σ Yᵀ (SVD of p × p), V_{j+1} = (Q U)ᵀ, B_j = Σ Yᵀ; cost p HVPs and
    O(j p² d) for the orthogonalisation. A singular value below 100·eps·‖H‖ (that part of
    the Krylov space is exhausted, to rounding) is set to 0 (the largest such is
    ``dropped``) and its vector replaced by the rows of ``fresh`` (p, d), cyclically
    shifted by the step index and orthogonalised against the basis, so T stays exact and
    s·p ≤ d always makes sense.
    """
    p, d = v0.shape
    dtype = v0.dtype
    m = steps * p
    tol = 100 * jnp.finfo(dtype).eps
    basis = jnp.zeros((m, d), dtype).at[:p].set(v0)
    rows = jnp.arange(p)

    def body(j, carry):
        basis, diagonal, offdiagonal, dropped, scale = carry
        v = lax.dynamic_slice_in_dim(basis, j * p, p)
        w = matmat(v)
        scale = jnp.maximum(scale, jnp.max(jnp.linalg.norm(w, axis=1)))
        a = v @ w.T
        w = _orthogonalize(w, basis)  # rows after block j are still zero
        q, r = jnp.linalg.qr(w.T)
        u, sigma, yt = jnp.linalg.svd(r)  # sigma decreasing: deficient directions come last
        nxt = (q @ u).T
        off = sigma[:, None] * yt
        deficient = (sigma <= tol * scale) & (j < steps - 1)

        def restart(nxt):
            fill = jnp.where(deficient[:, None], jnp.roll(fresh, j + 1, axis=1), nxt)
            q2, r2 = jnp.linalg.qr(_orthogonalize(fill, basis).T)  # kept rows come first: unchanged
            return (q2 * jnp.where(jnp.diag(r2) < 0, -1, 1).astype(dtype)).T

        nxt = lax.cond(jnp.any(deficient), restart, lambda x: x, nxt)
        basis = basis.at[(j + 1) * p + rows].set(nxt, mode="drop")
        diagonal = diagonal.at[j].set(0.5 * (a + a.T))
        offdiagonal = offdiagonal.at[j].set(jnp.where(deficient[:, None], 0, off))
        dropped = jnp.maximum(dropped, jnp.max(jnp.where(deficient, sigma, 0)))
        return basis, diagonal, offdiagonal, dropped, scale

    zero = jnp.zeros((), dtype)
    blocks = jnp.zeros((steps, p, p), dtype)
    basis, diagonal, offdiagonal, dropped, _ = lax.fori_loop(0, steps, body, (basis, blocks, blocks, zero, zero))
    return BlockLanczos(diagonal, offdiagonal[:-1], offdiagonal[-1], basis, dropped)


def _lanczos_flat(matvec, v0: Array, m: int, fresh: Array) -> Lanczos:
    """m steps of single-vector Lanczos from the unit vector v0: the block method with p = 1
    (a zero residual restarts from ``fresh``, β = 0, so T stays exact)."""
    block = _block_lanczos_flat(jax.vmap(matvec), v0[None], m, fresh[None])
    return Lanczos(block.diagonal[:, 0, 0], block.offdiagonal[:, 0, 0], jnp.abs(block.residual[0, 0]),
                   block.basis, block.dropped)


_STARTS = {"given": 0, "gaussian": 1, "rademacher": 2}


@functools.partial(jax.jit, static_argnames=("m",))
def _lanczos_core(fun, params, key, start, start_kind, m: int) -> Lanczos:
    """Lanczos from ``start`` (flat; start_kind 0) or from a Gaussian (1) or Rademacher (2)
    vector drawn from ``key``; the kind is traced, so all share one compiled program."""
    matvec, flat, _ = _flat_operator(fun, params)
    return _lanczos_start(matvec, flat, key, start, start_kind, m)


def _lanczos_start(matvec, flat, key, start, start_kind, m: int) -> Lanczos:
    gaussian, fresh = jax.random.normal(key, (2,) + flat.shape, flat.dtype)
    rademacher = _signs(gaussian)  # the signs of a Gaussian vector are Rademacher
    v0 = jnp.stack([start.astype(flat.dtype), gaussian, rademacher])[start_kind]
    return _lanczos_flat(matvec, _normalize(v0), m, fresh)


@functools.partial(jax.jit, static_argnames=("steps", "p"))
def _block_lanczos_core(fun, params, key, steps: int, p: int) -> BlockLanczos:
    """Block Lanczos from p Gaussian vectors (orthonormalised); H applied by ``jax.vmap``."""
    matvec, flat, _ = _flat_operator(fun, params)
    gaussian, fresh = jax.random.normal(key, (2, p) + flat.shape, flat.dtype)
    v0 = jnp.linalg.qr(gaussian.T)[0].T
    return _block_lanczos_flat(jax.vmap(matvec), v0, steps, fresh)


def block_lanczos(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    block_size: int = 4,
    num_iterations: int = 100,
) -> BlockLanczos:
    """Block Lanczos on H with blocks of p = ``block_size`` Gaussian start vectors and
    s = ``num_iterations`` // p steps (s·p ≤ d HVPs), full reorthogonalisation.

    Each step applies H to p vectors at once (``jax.vmap`` of the HVP: matrix–matrix work)
    and orthogonalises the block with matrix–matrix products. Ritz values
    (``result.ritz()``) converge to the extreme eigenvalues like Lanczos's, at a rate set
    by the gap to λ_{i+p}, and resolve multiplicities up to p; each comes with the bound
    ‖H y − θ y‖ ≥ |θ − λ| for some eigenvalue λ.
    """
    fun, d, key = _prepare(fun, params, key)
    p = _check_int(block_size, "block_size", 1)
    if p > d:
        raise ValueError(f"block_size: must be at most the number of parameters d = {d}, got {block_size}")
    steps = min(_check_int(num_iterations, "num_iterations", 1), d) // p
    if steps < 1:
        raise ValueError(f"num_iterations: must be at least block_size = {p}, got {num_iterations}")
    return _block_lanczos_core(fun, params, key, steps, p)


def lanczos(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_iterations: int = 100,
    start: PyTree | None = None,
) -> Lanczos:
    """``num_iterations`` Lanczos steps on H (capped at d), with full reorthogonalisation.

    start: the first vector (a pytree like params, normalised here); default a Gaussian
    random vector from ``key`` (which also draws the vectors of any restart). The
    eigenvalues of T (``result.ritz()``) approximate the extreme eigenvalues of H first;
    ``ritz()`` also gives an a-posteriori error bound for each.
    """
    fun, d, key = _prepare(fun, params, key)
    m = min(_check_int(num_iterations, "num_iterations", 1), d)
    if start is not None:
        _check_params(start, "start")
        if jax.tree_util.tree_structure(start) != jax.tree_util.tree_structure(params) or any(
            np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(start), jax.tree_util.tree_leaves(params))
        ):
            raise ValueError("start: must have the structure and leaf shapes of params")
        if not isinstance(ravel_pytree(start)[0], jax.core.Tracer) and not np.any(np.asarray(ravel_pytree(start)[0])):
            raise ValueError("start: must not be the zero vector")
    flat = ravel_pytree(params)[0]
    first = jnp.zeros_like(flat) if start is None else ravel_pytree(start)[0]
    return _lanczos_core(fun, params, key, first, _STARTS["gaussian" if start is None else "given"], m)


def top_eigenvalues(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    k: int = 1,
    method: Literal["lanczos", "block", "power"] = "lanczos",
    num_iterations: int = 100,
    block_size: int | None = None,
) -> Float[Array, " k"]:
    """The k largest eigenvalues of H, largest first.

    method="lanczos": the k largest Ritz values after ``num_iterations`` Lanczos steps
    (capped at d; needs num_iterations ≥ k) — the largest algebraic eigenvalues.
    method="block": the same from block Lanczos (:func:`block_lanczos`) with blocks of
    p = ``block_size`` vectors (default k) and ``num_iterations`` // p steps: about
    ``num_iterations`` HVPs, applied p at a time (``jax.vmap``), resolving
    multiplicities up to p; needs (num_iterations // p)·p ≥ k.
    method="power": power iteration with deflation (``num_iterations`` HVPs per
    eigenvalue, as PyHessian's ``eigenvalues(top_n=k)``): the k eigenvalues of largest
    magnitude, sorted in decreasing order — the same as Lanczos's for a positive
    semi-definite H. Single-vector Lanczos sees one copy of a repeated eigenvalue (its
    Krylov space holds one); block Lanczos and deflated power iteration resolve them.
    """
    fun, d, key = _prepare(fun, params, key)
    k = _check_int(k, "k", 1)
    num_iterations = _check_int(num_iterations, "num_iterations", 1)
    if method not in _METHODS:
        raise ValueError(f"method: must be one of {_METHODS}, got {method!r}")
    if k > d:
        raise ValueError(f"k: must be at most the number of parameters d = {d}, got {k}")
    if method == "power":
        values, _ = _power_core(fun, params, key, num_iterations, k)
        return -jnp.sort(-values)
    p = 1 if method == "lanczos" else (k if block_size is None else _check_int(block_size, "block_size", 1))
    if p > d:
        raise ValueError(f"block_size: must be at most the number of parameters d = {d}, got {block_size}")
    steps = min(num_iterations, d) // p
    if steps * p < k:
        name = "Lanczos" if method == "lanczos" else f"block Lanczos (blocks of {p})"
        raise ValueError(f"num_iterations: {name} needs at least k = {k} iterations, got {num_iterations}")
    if method == "lanczos":
        result = lanczos(fun, params, key=key, num_iterations=steps)
    else:
        result = _block_lanczos_core(fun, params, key, steps, p)
    return result.ritz()[0][:k]


# ----------------------------------------------------------------------------- trace
def _probe_map(fn, keys, batch_size):
    return lax.map(fn, keys, batch_size=batch_size)


# One compiled program per loss serves Hutchinson's trace and the three Hessian-norm
# estimators: the per-probe quantity is chosen by a traced mode (lax.switch).
_PROBES = {"trace": 0, "exact": 1, "forward": 2, "central": 3}


@functools.partial(jax.jit, static_argnames=("num_samples", "batch_size"))
def _probe_core(fun, params, key, epsilon, mode, num_samples: int, batch_size) -> Estimate:
    """Per probe k: mode 0: zᵀHz, z Rademacher (:func:`_quadratic_form`); modes 1–3: ‖Hv‖²,
    v ~ N(0, I), with Hv exact (1) or by forward (2) or central (3) differences of
    gradients, the parameters moving a distance ε along v/‖v‖ (Hv ≈ ‖v‖ Δg/ε). Probes run
    ``batch_size`` at a time under ``jax.vmap`` (one at a time for None)."""
    matvec, flat, unravel = _flat_operator(fun, params)
    flat_fun = lambda x: fun(unravel(x))
    flat_grad = lambda x: ravel_pytree(jax.grad(fun)(unravel(x)))[0]
    g0 = flat_grad(flat)

    def sample(k):
        v = jax.random.normal(k, flat.shape, flat.dtype)
        z = _signs(v)  # Rademacher (used by the trace mode only; v by the others)
        size = jnp.linalg.norm(v)
        step = (epsilon / size) * v
        return lax.switch(
            mode,
            [
                lambda: _quadratic_form(flat_fun, flat, z),
                lambda: _squared_norm(matvec(v)),
                lambda: _squared_norm(size * (flat_grad(flat + step) - g0) / epsilon),
                lambda: _squared_norm(size * (flat_grad(flat + step) - flat_grad(flat - step)) / (2 * epsilon)),
            ],
        )

    return _estimate(_probe_map(sample, jax.random.split(key, num_samples), batch_size))


def _quadratic_form(flat_fun: Callable, flat: Array, z: Array) -> Array:
    """zᵀHz = d²/dε² fun(θ + ε z) at ε = 0, forward over forward mode (exact, not a
    difference): no backward pass, about 1.5× fewer flops than zᵀ(Hz) by an HVP."""
    return jax.jvp(lambda x: jax.jvp(flat_fun, (x,), (z,))[1], (flat,), (z,))[1]


def _squared_norm(x):
    return jnp.vdot(x, x)


def _check_batch_size(batch_size, num: int):
    if batch_size is None:
        return None
    return min(_check_int(batch_size, "batch_size", 1), num)


def hutchinson_trace(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_samples: int = 100,
    batch_size: int | None = None,
) -> TraceEstimate:
    """tr H ≈ (1/n) Σ_i z_iᵀ H z_i with n = ``num_samples`` Rademacher probes (±1 entries).

    Unbiased; Var(zᵀHz) = 2 Σ_{i≠j} H_ij², so the standard error (sample standard
    deviation / √n, reported) shrinks like 1/√n. Each zᵀHz is the second directional
    derivative d²/dε² fun(params + ε z) (forward over forward mode: cost about 1.5
    gradients, ~1.5× less than an HVP). Probes run one after another (memory of one), or
    ``batch_size`` at a time (``jax.vmap``: matrix–matrix work, batch_size× the memory);
    the same ``key`` gives the same probes for every batch_size.
    """
    fun, d, key = _prepare(fun, params, key)
    num_samples = _check_int(num_samples, "num_samples", 2)
    batch_size = _check_batch_size(batch_size, num_samples)
    return _probe_core(fun, params, key, 1.0, _PROBES["trace"], num_samples, batch_size)


# ----------------------------------------------------------------------------- SLQ
@functools.partial(jax.jit, static_argnames=("num_probes", "m", "batch_size"))
def _slq_core(fun, params, key, num_probes: int, m: int, batch_size: int):
    """(nodes, weights) of :func:`spectral_density`, batch_size probes at a time (vmap)."""
    matvec, flat, _ = _flat_operator(fun, params)
    zero = jnp.zeros_like(flat)

    def probe(l):
        result = _lanczos_start(matvec, flat, jax.random.fold_in(key, l), zero, _STARTS["rademacher"], m)
        values, weights, _ = result.ritz()
        return values, weights

    return lax.map(probe, jnp.arange(num_probes), batch_size=batch_size)


def spectral_density(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_probes: int = 10,
    num_steps: int = 50,
    batch_size: int | None = None,
) -> SpectralDensity:
    """Spectral density of H by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    ``num_probes`` Rademacher probes u = z/√d, ``num_steps`` Lanczos steps each (capped
    at d): per probe, nodes = Ritz values, weights = squared first components of T's
    eigenvectors. See :class:`SpectralDensity` for moments, traces of functions of H and
    a smoothed density. Probe l uses ``jax.random.fold_in(key, l)``. With
    ``batch_size=None`` the probes run one after another through the compiled program of
    :func:`lanczos` (so both share one compile; under an outer ``jax.jit`` the probe loop
    is unrolled); with ``batch_size=b`` one program runs b independent Lanczos
    recurrences at a time under ``jax.vmap`` (b HVPs per step as matrix–matrix work, b×
    the memory: b bases of num_steps × d), the same probes and values to rounding.
    """
    fun, d, key = _prepare(fun, params, key)
    num_probes = _check_int(num_probes, "num_probes", 1)
    m = min(_check_int(num_steps, "num_steps", 1), d)
    if batch_size is not None:
        nodes, weights = _slq_core(fun, params, key, num_probes, m, _check_batch_size(batch_size, num_probes))
        return SpectralDensity(nodes, weights, d)
    zero = jnp.zeros_like(ravel_pytree(params)[0])
    nodes, weights = [], []
    for probe in range(num_probes):
        result = _lanczos_core(fun, params, jax.random.fold_in(key, probe), zero, _STARTS["rademacher"], m)
        values, probe_weights, _ = result.ritz()
        nodes.append(values)
        weights.append(probe_weights)
    return SpectralDensity(jnp.stack(nodes), jnp.stack(weights), d)


def log_determinant(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_probes: int = 10,
    num_steps: int = 50,
    batch_size: int | None = None,
) -> LogDetEstimate:
    """log det H = tr log H ≈ d · (1/P) Σ_l Σ_j τ_lj² log θ_lj, by SLQ (see
    :func:`spectral_density`), with its standard error over the P probes.

    Needs a positive definite H: raises ValueError when a Ritz value is ≤ 0 (Ritz values
    lie inside [λ_min, λ_max], so H then has an eigenvalue ≤ 0). Inside ``jax.jit`` this
    check cannot raise: the result is then NaN and ``min_ritz_value`` ≤ 0 says why. The
    quadrature error (log is not a polynomial) falls geometrically with ``num_steps``,
    faster for a better-conditioned H; with num_steps = d it is exact to rounding.
    ``batch_size``: probes per vmapped batch, as in :func:`spectral_density`.
    """
    density = spectral_density(fun, params, key=key, num_probes=num_probes, num_steps=num_steps, batch_size=batch_size)
    smallest = jnp.min(density.nodes)
    if not isinstance(smallest, jax.core.Tracer) and not float(smallest) > 0:
        raise ValueError(
            f"fun: the Hessian is not positive definite at params (a Ritz value is {float(smallest):.4g} ≤ 0), "
            "so log det H is undefined; log_determinant needs a strict minimum"
        )
    safe = jnp.where(density.nodes > 0, density.nodes, jnp.nan)
    est = _estimate(density.dimension * jnp.sum(density.weights * jnp.log(safe), axis=-1))
    return LogDetEstimate(est.mean, est.stderr, est.samples, smallest)


# ----------------------------------------------------------------------------- Hessian norm
def _norm(est: Estimate) -> HessianNorm:
    return HessianNorm(jnp.sqrt(est.mean), est.mean, est.stderr, est.samples)


def finite_difference_hessian_norm(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    epsilon: float = 1e-3,
    num_samples: int = 10,
    scheme: Literal["forward", "central"] = "forward",
    batch_size: int | None = None,
) -> HessianNorm:
    """The Frobenius norm ‖H‖_F from gradient differences, without any HVP.

    The Three Factors paper measures sharpness as "the norm of the Hessian … using the
    finite difference method (Wu et al., 2017)": ‖H‖_F² = E_v ‖Hv‖², v ~ N(0, I_d),
    with Hv replaced by a difference of gradients,

        forward:  Hv ≈ ‖v‖ [∇L(θ + ε v̂) − ∇L(θ)] / ε,
        central:  Hv ≈ ‖v‖ [∇L(θ + ε v̂) − ∇L(θ − ε v̂)] / (2ε),     v̂ = v/‖v‖,

    i.e. the parameters move a distance ``epsilon`` (Wu et al. scale the Gaussian v
    itself by ε, a step of length ≈ ε√d). Bias: O(ε) forward, O(ε²) central (none for
    a quadratic loss); rounding: ~ machine-eps·‖∇L‖/ε — in float32 keep ε ≳ 1e-3.
    The same ``key`` gives the same probes as :func:`hessian_frobenius_norm`.
    """
    fun, d, key = _prepare(fun, params, key)
    num_samples = _check_int(num_samples, "num_samples", 2)
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme: must be one of {_SCHEMES}, got {scheme!r}")
    if isinstance(epsilon, bool) or not np.isscalar(epsilon) or not np.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon: must be a finite positive number (a step length in parameter space), got {epsilon!r}")
    batch_size = _check_batch_size(batch_size, num_samples)
    return _norm(_probe_core(fun, params, key, float(epsilon), _PROBES[scheme], num_samples, batch_size))


def hessian_frobenius_norm(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_samples: int = 10,
    batch_size: int | None = None,
) -> HessianNorm:
    """‖H‖_F from E_v ‖Hv‖² = ‖H‖_F² with exact HVPs, v ~ N(0, I_d) (the same probes as
    :func:`finite_difference_hessian_norm` for the same ``key``). Var(‖Hv‖²) = 2‖H²‖_F²."""
    fun, d, key = _prepare(fun, params, key)
    num_samples = _check_int(num_samples, "num_samples", 2)
    batch_size = _check_batch_size(batch_size, num_samples)
    return _norm(_probe_core(fun, params, key, 1.0, _PROBES["exact"], num_samples, batch_size))


# ----------------------------------------------------------------------------- line
@jax.jit
def _line_core(fun, params1, params2, alphas):
    def at(alpha):
        point = jax.tree_util.tree_map(lambda a, b: (1 - alpha) * a + alpha * b, params1, params2)
        return fun(point)

    return jax.vmap(at)(alphas)


def loss_along_line(
    fun: Callable[[PyTree], Array],
    params1: PyTree,
    params2: PyTree,
    alphas: Float[ArrayLike, " n"],
) -> Float[Array, " n"]:
    """L((1 − α) θ₁ + α θ₂) for every α in ``alphas`` (θ₁ at α = 0, θ₂ at α = 1; the
    Three Factors paper plots α ∈ [−1, 2] between minima found with different η/S)."""
    fun = _as_partial(fun)
    _check_params(params1, "params1")
    _check_params(params2, "params2")
    s1, s2 = jax.tree_util.tree_structure(params1), jax.tree_util.tree_structure(params2)
    if s1 != s2 or any(
        np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(params1), jax.tree_util.tree_leaves(params2))
    ):
        raise ValueError("params2: must have the structure and leaf shapes of params1")
    _check_scalar_loss(fun, params1)
    alphas_np = alphas if isinstance(alphas, jax.core.Tracer) else np.asarray(alphas)
    if np.ndim(alphas_np) != 1 or np.shape(alphas_np)[0] == 0:
        raise ValueError(f"alphas: must be a non-empty 1-D array, got shape {np.shape(alphas_np)}")
    if not isinstance(alphas_np, jax.core.Tracer) and not np.all(np.isfinite(alphas_np)):
        raise ValueError("alphas: must be finite")
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params1))
    return _line_core(fun, params1, params2, jnp.asarray(alphas, dtype))
