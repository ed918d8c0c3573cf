"""What a Fokker–Planck solution reports, in the runner's terms.

All take ``mass`` (mass per cell, shape ``grid.shape``, or a stack (…, *grid.shape) of
them, e.g. ``Solution.mass``) and return float64 NumPy arrays (JAX arrays inside a trace).

- :func:`marginal` — the mass per cell of a subset of axes (sum over the others).
- :func:`basin_masses` — the mass of each basin, cells labelled by ``classify`` at their
  centres (the labels of ``sgdsde.observers.basins``).
- :func:`currents` — the scheme's own face fluxes (mass per unit time across each face);
  they satisfy dmass/dt = −Σ_a (F_a(x) − F_a(x − e_a)) exactly. The current density is
  J_a = F_a · h_a / cell_volume.
- :func:`histogram` — re-binning onto arbitrary edges (the edges of
  ``sgdsde.observers.histogram``), assuming a uniform density inside each grid cell:
  exact when the edges are grid edges.
- :func:`boltzmann` — the exact discrete Boltzmann law m ∝ exp(−L/T) at the cell centres.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..observers.statistics import _edge_list
from ._precision import float64_entry, is_traced, to_host
from .grid import Grid, _check_grid
from .operator import Generator, sample

__all__ = ["marginal", "basin_masses", "currents", "histogram", "boltzmann"]


def _check_mass_shape(g: Grid, mass):
    shape = np.shape(mass)
    if shape[len(shape) - g.ndim:] != g.shape:
        raise ValueError(f"mass: trailing axes must be the grid's shape {g.shape}, got {shape}")
    return jnp.asarray(mass) if is_traced(mass) else np.asarray(mass, dtype=np.float64)


def _xp(mass):
    return jnp if is_traced(mass) else np


@float64_entry
def marginal(grid: Grid, mass, axes: int | Sequence[int]):
    """Marginal mass per cell on ``axes`` (an axis or a sequence, in increasing order)."""
    g = _check_grid(grid)
    m = _check_mass_shape(g, mass)
    keep = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    if not keep or any(not 0 <= int(a) < g.ndim for a in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"axes: must be distinct axes in [0, {g.ndim}), got {axes!r}")
    if list(keep) != sorted(keep):
        raise ValueError(f"axes: give them in increasing order, got {axes!r}")
    lead = m.ndim - g.ndim
    drop = tuple(lead + a for a in range(g.ndim) if a not in keep)
    return _xp(m).sum(m, axis=drop) if drop else m


@float64_entry
def basin_masses(grid: Grid, mass, classify: Callable, num_basins: int):
    """Mass of each basin: Σ of the cells whose centre θ has ``classify(θ) = k``
    (an int in [0, num_basins)), shape (…, num_basins). Differentiable in ``mass``."""
    g = _check_grid(grid)
    if isinstance(num_basins, bool) or not isinstance(num_basins, (int, np.integer)) or num_basins < 1:
        raise ValueError(f"num_basins: must be a positive integer, got {num_basins!r}")
    if not callable(classify):
        raise ValueError("classify: must be a callable θ (ndim,) -> int")
    m = _check_mass_shape(g, mass)
    labels = np.asarray(sample(classify, g.points())).astype(np.int64).reshape(g.shape)
    if labels.min() < 0 or labels.max() >= num_basins:
        raise ValueError(f"classify: labels must lie in [0, {num_basins}), got [{labels.min()}, {labels.max()}]")
    onehot = np.eye(num_basins)[labels]  # (*shape, K)
    xp = _xp(m)
    lead = m.shape[: m.ndim - g.ndim]
    flat = xp.reshape(m, lead + (-1,))
    return flat @ onehot.reshape(-1, num_basins)


@float64_entry
def currents(gen: Generator, mass) -> tuple:
    """The scheme's face fluxes per axis, F_a (mass per unit time, positive along +e_a,
    on the generator's clock), shape ``grid.shape`` with the axis-a length n_a − 1 for a
    zero-flux axis (the faces between cells) and n_a for a periodic one (the last face
    joins the last and the first cell). Diagonal jumps of a full diffusion matrix are
    routed through the axis faces, so −div F = dmass/dt exactly."""
    if not isinstance(gen, Generator):
        raise ValueError(f"gen: must be a fokker_planck.Generator, got {type(gen).__name__}")
    g = gen.grid
    m = jnp.asarray(_check_mass_shape(g, mass))
    if m.shape != g.shape:
        raise ValueError(f"mass: must have the grid's shape {g.shape}, got {m.shape}")
    fluxes = gen.face_fluxes(m.astype(gen.dtype))
    out = []
    for a, flux in enumerate(fluxes):
        if not g.periodic[a]:
            flux = jax.lax.slice_in_dim(flux, 0, g.shape[a] - 1, axis=a)
        out.append(to_host(flux))
    return tuple(out)


def _overlap(grid_edges: np.ndarray, bin_edges: np.ndarray) -> np.ndarray:
    """W[k, i] = |bin k ∩ cell i| / |cell i| (fraction of cell i's mass in bin k)."""
    lo = np.maximum(bin_edges[:-1, None], grid_edges[None, :-1])
    hi = np.minimum(bin_edges[1:, None], grid_edges[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(grid_edges)[None, :]


@float64_entry
def histogram(grid: Grid, mass, edges) -> dict:
    """The solution on the bins of ``sgdsde.observers.histogram(edges)``:
    ``{"mass": probability per bin, "density": mass / bin volume, "outside": 1 − Σ mass,
    "edges": edges}`` (the observer's ``density`` counts samples outside in its total,
    as ``outside`` here). A uniform density inside each grid cell is assumed, so the
    re-binning is exact when every bin edge is a grid edge."""
    g = _check_grid(grid)
    m = _check_mass_shape(g, mass)
    edge_list = _edge_list(edges)
    if len(edge_list) != g.ndim:
        raise ValueError(f"edges: {len(edge_list)} axes given, the grid has {g.ndim}")
    xp = _xp(m)
    lead = m.ndim - g.ndim
    out = m
    for a, (grid_e, bin_e) in enumerate(zip(g.edges, edge_list)):
        w = _overlap(grid_e, bin_e)
        out = xp.moveaxis(xp.tensordot(out, w, axes=([lead + a], [1])), -1, lead + a)
    widths = [np.diff(e) for e in edge_list]
    volume = widths[0]
    for w in widths[1:]:
        volume = volume[..., None] * w
    total = xp.sum(m, axis=tuple(range(lead, m.ndim)))
    inside = xp.sum(out, axis=tuple(range(lead, out.ndim)))
    return {
        "mass": to_host(out),
        "density": to_host(out / volume),
        "outside": to_host(total - inside),
        "edges": tuple(edge_list) if len(edge_list) > 1 else edge_list[0],
    }


@float64_entry
def boltzmann(grid: Grid, loss, temperature):
    """Discrete Boltzmann masses m ∝ exp(−L(x_i)/T) at the cell centres, normalised
    (the exact stationary state of ``fp.generator`` with isotropic noise, T = n f σ²/2,
    n = η/S). ``loss``: a callable θ (ndim,) -> scalar or its values at the centres."""
    g = _check_grid(grid)
    values = sample(loss, g.points()) if callable(loss) else jnp.asarray(loss)
    if values.shape != g.shape:
        raise ValueError(f"loss: needs one value per cell, shape {g.shape}, got {values.shape}")
    if not is_traced(temperature) and not (np.ndim(temperature) == 0 and float(temperature) > 0):
        raise ValueError(f"temperature: must be a number > 0, got {temperature!r}")
    logits = -values / temperature
    return to_host(jnp.exp(logits - jax.scipy.special.logsumexp(logits)))
