"""SVAG: stochastic variance amplified gradient (Li, Malladi & Arora, NeurIPS 2021;
docs/theory.md §8), a discrete stepper that converges to SGD's SDE as ℓ → ∞.

With ℓ ≥ 1, r = √(2ℓ − 1) and two independent minibatches 𝓑₁, 𝓑₂ of size S, one call is

    θ' = θ − (η/ℓ) [((1 + r)/2) ĝ_{𝓑₁} + ((1 − r)/2) ĝ_{𝓑₂}].

The weights sum to 1 and their squares to ℓ, so the bracket has mean g and covariance
ℓ·f·C/S (f = (N − S)/(N − 1) for ``subset``, 1 for ``iid``): ℓ calls carry the drift and
the noise covariance of one SGD step.

Clock. ``Stepper.dt = 1/ℓ`` SGD steps per call, so ``sd.run(..., clock="steps")`` reports
SGD steps (ℓ calls per SGD step) and schedules are read at the SGD step ⌊(k + ½)/ℓ⌋ of
call k (:func:`sgdsde.sde.sgd_step_of`, as for the SDE steppers).

ℓ = 1 is ``sgd(sampling)`` bit for bit (the same step function; the second batch has
weight 0 and is not drawn). For ℓ > 1 the step key is split into one key per batch.

Momentum follows ``sgd``: heavy ball v' = βv − (η/ℓ)[…], θ' = θ + v', with β per call.
As ℓ → ∞ at fixed β this tends to the overdamped SDE with the effective learning rate
η/(1 − β), the convention of :func:`sgdsde.euler_maruyama`; on a quadratic its exact
stationary covariance is ``sgd_stationary_cov(A, f·C, η/ℓ, S/ℓ, momentum=β)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_number
from .hyper import Hyper
from .problem import Problem, _float_dtype
from .sampling import batch_weights, make_sampler
from .sde import sgd_step_of
from .steppers import Stepper, StepperState, apply_update, guarded_pair, sgd

PyTree = Any

__all__ = ["svag", "svag_weights"]

_SAMPLINGS = ("iid", "subset")


def _check_ell(ell) -> float:
    return check_number(ell, "ell", 1.0)


def svag_weights(ell: float) -> tuple[float, float]:
    """The two batch weights ((1 + r)/2, (1 − r)/2), r = √(2ℓ − 1): they sum to 1 and
    their squares sum to ℓ."""
    r = math.sqrt(2.0 * _check_ell(ell) - 1.0)
    return 0.5 * (1.0 + r), 0.5 * (1.0 - r)


def svag(ell: float, sampling: str = "subset") -> Stepper:
    """SVAG with amplification ℓ ≥ 1, one call (``dt = 1/ℓ`` SGD steps):

        θ' = θ − (η/ℓ)[((1 + r)/2) ĝ_{𝓑₁} + ((1 − r)/2) ĝ_{𝓑₂}],   r = √(2ℓ − 1),

    𝓑₁, 𝓑₂ independent size-S minibatches drawn by ``sampling`` (``"iid"`` or
    ``"subset"``); mean g, covariance ℓ·f·C/S. ℓ = 1 is ``sgd(sampling)`` bit for bit.
    Momentum β (``Hyper.momentum``) is applied per call, as in ``sgd``.

    Returns the same object for equal arguments, so that an inline ``sd.run`` reuses its
    compiled program.
    """
    ell = _check_ell(ell)
    if sampling not in _SAMPLINGS:
        raise ValueError(
            f"sampling: svag needs two independent minibatches per call: one of {_SAMPLINGS}, got {sampling!r}"
        )
    return _svag(ell, sampling)


@functools.lru_cache(maxsize=None)
def _svag(ell: float, sampling: str) -> Stepper:
    base = sgd(sampling)
    name = f"svag({ell:g}, {sampling})"
    if ell == 1.0:
        return Stepper(base.init, base.step, name, 1.0, base.unguarded_step)
    sampler = make_sampler(sampling)
    first, second = svag_weights(ell)
    dt = 1.0 / ell

    def make_step(guard: bool):
        def step(key: jax.Array, state: StepperState, problem: Problem, hyper: Hyper) -> StepperState:
            values = hyper.at(sgd_step_of(state.step, dt))
            keys = jax.random.split(key)
            draw = lambda k: sampler.draw(k, (), problem.num_examples, values.batch_size, values.max_batch_size)[0]
            indices = jnp.concatenate([draw(keys[0]), draw(keys[1])])
            dtype = _float_dtype(state.params)
            weights = batch_weights(values.batch_size, values.max_batch_size, dtype)
            # one backward pass: Σ_b w_b ∇l_b over both batches, + ∇R once (the weights sum to 1)
            weights = jnp.concatenate([jnp.asarray(first, dtype) * weights, jnp.asarray(second, dtype) * weights])
            grad = problem.minibatch_grad(state.params, indices, weights)
            increment = jax.tree_util.tree_map(lambda g: -(values.learning_rate / ell) * g, grad)
            return apply_update(state, increment, values, guard=guard)

        return step

    return guarded_pair(base.init, make_step, name, dt)
