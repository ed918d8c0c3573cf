"""Observables of the weak-error harness: helpers that build φ(θ), and the observer that
records (or window-sums) them inside the runner's compiled program."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import observers as obs_lib

PyTree = Any

__all__ = ["squared_distance", "basin_indicator", "coordinate"]


def squared_distance(point) -> Callable[[PyTree], jax.Array]:
    """φ(θ) = ‖θ − point‖² over the flattened params (``point`` flattened the same way)."""
    flat_point = np.asarray(ravel_pytree(point)[0], dtype=np.float64)

    def phi(params):
        flat = ravel_pytree(params)[0]
        return jnp.sum((flat - jnp.asarray(flat_point, flat.dtype)) ** 2)

    return phi


def basin_indicator(classify: Callable[[PyTree], jax.Array], basin: int) -> Callable[[PyTree], jax.Array]:
    """φ(θ) = 1 if ``classify(θ) == basin`` else 0: E[φ] is the occupancy of the basin."""
    if not callable(classify):
        raise ValueError(f"classify: must be a callable classify(params) -> int, got {type(classify).__name__}")
    return lambda params: (classify(params) == basin).astype(jnp.float32)


def coordinate(index: int, power: int = 1) -> Callable[[PyTree], jax.Array]:
    """φ(θ) = θ_index^power over the flattened params (e.g. ``coordinate(0, 2)``: θ₀²)."""
    return lambda params: ravel_pytree(params)[0][index] ** power


# ---------------------------------------------------------------------- the observer
def _observer(observables: dict, record_calls, edges, every: int = 1) -> obs_lib.Observer:
    """The harness's observer; the same observables, calls and edges give the same
    object, so that repeated comparisons reuse the runner's compiled program."""
    key = (
        tuple(observables.items()),
        None if record_calls is None else tuple(int(k) for k in record_calls),
        None if edges is None else tuple(int(k) for k in edges),
        int(every),
    )
    try:
        return _cached_observer(*key)
    except TypeError:  # an unhashable observable: build it afresh
        return _make_observer(observables, record_calls, edges, every)


@functools.lru_cache(maxsize=32)
def _cached_observer(items, record_calls, edges, every):
    return _make_observer(dict(items), record_calls, edges, every)


def _make_observer(observables: dict, record_calls, edges, every: int = 1) -> obs_lib.Observer:
    """Records the stacked observables at the calls ``record_calls`` (sorted), or sums
    them per replica over the calls t ≡ 0 (mod every) of each segment [edges[s],
    edges[s+1]) (``edges`` sorted)."""
    names = list(observables)

    def measure(states, ctx):
        def one(params):
            values = [
                ctx.problem.loss(params) if observables[n] == "loss" else observables[n](params) for n in names
            ]
            return jnp.stack([jnp.asarray(v).astype(jnp.result_type(float)).reshape(()) for v in values])

        return jax.vmap(one)(states.params)  # (R, n_obs)

    if record_calls is not None:
        rec = jnp.asarray(record_calls, jnp.int32)

        def init(states, ctx):
            first = measure(states, ctx)
            buf = jnp.zeros((rec.shape[0],) + first.shape, first.dtype)
            return jnp.where((rec == 0)[:, None, None], first[None], buf)

        def update(buf, states, t, ctx):
            index = jnp.clip(jnp.searchsorted(rec, t), 0, rec.shape[0] - 1)
            store = lambda b: b.at[index].set(measure(states, ctx).astype(b.dtype))
            return jax.lax.cond(rec[index] == t, store, lambda b: b, buf)

    else:
        edge = jnp.asarray(edges, jnp.int32)
        segments = edge.shape[0] - 1

        def add(sums, states, t, ctx):
            s = jnp.searchsorted(edge, t, side="right") - 1
            inside = (s >= 0) & (s < segments) & (t % every == 0)
            put = lambda acc: acc.at[jnp.clip(s, 0, segments - 1)].add(measure(states, ctx).astype(acc.dtype))
            return jax.lax.cond(inside, put, lambda acc: acc, sums)

        def init(states, ctx):
            first = measure(states, ctx)
            return add(jnp.zeros((segments,) + first.shape, first.dtype), states, 0, ctx)

        def update(sums, states, t, ctx):
            return add(sums, states, t, ctx)

    return obs_lib.Observer("weak_error", init, update, lambda obs, states, ctx: obs)
