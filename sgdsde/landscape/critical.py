"""Critical points of a loss: minima from many starts, index-1 saddles between them.

Minima. Every start runs a damped, saddle-free Newton method (all starts at once, one
``vmap`` of a ``lax.while_loop``): the step is d = −V |Λ|⁻¹ Vᵀ g from the eigen-
decomposition H = V Λ Vᵀ (|λ| floored at √ε·max|λ|), with a backtracking (Armijo) line
search on L, so every accepted step lowers the loss and negative-curvature directions are
followed downhill; a start that lands exactly on a saddle or maximum (g = 0, λ_min < 0)
is pushed off along the lowest eigenvector. A start has converged when ‖∇L‖_∞ ≤ tol (or
the Newton step is at the rounding level of θ) and H has no eigenvalue below −curvature
tolerance. Converged endpoints closer than ``dedup_tol`` are one minimum; the result is
sorted by loss (deepest first) with the Hessian, its eigenvalues and log det H (float64).

Saddles. For each pair of minima, the simplified string method (E, Ren &
Vanden-Eijnden 2007: images relaxed by gradient descent and redistributed evenly in arc
length) gives the minimum-energy path; its highest image is refined by an index-1
Newton method (uphill along the lowest eigenvector, downhill along the others, trust
region on ‖∇L‖). A saddle is kept when it converged with exactly one negative
eigenvalue; the minima it joins are found by descending from it along ± its unstable
eigenvector, so a path that runs through a third minimum reports the saddle's true
neighbours. Dense Hessians: meant for low-dimensional landscapes (d up to a few hundred).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import ArrayLike, Float

from ._common import (
    CriticalPoint,
    LossFn,
    check_loss_shape,
    curvature_tol,
    default_tol,
    float_dtype,
    format_point,
    resolve_loss,
    spectrum,
    warn,
)

__all__ = ["Minima", "Saddles", "find_minima", "find_saddles", "critical_point", "minima_at"]

_LINE_SEARCH_HALVINGS = 40
_RIDGE_SAMPLES = 65  # per path segment, around the string's highest image
# The kernels are small, control-flow-heavy programs on a few parameters: XLA's backend
# optimisations halve nothing at run time but double the compile time, so skip them.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


# ----------------------------------------------------------------------------- results
class Minima(NamedTuple):
    """Minima found by :func:`find_minima` (k minima, m starts), sorted by loss, float64.

    points (k, d); losses (k,); hessians (k, d, d); eigenvalues (k, d) ascending;
    logdets (k,) = log det H (−inf where degenerate); gradient_norms (k,) ‖∇L‖_∞;
    counts (k,) starts that landed in each; degenerate (k,) True where the Hessian is
    singular to tolerance (Laplace is undefined there);
    per start: converged (m,), labels (m,) (index of its minimum, −1 if it did not
    converge), endpoints (m, d).
    """

    points: np.ndarray
    losses: np.ndarray
    hessians: np.ndarray
    eigenvalues: np.ndarray
    logdets: np.ndarray
    gradient_norms: np.ndarray
    counts: np.ndarray
    degenerate: np.ndarray
    converged: np.ndarray
    labels: np.ndarray
    endpoints: np.ndarray

    @property
    def num_minima(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_failed(self) -> int:
        """Starts that did not converge."""
        return int(np.sum(~self.converged))

    def at(self, i: int) -> CriticalPoint:
        """Minimum i as a :class:`CriticalPoint`."""
        return CriticalPoint(
            self.points[i], float(self.losses[i]), self.hessians[i], self.eigenvalues[i],
            float(self.logdets[i]), 0, float(self.gradient_norms[i]),
        )


class Saddles(NamedTuple):
    """Index-1 saddles found by :func:`find_saddles` (s saddles), sorted by loss, float64.

    points (s, d); losses (s,); hessians (s, d, d); eigenvalues (s, d) ascending;
    negative_eigenvalues (s,) = λ_s < 0; logabsdets (s,) = log|det H_s|;
    connects (s, 2) indices of the two minima the saddle joins (−1: a minimum not in the
    list given); gradient_norms (s,) ‖∇L‖_∞ at the saddle.
    """

    points: np.ndarray
    losses: np.ndarray
    hessians: np.ndarray
    eigenvalues: np.ndarray
    negative_eigenvalues: np.ndarray
    logabsdets: np.ndarray
    connects: np.ndarray
    gradient_norms: np.ndarray

    @property
    def num_saddles(self) -> int:
        return int(self.points.shape[0])

    def at(self, i: int) -> CriticalPoint:
        """Saddle i as a :class:`CriticalPoint`."""
        return CriticalPoint(
            self.points[i], float(self.losses[i]), self.hessians[i], self.eigenvalues[i],
            float(self.logabsdets[i]), 1, float(self.gradient_norms[i]),
        )

    def between(self, a: int, b: int) -> "Saddles":
        """The saddles joining minima a and b (either order), lowest first."""
        pair = np.sort(self.connects, axis=1)
        keep = np.all(pair == np.sort([a, b]), axis=1)
        return Saddles(*(np.asarray(field)[keep] for field in self))


# ------------------------------------------------------------------------ JAX kernels
def _derivatives(loss: LossFn, x):
    f, g = jax.value_and_grad(loss)(x)
    h = jax.hessian(loss)(x)
    return f, g, 0.5 * (h + h.T)


def _eig_floor(lam, eps):
    """|λ| floored at √ε·max|λ| (and the smallest normal number)."""
    scale = jnp.max(jnp.abs(lam))
    floor = jnp.maximum(jnp.sqrt(eps) * scale, jnp.finfo(lam.dtype).tiny)
    return jnp.maximum(jnp.abs(lam), floor)


_derivatives_jit = jax.jit(_derivatives, static_argnums=0, compiler_options=_FAST_COMPILE)


class _MinState(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    h: jax.Array
    steps: jax.Array
    done: jax.Array


def _minimise_one(loss: LossFn, x0, tol, max_steps):
    """Damped saddle-free Newton from x0 (see the module docstring).

    One derivative evaluation per iteration, at the top of the body, so the Hessian
    appears once in the compiled program; the iteration numbered max_steps only
    evaluates, so the returned (f, g, h) always belong to the returned x.
    """
    dtype = x0.dtype
    eps = jnp.asarray(jnp.finfo(dtype).eps, dtype)
    zero = jnp.zeros((), dtype)
    d = x0.shape[0]
    state = _MinState(x0, zero, jnp.zeros(d, dtype), jnp.zeros((d, d), dtype), jnp.zeros((), jnp.int32),
                      jnp.zeros((), bool))

    def cond(s):
        return ~s.done

    def body(s):
        f, g, h = _derivatives(loss, s.x)
        lam, vec = jnp.linalg.eigh(h)
        newton = -vec @ ((vec.T @ g) / _eig_floor(lam, eps))
        xscale = 1.0 + jnp.max(jnp.abs(s.x))
        small = (jnp.max(jnp.abs(g)) <= tol) | (jnp.max(jnp.abs(newton)) <= 4 * eps * xscale)
        ctol = jnp.sqrt(tol) * jnp.maximum(1.0, jnp.max(jnp.abs(lam)))
        negative = lam[0] < -ctol
        finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(h))
        stop = (small & ~negative) | ~finite | (s.steps >= max_steps)
        # on a saddle or maximum: a push along the lowest eigenvector, downhill side
        lowest = vec[:, 0]
        side = jnp.where(g @ lowest > 0, -1.0, 1.0).astype(dtype)
        direction = jnp.where(small & negative, newton + side * 1e-2 * xscale * lowest, newton)
        slope = jnp.minimum(g @ direction, 0.0)
        slack = 8 * eps * jnp.maximum(jnp.abs(f), 1.0)

        def accepted(alpha, f_new):
            return jnp.isfinite(f_new) & (f_new <= f + 1e-4 * alpha * slope + slack)

        def ls_cond(c):
            alpha, f_new, k = c
            return ~stop & ~accepted(alpha, f_new) & (k < _LINE_SEARCH_HALVINGS)

        def ls_body(c):
            alpha, _, k = c
            alpha = 0.5 * alpha
            return alpha, loss(s.x + alpha * direction), k + 1

        two, inf = jnp.asarray(2.0, dtype), jnp.asarray(jnp.inf, dtype)
        alpha, f_new, _ = lax.while_loop(ls_cond, ls_body, (two, inf, jnp.zeros((), jnp.int32)))
        ok = accepted(alpha, f_new) & ~stop
        x_new = jnp.where(ok, s.x + alpha * direction, s.x)
        # stop when converged, or when no step lowers L any more (reported by the caller)
        return _MinState(x_new, f, g, h, s.steps + ok.astype(jnp.int32), stop | ~ok)

    out = lax.while_loop(cond, body, state)
    return out.x, out.f, out.g, out.h, out.steps


@partial(jax.jit, static_argnames=("loss",), compiler_options=_FAST_COMPILE)
def _minimise_padded(loss: LossFn, starts, tol, max_steps):
    return jax.vmap(lambda x0: _minimise_one(loss, x0, tol, max_steps))(starts)


def _bucket(m: int, smallest: int = 16) -> int:
    """Batch sizes are padded to powers of two (at least ``smallest``), so that few shapes
    are ever compiled."""
    return max(smallest, 1 << (m - 1).bit_length())


def _pad(x, size: int):
    return jnp.concatenate([x, jnp.broadcast_to(x[:1], (size - x.shape[0],) + x.shape[1:])])


def _minimise_batch(loss: LossFn, starts, tol, max_steps: int):
    """Newton from every start (padded to a bucket size, one compile per loss and bucket)."""
    m = starts.shape[0]
    padded = _pad(starts, _bucket(m))
    out = _minimise_padded(loss, padded, jnp.asarray(tol, starts.dtype), jnp.asarray(max_steps, jnp.int32))
    return tuple(v[:m] for v in out)


class _SaddleState(NamedTuple):
    x: jax.Array  # the accepted point and its derivatives
    f: jax.Array
    g: jax.Array
    h: jax.Array
    candidate: jax.Array
    radius: jax.Array
    steps: jax.Array
    done: jax.Array


def _string_top(loss: LossFn, a, b, num_images: int, string_steps, curvature):
    """Simplified string method between a and b (gradient step 0.5/curvature, each image
    moving at most half a spacing); returns the highest image, the image spacing and
    whether that image is interior."""
    s = jnp.linspace(0.0, 1.0, num_images, dtype=a.dtype)[:, None]
    path = a + s * (b - a)
    grad = jax.vmap(jax.grad(loss))
    tiny = jnp.finfo(a.dtype).tiny
    dt = 0.5 / jnp.maximum(curvature, tiny)
    uniform = jnp.linspace(0.0, 1.0, num_images, dtype=a.dtype)

    def lengths(p):
        seg = jnp.maximum(jnp.linalg.norm(jnp.diff(p, axis=0), axis=1), tiny)
        return jnp.concatenate([jnp.zeros((1,), p.dtype), jnp.cumsum(seg)])

    def redistribute(p):
        arc = lengths(p)
        arc = arc / arc[-1]
        return jax.vmap(lambda col: jnp.interp(uniform, arc, col), in_axes=1, out_axes=1)(p)

    def body(_, p):
        step = -dt * grad(p)
        spacing = lengths(p)[-1] / (num_images - 1)
        norms = jnp.linalg.norm(step, axis=1, keepdims=True)
        step = step * jnp.minimum(1.0, 0.5 * spacing / jnp.maximum(norms, tiny))
        step = step.at[0].set(0.0).at[-1].set(0.0)
        return redistribute(p + step)

    path = lax.fori_loop(0, string_steps, body, path)
    values = jax.vmap(loss)(path)
    top = jnp.argmax(values)
    interior = (top > 0) & (top < num_images - 1)
    spacing = lengths(path)[-1] / (num_images - 1)
    # the maximum along the path near the top image, sampled finely: on a sharp ridge the
    # images straddle it, and the refinement needs a start inside its negative curvature
    left = path[jnp.maximum(top - 1, 0)]
    right = path[jnp.minimum(top + 1, num_images - 1)]
    mid = path[top]
    frac = jnp.linspace(0.0, 1.0, _RIDGE_SAMPLES, dtype=a.dtype)[:, None]
    samples = jnp.concatenate([left + frac * (mid - left), mid + frac[1:] * (right - mid)])
    best = samples[jnp.argmax(jax.vmap(loss)(samples))]
    return best, spacing, interior


def _refine_saddle(loss: LossFn, x0, radius0, tol, max_steps):
    """Index-1 Newton (uphill along the lowest eigenvector, downhill along the others)
    with a trust region on ‖∇L‖; one derivative evaluation per iteration, at the
    candidate point."""
    dtype = x0.dtype
    eps = jnp.asarray(jnp.finfo(dtype).eps, dtype)
    d = x0.shape[0]
    inf = jnp.asarray(jnp.inf, dtype)
    state = _SaddleState(x0, inf, jnp.full(d, inf), jnp.zeros((d, d), dtype), x0, radius0,
                         jnp.zeros((), jnp.int32), jnp.zeros((), bool))

    def cond(s):
        return ~s.done

    def body(s):
        f_c, g_c, h_c = _derivatives(loss, s.candidate)
        finite = jnp.isfinite(f_c) & jnp.all(jnp.isfinite(g_c)) & jnp.all(jnp.isfinite(h_c))
        better = finite & (jnp.linalg.norm(g_c) < jnp.linalg.norm(s.g))
        x = jnp.where(better, s.candidate, s.x)
        f = jnp.where(better, f_c, s.f)
        g = jnp.where(better, g_c, s.g)
        h = jnp.where(better, h_c, s.h)
        radius = jnp.where(better, jnp.minimum(2 * s.radius, radius0), 0.25 * s.radius)
        lam, vec = jnp.linalg.eigh(h)
        coef = -(vec.T @ g) / _eig_floor(lam, eps)
        coef = coef.at[0].multiply(-1.0)
        step = vec @ coef
        xscale = 1.0 + jnp.max(jnp.abs(x))
        converged = (jnp.max(jnp.abs(g)) <= tol) | (jnp.max(jnp.abs(step)) <= 4 * eps * xscale)
        stalled = (radius <= 4 * eps * xscale) | ~jnp.isfinite(f)
        step = step * jnp.minimum(1.0, radius / jnp.maximum(jnp.linalg.norm(step), jnp.finfo(dtype).tiny))
        done = converged | stalled | (s.steps >= max_steps)
        return _SaddleState(x, f, g, h, x + step, radius, s.steps + 1, done)

    out = lax.while_loop(cond, body, state)
    return out.x, out.f, out.g, out.h


@partial(jax.jit, static_argnames=("loss", "num_images"), compiler_options=_FAST_COMPILE)
def _saddles_batch(loss: LossFn, a, b, curvature, tol, num_images: int, string_steps, max_steps):
    def one(a_, b_):
        top, spacing, interior = _string_top(loss, a_, b_, num_images, string_steps, curvature)
        x, f, g, h = _refine_saddle(loss, top, spacing, tol, max_steps)
        return x, f, g, h, spacing, interior

    return jax.vmap(one)(a, b)


# ---------------------------------------------------------------------------- helpers
def _check_starts(starts) -> jax.Array:
    arr = np.asarray(starts)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"starts: must be an array of shape (m, d) with m, d ≥ 1, got shape {np.shape(starts)}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError("starts: must be finite numbers")
    return jnp.asarray(arr, float_dtype(arr))


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_tol(tol, dtype) -> float:
    if tol is None:
        return default_tol(dtype)
    if isinstance(tol, (bool, np.bool_)) or np.ndim(tol) != 0 or not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol: must be a finite number > 0 (gradient tolerance), got {tol!r}")
    return float(tol)


def _check_dedup(dedup_tol) -> float:
    if isinstance(dedup_tol, (bool, np.bool_)) or np.ndim(dedup_tol) != 0 or not np.isfinite(dedup_tol) or dedup_tol <= 0:
        raise ValueError(f"dedup_tol: must be a finite distance > 0, got {dedup_tol!r}")
    return float(dedup_tol)


def _newton_step_small(g, h, x, eps) -> np.ndarray:
    """Whether the (|λ|-floored) Newton step is at the rounding level of x (float64)."""
    lam, vec = np.linalg.eigh(h)
    scale = np.max(np.abs(lam), axis=-1, keepdims=True)
    floor = np.maximum(np.sqrt(eps) * scale, np.finfo(np.float64).tiny)
    coef = np.einsum("...ji,...j->...i", vec, g) / np.maximum(np.abs(lam), floor)
    step = np.einsum("...ij,...j->...i", vec, coef)
    return np.max(np.abs(step), axis=-1) <= 4 * eps * (1 + np.max(np.abs(x), axis=-1))


def _cluster(points: np.ndarray, order: np.ndarray, radius: float) -> np.ndarray:
    """Greedy clustering in the given order: label of each point (−1 where not in order)."""
    labels = np.full(points.shape[0], -1)
    reps: list[int] = []
    for i in order:
        for c, r in enumerate(reps):
            if np.max(np.abs(points[i] - points[r])) <= radius:
                labels[i] = c
                break
        else:
            labels[i] = len(reps)
            reps.append(i)
    return labels


# ----------------------------------------------------------------------- find_minima
def find_minima(
    loss,
    starts: Float[ArrayLike, "m d"],
    *,
    tol: float | None = None,
    max_steps: int = 100,
    dedup_tol: float = 1e-3,
) -> Minima:
    """Local minima of ``loss`` from many starts (vmapped damped saddle-free Newton).

    loss: ``θ (d,) -> scalar``, or an :class:`~sgdsde.Problem` (its ``loss``).
    starts: (m, d) initial points (or one point (d,)); computations run in their dtype
      (float64 needs ``jax.enable_x64``).
    tol: gradient tolerance ‖∇L‖_∞ (default 1e-10 in float64, 1e-5 in float32).
    max_steps: Newton iterations per start. dedup_tol: endpoints within this distance
      (max norm, parameter units) are one minimum.

    Starts that do not converge (max_steps reached, no further descent, non-finite loss)
    are flagged (``converged``, ``labels == −1``) and reported by a
    :class:`LandscapeWarning`; if none converges a ``ValueError`` is raised. Minima whose
    Hessian is singular to tolerance (smallest eigenvalue ≤ √tol·max(1, |λ|_max)) are kept
    but flagged ``degenerate`` with a warning naming them. ``counts`` are starts per
    minimum under this optimiser (not gradient-flow basin volumes).
    """
    fn = resolve_loss(loss)
    x0 = _check_starts(starts)
    check_loss_shape(fn, x0[0])
    tol = _check_tol(tol, x0.dtype)
    max_steps = _check_int(max_steps, "max_steps", 1)
    radius = _check_dedup(dedup_tol)
    x, f, g, h, _ = _minimise_batch(fn, x0, jnp.asarray(tol, x0.dtype), max_steps)
    eps = float(jnp.finfo(x0.dtype).eps)
    x, f, g = (np.asarray(v, np.float64) for v in (x, f, g))
    h, lam = spectrum(h)
    finite = np.isfinite(f) & np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(g), axis=1)
    finite &= np.all(np.isfinite(lam), axis=1)
    lam_safe = np.where(np.isfinite(lam), lam, 0.0)
    ctol = np.array([curvature_tol(tol, l) for l in lam_safe])
    with np.errstate(invalid="ignore", over="ignore"):
        small = (np.max(np.abs(g), axis=1) <= tol) | _newton_step_small(
            np.where(np.isfinite(g), g, 0.0), np.where(np.isfinite(h), h, 0.0), np.where(np.isfinite(x), x, 0.0), eps
        )
    converged = finite & small & (lam_safe[:, 0] >= -ctol)
    m = x.shape[0]
    if not np.any(converged):
        raise ValueError(
            f"starts: none of the {m} starts converged to a minimum within max_steps={max_steps} "
            f"(gradient tolerance tol={tol:g}); the loss may be unbounded below, or raise max_steps/tol"
        )
    failed = np.flatnonzero(~converged)
    if failed.size:
        examples = ", ".join(format_point(np.asarray(x0[i])) for i in failed[:3])
        warn(
            f"find_minima: {failed.size} of {m} starts did not converge (max_steps={max_steps}, tol={tol:g}); "
            f"they are flagged in Minima.converged (labels −1), e.g. starts {examples}"
        )
    order = np.flatnonzero(converged)
    order = order[np.argsort(f[order], kind="stable")]
    labels = _cluster(x, order, radius)
    k = labels.max() + 1
    reps = np.empty(k, int)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        reps[c] = members[np.argmin(np.max(np.abs(g[members]), axis=1))]
    counts = np.bincount(labels[labels >= 0], minlength=k)
    # clusters are numbered by the first (lowest-loss) member; re-sort by the representative
    by_loss = np.argsort(f[reps], kind="stable")
    reps, counts = reps[by_loss], counts[by_loss]
    relabel = np.full(k + 1, -1)
    relabel[by_loss] = np.arange(k)
    labels = relabel[labels]
    lam_r = lam[reps]
    degenerate = lam_r[:, 0] <= ctol[reps]
    with np.errstate(divide="ignore", invalid="ignore"):
        logdets = np.sum(np.log(np.where(lam_r > 0, lam_r, np.nan)), axis=1)
    logdets = np.where(degenerate, -np.inf, logdets)
    if np.any(degenerate):
        names = "; ".join(
            f"minimum {i} at θ = {format_point(x[reps[i]])} (smallest eigenvalue {lam_r[i, 0]:.3g})"
            for i in np.flatnonzero(degenerate)
        )
        warn(f"find_minima: singular Hessian (degenerate minimum): {names}; Laplace probabilities are undefined there")
    return Minima(
        points=x[reps], losses=f[reps], hessians=h[reps], eigenvalues=lam_r, logdets=logdets,
        gradient_norms=np.max(np.abs(g[reps]), axis=1), counts=counts, degenerate=degenerate, converged=converged, labels=labels, endpoints=x,
    )


# ------------------------------------------------------------------- critical points
def critical_point(
    loss, point: Float[ArrayLike, " d"], *, kind: str | None = "minimum", tol: float | None = None
) -> CriticalPoint:
    """Loss, Hessian, spectrum and log|det H| at ``point``, checked to be a critical point.

    kind: "minimum" (H positive definite), "saddle" (exactly one negative eigenvalue, the
    others positive) or None (no check of the Hessian). Raises ``ValueError`` naming the
    point when ‖∇L‖_∞ > tol (default as in :func:`find_minima`, scaled by max(1, |θ|_∞))
    or when the Hessian is not of the expected kind (including singular: an eigenvalue
    within √tol·max(1, |λ|_max) of zero).
    """
    if kind not in ("minimum", "saddle", None):
        raise ValueError(f"kind: must be 'minimum', 'saddle' or None, got {kind!r}")
    fn = resolve_loss(loss)
    x = _check_starts(point)
    if x.shape[0] != 1:
        raise ValueError(f"point: must be one parameter vector (d,), got shape {np.shape(point)}")
    x = x[0]
    check_loss_shape(fn, x, "loss")
    tol = _check_tol(tol, x.dtype)
    f, g, h = _derivatives_jit(fn, x)
    f, g = float(f), np.asarray(g, np.float64)
    h, lam = spectrum(h)
    where = f"θ = {format_point(x)}"
    if not (np.isfinite(f) and np.all(np.isfinite(g)) and np.all(np.isfinite(lam))):
        raise ValueError(f"point: the loss, gradient or Hessian is not finite at {where}")
    gnorm = float(np.max(np.abs(g)))
    if gnorm > tol * max(1.0, float(np.max(np.abs(x)))):
        raise ValueError(f"point: not a critical point, ‖∇L‖_∞ = {gnorm:.3g} > tol = {tol:g} at {where}")
    ctol = curvature_tol(tol, lam)
    index = int(np.sum(lam < -ctol))
    singular = bool(np.any(np.abs(lam) <= ctol))
    if kind == "minimum" and (index > 0 or singular):
        raise ValueError(
            f"point: the Hessian is not positive definite where a minimum is expected, at {where} "
            f"(eigenvalues {np.array2string(lam, precision=4)}; tolerance {ctol:.2g})"
        )
    if kind == "saddle" and (index != 1 or singular):
        raise ValueError(
            f"point: not an index-1 saddle at {where}: {index} negative Hessian eigenvalues"
            f"{' and a singular direction' if singular else ''} (eigenvalues {np.array2string(lam, precision=4)})"
        )
    _, logabsdet = np.linalg.slogdet(h)
    return CriticalPoint(np.asarray(x, np.float64), f, h, lam, float(logabsdet), index, gnorm)


def minima_at(loss, points: Float[ArrayLike, "k d"], *, tol: float | None = None) -> Minima:
    """A :class:`Minima` from known minimum locations (e.g. a problem's ``info``), each
    checked by :func:`critical_point` (``ValueError`` naming a point that is not a
    non-degenerate minimum), sorted by loss. ``counts`` are zeros (no starts)."""
    arr = _check_starts(points)
    found = [critical_point(loss, p, kind="minimum", tol=tol) for p in np.asarray(arr)]
    order = np.argsort([c.loss for c in found], kind="stable")
    found = [found[i] for i in order]
    k = len(found)
    return Minima(
        points=np.stack([c.point for c in found]), losses=np.array([c.loss for c in found]),
        hessians=np.stack([c.hessian for c in found]), eigenvalues=np.stack([c.eigenvalues for c in found]),
        logdets=np.array([c.logabsdet for c in found]),
        gradient_norms=np.array([c.gradient_norm for c in found]), counts=np.zeros(k, int),
        degenerate=np.zeros(k, bool), converged=np.ones(k, bool), labels=np.argsort(order),
        endpoints=np.asarray(arr, np.float64),
    )


# ----------------------------------------------------------------------- find_saddles
def _minima_points(minima) -> np.ndarray:
    pts = minima.points if isinstance(minima, Minima) else minima
    arr = np.asarray(pts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"minima: need a Minima or an array of points (k, d), got shape {np.shape(pts)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("minima: points must be finite")
    return arr


def _minima_curvature(fn: LossFn, minima, pts: np.ndarray) -> float:
    """Largest |Hessian eigenvalue| over the minima: sets the string's gradient step."""
    if isinstance(minima, Minima):
        lam = minima.eigenvalues
    else:
        dtype = float_dtype(pts)
        hs = [np.asarray(_derivatives_jit(fn, jnp.asarray(p, dtype))[2]) for p in pts]
        lam = np.stack([spectrum(h)[1] for h in hs])
    value = float(np.max(np.abs(lam)))
    return value if np.isfinite(value) and value > 0 else 1.0


def _check_pairs(pairs, k: int) -> np.ndarray:
    if pairs is None:
        return np.array([(i, j) for i in range(k) for j in range(i + 1, k)], dtype=int).reshape(-1, 2)
    arr = np.asarray(pairs)
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"pairs: must be integer index pairs of shape (p, 2), got {pairs!r}")
    if np.any(arr < 0) or np.any(arr >= k) or np.any(arr[:, 0] == arr[:, 1]):
        raise ValueError(f"pairs: indices must be distinct and in [0, {k}), got {arr.tolist()}")
    return arr


def _empty_saddles(d: int) -> Saddles:
    z = np.zeros((0,))
    return Saddles(np.zeros((0, d)), z, np.zeros((0, d, d)), np.zeros((0, d)), z, z, np.zeros((0, 2), int), z)


def find_saddles(
    loss,
    minima: Minima | Float[ArrayLike, "k d"],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    images: int = 21,
    string_steps: int = 400,
    tol: float | None = None,
    max_steps: int = 100,
    dedup_tol: float = 1e-3,
) -> Saddles:
    """Index-1 saddles between pairs of minima (string method + index-1 Newton).

    minima: a :class:`Minima` (or points (k, d)); pairs: index pairs to connect (default
    all k(k−1)/2). images: points on the string; string_steps: its relaxation steps
    (gradient descent with step 0.5/max|λ| over the initial path, each image moving at
    most half a spacing per step). tol, max_steps: gradient tolerance and Newton
    iterations of the refinement; dedup_tol: saddles within this distance are one.

    Each saddle records the two minima it joins (``connects``, by descent along ± its
    unstable eigenvector). A pair whose path has no interior maximum, or whose refinement
    does not converge to an index-1 point, is left out with a :class:`LandscapeWarning`.
    """
    fn = resolve_loss(loss)
    pts = _minima_points(minima)
    k, d = pts.shape
    pair_idx = _check_pairs(pairs, k)
    images = _check_int(images, "images", 3)
    string_steps = _check_int(string_steps, "string_steps", 0)
    max_steps = _check_int(max_steps, "max_steps", 1)
    radius = _check_dedup(dedup_tol)
    if pair_idx.shape[0] == 0:
        return _empty_saddles(d)
    dtype = float_dtype(pts)
    check_loss_shape(fn, jnp.zeros(d, dtype))
    tol = _check_tol(tol, dtype)
    a = jnp.asarray(pts[pair_idx[:, 0]], dtype)
    b = jnp.asarray(pts[pair_idx[:, 1]], dtype)
    curvature = jnp.asarray(_minima_curvature(fn, minima, pts), dtype)
    size = _bucket(a.shape[0], 4)
    out = _saddles_batch(
        fn, _pad(a, size), _pad(b, size), curvature, jnp.asarray(tol, dtype), images,
        jnp.asarray(string_steps, jnp.int32), jnp.asarray(max_steps, jnp.int32),
    )
    x, f, g, h, spacing, interior = (v[: a.shape[0]] for v in out)
    eps = float(jnp.finfo(dtype).eps)
    x, f, g, spacing, interior = (np.asarray(v) for v in (x, f, g, spacing, interior))
    x, f, g = x.astype(np.float64), f.astype(np.float64), g.astype(np.float64)
    h, lam = spectrum(h)
    ok = np.ones(len(x), bool)
    for p in range(len(x)):
        i, j = pair_idx[p]
        if not interior[p]:
            warn(f"find_saddles: the path between minima {i} and {j} has no interior maximum; no saddle for this pair")
            ok[p] = False
            continue
        finite = np.isfinite(f[p]) and np.all(np.isfinite(g[p])) and np.all(np.isfinite(lam[p]))
        ctol = curvature_tol(tol, lam[p]) if finite else 0.0
        small = finite and (
            np.max(np.abs(g[p])) <= tol or bool(_newton_step_small(g[p], h[p], x[p], eps))
        )
        index_one = finite and lam[p, 0] < -ctol and (d == 1 or lam[p, 1] > ctol)
        if not (small and index_one):
            warn(
                f"find_saddles: no index-1 saddle found between minima {i} and {j} (refinement ended at "
                f"θ = {format_point(x[p])}, ‖∇L‖_∞ = {np.max(np.abs(g[p])):.3g}, eigenvalues "
                f"{np.array2string(lam[p], precision=4)}); raise images, string_steps or max_steps"
            )
            ok[p] = False
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        return _empty_saddles(d)
    labels = _cluster(x, keep[np.argsort(f[keep], kind="stable")], radius)
    reps = np.array([keep[labels[keep] == c][np.argmin(np.max(np.abs(g[keep][labels[keep] == c]), axis=1))]
                     for c in range(labels.max() + 1)])
    reps = reps[np.argsort(f[reps], kind="stable")]
    # which minima each saddle joins: descend from both sides of its unstable direction
    _, vecs = np.linalg.eigh(h[reps])
    push = (0.5 * spacing[reps])[:, None] * vecs[:, :, 0]
    starts = np.concatenate([x[reps] + push, x[reps] - push])
    ends, *_ = _minimise_batch(fn, jnp.asarray(starts, dtype), jnp.asarray(tol, dtype), max(max_steps, 100))
    ends = np.asarray(ends, np.float64)
    dist = np.max(np.abs(ends[:, None, :] - pts[None, :, :]), axis=2)
    nearest = np.argmin(dist, axis=1)
    found = np.where(dist[np.arange(len(ends)), nearest] <= radius, nearest, -1)
    s = len(reps)
    connects = np.stack([found[:s], found[s:]], axis=1)
    connects = np.sort(connects, axis=1)
    connects = np.where(connects[:, :1] == -1, connects[:, ::-1], connects)  # known index first
    lam_r = lam[reps]
    return Saddles(
        points=x[reps], losses=f[reps], hessians=h[reps], eigenvalues=lam_r,
        negative_eigenvalues=lam_r[:, 0], logabsdets=np.sum(np.log(np.abs(lam_r)), axis=1),
        connects=connects, gradient_norms=np.max(np.abs(g[reps]), axis=1),
    )
