"""Newton kernels shared by :mod:`~sgdsde.landscape.minima` and :mod:`~sgdsde.landscape.saddles`.

Derivatives (loss, gradient, symmetrised Hessian), the |λ|-floored eigenvalues of a
Newton step, the damped saddle-free Newton minimiser (all starts at once, one ``vmap`` of
a ``lax.while_loop``; see :mod:`~sgdsde.landscape.minima`), padding of batches to a few
compiled sizes, and the greedy deduplication of endpoints.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._common import LossFn

_LINE_SEARCH_HALVINGS = 40
# The kernels are small, control-flow-heavy programs on a few parameters: XLA's backend
# optimisations halve nothing at run time but double the compile time, so skip them.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def derivatives(loss: LossFn, x):
    f, g = jax.value_and_grad(loss)(x)
    h = jax.hessian(loss)(x)
    return f, g, 0.5 * (h + h.T)


def eig_floor(lam, eps):
    """|λ| floored at √ε·max|λ| (and the smallest normal number)."""
    scale = jnp.max(jnp.abs(lam))
    floor = jnp.maximum(jnp.sqrt(eps) * scale, jnp.finfo(lam.dtype).tiny)
    return jnp.maximum(jnp.abs(lam), floor)


derivatives_jit = jax.jit(derivatives, static_argnums=0, compiler_options=FAST_COMPILE)


class _MinState(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    h: jax.Array
    steps: jax.Array
    done: jax.Array


def _minimise_one(loss: LossFn, x0, tol, max_steps):
    """Damped saddle-free Newton from x0 (see :mod:`sgdsde.landscape.minima`).

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
        f, g, h = derivatives(loss, s.x)
        lam, vec = jnp.linalg.eigh(h)
        newton = -vec @ ((vec.T @ g) / eig_floor(lam, eps))
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


@partial(jax.jit, static_argnames=("loss",), compiler_options=FAST_COMPILE)
def _minimise_padded(loss: LossFn, starts, tol, max_steps):
    return jax.vmap(lambda x0: _minimise_one(loss, x0, tol, max_steps))(starts)


def bucket(m: int, smallest: int = 16) -> int:
    """Batch sizes are padded to powers of two (at least ``smallest``), so that few shapes
    are ever compiled."""
    return max(smallest, 1 << (m - 1).bit_length())


def pad(x, size: int):
    return jnp.concatenate([x, jnp.broadcast_to(x[:1], (size - x.shape[0],) + x.shape[1:])])


def minimise_batch(loss: LossFn, starts, tol, max_steps: int):
    """Newton from every start (padded to a bucket size, one compile per loss and bucket)."""
    m = starts.shape[0]
    padded = pad(starts, bucket(m))
    out = _minimise_padded(loss, padded, jnp.asarray(tol, starts.dtype), jnp.asarray(max_steps, jnp.int32))
    return tuple(v[:m] for v in out)


def newton_step_small(g, h, x, eps) -> np.ndarray:
    """Whether the (|λ|-floored) Newton step is at the rounding level of x (float64)."""
    lam, vec = np.linalg.eigh(h)
    scale = np.max(np.abs(lam), axis=-1, keepdims=True)
    floor = np.maximum(np.sqrt(eps) * scale, np.finfo(np.float64).tiny)
    coef = np.einsum("...ji,...j->...i", vec, g) / np.maximum(np.abs(lam), floor)
    step = np.einsum("...ij,...j->...i", vec, coef)
    return np.max(np.abs(step), axis=-1) <= 4 * eps * (1 + np.max(np.abs(x), axis=-1))


def cluster(points: np.ndarray, order: np.ndarray, radius: float) -> np.ndarray:
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
