"""Building a generator's rates from a potential or drift field and a diffusion
(:func:`langevin_generator`): the diffusion's kind (constant, full, callable), the
reduction of a full D to axis and diagonal jumps, the callables sampled on the grid, the
edge rates and their checks. The discretisation: :mod:`sgdsde.fokker_planck.operator`."""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._precision import float64_entry, is_traced
from .grid import Grid, _check_grid
from .markov import Generator, _rates

Diffusion = Union[float, Float[Array, " d"], Float[Array, "d d"], Callable]

# 3-point Gauss–Legendre on [0, 1] (exact for polynomials of degree 5)
_GL_NODES = (0.5 - 0.5 * np.sqrt(0.6), 0.5, 0.5 + 0.5 * np.sqrt(0.6))
_GL_WEIGHTS = (5 / 18, 8 / 18, 5 / 18)


# ----------------------------------------------------------------------------- helpers
def _face_mask(g: Grid, axis: int) -> np.ndarray:
    """1 where the face between x and x + e_axis exists (all of a periodic axis)."""
    mask = np.ones(g.shape)
    if not g.periodic[axis]:
        index = [slice(None)] * g.ndim
        index[axis] = -1
        mask[tuple(index)] = 0.0
    return mask


def _cross_mask(g: Grid, a: int, b: int, s: int) -> np.ndarray:
    mask = np.ones(g.shape)
    for axis, step in ((a, 1), (b, s)):
        if not g.periodic[axis]:
            index = [slice(None)] * g.ndim
            index[axis] = -1 if step > 0 else 0
            mask[tuple(index)] = 0.0
    return mask


def _edge_points(g: Grid, axis: int, fraction: float) -> np.ndarray:
    """Points x + fraction·h e_axis for every cell x (for the last cell of a zero-flux
    axis, a harmless interior point: that face does not exist and is masked)."""
    coords = [c.copy() for c in g.centers]
    c = coords[axis] + fraction * g.spacing[axis]
    if not g.periodic[axis]:
        c[-1] = c[-2]
    coords[axis] = c
    return np.stack(np.meshgrid(*coords, indexing="ij"), axis=-1)


def _per_axis_diffusion(values: Array, points_shape: tuple, ndim: int) -> Array:
    """D(x) returned per point as a scalar (isotropic) or (ndim,) → shape (*points, ndim)."""
    if values.shape == tuple(points_shape):
        return jnp.broadcast_to(values[..., None], values.shape + (ndim,))
    if values.shape == tuple(points_shape) + (ndim,):
        return values
    raise ValueError(f"diffusion: a callable must return a scalar or {ndim} per-axis values per point")


def _check_positive_values(values, name: str, where: str) -> None:
    if is_traced(values):
        return
    arr = np.asarray(values)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite {where}")
    if arr.size and arr.min() <= 0:
        raise ValueError(f"{name}: must be > 0 {where}, got minimum {arr.min():.6g}")


def _classify_diffusion(diffusion, ndim: int):
    """('constant', D (ndim,)) | ('full', D (ndim, ndim)) | ('callable', fn)."""
    if callable(diffusion):
        return "callable", diffusion
    if is_traced(diffusion):
        arr = jnp.asarray(diffusion)
    else:
        arr = np.asarray(diffusion, dtype=np.float64)
    if arr.ndim == 0:
        return "constant", jnp.broadcast_to(jnp.asarray(arr), (ndim,))
    if arr.ndim == 1:
        if arr.shape != (ndim,):
            raise ValueError(f"diffusion: per-axis values need {ndim} entries, got {arr.shape[0]}")
        return "constant", jnp.asarray(arr)
    if arr.ndim == 2:
        if arr.shape != (ndim, ndim):
            raise ValueError(f"diffusion: a matrix must be {ndim}×{ndim}, got {arr.shape}")
        if not is_traced(arr):
            if not np.allclose(arr, arr.T, rtol=1e-12, atol=0):
                raise ValueError("diffusion: a diffusion matrix must be symmetric")
            if np.all(arr == np.diag(np.diag(arr))):
                return "constant", jnp.asarray(np.diag(arr))
        return "full", jnp.asarray(arr)
    raise ValueError(f"diffusion: must be a scalar, {ndim} per-axis values, a {ndim}×{ndim} matrix or a callable")


def _check_full(g: Grid, dmat) -> None:
    """Positive definiteness and the monotonicity condition of a full constant D (concrete)."""
    if is_traced(dmat):
        return
    arr = np.asarray(dmat)
    h, d = g.spacing, g.ndim
    if np.linalg.eigvalsh(arr).min() <= 0:
        raise ValueError("diffusion: a diffusion matrix must be positive definite")
    for a in range(d):
        reduced = arr[a, a] - sum(abs(arr[a, b]) * h[a] / h[b] for b in range(d) if b != a)
        if reduced <= 0:
            hints = [
                f"h_{a}/h_{b} in ({abs(arr[a, b]) / arr[b, b]:.4g}, {arr[a, a] / abs(arr[a, b]):.4g})"
                for b in range(d) if b != a and arr[a, b] != 0
            ]
            raise ValueError(
                f"diffusion: the off-diagonal entries are too large for a monotone (Markov) stencil on "
                f"this grid: D_{a}{a} − Σ_b |D_{a}b| h_{a}/h_b = {reduced:.4g} ≤ 0. Choose the cell aspect "
                f"ratios so that every reduced diagonal is positive ({'; '.join(hints)} for each pair)"
            )


def _cross_pairs(dmat, ndim: int) -> tuple:
    """Static (a, b, s) diagonal-jump directions: the sign of D_ab (both when traced)."""
    pairs = []
    for a in range(ndim):
        for b in range(a + 1, ndim):
            if is_traced(dmat):
                pairs += [(a, b, 1), (a, b, -1)]
                continue
            value = float(np.asarray(dmat)[a, b])
            if value != 0.0:
                pairs.append((a, b, 1 if value > 0 else -1))
    return tuple(pairs)


def _reduce_full(g: Grid, dmat: Array, pairs: tuple):
    """Axis diffusions D'_aa and the diagonal-jump rates of a full constant D."""
    h, d = g.spacing, g.ndim
    diag = [dmat[a, a] - sum(jnp.abs(dmat[a, b]) * h[a] / h[b] for b in range(d) if b != a) for a in range(d)]
    rates = tuple(
        jnp.maximum(s * dmat[a, b], 0.0) / (h[a] * h[b]) * jnp.asarray(_cross_mask(g, a, b, s), dmat.dtype)
        for a, b, s in pairs
    )
    return jnp.stack(diag), rates


def _potential_array(g: Grid, potential):
    """Check a potential given as cell-centre values (callables are evaluated in _build)."""
    values = potential if is_traced(potential) else np.asarray(potential, dtype=np.float64)
    if np.shape(values) != g.shape:
        raise ValueError(
            f"potential: must be a callable x (ndim,) -> scalar or one value per cell, shape {g.shape}, "
            f"got shape {np.shape(values)}"
        )
    if not is_traced(values) and not np.all(np.isfinite(values)):
        raise ValueError("potential: non-finite values at some cell centres")
    return values


@functools.partial(jax.jit, static_argnames=("fn",))
def _sample_jit(fn: Callable, points: Array) -> Array:
    out = jax.vmap(fn)(points.reshape(-1, points.shape[-1]))
    return out.reshape(points.shape[:-1] + out.shape[1:])


def sample(fn: Callable, points: np.ndarray, dtype=None) -> Array:
    """``fn`` at every point (…, ndim) → (…, *fn's output shape); one compiled program
    per (fn, shape) so that repeated generators do not retrace user callables."""
    dtype = dtype or jnp.result_type(float)
    return _sample_jit(fn, jnp.asarray(points, dtype))


def _edge_nodes(g: Grid, axis: int) -> np.ndarray:
    """The 3 Gauss–Legendre nodes on every edge along ``axis``: (3, *shape, ndim)."""
    return np.stack([_edge_points(g, axis, node) for node in _GL_NODES])


def _edge_integral(values: Array, h: float) -> Array:
    """∫ along each edge from the values at its 3 Gauss–Legendre nodes (axis 0)."""
    return h * sum(w * values[k] for k, w in enumerate(_GL_WEIGHTS))


class _Samples(NamedTuple):
    """The callables of a generator evaluated on the grid (arrays; None where unused).

    u: U at the cell centres. drift_nodes[a]: b_a at the Gauss–Legendre nodes of the
    axis-a edges (3, *shape). d_const: constant per-axis D (ndim,) or the full matrix.
    d_cells: D (*shape, ndim) at the centres; d_faces[a]: D_a at the face midpoints
    (potential case) or at the nodes (3, *shape) (drift case).
    """

    u: Array | None = None
    drift_nodes: tuple | None = None
    d_const: Array | None = None
    d_cells: Array | None = None
    d_faces: tuple | None = None


@functools.partial(jax.jit, static_argnames=("g", "kind", "pairs", "clock"))
def _build(g: Grid, kind: str, pairs: tuple, clock: str, samples: _Samples, clock_scale) -> Generator:
    """Edge rates from sampled arrays (one compiled program per grid and kind)."""
    cross = ()
    dconst = None
    if kind == "constant":
        dconst = samples.d_const
    elif kind == "full":
        dconst, cross = _reduce_full(g, samples.d_const, pairs)
    forward, backward = [], []
    for a in range(g.ndim):
        h = g.spacing[a]
        mask = jnp.asarray(_face_mask(g, a), samples.d_const.dtype if dconst is not None else samples.d_cells.dtype)
        u_step = None if samples.u is None else jnp.roll(samples.u, -1, axis=a) - samples.u
        if dconst is not None:
            if u_step is not None:
                delta = u_step / dconst[a]
            else:
                delta = -_edge_integral(samples.drift_nodes[a], h) / dconst[a]
            f, b = _rates(delta * mask, dconst[a], dconst[a], h, mask)
        else:
            d_here = samples.d_cells[..., a]
            if u_step is not None:
                delta = u_step / jnp.where(mask > 0, samples.d_faces[a], 1.0)
            else:
                delta = -_edge_integral(samples.drift_nodes[a] / samples.d_faces[a], h)
            f, b = _rates(delta * mask, d_here, jnp.roll(d_here, -1, axis=a), h, mask)
        forward.append(f * clock_scale)
        backward.append(b * clock_scale)
    cross = tuple(r * clock_scale for r in cross)
    return Generator(tuple(forward), tuple(backward), cross, g, pairs, (False,) * g.ndim, clock)


def _check_samples(g: Grid, kind: str, samples: _Samples) -> None:
    """Concrete checks of the sampled callables (skipped inside a trace)."""
    if samples.u is not None and not is_traced(samples.u) and not np.all(np.isfinite(np.asarray(samples.u))):
        raise ValueError("potential: non-finite values at some cell centres")
    if samples.drift_nodes is not None and not is_traced(samples.drift_nodes):
        if not all(np.all(np.isfinite(np.asarray(v))) for v in samples.drift_nodes):
            raise ValueError("drift: non-finite values on some edges of the grid")
    if kind == "callable":
        _check_positive_values(samples.d_cells, "diffusion", "at every cell centre")
        for a, d_face in enumerate(samples.d_faces):
            mask = _face_mask(g, a).astype(bool)
            values = d_face if is_traced(d_face) else np.asarray(d_face)[..., mask]
            _check_positive_values(values, "diffusion", "on every face")


def _sample_callables(g: Grid, kind: str, potential, drift, dvalue, dtype) -> _Samples:
    u = None
    if potential is not None:
        u = sample(potential, g.points(), dtype) if callable(potential) else jnp.asarray(potential, dtype)
        if u.shape != g.shape:
            raise ValueError("potential: a callable must map a point of shape (ndim,) to a scalar")
    drift_nodes = None
    if drift is not None:
        nodes = [sample(drift, _edge_nodes(g, a), dtype) for a in range(g.ndim)]
        if any(v.shape != (3,) + g.shape + (g.ndim,) for v in nodes):
            raise ValueError(f"drift: must map a point of shape ({g.ndim},) to a vector of shape ({g.ndim},)")
        drift_nodes = tuple(v[..., a] for a, v in enumerate(nodes))
    if kind != "callable":
        return _Samples(u=u, drift_nodes=drift_nodes, d_const=jnp.asarray(dvalue, dtype))
    d_cells = _per_axis_diffusion(sample(dvalue, g.points(), dtype), g.shape, g.ndim)
    faces = []
    for a in range(g.ndim):
        if u is not None:
            faces.append(_per_axis_diffusion(sample(dvalue, _edge_points(g, a, 0.5), dtype), g.shape, g.ndim)[..., a])
        else:
            values = sample(dvalue, _edge_nodes(g, a), dtype)
            faces.append(_per_axis_diffusion(values, (3,) + g.shape, g.ndim)[..., a])
    return _Samples(u=u, drift_nodes=drift_nodes, d_cells=d_cells, d_faces=tuple(faces))


def generator_from_samples(g: Grid, kind: str, samples: _Samples, pairs: tuple, clock_scale, clock: str) -> Generator:
    """Check sampled callables, build the rates, check them (shared with fp.generator)."""
    _check_samples(g, kind, samples)
    gen = _build(g, kind, pairs, clock, samples, clock_scale)
    _check_finite(gen)
    return gen


@float64_entry
def langevin_generator(
    grid: Grid,
    *,
    potential: Callable | Array | None = None,
    drift: Callable | None = None,
    diffusion: Diffusion,
    clock_scale: float = 1.0,
    clock: str = "equation",
) -> Generator:
    """The generator of ∂p/∂t = ∇·(∇U p) + Σ_ij ∂_i∂_j(D_ij p) on ``grid`` (see the module).

    potential: U as a callable ``x (ndim,) -> scalar`` or its values at the cell centres
      (drift −∇U, exact discrete Boltzmann equilibrium); or
    drift: a field ``x (ndim,) -> b (ndim,)``, integrated along each edge.
    diffusion: a scalar D > 0 (isotropic), per-axis constants (diagonal), a constant
      symmetric positive definite d×d matrix (full; see the monotonicity condition), or a
      callable ``x -> D(x)`` (scalar or per-axis diagonal, Itô form ∂_a∂_a(D_a p)).
    clock_scale: multiplies every rate (changes the time unit); ``clock`` names it.
    Callables are evaluated once on the grid (one compiled program per callable and grid
    shape; pass the same function object to reuse it), the rates by one program per grid.
    """
    g = _check_grid(grid)
    if (potential is None) == (drift is None):
        raise ValueError("potential/drift: give exactly one of them")
    if drift is not None and not callable(drift):
        raise ValueError("drift: must be a callable x -> b(x) of shape (ndim,)")
    if potential is not None and not callable(potential):
        potential = _potential_array(g, potential)
    kind, dvalue = _classify_diffusion(diffusion, g.ndim)
    pairs = ()
    if kind == "constant":
        _check_positive_values(dvalue, "diffusion", "(every axis)")
    elif kind == "full":
        _check_full(g, dvalue)
        pairs = _cross_pairs(dvalue, g.ndim)
    samples = _sample_callables(g, kind, potential, drift, dvalue, jnp.result_type(float))
    return generator_from_samples(g, kind, samples, pairs, clock_scale, clock)


def _check_finite(gen: Generator) -> None:
    leaves = jax.tree_util.tree_leaves(gen)
    if is_traced(leaves):
        return
    for leaf in leaves:
        arr = np.asarray(leaf)
        if not np.all(np.isfinite(arr)):
            raise ValueError("potential/drift/diffusion: the edge rates are not finite (overflow: rescale U/D)")
        if np.any(arr < 0):
            raise ValueError("diffusion: negative rates (the diffusion must be positive)")
