"""The :class:`Generator` type — a Markov generator on the grid's cells (its rates, dmass/dt,
face fluxes, exit rates, line coefficients) — and the Scharfetter–Gummel edge rates it is
built from (:func:`bernoulli`). The discretisation: :mod:`sgdsde.fokker_planck.operator`."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .grid import Grid


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


def _rates(delta_psi, d_here, d_next, h, mask):
    """The Scharfetter–Gummel rates across each face: k⁺ = D_here B(Δψ)/h², k⁻ = D_next B(−Δψ)/h²
    (zero where ``mask`` is, i.e. where the face does not exist)."""
    forward = d_here * bernoulli(delta_psi) / h**2
    backward = d_next * bernoulli(-delta_psi) / h**2
    return forward * mask, backward * mask
