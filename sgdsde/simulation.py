"""The pure core: :func:`simulate` traces a whole run and returns a pytree of JAX arrays.

``simulate`` is what :func:`sgdsde.run` executes; it composes with JAX like
``diffrax.diffeqsolve`` does: under ``jax.jit``, ``jax.vmap`` (over keys, hyperparameters,
initial parameters) and ``jax.grad`` (e.g. d E[final loss]/dη through SGD or through an
Euler–Maruyama ensemble, whose Gaussian noise is reparameterised: θ' = θ − η g dt +
η√(dt/S) B z with z independent of η). ``sd.run`` adds what a pure function cannot:
checks of values before compiling, chunking with progress lines, devices, the divergence
warning, NumPy results on a chosen clock.

Randomness is fixed by the key alone: replica r uses k_r = fold_in(key, r) and its
step k the key fold_in(k_r, k), for every configuration of a grid (common random numbers).

Times in a :class:`Simulation` are counted in calls of the stepper (``"calls"``; SGD steps
for ``sgd``); ``RunResult.on_clock`` converts them.

Differentiable observers (their outputs are smooth functions of the parameters):
``endpoint``, ``snapshots``, ``loss_curve``, ``moments`` (mean, cov/var and their
standard errors), ``sharpness`` and ``gradient_noise`` (through Hessian–vector products).
Counting observers — ``basins``, ``histogram``, ``first_passage`` — and the divergence
flags are piecewise constant: their derivatives are zero (JAX returns zeros, not an error).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _threefry
from . import observers as obs_lib
from ._checks import check_int, is_traced, typed_key
from .hyper import Hyper
from .problem import Problem
from .steppers import Stepper, StepperState, all_finite

PyTree = Any

__all__ = ["simulate", "Simulation", "replica_keys"]

_INIT_TAG = 0xFFFFFFFF  # fold_in tag for random initial parameters (never a step index)
DIVERGENCE = obs_lib.divergence()  # one object, so compiled runs are cached across calls


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Simulation:
    """What :func:`simulate` returns: a pytree of JAX arrays (leading axes: the
    hyperparameter grid, then replicas R where per replica).

    observations: ``{observer name: result}``; ``result["name"]`` reads one.
    diverged: bool (*grid, R); divergence_step: int (*grid, R), the call k whose update
    first gave a non-finite value (−1 if none). state: the final stepper states
    (*grid, R, …), to continue a run. Times are in calls of the stepper.
    """

    observations: dict
    diverged: jax.Array
    divergence_step: jax.Array
    state: StepperState

    def __getitem__(self, name: str):
        return self.observations[name]

    def tree_flatten(self):
        return (self.observations, self.diverged, self.divergence_step, self.state), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def replica_keys(key: jax.Array, replicas: int) -> jax.Array:
    """k_r = fold_in(key, r) for r = 0 … R−1 (typed keys)."""
    return _replica_keys(typed_key(key), replicas)


@functools.partial(jax.jit, static_argnums=1)
def _replica_keys(key: jax.Array, replicas: int) -> jax.Array:
    return jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicas, dtype=jnp.uint32))


def check_arguments(stepper, problem, hyper, num_steps, replicas, observers):
    """Checks of a run's arguments, in Python, before anything compiles (shared by
    :func:`simulate`, :func:`sgdsde.run` and :mod:`sgdsde.sweep`). Returns (hyper with
    max_batch_size set, num_steps, replicas, observer list)."""
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: must be an sgdsde.Problem, got {type(problem).__name__}")
    if not isinstance(stepper, Stepper):
        raise ValueError(f"stepper: must be an sgdsde Stepper (e.g. sgdsde.sgd()), got {type(stepper).__name__}")
    if not isinstance(hyper, Hyper):
        raise ValueError(f"hyper: must be an sgdsde.Hyper, got {type(hyper).__name__}")
    num_steps = check_int(num_steps, "num_steps", 0)
    replicas = check_int(replicas, "replicas", 1)
    # schedules are read at SGD steps up to ⌊(num_steps − ½)·dt⌋ by SDE steppers (dt ≠ 1)
    hyper = hyper.validate(problem.num_examples, max(num_steps, int(np.ceil(num_steps * stepper.dt))))
    observers = list(observers) if observers is not None else [obs_lib.endpoint()]
    names = [o.name for o in observers]
    if "divergence" in names or len(set(names)) != len(names):
        raise ValueError(f"observers: names must be unique and not 'divergence', got {names}")
    return hyper, num_steps, replicas, observers


def initial_params(init_params, keys: jax.Array, problem: Problem):
    """(R, …) initial params: a shared pytree broadcast, or init_params(key) per replica."""
    if callable(init_params):
        init_keys = jax.vmap(lambda k: jax.random.fold_in(k, _INIT_TAG))(keys)
        one = init_params(init_keys[0])
        problem.check_params(one, "init_params(key)")
        params = jax.vmap(init_params)(init_keys)
        if not is_traced(params):
            for leaf in jax.tree_util.tree_leaves(params):
                if not np.all(np.isfinite(np.asarray(leaf))):
                    raise ValueError("init_params(key): produced non-finite values for some replicas")
        return params
    problem.check_params(init_params)
    replicas = keys.shape[0]
    return jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(jnp.asarray(x), (replicas,) + jnp.shape(x)), init_params
    )


def programs(stepper: Stepper, all_observers: tuple, ctx_static: tuple, guard: bool = True):
    """The three pure pieces of a run over a flat configuration axis G (unjitted):

        start(states, problem) -> observed
        advance(states, observed, flat_hyper, problem, keys, start, length) -> (states, observed)
        finish(states, observed, problem) -> results (one per observer)

    ``advance`` scans ``length`` calls from call ``start``; states and observed carry a
    leading axis G, then replicas R. guard=False: ``advance`` uses the stepper's
    ``unguarded_step`` and leaves the divergence tracker alone (no flag changes); valid
    only while every parameter stays finite, which :func:`sgdsde.run` checks after it."""

    def start(states, problem):
        ctx = obs_lib.RunContext(problem, *ctx_static)
        return tuple(jax.vmap(lambda s, o=o: o.init(s, ctx))(states) for o in all_observers)

    def finish(states, observed, problem):
        ctx = obs_lib.RunContext(problem, *ctx_static)
        return tuple(
            jax.vmap(lambda obs, s, o=o: o.finalize(obs, s, ctx))(ob, states)
            for o, ob in zip(all_observers, observed)
        )

    replica_step = jax.vmap(stepper.step if guard else stepper.unguarded_step, in_axes=(0, 0, None, None))

    def advance(states, observed, flat_hyper, problem, keys, start, length):
        ctx = obs_lib.RunContext(problem, *ctx_static)

        def body(carry, k):
            states, observed = carry
            step_keys = _threefry.fold_in(keys, k)  # = vmap(fold_in(key_r, k)), bit for bit
            states = jax.vmap(replica_step, in_axes=(None, 0, None, 0))(step_keys, states, problem, flat_hyper)
            t = k + 1
            observed = tuple(
                jax.vmap(lambda ob, s, o=o: o.update(ob, s, t, ctx))(ob, states)
                if guard or o is not DIVERGENCE else ob  # unguarded, the flags never change
                for o, ob in zip(all_observers, observed)
            )
            return (states, observed), None

        steps = start + jnp.arange(length, dtype=jnp.int32)
        (states, observed), _ = jax.lax.scan(body, (states, observed), steps)
        return states, observed

    return start, advance, finish


def initial_states(stepper: Stepper, problem: Problem, params, configs: int):
    """Stepper states (G, R, …): the replicas' initial states, the same for every configuration."""
    states = jax.vmap(lambda p: stepper.init(p, problem))(params)
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (configs,) + x.shape), states)


def to_grid(tree, grid_shape: tuple):
    """Leading flat configuration axis G → the grid's shape."""
    return jax.tree_util.tree_map(lambda x: x.reshape(grid_shape + x.shape[1:]), tree)


def simulate(
    key: jax.Array,
    stepper: Stepper,
    problem: Problem,
    hyper: Hyper,
    init_params: PyTree | Callable[[jax.Array], PyTree],
    num_steps: int,
    *,
    replicas: int = 1,
    observers: Sequence[obs_lib.Observer] | None = None,
) -> Simulation:
    """Run ``replicas`` copies of ``stepper`` for ``num_steps`` calls, for every
    configuration of ``hyper`` (array fields form a grid), as one traced computation.

    Same arguments and numbers as :func:`sgdsde.run` (which calls this), but pure: it
    can be called inside ``jax.jit``, ``jax.vmap`` and ``jax.grad`` — ``hyper`` fields,
    ``init_params``, ``key`` and the problem's data may be traced; ``num_steps``,
    ``replicas``, the stepper and the observers are static. A traced batch size needs
    ``Hyper(..., max_batch_size=S_max)``. Values are checked when they are concrete;
    observers' host-side checks (e.g. basin labels out of range) run only in ``sd.run``.
    Returns a :class:`Simulation` (times in calls of the stepper). Called with concrete
    values, the run steps without per-step divergence guards, checks once at the end that
    every parameter is finite, and only then, if a replica diverged, runs again guarded
    (the same numbers; docs/concepts.md); under a trace every step is guarded.
    """
    hyper, num_steps, replicas, observers = check_arguments(stepper, problem, hyper, num_steps, replicas, observers)
    return _simulate(typed_key(key), stepper, problem, hyper, init_params, num_steps, replicas,
                     tuple(observers) + (DIVERGENCE,))


def _simulate(key, stepper, problem, hyper, init_params, num_steps, replicas, all_observers) -> Simulation:
    """:func:`simulate` after its checks (``all_observers`` ends with the divergence tracker).

    Called with concrete values (not under a trace) and a stepper with an unguarded step,
    the run is computed without per-step divergence guards and checked once at the end;
    if a replica diverged, it is computed again with the guards (same numbers either way:
    the guards only flag and freeze, and non-finite parameters stay non-finite)."""
    keys = replica_keys(key, replicas)
    params = initial_params(init_params, keys, problem)
    grid_shape = hyper.grid_shape
    flat_hyper = hyper.flatten_grid()
    concrete = not is_traced((params, flat_hyper, problem, keys))
    results = None
    if concrete and guarded_at_chunk_ends(stepper):
        core = _core(stepper, all_observers, num_steps, replicas, grid_shape, False)
        results, end, finite = core(params, flat_hyper, problem, keys)
        results = results if host_flag(finite) else None
    if results is None:
        results, end = _core(stepper, all_observers, num_steps, replicas, grid_shape)(params, flat_hyper, problem, keys)
    observations = {o.name: r for o, r in zip(all_observers, results)}
    divergence = observations.pop("divergence")
    return Simulation(observations, divergence["diverged"], divergence["step"], end)


@functools.lru_cache(maxsize=64)
def _core(stepper: Stepper, all_observers: tuple, num_steps: int, replicas: int, grid_shape: tuple,
          guard: bool = True):
    """The jitted run (initial states, start, advance over all steps, finish, results in the
    grid's shape) for one stepper, observer set and size; cached, so inline calls reuse
    compiled code. Inside an outer jit it is inlined; called from :func:`sgdsde.run` it is
    the same program as here. The initial states and the grid's shape are made inside the
    program: done eagerly, each was a copy of every state (for the epoch sampler's per-replica
    order, R·N entries: 0.7 s of a 2 s ``sd.run`` at R = 10⁴, N = 50,000).
    guard=False: the unguarded run, returning also whether every parameter is finite."""
    start, advance, finish = programs(stepper, all_observers, (num_steps, replicas), guard)
    configs = int(np.prod(grid_shape)) if grid_shape else 1

    @jax.jit
    def core(params, flat_hyper, problem, keys):
        states = initial_states(stepper, problem, params, configs)
        observed = start(states, problem)
        states, observed = advance(states, observed, flat_hyper, problem, keys, jnp.int32(0), num_steps)
        results = to_grid(finish(states, observed, problem), grid_shape)
        if guard:
            return results, to_grid(states, grid_shape)
        return results, to_grid(states, grid_shape), all_finite(states.params)

    return core


def guarded_at_chunk_ends(stepper: Stepper) -> bool:
    """Whether a concrete run (:func:`sgdsde.run`, :func:`simulate` outside a trace)
    guards divergence per chunk instead of per step (the stepper's ``unguarded_step``,
    then one check that every parameter is finite, else the chunk again with ``step``):
    wherever the stepper has an unguarded step. Per-step guards cost several small
    kernels a step (about a third of an Euler–Maruyama step, docs/benchmarks.md)."""
    return stepper.unguarded_step is not None


def host_flag(flag: jax.Array) -> bool:
    """A scalar flag computed by a compiled program, read on the host. Under
    ``jax.distributed`` a global reduction is replicated on every device, so each process
    reads its own copy and all processes take the same branch."""
    return bool(np.asarray(flag.addressable_data(0)))

