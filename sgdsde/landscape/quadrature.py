"""Exact Boltzmann quantities by quadrature on a grid (1–3 dimensions).

With isotropic gradient noise σ² and noise scale n = η/S the SDE's stationary law is
P(θ) = exp(−2L(θ)/(nσ²)) / Z (docs/theory.md §3). :func:`boltzmann_density` tabulates it at the
centres of a rectilinear grid of ``cells`` on the box [lower, upper] (midpoint rule);
:func:`boltzmann_basin_masses` sums it over the cells of each basin, labelled by
``classify(θ) -> int`` (the same function :func:`sgdsde.observers.basins` takes).

Error estimate: |M_h − M_2h| + C_k/2. The first term compares the grid with one of half as
many cells per axis: it measures the error of the midpoint rule on the smooth density
(O(h²), spectrally small for wells that decay inside the box). C_k is the mass of the
cells next to basin k's boundary (cells whose label differs from a face neighbour's, on
both sides): each cell goes wholly to the basin of its centre, and a boundary that is
planar on the scale of a cell leaves at least half of the cell on its centre's side (a
cell is centrally symmetric), so at most half of each cut cell's mass is misplaced. This part is O(h) and erratic in h (it depends on where
the boundary crosses the cells), so it cannot be extrapolated; it is negligible when
the basins meet where the density is low (at saddles, at small noise). Mass that the box cuts off is not in it: the mass in
the outermost layer of cells (``outer_mass``) measures it, with a warning above 1e-6.

The loss is evaluated by JAX in its default float dtype (float64 under
``jax.enable_x64``); the sums are float64 NumPy, in log space where it matters.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ._common import check_noise, resolve_loss, warn

__all__ = ["BoltzmannGrid", "BasinMasses", "boltzmann_density", "boltzmann_basin_masses", "grid_centers"]

_CHUNK = 1 << 15
_OUTER_WARN = 1e-6


class BoltzmannGrid(NamedTuple):
    """P(θ) = exp(−2L/(nσ²))/Z at cell centres: centers (one (c_i,) array per axis),
    density (c_1, …, c_d) normalised so that Σ density · cell_volume = 1 over the box,
    log_normalizer log Z (midpoint rule), cell_volume, noise_scale."""

    centers: tuple
    density: np.ndarray
    log_normalizer: float
    cell_volume: float
    noise_scale: float


class BasinMasses(NamedTuple):
    """Boltzmann mass of each basin in the box (shape shape(noise_scale) + (K,)).

    masses: fractions of the box's mass per basin (sum with ``unassigned`` to 1);
    error: grid-error estimate per basin, |M_h − M_2h| + half the mass of the cells on the
    basin's boundary (module docstring); unassigned: mass of cells whose
    label is outside [0, K); outer_mass: mass in the outermost layer of cells (the box
    should make it negligible); log_normalizer: log Z over the box; noise_scale; cells.
    """

    masses: np.ndarray
    error: np.ndarray
    unassigned: np.ndarray
    outer_mass: np.ndarray
    log_normalizer: np.ndarray
    noise_scale: np.ndarray
    cells: tuple


def _check_box(lower, upper, cells, *, min_cells: int = 1):
    lo = np.atleast_1d(np.asarray(lower, np.float64))
    hi = np.atleast_1d(np.asarray(upper, np.float64))
    if lo.ndim != 1 or hi.shape != lo.shape:
        raise ValueError(f"lower/upper: must be 1-D of one length, got shapes {np.shape(lower)}, {np.shape(upper)}")
    d = lo.size
    if not 1 <= d <= 3:
        raise ValueError(
            f"lower: quadrature is for 1–3 dimensions (cost grows as cells^d), got d = {d}; "
            "use the Laplace approximation or simulation beyond"
        )
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(hi <= lo):
        raise ValueError(f"lower/upper: need finite lower < upper on every axis, got {lo.tolist()}, {hi.tolist()}")
    c = np.broadcast_to(np.asarray(cells), (d,)) if np.ndim(cells) <= 1 else None
    if c is None or c.size != d or not np.issubdtype(c.dtype, np.integer) or np.any(c < min_cells):
        raise ValueError(f"cells: need an integer ≥ {min_cells} per axis (one int or {d} ints), got {cells!r}")
    return lo, hi, tuple(int(v) for v in c)


def grid_centers(lower, upper, cells) -> tuple:
    """Cell centres (one array per axis) of ``cells`` equal cells on [lower, upper]."""
    lo, hi, c = _check_box(lower, upper, cells)
    return tuple(lo[i] + (np.arange(c[i]) + 0.5) * (hi[i] - lo[i]) / c[i] for i in range(len(c)))


@partial(jax.jit, static_argnames=("fn",))
def _map_chunk(fn: Callable, points):
    return jax.vmap(fn)(points)


def evaluate_on_points(fn: Callable, points: np.ndarray):
    """fn at each row of points (vmapped, jitted once per fn, padded fixed-size chunks);
    returns NumPy arrays (a pytree like fn's output with a leading axis)."""
    dtype = jnp.result_type(float)
    m = points.shape[0]
    size = min(_CHUNK, max(m, 1))
    outs = []
    for start in range(0, m, size):
        block = points[start:start + size]
        pad = size - block.shape[0]
        if pad:
            block = np.concatenate([block, np.repeat(block[-1:], pad, axis=0)])
        out = _map_chunk(fn, jnp.asarray(block, dtype))
        outs.append(jax.tree_util.tree_map(lambda v: np.asarray(v)[: size - pad], out))
    return jax.tree_util.tree_map(lambda *vs: np.concatenate(vs), *outs)


@functools.lru_cache(maxsize=64)
def _loss_and_label(fn: Callable, classify: Callable) -> Callable:
    """One callable object per (loss, classify), so the jitted grid map is reused."""
    return lambda x: (fn(x), classify(x))


def _mesh(centers) -> np.ndarray:
    return np.stack([g.ravel() for g in np.meshgrid(*centers, indexing="ij")], axis=1)


def _loss_values(fn, centers) -> np.ndarray:
    values = np.asarray(evaluate_on_points(fn, _mesh(centers)), np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("loss: not finite at some grid points of the box; shrink lower/upper")
    return values


def boltzmann_density(
    loss, *, lower: ArrayLike, upper: ArrayLike, cells: int | Sequence[int], noise_scale: float, sigma2: float
) -> BoltzmannGrid:
    """The Boltzmann density exp(−2L/(nσ²))/Z at the cell centres of the box (module docstring).

    loss: ``θ (d,) -> scalar`` or a Problem; lower, upper: the box (d ≤ 3); cells: per axis.
    """
    fn = resolve_loss(loss)
    lo, hi, c = _check_box(lower, upper, cells)
    n, s2 = check_noise(noise_scale, sigma2, max_ndim=0)
    centers = grid_centers(lo, hi, c)
    volume = float(np.prod((hi - lo) / np.asarray(c)))
    logp = -2.0 * _loss_values(fn, centers) / (float(n) * s2)
    top = logp.max()
    weights = np.exp(logp - top)
    log_z = top + np.log(weights.sum() * volume)
    return BoltzmannGrid(centers, (weights / (weights.sum() * volume)).reshape(c), float(log_z), volume, float(n))


def _masses(fn, classify, num_basins, lo, hi, c, n, s2):
    centers = grid_centers(lo, hi, c)
    pts = _mesh(centers)
    values, labels = evaluate_on_points(_loss_and_label(fn, classify), pts)
    values = np.asarray(values, np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise ValueError("loss: not finite at some grid points of the box; shrink lower/upper")
    volume = float(np.prod((hi - lo) / np.asarray(c)))
    logp = -2.0 * values[None, :] / (n.reshape(-1, 1) * s2)  # (noise levels, cells)
    top = logp.max(axis=1, keepdims=True)
    w = np.exp(logp - top)
    total = w.sum(axis=1)
    inside = (labels >= 0) & (labels < num_basins)
    masses = np.stack([w[:, labels == k].sum(axis=1) for k in range(num_basins)], axis=1) / total[:, None]
    unassigned = w[:, ~inside].sum(axis=1) / total
    edge = np.zeros(c, bool)
    for axis in range(len(c)):
        idx = [slice(None)] * len(c)
        idx[axis] = 0
        edge[tuple(idx)] = True
        idx[axis] = -1
        edge[tuple(idx)] = True
    outer = w[:, edge.ravel()].sum(axis=1) / total
    log_z = top[:, 0] + np.log(total * volume)
    cut = np.stack(
        [w[:, _boundary_cells(labels.reshape(c) == k).ravel()].sum(axis=1) for k in range(num_basins)], axis=1
    ) / total[:, None]
    return masses, unassigned, outer, log_z, cut


def _boundary_cells(inside: np.ndarray) -> np.ndarray:
    """Cells whose indicator differs from a face neighbour's (both sides of the boundary)."""
    cut = np.zeros(inside.shape, bool)
    for axis in range(inside.ndim):
        lo = [slice(None)] * inside.ndim
        hi = [slice(None)] * inside.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        differ = inside[tuple(lo)] != inside[tuple(hi)]
        cut[tuple(lo)] |= differ
        cut[tuple(hi)] |= differ
    return cut


def boltzmann_basin_masses(
    loss,
    classify: Callable[[jax.Array], jax.Array],
    num_basins: int,
    *,
    lower: ArrayLike,
    upper: ArrayLike,
    cells: int | Sequence[int],
    noise_scale: float | ArrayLike,
    sigma2: float,
) -> BasinMasses:
    """Exact Boltzmann basin masses ∫_basin exp(−2L/(nσ²)) / ∫_box exp(−2L/(nσ²)) by the
    midpoint rule, with a grid-error estimate (module docstring).

    classify: ``θ -> int`` basin label in [0, num_basins) (jax-traceable); noise_scale: one
    n = η/S or a 1-D array (the loss and labels are evaluated once for all of them);
    cells: per axis, ≥ 4 (the error estimate uses cells // 2).
    """
    fn = resolve_loss(loss)
    if not callable(classify):
        raise TypeError(f"classify: must be a callable θ -> int label, got {type(classify).__name__}")
    if isinstance(num_basins, (bool, np.bool_)) or not isinstance(num_basins, (int, np.integer)) or num_basins < 1:
        raise ValueError(f"num_basins: must be a positive integer, got {num_basins!r}")
    lo, hi, c = _check_box(lower, upper, cells, min_cells=4)
    n, s2 = check_noise(noise_scale, sigma2, max_ndim=1)
    fine = _masses(fn, classify, int(num_basins), lo, hi, c, n, s2)
    coarse = _masses(fn, classify, int(num_basins), lo, hi, tuple(v // 2 for v in c), n, s2)
    masses, unassigned, outer, log_z, cut = fine
    error = np.abs(masses - coarse[0]) + 0.5 * cut
    if np.any(outer > _OUTER_WARN):
        warn(
            f"boltzmann_basin_masses: up to {outer.max():.2g} of the mass lies in the outermost cells of the box "
            f"[{lo.tolist()}, {hi.tolist()}]: the box cuts off mass; widen lower/upper"
        )
    shape = n.shape
    return BasinMasses(
        masses.reshape(shape + (int(num_basins),)), error.reshape(shape + (int(num_basins),)),
        unassigned.reshape(shape), outer.reshape(shape), log_z.reshape(shape), n, c,
    )
