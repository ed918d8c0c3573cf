"""Linear solvers: implicit steps (I + cK) x = y and stationary problems (σ + K) x = r,
σ ≥ 0, with K = −G (pure JAX, CPU/GPU).

- **1-D**: one tridiagonal solve (``jax.lax.linalg.tridiagonal_solve``; periodic axes by
  Sherman–Morrison on the cyclic system), in flux form (see :func:`line_solve`). Direct,
  exact to rounding.
- **2-D / 3-D, direct** (``solver="direct"``): SciPy SuperLU factors of 1/c + K or of the
  pinned K (:mod:`.sparse`), cached per (rates, c); exact to rounding.
- **2-D / 3-D, Krylov** (``solver="krylov"``): restarted GMRES (right preconditioned, classical Gram–Schmidt applied
  twice, true residual checked at every restart), matrix free. Preconditioners, built
  from batched tridiagonal line solves along each axis:
  one cycle (6 steps) of Douglas ADI, x ← x + Π_a (I + τ_j K_a)⁻¹ τ_j (r − (σ + K) x),
  over geometric pseudo-time steps τ_j from 1/λ_max up to Δt (implicit steps) or to
  1/(1e-6 λ_max) (stationary problems), which damps every error frequency in turn; for
  small Δt it is the approximate factorisation Π_a (I + Δt K_a)⁻¹, iterated. Diagonal
  jumps (full diffusion matrices) enter the line solves through their exit rates only
  (a regular splitting). Typical counts, nearly independent of the grid size: 8–14
  iterations per implicit step, ~15 per 1e-8 residual reduction of a stationary solve.
  Krylov directions are projected onto zero-mass vectors (exactly where they belong:
  the line operators have zero column sums), so with a mass-consistent initial guess the
  correction has zero total mass: mass is conserved to rounding whatever the tolerance.
  The solve is wrapped in ``jax.lax.custom_linear_solve`` (transposed operator and
  preconditioner for the adjoint), so ``jax.grad`` differentiates through it implicitly.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .operator import Generator
from .sparse import direct_solve, host_factor, pinned_mask

__all__ = ["line_solve", "implicit_solve", "mean_zero_solve", "gmres", "detailed_balance_1d", "spectral_bound"]


# ------------------------------------------------------------------- tridiagonal lines
def _tridiagonal(lower, diag, upper, rhs, periodic: bool):
    """Solve a (cyclic) tridiagonal system along the last axis of ``rhs``; ``lower[i]``
    multiplies x_{i−1}, ``upper[i]`` x_{i+1} (for a cyclic system ``lower[0]`` and
    ``upper[-1]`` are the corner entries; Sherman–Morrison)."""
    if not periodic:
        x = lax.linalg.tridiagonal_solve(lower.at[..., 0].set(0.0), diag, upper.at[..., -1].set(0.0), rhs[..., None])
        return x[..., 0]
    alpha, beta = lower[..., 0], upper[..., -1]
    gamma = -diag[..., 0]
    d = diag.at[..., 0].add(-gamma).at[..., -1].add(-alpha * beta / gamma)
    u = jnp.zeros_like(rhs).at[..., 0].set(gamma).at[..., -1].set(beta)
    # two separate solves (not one with two right-hand sides): the u-solve does not depend
    # on rhs, which keeps the map rhs ↦ x linear for jax.linear_transpose
    solve = lambda b: lax.linalg.tridiagonal_solve(  # noqa: E731
        lower.at[..., 0].set(0.0), d, upper.at[..., -1].set(0.0), b[..., None]
    )[..., 0]
    y, z = solve(rhs), solve(u)
    v_dot = lambda w: w[..., 0] + (alpha / gamma) * w[..., -1]  # noqa: E731
    return y - (v_dot(y) / (1.0 + v_dot(z)))[..., None] * z


def line_solve(gen: Generator, axis: int, c, y):
    """Solve (I + c K_axis) x = y along ``axis`` (batched over the other axes), c > 0.

    Flux form: with F_i = k⁺_i x_i − k⁻_i x_{i+1} the face fluxes of the solution,
    x = y − c (F_i − F_{i−1}), and F solves the row-diagonally dominant system
    (1 + c(k⁺_i + k⁻_i)) F_i − c k⁺_i F_{i−1} − c k⁻_i F_{i+1} = k⁺_i y_i − k⁻_i y_{i+1}.
    The update is a telescoping difference of fluxes, so Σx = Σy up to the rounding of
    the final additions, without bias: mass does not drift over long runs (a direct
    solve for x loses ~1e-15 of mass per step to the solver's backward error).
    """
    f = jnp.moveaxis(gen.forward[axis], axis, -1)
    b = jnp.moveaxis(gen.backward[axis], axis, -1)
    r = jnp.moveaxis(y, axis, -1)
    source = f * r - b * jnp.roll(r, -1, axis=-1)
    flux = _tridiagonal(-c * f, 1.0 + c * (f + b), -c * b, source, gen.grid.periodic[axis])
    x = r - c * (flux - jnp.roll(flux, 1, axis=-1))
    return jnp.moveaxis(x, -1, axis)


def _mass_line_solve(gen: Generator, axis: int, shift, rhs):
    """Solve (shift·I + K_axis) x = rhs for x directly (mass form); for tiny shifts,
    where the flux form's system degenerates (used by the 1-D singular preconditioner)."""
    lower, diag, upper = (jnp.moveaxis(v, axis, -1) for v in gen.line(axis, shift))
    x = _tridiagonal(lower, diag, upper, jnp.moveaxis(rhs, axis, -1), gen.grid.periodic[axis])
    return jnp.moveaxis(x, -1, axis)


def _cross_share(gen: Generator):
    """Each axis' share of the diagonal-jump exit rates (zero without cross terms): the
    preconditioners treat them implicitly, the diagonal-jump inflow explicitly (a regular
    splitting of the M-matrix K), which keeps ADI stable with strong cross-diffusion."""
    if not gen.cross_pairs:
        return None
    exit_cross = jnp.zeros(gen.grid.shape, gen.dtype)
    for (a, b, s), rate in zip(gen.cross_pairs, gen.cross):
        exit_cross = exit_cross + rate + jnp.roll(rate, (1, s), axis=(a, b))
    return exit_cross / gen.grid.ndim


def _precondition_line(gen: Generator, axis: int, c, y, share):
    """Solve (I + c(K_axis + diag(share))) x = y (the preconditioners' line operator)."""
    if share is None:
        return line_solve(gen, axis, c, y)
    lower, diag, upper = (jnp.moveaxis(v, axis, -1) for v in gen.line(axis, 0.0))
    extra = jnp.moveaxis(share, axis, -1)
    x = _tridiagonal(c * lower, 1.0 + c * (diag + extra), c * upper, jnp.moveaxis(y, axis, -1), gen.grid.periodic[axis])
    return jnp.moveaxis(x, -1, axis)


# ------------------------------------------------------------------------------ GMRES
class KrylovInfo(NamedTuple):
    """Relative residual ‖b − A x‖/‖b‖ reached and the number of GMRES iterations."""

    residual: jax.Array
    iterations: jax.Array


def _gmres_core(matvec, precond, b, x0, tol, restart: int, max_restarts: int, atol=0.0):
    """Restarted right-preconditioned GMRES on flat vectors (Givens rotations, stops a
    cycle as soon as the estimated residual meets max(tol·‖b‖, atol)). Returns x and
    KrylovInfo (residual relative to ‖b‖)."""
    n = b.shape[0]
    dtype = b.dtype
    b_norm = jnp.linalg.norm(b)
    scale = jnp.where(b_norm > 0, b_norm, 1.0)
    target = jnp.maximum(tol * scale, atol)

    def cycle(x):
        r = b - matvec(x)
        beta = jnp.linalg.norm(r)
        basis = jnp.zeros((restart + 1, n), dtype).at[0].set(r / jnp.where(beta > 0, beta, 1.0))
        directions = jnp.zeros((restart, n), dtype)  # M v_j (flexible-GMRES storage: M is inlined once)
        tri = jnp.zeros((restart + 1, restart), dtype)
        cs = jnp.zeros(restart, dtype)
        sn = jnp.zeros(restart, dtype)
        g = jnp.zeros(restart + 1, dtype).at[0].set(beta)

        def cond(state):
            j, _, _, _, _, _, g = state
            return (j < restart) & (jnp.abs(g[j]) > target)

        def body(state):
            j, basis, directions, tri, cs, sn, g = state
            z = precond(basis[j])
            directions = directions.at[j].set(z)
            w = matvec(z)
            h = basis @ w
            w = w - basis.T @ h
            h2 = basis @ w  # second Gram–Schmidt pass (numerical orthogonality)
            w = w - basis.T @ h2
            h = h + h2
            norm = jnp.linalg.norm(w)
            basis = basis.at[j + 1].set(w / jnp.where(norm > 0, norm, 1.0))
            h = h.at[j + 1].set(norm)

            def rotate(i, h):
                hi, hn = h[i], h[i + 1]
                new = jnp.where(i < j, jnp.stack([cs[i] * hi + sn[i] * hn, -sn[i] * hi + cs[i] * hn]), jnp.stack([hi, hn]))
                return h.at[i].set(new[0]).at[i + 1].set(new[1])

            h = lax.fori_loop(0, restart, rotate, h)
            denom = jnp.hypot(h[j], h[j + 1])
            safe = jnp.where(denom > 0, denom, 1.0)
            c, s_ = jnp.where(denom > 0, h[j] / safe, 1.0), jnp.where(denom > 0, h[j + 1] / safe, 0.0)
            h = h.at[j].set(denom).at[j + 1].set(0.0)
            g = g.at[j + 1].set(-s_ * g[j]).at[j].set(c * g[j])
            return j + 1, basis, directions, tri.at[:, j].set(h), cs.at[j].set(c), sn.at[j].set(s_), g

        k, basis, directions, tri, _, _, g = lax.while_loop(cond, body, (0, basis, directions, tri, cs, sn, g))
        used = jnp.arange(restart) < k
        upper = jnp.where(used[:, None] & used[None, :], tri[:restart], jnp.eye(restart, dtype=dtype))
        diag = jnp.diagonal(upper)
        upper = upper.at[jnp.arange(restart), jnp.arange(restart)].set(jnp.where(diag != 0, diag, 1.0))
        y = jax.scipy.linalg.solve_triangular(upper, jnp.where(used, g[:restart], 0.0), lower=False)
        return x + directions.T @ y, k

    def residual(x):
        return jnp.linalg.norm(b - matvec(x)) / scale

    def cond(state):
        _, k, _, res, previous = state
        stalled = res > 0.5 * previous  # no progress over a whole cycle: the rounding floor
        return (k < max_restarts) & (res * scale > target) & ~stalled

    def body(state):
        x, k, its, res, _ = state
        x, used = cycle(x)
        return x, k + 1, its + used, residual(x), res

    res0 = residual(x0)
    x, _, its, res, _ = lax.while_loop(cond, body, (x0, 0, 0, res0, jnp.full_like(res0, jnp.inf)))
    return x, KrylovInfo(res, its)


def gmres(
    matvec: Callable, b, x0, precond: Callable, *, tol: float, atol=0.0, restart: int = 30, max_restarts: int = 50
):
    """Solve A x = b (A = ``matvec``, arrays of any shape) by restarted GMRES with the right
    preconditioner ``precond`` ≈ A⁻¹ to ‖b − A x‖ ≤ max(tol‖b‖, atol); differentiable by
    implicit differentiation (the adjoint solve uses the transposed preconditioner)."""
    shape = b.shape
    flat = lambda f: (lambda v: f(v.reshape(shape)).reshape(-1))  # noqa: E731
    a_flat, m_flat = flat(matvec), flat(precond)
    x0_flat = x0.reshape(-1)

    def solve(mv, rhs):
        return _gmres_core(mv, m_flat, rhs, x0_flat, tol, restart, max_restarts, atol)

    def transpose_solve(vm, rhs):
        m_t = jax.linear_transpose(m_flat, rhs)
        return _gmres_core(vm, lambda v: m_t(v)[0], rhs, jnp.zeros_like(rhs), tol, restart, max_restarts)

    x, info = lax.custom_linear_solve(a_flat, b.reshape(-1), solve, transpose_solve, has_aux=True)
    return x.reshape(shape), info


# ---------------------------------------------------------------------- preconditioners
def spectral_bound(gen: Generator):
    """An upper bound on |λ(G)|: twice the largest exit rate (Gershgorin, columns)."""
    return 2.0 * jnp.max(gen.exit_rates())


def _douglas_cycle(gen: Generator, sigma, tau_max, num_shifts: int = 6):
    """One cycle of Douglas ADI for (σ + K) x = r from x = 0 with the splitting
    A_a = K_a + σ/d (+ the diagonal-jump exit rates): x ← x + Π_a (I + τ_j A_a)⁻¹ τ_j
    (r − (σ + K) x), with pseudo-time steps τ_j geometric from 1/λ_max (λ_max the
    Gershgorin bound) up to ``tau_max`` (all equal to tau_max when that is smaller): the
    short steps damp the fast error components, the long ones the slow ones."""
    top = spectral_bound(gen)
    d = gen.grid.ndim
    share = _cross_share(gen)
    tau_min = jnp.minimum(1.0 / top, tau_max)
    growth = (tau_max / tau_min) ** (1.0 / (num_shifts - 1.0))

    def apply(r):
        def shift(j, x):
            tau = tau_min * growth**j
            y = tau * (r - (sigma * x - gen.apply(x)))
            damp = 1.0 + tau * sigma / d  # I + τ A_a = damp · (I + (τ/damp) K_a)
            for a in range(d):
                y = _precondition_line(gen, a, tau / damp, y, share) / damp
            return x + y

        return lax.fori_loop(0, num_shifts, shift, jnp.zeros_like(r))

    return apply


_STEP_SHIFTS = 3  # pseudo-time steps of the ADI cycle preconditioning an implicit step
_STATIONARY_SPAN = 1e-6  # stationary solves: pseudo-time steps up to 1/(1e-6 λ_max)


# ----------------------------------------------------------------------------- solves
def _zero_mass(precond: Callable) -> Callable:
    """The preconditioner followed by the projection onto zero-mass vectors. Exact
    Krylov directions have zero mass (the residual of a mass-consistent guess has, and
    I + cK, K and the line solves preserve it); the projection removes their rounding,
    so a correction changes the total mass only by the rounding of the last addition."""

    def apply(r):
        z = precond(r)
        return z - jnp.mean(z)

    return apply


def backward_error(gen: Generator, x, y=None, shift=0.0):
    """ω = ‖y − (σ + K)x‖ / ‖σ|x| + |K||x| + |y|‖ (2-norms; y = 0 when None), the relative
    backward error of x: the residual against the size of the terms it sums, whose rounding
    is ≈ (stencil size)·ε of the denominator. With K = −G = diag(e) − O (e the exit rates,
    O ≥ 0 the jump rates), |K||x| = e|x| + O|x| = 2e|x| − K|x|. Scale free: the implicit
    step (I + cK)x = y is σ = 1/c with y/c; the stationary state is σ = 0, y = 0."""
    weight = shift + 2.0 * gen.exit_rates()
    return _backward_error(gen.apply(x), gen.apply(jnp.abs(x)), weight, x, y, shift, jnp, jnp.linalg.norm)


def _host_norm(v: np.ndarray) -> float:
    """‖v‖₂ in NumPy as √Σv² (SIMD): BLAS ``dot`` (which ``np.linalg.norm`` calls) is ~1000×
    slower on vectors with subnormal squares (masses in the far tails), which XLA flushes to
    zero but NumPy keeps."""
    return float(np.sqrt(np.sum(np.square(v))))


def _backward_error(g_x, g_abs_x, weight, x, y, shift, xp, norm, ax=None):
    """:func:`backward_error` from G x, G|x| and weight = σ + 2e (e the exit rates of G),
    in the array module ``xp`` with ``norm`` (jax.numpy in a trace, NumPy on the host
    path, which computes the weight once per factor, and |x| once for G|x| and here)."""
    ax = xp.abs(x) if ax is None else ax
    if xp is np:  # the same arithmetic in place: one temporary per term, not one per operation
        abs_terms, residual = np.multiply(weight, ax), np.multiply(shift, x)
        abs_terms += g_abs_x
        residual -= g_x
        if y is not None:
            np.subtract(y, residual, out=residual)
            abs_terms += np.abs(y)
    else:
        abs_terms = weight * ax + g_abs_x
        residual = shift * x - g_x
        if y is not None:
            residual, abs_terms = y - residual, abs_terms + xp.abs(y)
    scale = norm(abs_terms)
    return norm(residual) / xp.where(scale > 0, scale, 1.0)


def _project_mass(x, x0, xp):
    """x with the total mass of x0: the correction x − x0 has zero mass in exact
    arithmetic, so its mean (the solver's rounding) is removed. NumPy (the host path,
    where x is the solver's own fresh array): the same arithmetic in place, so the same
    bits with no temporaries."""
    if xp is np:
        x -= x0
        x -= x.mean()
        x += x0
        return x
    delta = x - x0
    return x0 + (delta - xp.mean(delta))


def implicit_solve(gen: Generator, c, y, x0, *, tol: float = 1e-11, solver: str = "krylov"):
    """Solve (I + c K) x = y, c > 0 (an implicit step: c = Δt for backward Euler).

    1-D: direct (flux form). 2-D/3-D, ``solver="direct"``: the cached sparse LU factor of
    1/c + K (:mod:`.sparse`, factorised once per (rates, c)). ``solver="krylov"``: GMRES
    from ``x0`` (a guess with Σx0 = Σy, e.g. the previous state), preconditioned by a
    Douglas ADI cycle with pseudo-time steps up to c (for c·λ_max ≲ 1 this is the
    approximate factorisation Π_a (I + cK_a)⁻¹ iterated). Either way the correction x − x0
    is projected onto zero mass (mass conserved to rounding whatever the tolerance).
    Returns x and its backward error ω (:func:`backward_error`).
    """
    if gen.grid.ndim == 1 and not gen.cross_pairs:
        return line_solve(gen, 0, c, y), jnp.zeros((), y.dtype)
    if solver == "direct":
        x = direct_solve(gen, 1.0 / c, y / c)
    else:

        def matvec(x):
            return x - c * gen.apply(x)

        # ≈ (1/c + K)⁻¹ = c (I + cK)⁻¹ with 3 pseudo-time steps: fewer than the stationary
        # solve's 6 (whose span is 10⁶), since an implicit step's span c·λ_max is short;
        # measured fastest (1–4 more GMRES iterations, each half the cost) for 2-D 64²–256²
        # and 3-D 32³–48³ at dt = 0.05–5: 1.2–1.6× faster a solve; at dt = 50 in 3-D 13% slower
        cycle = _douglas_cycle(gen, 1.0 / c, c, num_shifts=_STEP_SHIFTS)
        x, _ = gmres(matvec, y, x0, _zero_mass(lambda r: cycle(r) / c), tol=tol)
    x = _project_mass(x, x0, jnp)
    return x, backward_error(gen, x, y / c, 1.0 / c)


def host_implicit_solver(gen: Generator, c: float):
    """``solve(y, x0) -> (x, ω)`` for (I + cK) x = y on the host, for concrete rates and
    flat (C-order) float64 vectors: the cached SuperLU factor of 1/c + K
    (:func:`.sparse.host_factor`), the same mass projection and backward error as
    :func:`implicit_solve` in NumPy. Used by ``evolve`` when nothing is traced: the whole
    time loop then runs on the host with no per-solve crossing between XLA and Python
    (≈ 0.15–0.6 ms a solve on small grids). ``check=False`` skips the backward error
    (returned as 0.0): it costs 2–3 sparse and vector passes, as much again as the
    back-solve on a 64² grid, and depends on the factor rather than on y (see
    :func:`.stepping._evolve_host`, which checks the first and the last solve)."""
    factor = host_factor(gen, 1.0 / c)
    gmat = factor.generator
    weight = 1.0 / c + 2.0 * -gmat.diagonal()  # σ + 2e, e the exit rates

    def solve(y, x0, check: bool = True):
        rhs = y / c
        x = _project_mass(factor.lu.solve(rhs), x0, np)
        if not check:
            return x, 0.0
        g_x = gmat @ x
        # masses are mostly ≥ 0, and then G|x| = Gx: one sparse product instead of two
        # (SciPy's product with a two-column block is ~5× slower than one with a vector)
        abs_x = np.abs(x)
        g_abs_x = g_x if x.min() >= 0 else gmat @ abs_x
        omega = _backward_error(g_x, g_abs_x, weight, x, rhs, 1.0 / c, np, _host_norm, abs_x)
        return x, float(omega)

    return solve


def detailed_balance_1d(gen: Generator):
    """Stationary mass of a 1-D zero-flux chain (a birth–death chain is always in detailed
    balance): m_{i+1}/m_i = k⁺_i/k⁻_i, accumulated in log space and normalised."""
    f, b = gen.forward[0][:-1], gen.backward[0][:-1]
    tiny = jnp.finfo(f.dtype).tiny  # a rate that underflowed (Péclet ≳ 700) saturates, not NaN
    log_m = jnp.concatenate([jnp.zeros(1, f.dtype), jnp.cumsum(jnp.log(jnp.maximum(f, tiny)) - jnp.log(jnp.maximum(b, tiny)))])
    return jnp.exp(log_m - jax.scipy.special.logsumexp(log_m))


def detailed_balance_nd(gen: Generator):
    """Candidate stationary mass of a zero-flux generator in detailed balance, any
    dimension: log m(x + e_a) − log m(x) = log k⁺_a(x) − log k⁻_a(x), accumulated along
    axis 0, then axis 1, … from the corner cell. Returns (mass, mismatch): ``mismatch`` is
    the largest violation of that relation over *all* faces (the Kolmogorov cycle
    condition); it is at rounding level exactly when the generator is reversible (e.g.
    gradient drift with constant isotropic noise), and then ``mass`` is its equilibrium
    to rounding — no iterative solve, whatever the temperature."""
    g = gen.grid
    shape = g.shape
    tiny = jnp.finfo(gen.forward[0].dtype).tiny
    deltas = []
    for a in range(g.ndim):
        f, b = gen.forward[a], gen.backward[a]
        last = [slice(None)] * g.ndim
        last[a] = slice(0, shape[a] - 1)
        deltas.append((jnp.log(jnp.maximum(f, tiny)) - jnp.log(jnp.maximum(b, tiny)))[tuple(last)])
    log_m = jnp.zeros(shape, gen.forward[0].dtype)
    for a in range(g.ndim):
        # the path along axis a, taken at index 0 of every later axis, broadcast over the rest
        index = tuple(slice(None) if i <= a else slice(0, 1) for i in range(g.ndim))
        step = deltas[a][index]
        pad = [(0, 0)] * g.ndim
        pad[a] = (1, 0)
        log_m = log_m + jnp.cumsum(jnp.pad(step, pad), axis=a)
    mismatch = jnp.zeros((), log_m.dtype)
    for a in range(g.ndim):
        lo = [slice(None)] * g.ndim
        hi = [slice(None)] * g.ndim
        lo[a], hi[a] = slice(0, shape[a] - 1), slice(1, None)
        mismatch = jnp.maximum(mismatch, jnp.max(jnp.abs(log_m[tuple(hi)] - log_m[tuple(lo)] - deltas[a])))
    scale = jnp.max(jnp.abs(log_m)) + 1.0
    return jnp.exp(log_m - jax.scipy.special.logsumexp(log_m)), mismatch / scale


def may_be_reversible(gen: Generator) -> bool:
    """Zero-flux axes only, no diagonal jumps, no pure transport: the cases where
    :func:`detailed_balance_nd` can apply (it checks reversibility itself)."""
    return not gen.cross_pairs and not any(gen.advective) and not any(gen.grid.periodic)


def has_exact_1d_equilibrium(gen: Generator) -> bool:
    g = gen.grid
    return g.ndim == 1 and not g.periodic[0] and not gen.cross_pairs and not gen.advective[0]


def _mean_zero_direct(gen: Generator, sigma):
    """1-D preconditioner on zero-mass vectors: (ε + K)⁻¹ with a tiny shift
    ε = max(σ, 1e-10·λ_max), then the projection x − π Σx along the stationary vector π,
    which removes the rounding that 1/ε amplifies along π exactly. Nearly exact: GMRES
    converges in one or two iterations."""
    eps = jnp.maximum(1e-10 * spectral_bound(gen), sigma)
    pi = detailed_balance_1d(gen)

    def apply(r):
        x = _mass_line_solve(gen, 0, eps, r)
        return x - pi * jnp.sum(x)

    return apply


def mean_zero_solve(gen: Generator, rhs, *, sigma=0.0, tol: float = 1e-14, atol=0.0):
    """Solve (σ I + K) x = rhs among zero-mass vectors (Σ rhs = 0 ⇒ Σ x = 0); σ ≥ 0 may
    be 0, where K is singular but invertible on that subspace (its null vector, the
    stationary state, has mass 1). GMRES preconditioned by a direct solve (1-D) or a
    Douglas ADI cycle (2-D/3-D), to ‖rhs − (σ+K)x‖ ≤ max(tol‖rhs‖, atol). Returns x and
    the relative residual reached.
    """

    def matvec(x):
        return sigma * x - gen.apply(x)

    if has_exact_1d_equilibrium(gen):
        precond = _mean_zero_direct(gen, sigma)
    else:
        precond = _zero_mass(_douglas_cycle(gen, sigma, 1.0 / (_STATIONARY_SPAN * spectral_bound(gen))))
    x, info = gmres(matvec, rhs, jnp.zeros_like(rhs), precond, tol=tol, atol=atol)
    return x, info.residual


# ------------------------------------------------------------------- direct, pinned
def _pinned_solve(gen: Generator, rhs, pin):
    """x with x_pin = 0 solving K x = rhs off the pinned cell (the factor of A_pin)."""
    keep = pinned_mask(gen.grid.shape, pin).astype(rhs.dtype)
    return direct_solve(gen, 0.0, keep * rhs, pin) * keep


def direct_stationary(gen: Generator):
    """The stationary mass by one sparse LU solve: K(x + e_r) = 0, x_r = 0, normalised.
    The pinned cell r is the heaviest cell of the detailed-balance candidate (exact for
    reversible generators), re-chosen as the heaviest cell of the result if that one holds
    < 1e-3 of the largest mass (keeps x = π/π_r − e_r away from overflow)."""
    shape = gen.grid.shape

    def solve(pin):
        unit = jnp.zeros(gen.grid.size, gen.dtype).at[pin].set(1.0).reshape(shape)
        m = _pinned_solve(gen, gen.apply(unit), pin) + unit
        return m / jnp.sum(m)

    first = jnp.argmax(detailed_balance_nd(gen)[0])
    m = solve(first)
    heaviest = jnp.argmax(m)
    m = lax.cond(m.reshape(-1)[first] < 1e-3 * m.reshape(-1)[heaviest], solve, lambda _: m, heaviest)
    return m, backward_error(gen, m)


def direct_inverse(gen: Generator, pi, v):
    """K⁻¹ v among zero-mass vectors (v zero-mass), projected along π: x − π Σx, by the
    factor of A_r pinned at the heaviest cell of π."""
    x = _pinned_solve(gen, v, jnp.argmax(pi))
    return x - pi * jnp.sum(x), backward_error(gen, x, v)
