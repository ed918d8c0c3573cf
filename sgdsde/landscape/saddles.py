"""Index-1 saddles between pairs of minima.

For each pair of minima, the simplified string method (E, Ren & Vanden-Eijnden 2007:
images relaxed by gradient descent and redistributed evenly in arc length) gives the
minimum-energy path; its highest image is refined by an index-1 Newton method (uphill
along the lowest eigenvector, downhill along the others, trust region on ‖∇L‖). A saddle
is kept when it converged with exactly one negative eigenvalue; the minima it joins are
found by descending from it along ± its unstable eigenvector, so a path that runs through
a third minimum reports the saddle's true neighbours. Dense Hessians: meant for
low-dimensional landscapes (d up to a few hundred).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import ArrayLike, Float

from .._checks import check_int
from ._common import (
    CriticalPoint,
    LossFn,
    check_dedup,
    check_loss_shape,
    check_tol,
    curvature_tol,
    float_dtype,
    format_point,
    resolve_loss,
    spectrum,
    warn,
)
from ._newton import (
    FAST_COMPILE,
    bucket,
    cluster,
    derivatives,
    derivatives_jit,
    eig_floor,
    minimise_batch,
    newton_step_small,
    pad,
)
from .minima import Minima

__all__ = ["Saddles", "find_saddles"]

_RIDGE_SAMPLES = 65  # per path segment, around the string's highest image


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
        f_c, g_c, h_c = derivatives(loss, s.candidate)
        finite = jnp.isfinite(f_c) & jnp.all(jnp.isfinite(g_c)) & jnp.all(jnp.isfinite(h_c))
        better = finite & (jnp.linalg.norm(g_c) < jnp.linalg.norm(s.g))
        x = jnp.where(better, s.candidate, s.x)
        f = jnp.where(better, f_c, s.f)
        g = jnp.where(better, g_c, s.g)
        h = jnp.where(better, h_c, s.h)
        radius = jnp.where(better, jnp.minimum(2 * s.radius, radius0), 0.25 * s.radius)
        lam, vec = jnp.linalg.eigh(h)
        coef = -(vec.T @ g) / eig_floor(lam, eps)
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


@partial(jax.jit, static_argnames=("loss", "num_images"), compiler_options=FAST_COMPILE)
def _saddles_batch(loss: LossFn, a, b, curvature, tol, num_images: int, string_steps, max_steps):
    def one(a_, b_):
        top, spacing, interior = _string_top(loss, a_, b_, num_images, string_steps, curvature)
        x, f, g, h = _refine_saddle(loss, top, spacing, tol, max_steps)
        return x, f, g, h, spacing, interior

    return jax.vmap(one)(a, b)


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
        hs = [np.asarray(derivatives_jit(fn, jnp.asarray(p, dtype))[2]) for p in pts]
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
    images = check_int(images, "images", 3)
    string_steps = check_int(string_steps, "string_steps", 0)
    max_steps = check_int(max_steps, "max_steps", 1)
    radius = check_dedup(dedup_tol)
    if pair_idx.shape[0] == 0:
        return _empty_saddles(d)
    dtype = float_dtype(pts)
    check_loss_shape(fn, jnp.zeros(d, dtype))
    tol = check_tol(tol, dtype)
    a = jnp.asarray(pts[pair_idx[:, 0]], dtype)
    b = jnp.asarray(pts[pair_idx[:, 1]], dtype)
    curvature = jnp.asarray(_minima_curvature(fn, minima, pts), dtype)
    size = bucket(a.shape[0], 4)
    out = _saddles_batch(
        fn, pad(a, size), pad(b, size), curvature, jnp.asarray(tol, dtype), images,
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
            np.max(np.abs(g[p])) <= tol or bool(newton_step_small(g[p], h[p], x[p], eps))
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
    labels = cluster(x, keep[np.argsort(f[keep], kind="stable")], radius)
    reps = np.array([keep[labels[keep] == c][np.argmin(np.max(np.abs(g[keep][labels[keep] == c]), axis=1))]
                     for c in range(labels.max() + 1)])
    reps = reps[np.argsort(f[reps], kind="stable")]
    # which minima each saddle joins: descend from both sides of its unstable direction
    _, vecs = np.linalg.eigh(h[reps])
    push = (0.5 * spacing[reps])[:, None] * vecs[:, :, 0]
    starts = np.concatenate([x[reps] + push, x[reps] - push])
    ends, *_ = minimise_batch(fn, jnp.asarray(starts, dtype), jnp.asarray(tol, dtype), max(max_steps, 100))
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
