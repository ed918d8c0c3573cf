"""Steppers: (init, step) pairs sharing one interface.

``init(params, problem=None) -> StepperState`` (the problem is needed only by
steppers with per-example state, e.g. epoch sampling) and ``step(key, state, problem, hyper) -> StepperState``,
with ``hyper`` a single-configuration :class:`~sgdsde.Hyper` (scalars or schedules).
All times are SGD steps k (the state's ``step`` counts them).

Discrete SGD with heavy-ball momentum β (docs/theory.md §1), one step:

    v_{k+1} = β v_k − η ĝ_S(θ_k),   θ_{k+1} = θ_k + v_{k+1}

(β = 0 is plain SGD, θ_{k+1} = θ_k − η ĝ_S). Once any parameter of a replica is
non-finite the replica is flagged ``diverged`` and frozen at its last finite state.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .hyper import Hyper, HyperValues
from .problem import Problem, _float_dtype
from .sampling import Sampling, make_sampler, batch_weights

PyTree = Any

__all__ = ["StepperState", "Stepper", "sgd", "apply_update", "all_finite", "guarded_pair"]


class StepperState(NamedTuple):
    """params θ_k, velocity v_k (zeros without momentum), step k, divergence flag, and
    stepper-specific ``extra`` state (e.g. the epoch sampler's position)."""

    params: PyTree
    velocity: PyTree
    step: jax.Array
    diverged: jax.Array
    extra: PyTree = ()


class Stepper(NamedTuple):
    """``init(params, problem=None)``, ``step(key, state, problem, hyper)``, a name, and
    ``dt``: SGD steps per call of ``step`` (SDE steppers); SGD time = state.step · dt.

    ``unguarded_step`` (optional): the same step without the divergence guard — the same
    arithmetic, but no per-replica finiteness check, freeze or flag. :func:`sgdsde.run`
    uses it between checks at the end of each chunk and replays a chunk with ``step``
    when a replica became non-finite in it (same numbers, fewer kernels a step). Steppers
    built on :func:`apply_update` get one from :func:`guarded_pair`; None: always guarded.
    """

    init: Callable[..., StepperState]
    step: Callable[[jax.Array, StepperState, Problem, Hyper], StepperState]
    name: str = "stepper"
    dt: float = 1.0
    unguarded_step: Callable[[jax.Array, StepperState, Problem, Hyper], StepperState] | None = None


def all_finite(tree: PyTree) -> jax.Array:
    """True iff every entry of every leaf is finite."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def init_state(params: PyTree, extra: PyTree = ()) -> StepperState:
    """State at step 0: zero velocity, not diverged."""
    return StepperState(
        params=params,
        velocity=jax.tree_util.tree_map(jnp.zeros_like, params),
        step=jnp.asarray(0, jnp.int32),
        diverged=jnp.asarray(False),
        extra=extra,
    )


def apply_update(
    state: StepperState, increment: PyTree, values: HyperValues, extra: PyTree = None, *, guard: bool = True
) -> StepperState:
    """Heavy-ball update with a given increment δ (−η ĝ for SGD):
    v' = β v + δ, θ' = θ + v'; flags and freezes replicas that became non-finite.

    guard=False skips the flag and the freeze (the unguarded step of :class:`Stepper`).
    Non-finite parameters stay non-finite under θ' = θ + v' (x + y is non-finite when x
    is), so one check of θ after many unguarded steps finds every replica that diverged."""
    beta = values.momentum
    velocity = jax.tree_util.tree_map(
        lambda v, d: (beta * v + d).astype(v.dtype), state.velocity, increment
    )
    params = jax.tree_util.tree_map(lambda p, v: p + v, state.params, velocity)
    diverged = state.diverged
    if guard:
        diverged = diverged | ~all_finite(params)
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(diverged, b, a), new, old)
        params, velocity = keep(params, state.params), keep(velocity, state.velocity)
    return StepperState(
        params=params,
        velocity=velocity,
        step=state.step + 1,
        diverged=diverged,
        extra=state.extra if extra is None else extra,
    )


def guarded_pair(init: Callable, make_step: Callable[[bool], Callable], name: str, dt: float = 1.0) -> Stepper:
    """A :class:`Stepper` from ``make_step(guard)``, a step that passes ``guard`` to
    :func:`apply_update`: ``step`` = make_step(True), ``unguarded_step`` = make_step(False)."""
    return Stepper(init, make_step(True), name, dt, make_step(False))


@functools.lru_cache(maxsize=None)
def sgd(sampling: Sampling = "subset") -> Stepper:
    """Minibatch SGD with heavy-ball momentum (β from ``Hyper.momentum``).

    sampling: ``"iid"`` (with replacement), ``"subset"`` (a fresh uniform S-subset each
    step; what the papers assume) or ``"epoch"`` (random reshuffling: each replica walks
    its own reshuffled epochs, dropping the last N mod S examples of each).

    Returns the same object for the same arguments, so that ``sgdsde.run`` reuses its
    compiled program when a stepper is written inline.
    """
    sampler = make_sampler(sampling)

    def init(params: PyTree, problem: Problem | None = None) -> StepperState:
        if problem is None and sampling == "epoch":
            raise ValueError(
                f"problem: sgd(sampling={sampling!r}).init needs the problem (its N, for the per-replica "
                "order of examples): init(params, problem)"
            )
        return init_state(params, sampler.init(problem.num_examples if problem is not None else 0))

    def make_step(guard: bool):
        def step(key: jax.Array, state: StepperState, problem: Problem, hyper: Hyper) -> StepperState:
            values = hyper.at(state.step)
            indices, extra = sampler.draw(
                key, state.extra, problem.num_examples, values.batch_size, values.max_batch_size
            )
            weights = batch_weights(values.batch_size, values.max_batch_size, _float_dtype(state.params))
            grad = problem.minibatch_grad(state.params, indices, weights)
            increment = jax.tree_util.tree_map(lambda g: -values.learning_rate * g, grad)
            return apply_update(state, increment, values, extra, guard=guard)

        return step

    return guarded_pair(init, make_step, f"sgd({sampling})")
