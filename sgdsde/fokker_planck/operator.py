"""The finite-volume Fokker–Planck operator (a Markov generator on the grid's cells).

Equation (density p, drift b = −∇U or a given field, diffusion D):

    ∂p/∂t = ∇·(∇U p) + Σ_ij ∂_i ∂_j (D_ij p)          (docs/theory.md §3 with U = ηL, D = η²C/(2S)).

State: ``mass``, the probability mass per cell (shape ``grid.shape``, sums to 1). The
operator is a Markov generator G: dmass/dt = G mass, with non-negative off-diagonal
rates and zero column sums, so mass is conserved exactly and every backward-Euler step
(I − Δt G)⁻¹ is a non-negative matrix.

Fluxes (Scharfetter–Gummel / Chang–Cooper). Across the face between cell i and its
neighbour i+1 along axis a (spacing h), with ψ the "potential in units of D":

    F = k⁺ m_i − k⁻ m_{i+1},   k⁺ = D_i B(Δψ)/h²,   k⁻ = D_{i+1} B(−Δψ)/h²,
    B(x) = x/(eˣ − 1)  (the Bernoulli function; B(−x) = B(x) + x).

- potential U, constant diagonal D: Δψ = (U_{i+1} − U_i)/D_a (loss *differences* between
  neighbouring cells), so k⁺/k⁻ = exp(−ΔU/D_a): detailed balance along every edge, and
  the discrete stationary state is exactly m ∝ exp(−U/D) at the cell centres (isotropic
  D; for diagonal D whenever U/D is a potential, e.g. a separable U).
- drift field b: Δψ = −∫ b_a/D_a along the edge (3-point Gauss–Legendre).
- state-dependent diagonal D(x) (Itô form ∂_a∂_a(D_a p)): the flux acts on q = D p,
  k⁺ = D_a(x_i) B(Δψ)/h², k⁻ = D_a(x_{i+1}) B(−Δψ)/h², Δψ = ΔU/D_a(face) (or the
  integral of −b_a/D_a); the 1-D stationary state is exp(−ψ)/D, as in the continuum.
- constant full D: each off-diagonal D_ab is carried by symmetric jumps to the diagonal
  neighbours (+e_a + s e_b, s = sign D_ab) at rate |D_ab|/(h_a h_b), and the axis
  diffusions are reduced to D'_aa = D_aa − Σ_b |D_ab| h_a/h_b (a Markov generator whose
  continuum limit is Σ_ij D_ij ∂_i∂_j). Monotone iff every D'_aa > 0; in 2-D that holds
  iff |D_ab|/D_bb < h_a/h_b < D_aa/|D_ab| (a range that is never empty for a positive
  definite D): otherwise ``langevin_generator`` raises and names the range. Diagonal
  jumps that would leave a zero-flux box are dropped (no mass crosses the boundary).

Accuracy: second order in h for smooth solutions at moderate cell Péclet number
Pe = |Δψ| (upwind-like, first order, as Pe ≫ 1; the stationary state of gradient drift
with constant isotropic D is exact at any Pe). Rates carry the time unit of the
equation; ``clock_scale`` multiplies them all (``fp.generator`` maps SGD onto steps or
SME time).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._precision import float64_entry, is_traced
from .grid import Grid, _check_grid

__all__ = ["Generator", "langevin_generator", "bernoulli"]

Diffusion = Union[float, Float[Array, " d"], Float[Array, "d d"], Callable]

# 3-point Gauss–Legendre on [0, 1] (exact for polynomials of degree 5)
_GL_NODES = (0.5 - 0.5 * np.sqrt(0.6), 0.5, 0.5 + 0.5 * np.sqrt(0.6))
_GL_WEIGHTS = (5 / 18, 8 / 18, 5 / 18)


def bernoulli(x: Array) -> Array:
    """B(x) = x / (eˣ − 1), B(0) = 1, stable for all x and safe to differentiate.

    Series 1 − x/2 + x²/12 − x⁴/720 for |x| < 1e-2 (truncation < 1e-16); x e⁻ˣ/(1 − e⁻ˣ)
    for x > 0 (no overflow); x/(eˣ − 1) for x < 0.
    """
    x = jnp.asarray(x)
    small = jnp.abs(x) < 1e-2
    xs = jnp.where(small, 1.0, x)  # keep the unused branches finite (and their gradients)
    pos = xs * jnp.exp(-jnp.maximum(xs, 0.0)) / -jnp.expm1(-jnp.where(xs > 0, xs, 1.0))
    neg = xs / jnp.expm1(jnp.where(xs < 0, xs, -1.0))
    series = 1.0 - x / 2 + x**2 / 12 - x**4 / 720
    return jnp.where(small, series, jnp.where(x > 0, pos, neg))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["forward", "backward", "cross"],
    meta_fields=["grid", "cross_pairs", "advective", "clock"],
)
@dataclasses.dataclass(frozen=True)
class Generator:
    """A Markov generator on a grid: dmass/dt = ``apply(mass)``.

    ``forward[a]``/``backward[a]`` (arrays of the grid's shape): the rate from cell x to
    x + e_a and back, stored at x (zero on the last cell of a zero-flux axis; on a
    periodic axis the last entry links the last and the first cell). ``cross[k]``: the
    symmetric rate of the diagonal jumps x ↔ x + e_a + s e_b for ``cross_pairs[k] =
    (a, b, s)`` (full diffusion matrices only). ``advective[a]``: axis without diffusion
    (upwind transport, the θ axis of the momentum form). ``clock``: the time unit.
    A pytree: it can be passed through ``jax.jit`` and differentiated.
    """

    forward: tuple
    backward: tuple
    cross: tuple
    grid: Grid
    cross_pairs: tuple = ()
    advective: tuple = ()
    clock: str = "equation"

    @property
    def dtype(self):
        return jnp.result_type(self.forward[0])

    def structural(self) -> "Generator":
        """The same rates on a canonical grid of the same shape (unit cells from 0), with
        the labels the solvers do not read (clock, advective axes) reset: generators on
        different boxes of one shape share their compiled programs."""
        g = self.grid
        canonical = Grid((0.0,) * g.ndim, tuple(float(n) for n in g.cells), g.cells, g.periodic)
        return dataclasses.replace(self, grid=canonical, advective=(False,) * g.ndim, clock="")

    def face_fluxes(self, mass: Array) -> tuple:
        """Mass crossing each face per unit time, per axis (positive along +e_a), full
        grid shape (entry x: the face between x and x + e_a). Diagonal jumps are routed
        half through each of the two axis-parallel paths, so that
        dmass/dt = −Σ_a (F_a(x) − F_a(x − e_a)) holds exactly."""
        fluxes = [f * mass - b * jnp.roll(mass, -1, axis=a) for a, (f, b) in enumerate(zip(self.forward, self.backward))]
        for (a, b, s), rate in zip(self.cross_pairs, self.cross):
            flow = 0.5 * rate * (mass - jnp.roll(mass, (-1, -s), axis=(a, b)))
            # path 1: x → x + e_a → x + e_a + s e_b ; path 2: x → x + s e_b → x + e_a + s e_b
            fluxes[a] = fluxes[a] + flow + jnp.roll(flow, s, axis=b)
            via_a = jnp.roll(flow, 1, axis=a)
            if s > 0:
                fluxes[b] = fluxes[b] + via_a + flow
            else:
                fluxes[b] = fluxes[b] - jnp.roll(via_a, -1, axis=b) - jnp.roll(flow, -1, axis=b)
        return tuple(fluxes)

    def apply(self, mass: Array) -> Array:
        """dmass/dt = G mass (mass per cell in, mass per cell per unit time out)."""
        out = jnp.zeros_like(mass)
        for a, (f, b) in enumerate(zip(self.forward, self.backward)):
            flux = f * mass - b * jnp.roll(mass, -1, axis=a)
            out = out - flux + jnp.roll(flux, 1, axis=a)
        for (a, b, s), rate in zip(self.cross_pairs, self.cross):
            flow = rate * (mass - jnp.roll(mass, (-1, -s), axis=(a, b)))
            out = out - flow + jnp.roll(flow, (1, s), axis=(a, b))
        return out

    def exit_rates(self) -> Array:
        """Total rate of leaving each cell, −G_xx (shape of the grid)."""
        out = jnp.zeros(self.grid.shape, self.dtype)
        for a, (f, b) in enumerate(zip(self.forward, self.backward)):
            out = out + f + jnp.roll(b, 1, axis=a)
        for (a, b, s), rate in zip(self.cross_pairs, self.cross):
            out = out + rate + jnp.roll(rate, (1, s), axis=(a, b))
        return out

    def line(self, axis: int, shift=0.0):
        """Tridiagonal coefficients (lower, diagonal, upper) of shift·I + K_a along
        ``axis`` (K_a = −G_a, the axis-a part of −G), in the grid's shape. ``lower[i]``
        multiplies x_{i−1}, ``upper[i]`` x_{i+1}; on periodic axes ``lower[0]`` and
        ``upper[-1]`` are the corner (wrap-around) entries."""
        f, b = self.forward[axis], self.backward[axis]
        lower = -jnp.roll(f, 1, axis=axis)
        upper = -b
        diag = f + jnp.roll(b, 1, axis=axis) + shift
        return lower, diag, upper


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


def _rates(delta_psi, d_here, d_next, h, mask):
    forward = d_here * bernoulli(delta_psi) / h**2
    backward = d_next * bernoulli(-delta_psi) / h**2
    return forward * mask, backward * mask


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
