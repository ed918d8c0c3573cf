"""What the solvers share: the checks of their arguments, the cell Péclet diagnostic of
grid resolution, the choice of linear solver (``solver="auto"``) and the convergence
contract (a solve that stops above ``tol`` raises :class:`ConvergenceError`), with the
warnings and errors they raise."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ._precision import is_traced
from .operator import Generator
from .sparse import cached_factor, direct_memory_entries, estimated_factor_entries, krylov_steps, system_key

SOLVERS = ("auto", "direct", "krylov")
DIRECT_MAX_ENTRIES = 3e7  # LU factor entries (≈ 0.4 GB with indices) up to which "auto" factorises
PECLET_LIMIT = 2.0  # cell Péclet number above which the scheme is upwind-like (first order)
_RELEVANT_MASS = 1e-3  # cells holding ≥ this fraction of the largest cell mass count


class CoarseGridWarning(UserWarning):
    """The grid is too coarse where the probability mass lives (large cell Péclet number)."""


class ConvergenceWarning(RuntimeWarning):
    """A diagnostic of an eigen-estimate: ``spectral_gap``'s Ritz pair fails its a-posteriori
    check. (Linear solves that stop above their tolerance raise :class:`ConvergenceError`.)"""


class ConvergenceError(RuntimeError):
    """A linear solve (stationary state or implicit step) stopped above its tolerance: no
    result is returned. The message names the backward error reached and what to try."""


# ---------------------------------------------------------------------- validation
def _check_generator(gen) -> Generator:
    if not isinstance(gen, Generator):
        raise ValueError(
            f"gen: must be a fokker_planck.Generator (fp.generator, fp.langevin_generator, "
            f"fp.momentum_generator), got {type(gen).__name__}"
        )
    return gen


def _check_mass(gen: Generator, mass, name: str = "mass0"):
    shape = gen.grid.shape
    if np.shape(mass) != shape:
        raise ValueError(f"{name}: must have the grid's shape {shape}, got {np.shape(mass)}")
    if is_traced(mass):
        return jnp.asarray(mass)
    arr = np.asarray(mass, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values")
    if arr.min() < 0:
        raise ValueError(f"{name}: masses must be ≥ 0, got minimum {arr.min():.3g}")
    if abs(arr.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"{name}: must be a probability mass per cell summing to 1, sums to {arr.sum():.9g} "
            "(build it with fp.gaussian, fp.point_mass or fp.from_density)"
        )
    return jnp.asarray(arr)


def _positive_number(value, name: str) -> float:
    try:
        out = float(value)
    except Exception as err:
        raise ValueError(f"{name}: must be a concrete number, got {value!r}") from err
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return out


def peclet_numbers(gen: Generator) -> tuple:
    """Cell Péclet number |Δψ| = |log(k⁺/k⁻)| per face and axis, as float64 NumPy arrays
    (NaN where the face does not exist or the axis is advective; an underflowed rate
    counts as Péclet ≈ 700)."""
    out = []
    for a, (f, b) in enumerate(zip(gen.forward, gen.backward)):
        f, b = np.asarray(f, np.float64), np.asarray(b, np.float64)
        face = ((f > 0) | (b > 0)) & (not gen.advective[a])
        tiny = np.finfo(np.float64).tiny
        ratio = np.log(np.maximum(f, tiny)) - np.log(np.maximum(b, tiny))
        out.append(np.where(face, np.abs(ratio), np.nan))
    return tuple(out)


def _warn_peclet(gen: Generator, mass) -> None:
    """Warn when the cell Péclet number exceeds PECLET_LIMIT where the mass lives."""
    if is_traced(gen, mass):
        return
    m = np.asarray(mass)
    relevant = m >= _RELEVANT_MASS * m.max()
    worst = 0.0
    for a, pe in enumerate(peclet_numbers(gen)):
        near = relevant | np.roll(relevant, -1, axis=a)
        values = pe[near & np.isfinite(pe)]
        if values.size:
            worst = max(worst, float(values.max()))
    if worst > PECLET_LIMIT:
        warnings.warn(
            f"cell Péclet number {worst:.3g} > {PECLET_LIMIT:g} where the probability mass lives: the drift "
            f"changes the density by a factor e^{worst:.3g} across one cell, so the grid cannot resolve it and "
            "the result is meaningless (upwind-like, first-order accurate). Refine the grid.",
            CoarseGridWarning,
            stacklevel=3,
        )


def direct_break_even_steps(shape: tuple) -> float:
    """The number of implicit steps above which factorising once and back-solving beats the
    ADI-preconditioned Krylov solves, for a grid whose factor has more than
    DIRECT_MAX_ENTRIES entries. A cost model with E = :func:`estimated_factor_entries` and
    N cells, fitted to TR-BDF2 steps of dt = 0.5 in 3-D on 2 EPYC cores (32³, 48³):
    factorisation ≈ 24 s·(E/10⁸)^1.5 (nested-dissection-like fill: work ∝ E^1.5), the two
    back-solves of a step ≈ 1.5 ns·E, a Krylov step ≈ 7.5 µs·N. At 48³ that is 67 steps
    (41 s to factorise; then 0.21 s a step against 0.83 s). Either choice gives the same
    answer to rounding; on other machines the crossover moves."""
    entries, cells = estimated_factor_entries(shape), float(np.prod(shape))
    factor_s = 24.0 * (entries / 1e8) ** 1.5
    saved_per_step_s = 7.5e-6 * cells - 1.5e-9 * entries
    return math.inf if saved_per_step_s <= 0 else factor_s / saved_per_step_s


def _check_solver(gen: Generator, solver: str, steps: int | None = None, shift: float | None = None) -> str:
    """``"direct"`` or ``"krylov"`` for a solver option. ``"auto"``: direct when the
    estimated LU factor has ≤ DIRECT_MAX_ENTRIES entries (2-D up to ≈ 560², 3-D up to 32³).
    Above that, Krylov unless the factor fits in :func:`direct_memory_entries` and an evolve
    of ``steps`` implicit steps repays it. For an evolve of concrete rates whose system
    σI + K (σ = ``shift``) is known, that is decided like renting against buying (the
    ski-rental rule: by the cost model, at most about twice the time of the better choice in
    hindsight): direct when its factor is already cached (only back-solves are left), or
    when the Krylov steps already run on this system (:func:`.sparse.krylov_steps`) plus
    these ``steps`` reach :func:`direct_break_even_steps` (3-D 48³: 67 steps), so a loop of
    short evolves of one system factorises once the Krylov work would have paid for it;
    each Krylov choice is added to that ledger (the system's :func:`.sparse.system_key` is
    computed once per call). Otherwise (traced rates, no ``shift``) direct when ``steps``
    alone reach the break-even."""
    if solver not in SOLVERS:
        raise ValueError(f"solver: must be one of {SOLVERS}, got {solver!r}")
    if solver != "auto":
        return solver
    shape = gen.grid.shape
    entries = estimated_factor_entries(shape)
    if entries <= DIRECT_MAX_ENTRIES:
        return "direct"
    if steps is None or entries > direct_memory_entries():
        return "krylov"
    system = system_key(gen, shift) if shift is not None and not is_traced(gen) else None
    if system is not None and cached_factor(system) is not None:
        return "direct"
    earlier = krylov_steps(system) if system is not None else 0.0
    if earlier + steps >= direct_break_even_steps(shape):
        return "direct"
    if system is not None:
        krylov_steps(system, add=steps)
    return "krylov"


def _require_converged(value, residual, tol: float, what: str, solver: str):
    """``value`` if the backward error ``residual`` ≤ ``tol``; otherwise raise
    ConvergenceError (concrete) or return NaNs (inside a user's trace, which cannot raise)."""
    if is_traced(residual, value):
        flag = jnp.where(jnp.max(residual) <= tol, 1.0, jnp.nan)  # a product: derivatives turn NaN too
        return jax.tree_util.tree_map(lambda v: v * flag.astype(v.dtype), value)
    reached = float(np.max(np.asarray(residual)))
    if not math.isfinite(reached):
        raise FloatingPointError(f"{what}: the linear solver produced non-finite values")
    if reached > tol:
        hint = (
            'solver="direct" (a sparse LU factorisation, exact to rounding; "auto" uses it up to about 560² '
            'cells in 2-D and 32³ in 3-D)' if solver == "krylov"
            else "a tol above the rounding floor (≈ 1e-15: the factorisation is exact to rounding)"
        )
        raise ConvergenceError(
            f"{what}: the {solver} solve stopped at backward error {reached:.3g} > tol = {tol:.3g}; no result "
            f"is returned. Try {hint}, a larger tol if {reached:.1g} is accurate enough for your use, or fewer "
            "cells / a smaller time step."
        )
    return value
