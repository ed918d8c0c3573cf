"""The second-order stochastic modified equation of SGD (Li, Tai & E 2017/2019;
docs/theory.md §8) as an Euler–Maruyama stepper.

In SME time the SDE dθ = −∇(L + (η/4)‖∇L‖²) dt + √(ηf/S) B dW matches SGD to weak order 2
in η (SME-1, without the ‖∇L‖² term, to order 1). Since ∇‖∇L‖² = 2Hg, in **SGD-step time**
(the clock of every sgdsde SDE, docs/theory.md §2) it reads

    dθ = −η (g + (η/2) H g) dt + η √(f/S) B dW,

one Hessian–vector product Hg per step (forward-mode, ``jax.linearize`` of the gradient;
no Hessian is formed). The step, noise, clock, schedules and momentum convention are those
of :func:`sgdsde.euler_maruyama` (the same step body, with the drift g + (η/2)Hg).

Step size. Euler–Maruyama with step dt (SGD steps) has weak error O(η·dt) in SME time, so
with dt fixed (e.g. dt = 1) the *simulation* is only first order in η however good the
model is. To see the model's O(η²) accuracy the integration error must be O(η²) too:
take dt = c·η. On a quadratic mode of curvature λ the integration error is then
3c/(2λ) times the model's own (deterministic) error and in the same direction (Euler errs
the way SGD does), so it hides that fraction of the gap to SGD: c ≤ λ/15 keeps it under
10 % (λ the smallest curvature the observable depends on). The calls per unit of
SME time, 1/(η·dt), grow like 1/η². (tests/test_sme.py: dt = 1/128 at η = 1/32 … 1/8,
8 % at the smallest η.) Momentum β enters as η/(1 − β), as in ``euler_maruyama``; the
second-order correction is derived for plain SGD (β = 0).
"""

from __future__ import annotations

from typing import Any

import jax

from .noise import NoiseModel
from .problem import Problem
from .sde import _check_dt, _check_noise, _init, _reused, overdamped_em_step
from .steppers import Stepper, guarded_pair

PyTree = Any

__all__ = ["sme2", "sme2_drift"]


def sme2_drift(problem: Problem, params: PyTree, learning_rate) -> PyTree:
    """g + (η/2) H g (per unit of η dt, SGD-step time) = ∇(L + (η/4)‖∇L‖²), with H g by
    forward-mode differentiation of the gradient (one jvp; no Hessian)."""
    grad, hessian_times = jax.linearize(problem.grad, params)
    curvature = hessian_times(grad)
    return jax.tree_util.tree_map(lambda g, hg: g + (0.5 * learning_rate) * hg, grad, curvature)


def sme2(noise: NoiseModel, dt: float = 1.0) -> Stepper:
    """Second-order SME of SGD by Euler–Maruyama, step ``dt`` in SGD steps:

        θ' = θ − η dt (g + (η/2) H g) + η √(f/S) √dt ξ,   ξ = noise.sample(key, θ) ~ N(0, C(θ)).

    Weak order 2 in η as a model of SGD (order 1 for ``euler_maruyama``), but the scheme's
    own weak error is O(η·dt) in SME time: choose dt = c·η (c ≤ λ/15 for a curvature λ, see
    the module docstring) to see order 2.
    Returns the same object for equal arguments (noise by value), like ``euler_maruyama``.
    """
    dt = _check_dt(dt)
    noise = _check_noise(noise)
    return _reused("sme2", (noise, dt), lambda: _sme2(noise, dt))


def _sme2(noise: NoiseModel, dt: float) -> Stepper:
    make_step = lambda guard: overdamped_em_step(noise, dt, sme2_drift, guard)
    return guarded_pair(_init(noise), make_step, f"sme2({noise!r}, dt={dt:g})", dt)
