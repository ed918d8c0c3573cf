"""Time stepping, the stationary state and the spectral gap of a generator.

Clock: times are on the generator's clock (``gen.clock``: SGD steps for
``fp.generator(..., clock="steps")``, SME time for ``clock="sme"``).

Schemes for dm/dt = G m (m: mass per cell):

- ``"backward_euler"``: (I − Δt G) m' = m. First order, L-stable; (I − Δt G)⁻¹ is a
  non-negative matrix (G is a Markov generator), so masses stay ≥ 0 for any Δt.
- ``"tr_bdf2"`` (default): trapezoidal stage to t + γΔt, γ = 2 − √2, then BDF2,
  both with the matrix (I + cΔt K), c = γ/2 = 1 − 1/√2:
      (I − cΔt G) m_γ = (I + cΔt G) m      (computed as m_γ = 2(I − cΔt G)⁻¹m − m),
      (I − cΔt G) m'  = (m_γ − (1 − γ)² m) / (γ(2 − γ)).
  Second order, L-stable. Positivity is guaranteed only for cΔt·max exit rate ≤ 1
  (the explicit half of the trapezoid); beyond it small negative undershoots of
  rough data are possible and decay (L-stability). Use backward Euler when strict
  positivity matters more than accuracy.

Both conserve mass exactly (zero column sums; corrections projected onto zero mass).
Linear solvers (``solver="direct"``: sparse LU; ``"krylov"``: ADI-preconditioned GMRES;
``"auto"``: direct while the factor fits): :mod:`sgdsde.fokker_planck.linalg`. A solve
whose backward error ω stays above ``tol`` raises :class:`ConvergenceError`.

Stationary state: 1-D with zero-flux boundaries is a birth–death chain, always in
detailed balance: m_{i+1}/m_i = k⁺_i/k⁻_i, summed in log space (exact to rounding).
Otherwise G m = 0, Σ m = 1 is solved by the pinned sparse LU, or as m = u + δ, u
uniform, K δ = G u among zero-mass vectors by preconditioned GMRES (refinement passes),
to ω = ‖G m‖/‖|G||m|‖ ≤ ``tol``.

Spectral gap λ₁ = the smallest non-zero −Re λ(G) (relaxation time 1/λ₁, on the
generator's clock): shift-invert Arnoldi on K⁻¹ restricted to zero-mass vectors (where
K = −G is invertible), whose largest eigenvalues 1/λ_k converge first; the small
Hessenberg eigenproblem is solved on the host (NumPy). For gradient drift with constant
diagonal noise, G is similar to a symmetric matrix (conjugation by the Boltzmann
weights), so its spectrum is real and Arnoldi behaves like Lanczos. The Ritz pair is
checked a posteriori: ‖G y + λ y‖/(|λ|‖y‖) > 1e-4 warns (ConvergenceWarning).
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._precision import float64_entry, is_traced, to_host
from .linalg import (
    backward_error,
    detailed_balance_1d,
    direct_inverse,
    direct_stationary,
    detailed_balance_nd,
    has_exact_1d_equilibrium,
    implicit_solve,
    may_be_reversible,
    mean_zero_solve,
)
from .operator import Generator
from .sparse import estimated_factor_entries

__all__ = [
    "Solution",
    "evolve",
    "stationary",
    "spectral_gap",
    "residual",
    "CoarseGridWarning",
    "ConvergenceError",
    "ConvergenceWarning",
    "PECLET_LIMIT",
    "SOLVERS",
]

METHODS = ("backward_euler", "tr_bdf2")
SOLVERS = ("auto", "direct", "krylov")
DIRECT_MAX_ENTRIES = 3e7  # LU factor entries (≈ 0.4 GB with indices) up to which "auto" factorises
PECLET_LIMIT = 2.0  # cell Péclet number above which the scheme is upwind-like (first order)
_RELEVANT_MASS = 1e-3  # cells holding ≥ this fraction of the largest cell mass count
_GAMMA = 2.0 - math.sqrt(2.0)


class CoarseGridWarning(UserWarning):
    """The grid is too coarse where the probability mass lives (large cell Péclet number)."""


class ConvergenceWarning(RuntimeWarning):
    """A diagnostic of an eigen-estimate: ``spectral_gap``'s Ritz pair fails its a-posteriori
    check. (Linear solves that stop above their tolerance raise :class:`ConvergenceError`.)"""


class ConvergenceError(RuntimeError):
    """A linear solve (stationary state or implicit step) stopped above its tolerance: no
    result is returned. The message names the backward error reached and what to try."""


class Solution(NamedTuple):
    """``times`` (float64 NumPy, on the generator's clock) and ``mass`` (num_times, *shape),
    the mass per cell at each saved time (t = 0 and t_final included): float64 NumPy, or
    a JAX array when computed inside a user's trace."""

    times: np.ndarray
    mass: Array


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


def _check_solver(gen: Generator, solver: str) -> str:
    """``"direct"`` or ``"krylov"`` for a solver option; ``"auto"``: direct when the
    estimated LU factor has ≤ DIRECT_MAX_ENTRIES entries (2-D up to ≈ 560², 3-D up to 32³)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver: must be one of {SOLVERS}, got {solver!r}")
    if solver != "auto":
        return solver
    return "direct" if estimated_factor_entries(gen.grid.shape) <= DIRECT_MAX_ENTRIES else "krylov"


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


# ------------------------------------------------------------------------- stepping
def _step(gen: Generator, mass, dt, method: str, tol: float, solver: str):
    if method == "backward_euler":
        return implicit_solve(gen, dt, mass, mass, tol=tol, solver=solver)
    c = (1.0 - 1.0 / math.sqrt(2.0)) * dt  # γΔt/2 = (1 − γ)Δt/(2 − γ)
    # trapezoid: (I + cK)⁻¹(I − cK) m = 2 (I + cK)⁻¹ m − m, which avoids the large
    # intermediate m + cG m (its rounding would leak ~ε·cΔt·rate of mass per step)
    half, res1 = implicit_solve(gen, c, mass, mass, tol=tol, solver=solver)
    stage = 2.0 * half - mass
    # (m_γ − (1 − γ)² m)/(γ(2 − γ)) written as m_γ + b (m_γ − m): no mass bias from rounding
    b = (1.0 - _GAMMA) ** 2 / (_GAMMA * (2.0 - _GAMMA))
    out, res2 = implicit_solve(gen, c, stage + b * (stage - mass), stage, tol=tol, solver=solver)
    return out, jnp.maximum(res1, res2)


@partial(jax.jit, static_argnames=("steps_per_save", "num_saves", "remainder", "method", "tol", "solver"))
def _evolve(gen, mass0, dt, *, steps_per_save: int, num_saves: int, remainder: int, method: str, tol: float, solver: str):
    def advance(carry, num_steps):
        def body(_, c):
            m, worst = c
            m, res = _step(gen, m, dt, method, tol, solver)
            return m, jnp.maximum(worst, res)

        return jax.lax.fori_loop(0, num_steps, body, carry)

    def segment(carry, _):
        carry = advance(carry, steps_per_save)
        return carry, carry[0]

    carry = (mass0, jnp.zeros((), mass0.dtype))
    carry, saved = jax.lax.scan(segment, carry, None, length=num_saves)
    if remainder:
        carry = advance(carry, remainder)
        saved = jnp.concatenate([saved, carry[0][None]], axis=0)
    return jnp.concatenate([mass0[None], saved], axis=0), carry[1]


@float64_entry
def evolve(
    gen: Generator,
    mass0: Float[Array, "*shape"],
    t_final: float,
    *,
    dt: float,
    method: str = "tr_bdf2",
    save_every: int | None = None,
    tol: float = 1e-11,
    solver: str = "auto",
) -> Solution:
    """Evolve the mass per cell from ``mass0`` to ``t_final`` (generator's clock).

    dt: the time step (rounded down so that a whole number of steps hits t_final).
    method: ``"tr_bdf2"`` (second order, L-stable; default) or ``"backward_euler"``
      (first order, positive for any dt); see the module docstring.
    save_every: save every this many steps (an int; default: only t = 0 and t_final).
    tol: the backward error ω each implicit solve must reach (2-D/3-D; 1-D solves are
      exact tridiagonal solves): ω = ‖y − (I + ΔtK)x‖/‖|I + ΔtK||x| + |y|‖.
    solver: ``"direct"`` (sparse LU, factorised once per (generator, dt) and reused at every
      step), ``"krylov"`` (ADI-preconditioned GMRES) or ``"auto"`` (direct when the factor
      fits, see :func:`stationary`).
    Raises :class:`ConvergenceError` if any step stops above ``tol`` (inside a user's trace:
    NaN masses instead). Returns :class:`Solution` (times, mass). Jit-compiled per (grid, step counts); the
    result is differentiable with respect to the generator's parameters (``jax.grad``
    through ``fp.generator`` with respect to η, S, σ² works).
    """
    gen = _check_generator(gen)
    solver = _check_solver(gen, solver)
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    mass0 = _check_mass(gen, mass0)
    t_final = float(t_final)
    if not math.isfinite(t_final) or t_final < 0:
        raise ValueError(f"t_final: must be a finite time ≥ 0, got {t_final!r}")
    dt = _positive_number(dt, "dt")
    num_steps = max(1, math.ceil(t_final / dt - 1e-9)) if t_final > 0 else 0
    if save_every is None:
        steps_per_save = max(num_steps, 1)
    elif isinstance(save_every, bool) or not isinstance(save_every, (int, np.integer)) or save_every < 1:
        raise ValueError(f"save_every: must be a positive integer number of steps, got {save_every!r}")
    else:
        steps_per_save = int(save_every)
    num_saves, remainder = divmod(num_steps, steps_per_save)
    step = t_final / num_steps if num_steps else 0.0
    _warn_peclet(gen, mass0)
    mass, worst = _evolve(
        gen.structural(), mass0.astype(gen.dtype), jnp.asarray(step, gen.dtype),
        steps_per_save=steps_per_save, num_saves=num_saves, remainder=remainder, method=method, tol=tol,
        solver=solver,
    )
    times = np.concatenate([np.arange(num_saves + 1) * steps_per_save * step, [t_final] if remainder else []])
    if num_steps == 0:
        mass, times = mass[:1], np.zeros(1)
    mass = _require_converged(mass, worst, tol, "evolve", solver)
    if not is_traced(mass) and not np.all(np.isfinite(np.asarray(mass[-1]))):
        raise FloatingPointError("evolve: non-finite masses (check the generator's rates)")
    return Solution(times, to_host(mass))


# ----------------------------------------------------------------------- stationary
_detailed_balance = jax.jit(detailed_balance_1d)
_detailed_balance_nd = jax.jit(detailed_balance_nd)
# relative mismatch of the log-mass relation below which a generator counts as reversible:
# rounding of cumulative sums over ≤ 10⁴ faces in float64 stays below 1e-12
_REVERSIBLE_TOL = 1e-10
_GAP_TOLERANCE = 1e-4
_apply = jax.jit(lambda gen, mass: gen.apply(mass))

_PASS_TOL = 1e-8  # relative reduction asked of each refinement pass
_MAX_PASSES = 6


@jax.jit
def _stationary_krylov(gen: Generator, tol):
    """m = u + Σ δ_k from the uniform u: passes K δ = G m among zero-mass vectors, each
    reducing the residual by ≈ 1e-8 (iterative refinement: a pass's rounding floor is
    relative to its own, shrinking right-hand side) or to the target, until the backward
    error ω = ‖G m‖/‖|G||m|‖ ≤ tol. Returns m and ω."""
    m0 = jnp.full(gen.grid.shape, 1.0 / gen.grid.size, gen.dtype)

    def cond(state):
        k, _, res = state
        return (k < _MAX_PASSES) & (res > tol)

    def body(state):
        k, m, res = state
        target = 0.5 * tol * jnp.linalg.norm(gen.apply(m)) / res  # ‖G m‖ at ω = tol/2
        delta, _ = mean_zero_solve(gen, gen.apply(m), tol=_PASS_TOL, atol=target)
        m = m + delta
        return k + 1, m, backward_error(gen, m)

    _, m, res = jax.lax.while_loop(cond, body, (0, m0, backward_error(gen, m0)))
    return m, res


_stationary_direct = jax.jit(direct_stationary)


def _reversible_equilibrium(gen: Generator):
    """The exact equilibrium by detailed-balance products when the generator is concrete and
    reversible (relation checked on every face), else None (use a linear solve)."""
    if not may_be_reversible(gen) or is_traced(gen.forward, gen.backward):
        return None
    candidate, mismatch = _detailed_balance_nd(gen.structural())
    return candidate if float(mismatch) <= _REVERSIBLE_TOL else None


@float64_entry
def stationary(gen: Generator, *, tol: float = 1e-12, solver: str = "auto") -> Float[Array, "*shape"]:
    """The stationary mass per cell: G m = 0, Σ m = 1.

    1-D with zero-flux boundaries: exact detailed balance (log-space products). In 2-D/3-D
    the same products are tried and kept when the generator is reversible (checked on
    every face, e.g. gradient drift with constant isotropic noise): exact at any
    temperature, no iteration. Otherwise a linear solve, by ``solver``:

    - ``"direct"``: one sparse LU factorisation of K with one cell pinned (SciPy SuperLU);
    - ``"krylov"``: ADI-preconditioned GMRES among zero-mass corrections of the uniform
      state, in refinement passes;
    - ``"auto"`` (default): direct when the estimated factor has ≤ 3·10⁷ entries (2-D up to
      ≈ 560², 3-D up to 32³ cells), else Krylov.

    Converged means a backward error ω = ‖G m‖/‖|G||m|‖ ≤ ``tol`` (:func:`residual`; the
    rounding floor is ≈ 1e-16). Raises :class:`ConvergenceError` otherwise (inside a user's
    trace: NaN masses). Masses below rounding that come out negative are set to 0 (then
    renormalised). Warns when the cell Péclet number is too large where the mass lives.
    Differentiable.
    """
    gen = _check_generator(gen)
    solver = _check_solver(gen, solver)
    if has_exact_1d_equilibrium(gen):
        mass = _detailed_balance(gen.structural())
    else:
        mass = _reversible_equilibrium(gen)
    if mass is None:
        if solver == "direct":
            mass, residual = _stationary_direct(gen.structural())
        else:
            mass, residual = _stationary_krylov(gen.structural(), jnp.asarray(tol, gen.dtype))
        mass = _require_converged(mass, residual, tol, "stationary", solver)
        xp = jnp if is_traced(mass) else np
        mass = xp.maximum(xp.asarray(mass), 0.0)
        mass = mass / xp.sum(mass)
    if not is_traced(mass) and not np.all(np.isfinite(np.asarray(mass))):
        raise FloatingPointError("stationary: non-finite masses (check the generator's rates)")
    _warn_peclet(gen, mass)
    return to_host(mass)


_backward_error = jax.jit(backward_error)


@float64_entry
def residual(gen: Generator, mass) -> float:
    """The backward error of a stationary mass, ω = ‖G m‖₂/‖|G||m|‖₂ (|G| the entrywise
    absolute value): the residual relative to the terms it sums, ≈ 1e-16 at the rounding
    floor. ``stationary`` guarantees ω ≤ its ``tol``."""
    gen = _check_generator(gen)
    return float(_backward_error(gen.structural(), jnp.asarray(_check_mass(gen, mass, "mass"), gen.dtype)))


# --------------------------------------------------------------------- spectral gap
@partial(jax.jit, static_argnames=("tol", "solver"))
def _inverse_apply(gen: Generator, pi, v, *, tol: float, solver: str):
    """K⁻¹ v among zero-mass vectors, projected along the stationary π (x − π Σx)."""
    v = v - pi * jnp.sum(v)
    if solver == "direct":
        return direct_inverse(gen, pi, v)
    x, residual = mean_zero_solve(gen, v, tol=tol)
    return x - pi * jnp.sum(x), residual


def spectral_gap(
    gen: Generator, *, num_vectors: int = 30, tol: float = 1e-12, seed: int = 0, solver: str = "auto"
) -> float:
    """The slowest relaxation rate λ₁ > 0 of the generator (on its clock; relaxation time
    1/λ₁): the smallest −Re λ over the non-zero eigenvalues of G.

    Shift-invert Arnoldi with ``num_vectors`` steps on K⁻¹ among zero-mass vectors (each
    step one linear solve: ``solver`` as for :func:`stationary`, one LU factor for all
    steps when direct; 1-D: GMRES with an exact tridiagonal preconditioner). Deterministic
    start vector (``seed``). Not differentiable (the eigenproblem is solved with NumPy).
    The Ritz pair is checked a posteriori; a failed check is a ConvergenceWarning (a
    diagnostic of the eigen-estimate, whose error bound it gives), not an error.
    """
    gen = _check_generator(gen)
    solver = "krylov" if has_exact_1d_equilibrium(gen) else _check_solver(gen, solver)
    if isinstance(num_vectors, bool) or not isinstance(num_vectors, int) or num_vectors < 2:
        raise ValueError(f"num_vectors: must be an integer ≥ 2, got {num_vectors!r}")
    with jax.enable_x64(True):
        shape = gen.grid.shape
        k = min(num_vectors, gen.grid.size - 1)
        pi = jnp.asarray(stationary(gen, solver=solver))
        rng = np.random.default_rng(seed)
        v = rng.standard_normal(gen.grid.size)
        v -= v.mean()
        basis = [v / np.linalg.norm(v)]
        hess = np.zeros((k + 1, k))
        worst = 0.0
        for j in range(k):
            w, res = _inverse_apply(gen.structural(), pi, jnp.asarray(basis[j].reshape(shape)), tol=tol, solver=solver)
            worst = max(worst, float(res))
            w = np.asarray(w, dtype=np.float64).ravel()
            for _ in range(2):  # Gram–Schmidt twice
                for i, q in enumerate(basis):
                    c = q @ w
                    hess[i, j] += c
                    w = w - c * q
            norm = np.linalg.norm(w)
            hess[j + 1, j] = norm
            if norm < 1e-14 * np.abs(hess[: j + 2, j]).max():  # invariant subspace found
                k = j + 1
                break
            basis.append(w / norm)
        if not math.isfinite(worst):
            raise FloatingPointError("spectral_gap: the linear solver produced non-finite values")
        mu, vectors = np.linalg.eig(hess[:k, :k])
        keep = np.abs(mu) > 0
        mu, vectors = mu[keep], vectors[:, keep]
        rates = 1.0 / mu
        index = int(np.argmin(rates.real))
        gap = rates[index]
        # a-posteriori check of the Ritz pair (λ, y): ‖G y + λ y‖/(|λ|‖y‖) bounds the relative
        # error of λ (for the normal, symmetrisable generators of gradient drift); the inner
        # solves' residuals are not a good guide (K is ill-conditioned for metastable problems)
        y = np.stack(basis[:k], axis=1) @ vectors[:, index]
        plain = gen.structural()
        g_y = np.asarray(_apply(plain, jnp.asarray(y.real.reshape(shape)))).ravel()
        g_y = g_y + 1j * np.asarray(_apply(plain, jnp.asarray(y.imag.reshape(shape)))).ravel()
        relative = float(np.linalg.norm(g_y + gap * y) / (abs(gap) * np.linalg.norm(y)))
        if relative > _GAP_TOLERANCE:
            warnings.warn(
                f"spectral_gap: the Ritz pair has relative residual {relative:.3g} > {_GAP_TOLERANCE:g} (an error "
                "bound on λ₁ for symmetrisable generators); increase num_vectors",
                ConvergenceWarning,
                stacklevel=2,
            )
        return float(gap.real)
