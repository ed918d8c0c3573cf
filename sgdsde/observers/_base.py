"""The observer protocol and the helpers every observer family shares: the
:class:`Observer` and :class:`RunContext` types, argument checks, sampling times
(burn-in, every), recorders at fixed times, per-replica measurement, and NaN-aware means."""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..problem import Problem

PyTree = Any

class RunContext(NamedTuple):
    problem: Problem
    num_steps: int  # total steps of the run (static)
    replicas: int  # static


class Observer(NamedTuple):
    name: str
    init: Callable[..., Any]
    update: Callable[..., Any]
    finalize: Callable[..., Any]
    # retime(result, convert) -> result with its time-valued entries on another clock;
    # None: the result holds no times (or is left in steps of the run)
    retime: Callable[..., Any] | None = None
    # check(result) on the host after the run (NumPy leaves, leading axes: the grid):
    # raises ValueError when the result shows the observer was misused (None: no check)
    check: Callable[[Any], None] | None = None


def _flat_params(states) -> jax.Array:
    """(R, d) matrix of flattened parameters."""
    return jax.vmap(lambda p: ravel_pytree(p)[0])(states.params)


# Observer factories with hashable arguments return one object per argument set (typed:
# True and 1 differ), so a run written inline reuses its compiled program.
_cached = functools.lru_cache(maxsize=256, typed=True)


def _check_every(every: int, name: str = "every") -> int:
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"{name}: must be a positive integer, got {every!r}")
    return int(every)


def _check_burn_in(burn_in: int) -> int:
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise ValueError(f"burn_in: must be a non-negative integer, got {burn_in!r}")
    return int(burn_in)


def _check_burn_in_fits(burn_in: int, ctx) -> None:
    """Raised while the run is traced (before XLA compiles), when num_steps is known."""
    if burn_in > ctx.num_steps:
        raise ValueError(f"burn_in: {burn_in} is past the end of the run (num_steps = {ctx.num_steps})")


def _sampled(t, burn_in: int, every: int):
    """Whether the state after t steps enters time-averaged statistics."""
    t = jnp.asarray(t)
    return (t >= burn_in) & ((t - burn_in) % every == 0)


def _num_records(num_steps: int, every: int) -> int:
    return num_steps // every + 1


def _record_times(num_steps: int, every: int) -> np.ndarray:
    return every * np.arange(_num_records(num_steps, every))


def _every_recorder(name: str, every: int, measure: Callable) -> Observer:
    """Stores measure(states, ctx) at t = 0, every, 2·every, … (shared by snapshots and
    loss_curve). Result: {"times": steps, "values": stacked values (T, R, …)}."""
    every = _check_every(every)

    def init(states, ctx):
        first = measure(states, ctx)
        count = _num_records(ctx.num_steps, every)
        buffer = jax.tree_util.tree_map(
            lambda x: jnp.zeros((count,) + x.shape, x.dtype).at[0].set(x), first
        )
        return buffer

    def update(buffer, states, t, ctx):
        def store(buf):
            value = measure(states, ctx)
            return jax.tree_util.tree_map(lambda b, x: b.at[t // every].set(x), buf, value)

        return jax.lax.cond(t % every == 0, store, lambda buf: buf, buffer)

    def finalize(buffer, states, ctx):
        return {"times": jnp.asarray(_record_times(ctx.num_steps, every)), "values": buffer}

    return Observer(name, init, update, finalize, _retime_record_times)


def _retime_record_times(result, convert):
    return {**result, "times": convert(np.asarray(result["times"]))}


def _check_every_or_final(every) -> int | None:
    return None if every is None else _check_every(every)


def _per_replica(measure_one: Callable, states) -> Any:
    """measure_one(params, step) for each replica in turn (lax.map: the memory of one)."""
    return jax.lax.map(lambda args: measure_one(*args), (states.params, states.step))


def _measured(name: str, every: int | None, measure: Callable) -> Observer:
    """At the end of the run only (every=None): ``measure(states, ctx)``; else at steps
    0, every, 2·every, …: ``{"times": (T,), "values": measure(...) stacked (T, R, …)}``."""
    if every is not None:
        return _every_recorder(name, every, measure)
    return Observer(
        name,
        lambda states, ctx: (),
        lambda obs, states, t, ctx: obs,
        lambda obs, states, ctx: measure(states, ctx),
    )



def _mean_and_stderr(values, present, xp):
    """Mean of ``values`` where ``present`` (last axis), its standard error s/√n and the
    count n; NaN where there is no data (n = 0; the standard error needs n ≥ 2).
    ``xp``: jax.numpy (inside a run) or numpy (on the host)."""
    count = xp.sum(present, axis=-1)
    n = xp.maximum(count, 1)
    mean = xp.sum(xp.where(present, values, 0), axis=-1) / n
    var = xp.sum(xp.where(present, (values - mean[..., None]) ** 2, 0), axis=-1) / xp.maximum(n - 1, 1)
    mean = xp.where(count > 0, mean, xp.nan)
    stderr = xp.where(count > 1, xp.sqrt(var / n), xp.nan)
    return mean, stderr, count


