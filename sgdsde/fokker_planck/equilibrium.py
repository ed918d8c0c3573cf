"""The stationary state of a generator (:func:`stationary`) and its backward error
(:func:`residual`).

Stationary state: 1-D with zero-flux boundaries is a birth–death chain, always in
detailed balance: m_{i+1}/m_i = k⁺_i/k⁻_i, summed in log space (exact to rounding).
Otherwise G m = 0, Σ m = 1 is solved by the pinned sparse LU, or as m = u + δ, u
uniform, K δ = G u among zero-mass vectors by preconditioned GMRES (refinement passes),
to ω = ‖G m‖/‖|G||m|‖ ≤ ``tol``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._precision import float64_entry, is_traced, to_host
from .diagnostics import _check_generator, _check_mass, _check_solver, _require_converged, _warn_peclet
from .linalg import (
    backward_error,
    detailed_balance_1d,
    detailed_balance_nd,
    direct_stationary,
    has_exact_1d_equilibrium,
    may_be_reversible,
    mean_zero_solve,
)
from .operator import Generator

_detailed_balance = jax.jit(detailed_balance_1d)
_detailed_balance_nd = jax.jit(detailed_balance_nd)
# relative mismatch of the log-mass relation below which a generator counts as reversible:
# rounding of cumulative sums over ≤ 10⁴ faces in float64 stays below 1e-12
_REVERSIBLE_TOL = 1e-10

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
      ≈ 560², 3-D up to 32³ cells), else Krylov (``evolve`` also factorises larger grids
      when its steps repay the factorisation; a stationary state is one solve).

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
