"""Rectilinear grids on a box in 1–3 dimensions, and distributions on them.

A grid splits the box [lower, upper] ⊂ R^d (d = 1, 2, 3) into ``cells[a]`` equal cells
per axis a (spacing h_a = (upper_a − lower_a)/cells_a). A distribution on the grid is a
``mass`` array of shape ``grid.shape``: the probability **mass per cell** (it sums to 1;
the density is mass / grid.cell_volume). Boundaries are zero-flux (reflecting) by
default, periodic per axis on request.

``grid.edges`` has the format of ``sgdsde.observers.histogram(edges=...)``, so a runner
histogram and a Fokker–Planck solution can be compared bin by bin.

Initial conditions (all return float64 NumPy mass arrays):

- :func:`gaussian` — N(mean, cov) sampled at the cell centres (mass_i ∝ p(x_i)·volume,
  normalised), the same midpoint convention as the discrete Boltzmann law;
- :func:`point_mass` — all mass in the cell that contains x;
- :func:`from_density` — a density given at the cell centres (array or callable).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._precision import float64_entry

__all__ = ["Grid", "grid", "gaussian", "point_mass", "from_density"]

AxisValues = Union[float, Sequence[float]]

_MIN_CELLS = 3
_BOX_MASS_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class Grid:
    """A rectilinear grid (build it with :func:`grid`). Static: a pytree without leaves.

    Attributes: ``lower``, ``upper`` (tuples of floats), ``cells`` (= ``shape``),
    ``periodic`` (tuple of bool); derived: ``ndim``, ``spacing``, ``edges`` and
    ``centers`` (tuples of 1-D float64 NumPy arrays), ``cell_volume``.
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    cells: tuple[int, ...]
    periodic: tuple[bool, ...]

    @property
    def ndim(self) -> int:
        return len(self.cells)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.cells)

    @property
    def size(self) -> int:
        return int(np.prod(self.cells))

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple((hi - lo) / n for lo, hi, n in zip(self.lower, self.upper, self.cells))

    @property
    def edges(self) -> tuple[np.ndarray, ...]:
        return tuple(np.linspace(lo, hi, n + 1) for lo, hi, n in zip(self.lower, self.upper, self.cells))

    @property
    def centers(self) -> tuple[np.ndarray, ...]:
        return tuple(0.5 * (e[1:] + e[:-1]) for e in self.edges)

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    def points(self) -> np.ndarray:
        """Cell centres as a float64 array of shape (*shape, ndim)."""
        return np.stack(np.meshgrid(*self.centers, indexing="ij"), axis=-1)

    def face_points(self, axis: int) -> np.ndarray:
        """Midpoints of the faces between neighbouring cells along ``axis``: shape
        (*shape with n_axis − 1, or n_axis when periodic, ndim). With periodic axes the
        last face sits at the upper boundary (between the last and the first cell)."""
        coords = list(self.centers)
        e = self.edges[axis]
        coords[axis] = e[1:] if self.periodic[axis] else e[1:-1]
        return np.stack(np.meshgrid(*coords, indexing="ij"), axis=-1)

    def __repr__(self) -> str:
        return (
            f"Grid(lower={self.lower}, upper={self.upper}, cells={self.cells}, periodic={self.periodic})"
        )


jax.tree_util.register_pytree_node(Grid, lambda g: ((), g), lambda g, _: g)


def _per_axis(value, ndim: int | None, name: str) -> tuple:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return (arr.item(),) * (ndim or 1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be a scalar or a sequence with one entry per axis, got shape {arr.shape}")
    if ndim is not None and arr.shape[0] != ndim:
        raise ValueError(f"{name}: has {arr.shape[0]} entries but the grid has {ndim} axes")
    return tuple(arr.tolist())


def grid(lower: AxisValues, upper: AxisValues, cells: int | Sequence[int], *, periodic: bool | Sequence[bool] = False) -> Grid:
    """A rectilinear grid on the box [lower, upper] with ``cells`` cells per axis (1–3 axes).

    ``lower``/``upper``/``cells``/``periodic`` are scalars (shared by all axes) or one value
    per axis; the number of axes is the longest of them. Needs ≥ 3 cells per axis and
    lower < upper. Zero-flux boundaries unless ``periodic``.
    """
    lengths = [np.size(v) for v in (lower, upper, cells, periodic) if np.ndim(v) > 0]
    ndim = max(lengths) if lengths else 1
    if not 1 <= ndim <= 3:
        raise ValueError(f"lower/upper/cells: the grid must have 1 to 3 axes, got {ndim}")
    lo = _per_axis(lower, ndim, "lower")
    hi = _per_axis(upper, ndim, "upper")
    n = _per_axis(cells, ndim, "cells")
    per = _per_axis(periodic, ndim, "periodic")
    for a in range(ndim):
        if not (isinstance(lo[a], (int, float)) and isinstance(hi[a], (int, float))) or not (
            math.isfinite(lo[a]) and math.isfinite(hi[a])
        ):
            raise ValueError(f"lower/upper: axis {a} must be finite numbers, got {lo[a]!r}, {hi[a]!r}")
        if not lo[a] < hi[a]:
            raise ValueError(f"upper: must exceed lower on every axis, axis {a} has [{lo[a]}, {hi[a]}]")
        if isinstance(n[a], bool) or not isinstance(n[a], int):
            raise ValueError(f"cells: must be integers, got {cells!r}")
        if n[a] < _MIN_CELLS:
            raise ValueError(f"cells: needs at least {_MIN_CELLS} cells per axis, axis {a} has {n[a]}")
        if not isinstance(per[a], bool):
            raise ValueError(f"periodic: must be bool (or one per axis), got {periodic!r}")
    return Grid(
        tuple(float(v) for v in lo), tuple(float(v) for v in hi), tuple(int(v) for v in n), tuple(per)
    )


def _check_grid(g) -> Grid:
    if not isinstance(g, Grid):
        raise ValueError(f"grid: must be a sgdsde.fokker_planck.Grid (from fp.grid(...)), got {type(g).__name__}")
    return g


def _normal_outside(lo: float, hi: float, mean: float, std: float) -> float:
    """P(X ∉ [lo, hi]) for X ~ N(mean, std²), accurate in both tails."""
    if std == 0:
        return 0.0 if lo <= mean < hi else 1.0
    z_lo, z_hi = (lo - mean) / std, (hi - mean) / std
    return 0.5 * math.erfc(-z_lo / math.sqrt(2)) + 0.5 * math.erfc(z_hi / math.sqrt(2))


@float64_entry
def gaussian(grid: Grid, mean, cov) -> Float[np.ndarray, "*shape"]:
    """Mass per cell of N(mean, cov): the density at the cell centres times the cell
    volume, normalised to 1 (the midpoint convention of the discrete Boltzmann law).

    ``cov`` is a scalar variance, per-axis variances or a full d×d matrix (symmetric
    positive definite). Raises ValueError if the box holds less than 1 − 1e-6 of the
    Gaussian's mass (checked by the union bound over the exact 1-D marginals, periodic
    axes exempt).
    """
    g = _check_grid(grid)
    d = g.ndim
    mu = np.asarray(mean, dtype=np.float64).reshape(-1)
    if mu.shape == (1,) and d > 1:
        mu = np.full(d, mu[0])
    if mu.shape != (d,) or not np.all(np.isfinite(mu)):
        raise ValueError(f"mean: must be {d} finite numbers, got {mean!r}")
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim == 0:
        c = np.eye(d) * c
    elif c.ndim == 1:
        if c.shape != (d,):
            raise ValueError(f"cov: per-axis variances need {d} entries, got {c.shape[0]}")
        c = np.diag(c)
    if c.shape != (d, d) or not np.all(np.isfinite(c)):
        raise ValueError(f"cov: must be a variance, {d} variances or a {d}×{d} matrix, got shape {c.shape}")
    if not np.allclose(c, c.T, rtol=1e-12, atol=0):
        raise ValueError("cov: must be symmetric")
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError("cov: must be positive definite (use point_mass for a Dirac mass)")
    outside = sum(
        _normal_outside(g.lower[a], g.upper[a], mu[a], math.sqrt(c[a, a])) for a in range(d) if not g.periodic[a]
    )
    if outside > _BOX_MASS_TOLERANCE:
        raise ValueError(
            f"mean/cov: the box {list(zip(g.lower, g.upper))} holds less than 1 − {_BOX_MASS_TOLERANCE:g} of "
            f"N(mean={mu.tolist()}, cov) (up to {outside:.3g} lies outside); enlarge the grid"
        )
    x = g.points() - mu
    quad = np.einsum("...i,ij,...j->...", x, np.linalg.inv(c), x)
    logp = -0.5 * (quad - quad.min())
    mass = np.exp(logp)
    return mass / mass.sum()


@float64_entry
def point_mass(grid: Grid, x) -> Float[np.ndarray, "*shape"]:
    """All mass in the cell containing x (half-open cells [e_i, e_{i+1}), the last one
    closed). Raises ValueError if x lies outside the box."""
    g = _check_grid(grid)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (g.ndim,) or not np.all(np.isfinite(x)):
        raise ValueError(f"x: must be {g.ndim} finite numbers, got {x!r}")
    index = []
    for a, e in enumerate(g.edges):
        if not e[0] <= x[a] <= e[-1]:
            raise ValueError(f"x: coordinate {a} = {x[a]:g} lies outside the box [{e[0]:g}, {e[-1]:g}]")
        index.append(min(int(np.searchsorted(e, x[a], side="right")) - 1, len(e) - 2))
    mass = np.zeros(g.shape)
    mass[tuple(index)] = 1.0
    return mass


@float64_entry
def from_density(grid: Grid, values: Float[Array, "*shape"] | Callable) -> Float[np.ndarray, "*shape"]:
    """Mass per cell from a density at the cell centres: values·volume, normalised.

    ``values`` is an array of shape ``grid.shape`` or a callable ``x -> density`` for a
    point x of shape (ndim,). Values must be finite and ≥ 0 with a positive sum.
    """
    g = _check_grid(grid)
    if callable(values):
        points = jnp.asarray(g.points())
        values = jax.vmap(values)(points.reshape(-1, g.ndim)).reshape(g.shape)
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != g.shape:
        raise ValueError(f"values: must have the grid's shape {g.shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("values: a density must be finite and non-negative")
    total = arr.sum()
    if total <= 0:
        raise ValueError("values: the density is zero on every cell")
    return arr / total
