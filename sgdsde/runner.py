"""The runner: ``lax.scan`` over steps, ``vmap`` over replicas and hyperparameter grids.

Randomness is fixed by the key alone: replica r uses k_r = fold_in(key, r) and its
step k the key fold_in(k_r, k). Every configuration of a grid sees the same keys
(common random numbers), so a grid run equals the runs done one by one, and a run
split in chunks equals the unsplit run. Memory does not grow with ``num_steps``
(except for observers that record every k steps, by request).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import observers as obs_lib
from .hyper import Hyper
from .problem import Problem
from .steppers import Stepper, StepperState

PyTree = Any

__all__ = ["run", "RunResult", "DivergenceWarning", "replica_keys"]

_INIT_TAG = 0xFFFFFFFF  # fold_in tag for random initial parameters (never a step index)
_DIVERGENCE = obs_lib.divergence()  # one object, so compiled runs are cached across calls


class DivergenceWarning(RuntimeWarning):
    """Some replicas produced non-finite parameters during a run."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns.

    observations: ``{observer name: result}``, each with leading axes ``grid_shape``.
    diverged: bool (*grid_shape, R); divergence_step: int (*grid_shape, R), the step k
    whose update first gave a non-finite value (−1 if none).
    state: the final stepper states (*grid_shape, R, …), to continue a run.
    clock: the clock of all times in the observations ("steps": SGD steps).
    """

    observations: dict
    diverged: np.ndarray
    divergence_step: np.ndarray
    state: StepperState
    hyper: Hyper
    grid_shape: tuple
    num_steps: int
    replicas: int
    clock: str = "steps"

    def __getitem__(self, name: str):
        return self.observations[name]

    @property
    def any_diverged(self) -> bool:
        return bool(np.any(self.diverged))


def replica_keys(key: jax.Array, replicas: int) -> jax.Array:
    """k_r = fold_in(key, r) for r = 0 … R−1 (typed keys)."""
    key = _typed_key(key)
    return jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicas, dtype=jnp.uint32))


def _typed_key(key) -> jax.Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    arr = np.asarray(key)
    if arr.dtype != np.uint32 or arr.shape != (2,):
        raise ValueError("key: must be a jax PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed))")
    return jax.random.wrap_key_data(jnp.asarray(arr))


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _initial_params(init_params, keys: jax.Array, problem: Problem):
    """(R, …) initial params: a shared pytree broadcast, or init_params(key) per replica."""
    if callable(init_params):
        init_keys = jax.vmap(lambda k: jax.random.fold_in(k, _INIT_TAG))(keys)
        one = init_params(init_keys[0])
        problem.check_params(one, "init_params(key)")
        params = jax.vmap(init_params)(init_keys)
        for leaf in jax.tree_util.tree_leaves(params):
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError("init_params(key): produced non-finite values for some replicas")
        return params
    problem.check_params(init_params)
    replicas = keys.shape[0]
    return jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(jnp.asarray(x), (replicas,) + jnp.shape(x)), init_params
    )


def run(
    key: jax.Array,
    stepper: Stepper,
    problem: Problem,
    hyper: Hyper,
    init_params: PyTree | Callable[[jax.Array], PyTree],
    num_steps: int,
    *,
    replicas: int = 1,
    observers: Sequence[obs_lib.Observer] | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
) -> RunResult:
    """Run ``replicas`` independent copies of ``stepper`` for ``num_steps`` SGD steps,
    for every configuration of ``hyper`` (array fields form a grid), in one program.

    init_params: one params pytree shared by all replicas, or a function
      ``init_params(key) -> params`` drawn per replica.
    observers: what to record (default: ``[observers.endpoint()]``); divergence is
      always tracked and reported (a :class:`DivergenceWarning` names the replicas).
    chunk_size: run the scan in chunks of this many steps (same numbers as one chunk);
      ``progress=True`` prints a line per chunk (default 20 chunks).
    All times are SGD steps (``result.clock == "steps"``).
    """
    # ---- validation, in Python, before anything compiles
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: must be an sgdsde.Problem, got {type(problem).__name__}")
    if not isinstance(stepper, Stepper):
        raise ValueError(f"stepper: must be an sgdsde Stepper (e.g. sgdsde.sgd()), got {type(stepper).__name__}")
    if not isinstance(hyper, Hyper):
        raise ValueError(f"hyper: must be an sgdsde.Hyper, got {type(hyper).__name__}")
    num_steps = _check_int(num_steps, "num_steps", 0)
    replicas = _check_int(replicas, "replicas", 1)
    # schedules are read at SGD steps up to ⌊(num_steps − ½)·dt⌋ by SDE steppers (dt ≠ 1)
    hyper = hyper.validate(problem.num_examples, max(num_steps, int(np.ceil(num_steps * stepper.dt))))
    observers = list(observers) if observers is not None else [obs_lib.endpoint()]
    names = [o.name for o in observers]
    if "divergence" in names or len(set(names)) != len(names):
        raise ValueError(f"observers: names must be unique and not 'divergence', got {names}")
    all_observers = tuple(observers) + (_DIVERGENCE,)
    if chunk_size is None:
        chunk_size = max(-(-num_steps // 20), 1) if progress else max(num_steps, 1)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)

    keys = replica_keys(key, replicas)
    params = _initial_params(init_params, keys, problem)
    grid_shape = hyper.grid_shape
    flat_hyper = hyper.flatten_grid()
    configs = int(np.prod(grid_shape)) if grid_shape else 1
    ctx_static = (num_steps, replicas)

    states = jax.vmap(lambda p: stepper.init(p, problem))(params)
    states = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (configs,) + x.shape), states)

    start, advance, finish = _compile(stepper, all_observers, ctx_static)

    observed = start(states, problem)
    done, began = 0, time.perf_counter()
    while done < num_steps:
        length = min(chunk_size, num_steps - done)
        states, observed = advance(states, observed, flat_hyper, problem, keys, jnp.int32(done), length)
        done += length
        if progress:
            jax.block_until_ready(states)
            elapsed = time.perf_counter() - began
            eta = elapsed / done * (num_steps - done)
            print(
                f"sgdsde.run [{stepper.name}]: step {done}/{num_steps} ({100 * done / num_steps:.0f}%), "
                f"{elapsed:.1f} s elapsed, ~{eta:.1f} s left",
                file=sys.stderr,
                flush=True,
            )
    results = finish(states, observed, problem)

    unflat = lambda tree: jax.tree_util.tree_map(
        lambda x: np.asarray(x).reshape(grid_shape + np.shape(x)[1:]), tree
    )
    observations = {o.name: unflat(r) for o, r in zip(all_observers, results)}
    div = observations.pop("divergence")
    result = RunResult(
        observations=observations,
        diverged=div["diverged"],
        divergence_step=div["step"],
        state=unflat(states),
        hyper=hyper,
        grid_shape=grid_shape,
        num_steps=num_steps,
        replicas=replicas,
    )
    if result.any_diverged:
        warnings.warn(_divergence_message(result), DivergenceWarning, stacklevel=2)
    return result


@functools.lru_cache(maxsize=64)
def _compile(stepper: Stepper, all_observers: tuple, ctx_static: tuple):
    """Jitted (start, advance, finish) for one stepper, observer set and run size; cached,
    so repeated runs with the same stepper and observer objects reuse the compiled code."""

    @jax.jit
    def start(states, problem):
        ctx = obs_lib.RunContext(problem, *ctx_static)
        return tuple(jax.vmap(lambda s, o=o: o.init(s, ctx))(states) for o in all_observers)

    @jax.jit
    def finish(states, observed, problem):
        ctx = obs_lib.RunContext(problem, *ctx_static)
        return tuple(
            jax.vmap(lambda obs, s, o=o: o.finalize(obs, s, ctx))(ob, states)
            for o, ob in zip(all_observers, observed)
        )

    return start, _make_advance(stepper, all_observers, ctx_static), finish


def _make_advance(stepper: Stepper, all_observers, ctx_static):
    replica_step = jax.vmap(stepper.step, in_axes=(0, 0, None, None))

    def advance(states, observed, flat_hyper, problem, keys, start, length):
        ctx = obs_lib.RunContext(problem, *ctx_static)

        def body(carry, k):
            states, observed = carry
            step_keys = jax.vmap(lambda key: jax.random.fold_in(key, k))(keys)
            states = jax.vmap(replica_step, in_axes=(None, 0, None, 0))(step_keys, states, problem, flat_hyper)
            t = k + 1
            observed = tuple(
                jax.vmap(lambda ob, s, o=o: o.update(ob, s, t, ctx))(ob, states)
                for o, ob in zip(all_observers, observed)
            )
            return (states, observed), None

        steps = start + jnp.arange(length, dtype=jnp.int32)
        (states, observed), _ = jax.lax.scan(body, (states, observed), steps)
        return states, observed

    return jax.jit(advance, static_argnums=(6,), donate_argnums=(0, 1))


def _divergence_message(result: RunResult) -> str:
    diverged = np.asarray(result.diverged)
    steps = np.asarray(result.divergence_step)
    total = diverged.size
    lines = [f"{int(diverged.sum())} of {total} replicas diverged (non-finite parameters); "
             "they are left out of every statistic."]
    flat_d = diverged.reshape(-1, result.replicas)
    flat_s = steps.reshape(-1, result.replicas)
    grid_index = list(np.ndindex(*result.grid_shape)) if result.grid_shape else [()]
    for g, (d, s) in enumerate(zip(flat_d, flat_s)):
        if d.any():
            which = np.flatnonzero(d)
            shown = ", ".join(f"{r}@{s[r]}" for r in which[:8]) + (" …" if len(which) > 8 else "")
            where = f"config {grid_index[g]}" if result.grid_shape else "run"
            lines.append(f"  {where}: {len(which)}/{result.replicas} replicas (replica@step: {shown})")
    return "\n".join(lines)
