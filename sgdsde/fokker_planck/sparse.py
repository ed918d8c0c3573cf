"""Sparse direct solves: SciPy's SuperLU factorisation of σI + K (K = −G), called from JAX.

The generator is assembled as a SciPy sparse matrix on the host (:func:`generator_matrix`)
and factorised once, LU = P(σI + K)Pᵀ with a minimum-degree ordering of AᵀA + A
(``MMD_AT_PLUS_A``: about half the fill-in of SciPy's default COLAMD on these grid stencils,
3.4·10⁶ factor entries for 256² cells, so back-solves take about half the time) applied
symmetrically and without row pivoting. No pivoting is needed: σI + K (σ > 0) and the
pinned K are non-singular M-matrices (non-positive off-diagonals, column sums ≥ 0), whose
leading principal submatrices are non-singular M-matrices again, so Gaussian elimination
in any symmetric order meets positive pivots and keeps column diagonal dominance (growth
factor ≤ 2: as stable as partial pivoting, with the fill-in of the ordering). The factor
is cached per (rates, σ, pinned cell) (at most 4 factors, and no more entries than
:func:`direct_memory_entries` beyond the newest), the rate arrays compared exactly, so an
``evolve`` loop that calls the solve at every step (each call passes the same rates) factorises once
per (generator, Δt) and then only runs the triangular solves. Solves enter JAX through
``jax.pure_callback`` inside ``jax.lax.custom_linear_solve``, whose transpose solve uses
the same factor (``trans="T"``): differentiable by implicit differentiation, like the
Krylov path.

The singular stationary problem K m = 0 is made regular by pinning one cell r:
A_r = K with row and column r replaced by those of the identity. Then K(x + e_r) = 0 with
x_r = 0 is A_r x = (G e_r) off r, and for a zero-mass v, K x = v has the solution with
x_r = 0 given by A_r x = v off r (row r follows from the zero column sums of K).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg

from .operator import Generator

__all__ = [
    "generator_matrix", "direct_solve", "estimated_factor_entries", "direct_memory_entries", "pinned_mask", "host_factor",
    "SystemKey", "system_key", "cached_factor", "krylov_steps",
]

_CACHE_SIZE = 4
BYTES_PER_FACTOR_ENTRY = 12  # a float64 value and an int32 index
_cache: OrderedDict = OrderedDict()
_LEDGER_SIZE = 16
_krylov_ledger: OrderedDict = OrderedDict()  # (key) -> (rates, Krylov steps run so far), see krylov_steps
_lock = threading.Lock()


def generator_matrix(gen: Generator) -> sparse.csr_matrix:
    """G as a SciPy sparse matrix over the flattened cells (C order): column x holds the
    rates out of cell x (off-diagonal ≥ 0) and −(their sum) on the diagonal."""
    shape = gen.grid.shape
    size = int(np.prod(shape))
    index = np.arange(size).reshape(shape)
    rows, cols, vals = [], [], []

    def jump(source, target, rate):
        rate = np.asarray(rate, dtype=np.float64).ravel()
        source, target = source.ravel(), target.ravel()
        keep = rate != 0
        rows.extend([target[keep], source[keep]])
        cols.extend([source[keep], source[keep]])
        vals.extend([rate[keep], -rate[keep]])

    for axis, (forward, backward) in enumerate(zip(gen.forward, gen.backward)):
        neighbour = np.roll(index, -1, axis=axis)  # x + e_a (wraps; the rate is 0 there unless periodic)
        jump(index, neighbour, forward)
        jump(neighbour, index, backward)
    for (a, b, s), rate in zip(gen.cross_pairs, gen.cross):
        neighbour = np.roll(index, (-1, -s), axis=(a, b))  # x + e_a + s e_b
        jump(index, neighbour, rate)
        jump(neighbour, index, rate)
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )


def estimated_factor_entries(shape: tuple) -> float:
    """Entries of the LU factor of a grid stencil matrix, measured with MMD_AT_PLUS_A:
    ≈ 5.4 N log₂N in 2-D (5.7·10⁶ at 256²), ≈ 27 N^{4/3} in 3-D (2.8·10⁷ at 32³); N in 1-D."""
    size = float(np.prod(shape))
    if len(shape) == 1:
        return size
    if len(shape) == 2:
        return 5.4 * size * np.log2(max(size, 2.0))
    return 27.0 * size ** (4.0 / 3.0)


def direct_memory_entries() -> float:
    """The most LU factor entries ``solver="auto"`` chooses to make and the factor cache
    keeps (the newest factor is always kept): an eighth of this machine's physical memory
    at 12 bytes an entry (2.7·10⁸ entries on 24 GiB; 8 GiB assumed where the size cannot
    be read)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = 8 * 2**30
    return physical / 8 / BYTES_PER_FACTOR_ENTRY


def _system_matrix(gmat: sparse.csr_matrix, shift: float, pin: int) -> sparse.csc_matrix:
    """σI + K (K = −G), with row and column ``pin`` replaced by the identity's when pin ≥ 0."""
    size = gmat.shape[0]
    matrix = (shift * sparse.identity(size, format="csr") - gmat).tocoo()
    if pin >= 0:
        keep = (matrix.row != pin) & (matrix.col != pin)
        matrix = sparse.coo_matrix(
            (np.append(matrix.data[keep], 1.0), (np.append(matrix.row[keep], pin), np.append(matrix.col[keep], pin))),
            shape=(size, size),
        )
    return matrix.tocsc()


class HostFactor(NamedTuple):
    """A factorised system on the host: ``lu`` (SuperLU of σI + K, pinned or not) and the
    generator G it was built from (CSR), kept together in the cache."""

    lu: object
    generator: sparse.csr_matrix


class SystemKey(NamedTuple):
    """The identity of a system (pinned) σI + K for concrete rates, as the factor cache and
    the Krylov ledger look it up: ``key`` holds the shapes, σ, the pin and each rate array's
    sum and end values; a hit is confirmed by comparing ``rates`` exactly (memcmp speed: a
    digest of every byte cost more than the triangular solves on small grids)."""

    key: tuple
    rates: tuple


def system_key(gen: Generator, shift: float, pin: int = -1) -> SystemKey:
    """The :class:`SystemKey` of the (pinned) σI + K of these (concrete) rates."""
    rates = tuple(np.ascontiguousarray(array, dtype=np.float64) for array in (*gen.forward, *gen.backward, *gen.cross))
    summary = tuple((r.shape, float(r.sum()), float(r.flat[0]), float(r.flat[-1])) if r.size else (r.shape,)
                    for r in rates)
    return SystemKey((gen.grid.shape, gen.cross_pairs, float(shift), int(pin), summary), rates)


def _lookup(table: OrderedDict, system: SystemKey):
    """The value stored for ``system`` in ``table`` (moved to the newest end), or None; the
    caller holds the lock."""
    if system.key in table:
        stored, value = table[system.key]
        if all(np.array_equal(a, b) for a, b in zip(stored, system.rates)):
            table.move_to_end(system.key)
            return value
    return None


def cached_factor(system: SystemKey) -> HostFactor | None:
    """The cached factor of ``system``, or None (nothing is factorised)."""
    with _lock:
        return _lookup(_cache, system)


def host_factor(gen: Generator, shift: float, pin: int = -1) -> HostFactor:
    """The cached SuperLU factor of the (pinned) σI + K for these (concrete) rates,
    factorised on a miss (looked up by :func:`system_key`)."""
    system = system_key(gen, shift, pin)
    factor = cached_factor(system)
    if factor is not None:
        return factor
    gmat = generator_matrix(gen)
    lu = sparse_linalg.splu(_system_matrix(gmat, shift, pin), permc_spec="MMD_AT_PLUS_A",
                            diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    factor = HostFactor(lu, gmat)
    budget = direct_memory_entries()
    with _lock:
        _cache[system.key] = (system.rates, factor)
        _cache.move_to_end(system.key)
        while len(_cache) > 1 and (len(_cache) > _CACHE_SIZE or _cached_entries() > budget):
            _cache.popitem(last=False)
    return factor


def krylov_steps(system: SystemKey, add: float = 0.0) -> float:
    """The implicit steps (TR-BDF2 steps; a backward-Euler step counts half) that Krylov
    solves have already run on ``system``, before adding ``add`` of them. The ledger
    ``solver="auto"`` rents by: it keeps the last _LEDGER_SIZE systems."""
    with _lock:
        earlier = _lookup(_krylov_ledger, system) or 0.0
        if add:
            _krylov_ledger[system.key] = (system.rates, earlier + add)
            _krylov_ledger.move_to_end(system.key)
            while len(_krylov_ledger) > _LEDGER_SIZE:
                _krylov_ledger.popitem(last=False)
    return earlier


def _cached_entries() -> int:
    """Entries stored by the cached factors, SuperLU's ``nnz`` (its supernodal storage of L
    and U, read without copying them); the caller holds the lock."""
    return sum(factor.lu.nnz for _, factor in _cache.values())


def _to_words(x: jax.Array) -> jax.Array:
    """A float array as its raw uint32 words (float64: a trailing axis of 2)."""
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


def _from_words(words, dtype) -> np.ndarray:
    words = np.ascontiguousarray(words, dtype=np.uint32)
    out = words.view(dtype)
    return out.reshape(words.shape[:-1]) if np.dtype(dtype).itemsize == 8 else out


def _host_solve(structure: Generator, trans: str, dtype, rates, shift, pin, rhs):
    """The solve on the host. Floats cross the callback boundary as raw uint32 words: JAX
    canonicalises callback operands and results under the x64 setting of the thread that
    runs the callback, and XLA may run it on a thread outside the caller's ``enable_x64``
    scope (float64 would silently become float32)."""
    forward, backward, cross = ([_from_words(w, dtype) for w in group] for group in rates)
    gen = dataclasses.replace(structure, forward=tuple(forward), backward=tuple(backward), cross=tuple(cross))
    lu = host_factor(gen, float(_from_words(shift, dtype)), int(pin)).lu
    rhs = _from_words(rhs, dtype)
    out = lu.solve(np.asarray(rhs, np.float64).reshape(-1), trans=trans).astype(dtype)
    return np.ascontiguousarray(out.reshape(rhs.shape)).view(np.uint32).reshape(np.shape(rhs) + (-1,))


def pinned_mask(shape: tuple, pin) -> jax.Array:
    """1 on every cell but ``pin`` (a flat C-order index, may be traced), 0 there."""
    return (jnp.arange(int(np.prod(shape))).reshape(shape) != pin).astype(jnp.result_type(float))


def direct_solve(gen: Generator, shift, rhs, pin=None):
    """Solve (σI + K) x = rhs by the cached sparse LU factor (σ = ``shift`` > 0), or the
    pinned system A_r x = rhs (σ = 0 allowed; ``pin`` = r, a flat cell index). Works under
    ``jit``/``grad``/``vmap`` (pure callback; custom linear solve for the derivatives)."""
    dtype = rhs.dtype
    shift = jnp.asarray(shift, dtype)
    pin_value = jnp.asarray(-1 if pin is None else pin, jnp.int32)
    structure = dataclasses.replace(gen, forward=(), backward=(), cross=())
    keep = None if pin is None else pinned_mask(gen.grid.shape, pin).astype(dtype)

    def matvec(x):
        if keep is None:
            return shift * x - gen.apply(x)
        return jnp.where(keep > 0, shift * x - gen.apply(x * keep), x)

    def host(trans: str):
        def solve(_, b):
            dtype = np.dtype(b.dtype)
            words = jax.ShapeDtypeStruct(b.shape + (dtype.itemsize // 4,), jnp.uint32)
            rates = tuple(tuple(_to_words(r.astype(dtype)) for r in group) for group in (gen.forward, gen.backward, gen.cross))
            fn = lambda *args: _host_solve(structure, trans, dtype, *args)  # noqa: E731
            raw = jax.pure_callback(
                fn, words, rates, _to_words(shift), pin_value, _to_words(b), vmap_method="sequential"
            )
            return jax.lax.bitcast_convert_type(raw if dtype.itemsize == 8 else raw[..., 0], dtype)

        return solve

    return jax.lax.custom_linear_solve(matvec, rhs, host("N"), host("T"))
