"""Top eigenvalues of the Hessian: power iteration, Lanczos and block Lanczos (Rayleigh–Ritz
with residual bounds), and :func:`top_eigenvalues` choosing among them."""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from .._checks import check_int as _check_int

from ._products import _check_params, _flat_operator, _normalize, _orthogonalize, _prepare, _signs
from ._results import BlockLanczos, Lanczos, PowerIteration

PyTree = Any


_METHODS = ("lanczos", "block", "power")

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
    """m steps of single-vector Lanczos from the unit vector v0, full reorthogonalisation:
    the block method with p = 1 written with scalars (a norm for the QR and SVD of a
    1-column block), which XLA compiles about three times faster.

    Step j (one HVP): w = H v_j, α_j = v_jᵀw, w ← w ⟂ basis (twice), β_j = ‖w‖,
    v_{j+1} = w/β_j. A β_j below 100·eps·‖H‖ (the Krylov space is exhausted, to rounding)
    is set to 0 (the largest such is ``dropped``) and v_{j+1} is ``fresh`` cyclically
    shifted by j + 1, orthogonalised against the basis, so T stays exact.
    """
    (d,) = v0.shape
    dtype = v0.dtype
    tol = 100 * jnp.finfo(dtype).eps
    basis = jnp.zeros((m, d), dtype).at[0].set(v0)

    def body(j, carry):
        basis, alpha, beta, dropped, scale = carry
        v = basis[j]
        w = matvec(v)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        a = jnp.vdot(v, w)
        w = _orthogonalize(w, basis)  # rows after j are still zero
        b = jnp.linalg.norm(w)
        deficient = (b <= tol * scale) & (j < m - 1)
        nxt = lax.cond(deficient, lambda: _normalize(_orthogonalize(jnp.roll(fresh, j + 1), basis)),
                       lambda: w / jnp.where(b > 0, b, 1))
        basis = basis.at[j + 1].set(nxt, mode="drop")
        alpha = alpha.at[j].set(a)
        beta = beta.at[j].set(jnp.where(deficient, 0, b))
        dropped = jnp.maximum(dropped, jnp.where(deficient, b, 0))
        return basis, alpha, beta, dropped, scale

    zero = jnp.zeros((), dtype)
    coefficients = jnp.zeros((m,), dtype)
    basis, alpha, beta, dropped, _ = lax.fori_loop(0, m, body, (basis, coefficients, coefficients, zero, zero))
    return Lanczos(alpha, beta[:-1], beta[-1], basis, dropped)


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
    return _top_ritz_core(fun, params, key, method == "block", steps, p, k)


@functools.partial(jax.jit, static_argnames=("block", "steps", "p", "k"))
def _top_ritz_core(fun, params, key, block: bool, steps: int, p: int, k: int) -> Array:
    """The k largest Ritz values of (block) Lanczos from a Gaussian start, in one compiled
    program (Rayleigh–Ritz included: no eager operations left for a first call to compile)."""
    if block:
        result = _block_lanczos_core(fun, params, key, steps, p)
    else:
        flat = ravel_pytree(params)[0]
        result = _lanczos_core(fun, params, key, jnp.zeros_like(flat), _STARTS["gaussian"], steps)
    return result.ritz()[0][:k]


