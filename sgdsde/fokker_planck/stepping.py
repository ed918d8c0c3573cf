"""Time stepping: :func:`evolve` and its implicit schemes.

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
``"auto"``: direct while the factor is small, or while it fits and the steps repay it):
:mod:`sgdsde.fokker_planck.linalg`. A solve whose backward error ω stays above ``tol``
raises :class:`ConvergenceError`.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._precision import float64_entry, is_traced, to_host
from .diagnostics import _check_generator, _check_mass, _check_solver, _positive_number, _require_converged, _warn_peclet
from .linalg import host_implicit_solver, implicit_solve
from .operator import Generator

METHODS = ("backward_euler", "tr_bdf2")
_GAMMA = 2.0 - math.sqrt(2.0)


class Solution(NamedTuple):
    """``times`` (float64 NumPy, on the generator's clock) and ``mass`` (num_times, *shape),
    the mass per cell at each saved time (t = 0 and t_final included): float64 NumPy, or
    a JAX array when computed inside a user's trace."""

    times: np.ndarray
    mass: Array


# ------------------------------------------------------------------------- stepping
def _step(solve, mass, dt, method: str, maximum=jnp.maximum):
    """One step of ``method``; ``solve(c, y, x0) -> (x, ω)`` solves (I + cK) x = y. Plain
    arithmetic, so the same function steps JAX arrays in the compiled loop and NumPy
    arrays in the host loop (``maximum=max`` on its float backward errors)."""
    if method == "backward_euler":
        return solve(dt, mass, mass)
    c = _solve_coefficient(method, dt)
    # trapezoid: (I + cK)⁻¹(I − cK) m = 2 (I + cK)⁻¹ m − m, which avoids the large
    # intermediate m + cG m (its rounding would leak ~ε·cΔt·rate of mass per step)
    half, res1 = solve(c, mass, mass)
    stage = 2.0 * half - mass
    # (m_γ − (1 − γ)² m)/(γ(2 − γ)) written as m_γ + b (m_γ − m): no mass bias from rounding
    b = (1.0 - _GAMMA) ** 2 / (_GAMMA * (2.0 - _GAMMA))
    out, res2 = solve(c, stage + b * (stage - mass), stage)
    return out, maximum(res1, res2)


_SOLVES_PER_STEP = {"backward_euler": 1, "tr_bdf2": 2}  # implicit solves of one step of _step


def _solve_coefficient(method: str, dt: float) -> float:
    """The c of the system (I + cK) that ``method`` solves at every step: Δt for backward
    Euler, γΔt/2 = (1 − γ)Δt/(2 − γ) = (1 − 1/√2)Δt for both TR-BDF2 stages."""
    return dt if method == "backward_euler" else (1.0 - 1.0 / math.sqrt(2.0)) * dt


@partial(jax.jit, static_argnames=("steps_per_save", "num_saves", "remainder", "method", "tol", "solver"))
def _evolve(gen, mass0, dt, *, steps_per_save: int, num_saves: int, remainder: int, method: str, tol: float, solver: str):
    def advance(carry, num_steps):
        def body(_, c):
            m, worst = c
            solve = lambda c, y, x0: implicit_solve(gen, c, y, x0, tol=tol, solver=solver)  # noqa: E731
            m, res = _step(solve, m, dt, method)
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


def _evolve_host(gen: Generator, mass0, dt: float, *, steps_per_save: int, num_saves: int, remainder: int,
                 method: str):
    """:func:`_evolve` on the host for concrete rates with the direct solver: the same
    steps (:func:`_step`) with NumPy arrays (flat, C order) and SuperLU back-solves,
    factorised once per (generator, Δt) and cached across calls. Returns the saved masses
    and the worst ω over the solves it checks: the first and the last. A back-solve's
    backward error is set by the factor, not by the right-hand side: (A + ΔA) x̂ = y with
    |ΔA| ≤ γ_3n |L||U| for any y (Higham, Accuracy and Stability of Numerical Algorithms,
    Thm 9.4), and these M-matrices factorise without pivoting with growth ≤ 2
    (:mod:`.sparse`), so every solve of one factor meets the same rounding-level bound
    (measured over every solve of 20–50 TR-BDF2 steps on 64²–256², 32³ and a
    full-noise 128² generator: 8e-17 … 2.3e-16, the first and the last within 1.5× of the
    largest). Checking each solve doubled the time of a 64² step; non-finite masses are
    still caught at the end."""
    mass = np.asarray(mass0, np.float64).reshape(-1)
    saved, worst = [mass], 0.0
    if num_saves or remainder:
        solve_system = host_implicit_solver(gen, _solve_coefficient(method, dt))
        last = (num_saves * steps_per_save + remainder) * _SOLVES_PER_STEP[method] - 1
        done = [0]

        def solve(c, y, x0):  # c is the factor's, fixed
            check = done[0] in (0, last)
            done[0] += 1
            return solve_system(y, x0, check)

        for segment in [steps_per_save] * num_saves + ([remainder] if remainder else []):
            for _ in range(segment):
                mass, res = _step(solve, mass, dt, method, max)
                worst = max(worst, res)
            saved.append(mass)
    return np.stack(saved).reshape((len(saved),) + gen.grid.shape), worst


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
    solver: ``"direct"`` (sparse LU, factorised once per (generator, dt), cached across calls
      and reused at every step), ``"krylov"`` (ADI-preconditioned GMRES) or ``"auto"``
      (direct when the factor is small, see :func:`stationary`; for larger grids, such as
      3-D 48³, direct when the factor fits in memory and the steps of this call, plus the
      Krylov steps earlier calls ran on the same rates and Δt, repay the factorisation,
      else Krylov: repeated evolves of one system factorise once Krylov would have paid for
      it, and then only back-solve; 48³ at 10 steps a call: six Krylov calls of 8.5 s, one
      of 45 s that factorises, then 2 s a call). Direct and Krylov agree to ``tol``, not bit
      for bit: pass ``"direct"`` or ``"krylov"`` for bit-for-bit repeatable calls.
    Raises :class:`ConvergenceError` if any step stops above ``tol`` (inside a user's trace:
    NaN masses instead). Returns :class:`Solution` (times, mass). In 2-D/3-D with the direct
    solver and concrete inputs the time loop runs on the host (NumPy, SuperLU back-solves:
    nothing to compile); otherwise it is jit-compiled per (grid, step counts). The
    result is differentiable with respect to the generator's parameters (``jax.grad``
    through ``fp.generator`` with respect to η, S, σ² works).
    """
    gen = _check_generator(gen)
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
    # the solver's cost model counts TR-BDF2 steps (two solves each); σ of the system σI + K
    # the steps solve, as the direct path factorises it (host_implicit_solver)
    shift = 1.0 / _solve_coefficient(method, step) if num_steps else None
    solver = _check_solver(gen, solver, num_steps * _SOLVES_PER_STEP[method] // 2, shift)
    _warn_peclet(gen, mass0)
    counts = dict(steps_per_save=steps_per_save, num_saves=num_saves, remainder=remainder, method=method)
    if solver == "direct" and (gen.grid.ndim > 1 or gen.cross_pairs) and not is_traced(gen, mass0):
        mass, worst = _evolve_host(gen, mass0, step, **counts)  # no XLA ↔ Python crossing per solve
        mass = mass.astype(gen.dtype)
    else:
        mass, worst = _evolve(
            gen.structural(), mass0.astype(gen.dtype), jnp.asarray(step, gen.dtype), **counts, tol=tol, solver=solver)
    times = np.concatenate([np.arange(num_saves + 1) * steps_per_save * step, [t_final] if remainder else []])
    if num_steps == 0:
        mass, times = mass[:1], np.zeros(1)
    mass = _require_converged(mass, worst, tol, "evolve", solver)
    if not is_traced(mass) and not np.all(np.isfinite(np.asarray(mass[-1]))):
        raise FloatingPointError("evolve: non-finite masses (check the generator's rates)")
    return Solution(times, to_host(mass))
