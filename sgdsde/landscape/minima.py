"""Minima of a loss from many starts; checks of known critical points.

Every start runs a damped, saddle-free Newton method (all starts at once, one
``vmap`` of a ``lax.while_loop``): the step is d = −V |Λ|⁻¹ Vᵀ g from the eigen-
decomposition H = V Λ Vᵀ (|λ| floored at √ε·max|λ|), with a backtracking (Armijo) line
search on L, so every accepted step lowers the loss and negative-curvature directions are
followed downhill; a start that lands exactly on a saddle or maximum (g = 0, λ_min < 0)
is pushed off along the lowest eigenvector. A start has converged when ‖∇L‖_∞ ≤ tol (or
the Newton step is at the rounding level of θ) and H has no eigenvalue below −curvature
tolerance. Converged endpoints closer than ``dedup_tol`` are one minimum; the result is
sorted by loss (deepest first) with the Hessian, its eigenvalues and log det H (float64).
Dense Hessians: meant for low-dimensional landscapes (d up to a few hundred).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from .._checks import check_int
from ._common import (
    CriticalPoint,
    check_dedup,
    check_loss_shape,
    check_starts,
    check_tol,
    curvature_tol,
    format_point,
    resolve_loss,
    spectrum,
    warn,
)
from ._newton import cluster, derivatives_jit, minimise_batch, newton_step_small

__all__ = ["Minima", "find_minima", "critical_point", "minima_at"]


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
    x0 = check_starts(starts)
    check_loss_shape(fn, x0[0])
    tol = check_tol(tol, x0.dtype)
    max_steps = check_int(max_steps, "max_steps", 1)
    radius = check_dedup(dedup_tol)
    x, f, g, h, _ = minimise_batch(fn, x0, jnp.asarray(tol, x0.dtype), max_steps)
    eps = float(jnp.finfo(x0.dtype).eps)
    x, f, g = (np.asarray(v, np.float64) for v in (x, f, g))
    h, lam = spectrum(h)
    finite = np.isfinite(f) & np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(g), axis=1)
    finite &= np.all(np.isfinite(lam), axis=1)
    lam_safe = np.where(np.isfinite(lam), lam, 0.0)
    ctol = np.array([curvature_tol(tol, l) for l in lam_safe])
    with np.errstate(invalid="ignore", over="ignore"):
        small = (np.max(np.abs(g), axis=1) <= tol) | newton_step_small(
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
    labels = cluster(x, order, radius)
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
    x = check_starts(point)
    if x.shape[0] != 1:
        raise ValueError(f"point: must be one parameter vector (d,), got shape {np.shape(point)}")
    x = x[0]
    check_loss_shape(fn, x, "loss")
    tol = check_tol(tol, x.dtype)
    f, g, h = derivatives_jit(fn, x)
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
    arr = check_starts(points)
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
