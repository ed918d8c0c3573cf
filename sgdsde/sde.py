"""SDE models of SGD as steppers, with the (init, step) interface of :func:`sgdsde.sgd`.

Clock. All SDEs are written in **SGD-step time** (docs/theory.md §2): one unit of t is one
SGD step. A stepper with step size ``dt`` advances t by dt per call, so the state's
``step`` counts *SDE steps* k and the SGD time is t = k·dt. With ``sgdsde.run``,
``num_steps`` and the times of observers (and ``burn_in``/``every``) are in SDE steps:
multiply by dt for SGD steps (by η·dt for SME time); the stepper carries its dt in
``Stepper.dt``. Hyperparameter schedules are
evaluated at the SGD step containing the middle of the SDE step, ⌊(k + ½)·dt⌋ (for
dt = 1/m exactly k // m), so they see the same integer steps as SGD.

Models (g = ∇L full batch, B Bᵀ = C the per-example noise covariance of ``noise``,
f = noise.variance_factor(S, N) = (N − S)/(N − 1) with ``finite_n`` else 1):

- :func:`euler_maruyama` — overdamped Langevin, dθ = −η g dt + η √(f/S) B dW, one step
  θ' = θ − η g(θ) dt + η √(f/S) √dt ξ,  ξ ~ N(0, C(θ)).
  dt = 1 is "Gaussian SGD": θ' = θ − η (g + ξ̃), ξ̃ ~ N(0, fC/S) (the minibatch noise
  replaced by Gaussian noise of the same covariance).
- :func:`underdamped` — momentum form, friction μ = 1 − β per SGD step:
  dθ = v dt, dv = (−μ v − η g) dt + η √(f/S) B dW, by semi-implicit (symplectic) Euler
  v' = (1 − μ dt) v − η g(θ) dt + η √(f/S) √dt ξ,  θ' = θ + v' dt.
  dt = 1 is exactly heavy-ball momentum with Gaussian noise: v' = β v − η (g + ξ̃).
- :func:`diffrax_stepper` — the overdamped SDE advanced by one step of a diffrax solver.

Momentum in the overdamped models. ``euler_maruyama`` and ``diffrax_stepper`` have no
velocity; a momentum β ≠ 0 in ``Hyper`` enters as the effective learning rate
η/(1 − β) (the overdamped, high-friction limit of the underdamped form: it has the same
θ-stationary law, noise n/(1 − β), docs/theory.md §3). With β = 0 (the default) the
equations above hold as written. Use :func:`underdamped` to model momentum dynamics.

State. ``state.velocity`` always holds the last displacement θ_{k+1} − θ_k, as for
``sgd``; for ``underdamped`` that is v·dt (the SDE velocity v = velocity/dt, per SGD
step). Divergence (non-finite parameters) is flagged and frozen by
:func:`sgdsde.steppers.apply_update`, shared with ``sgd``.

Random numbers. The step key is passed unchanged to ``noise.sample`` (the diffrax
adapter draws the same z from it, ``normal(key, noise.noise_shape(...))``), so with the
same key ``euler_maruyama`` and ``diffrax_stepper(diffrax.Euler(), …)`` give the same
numbers up to rounding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._checks import check_number
from .hyper import Hyper, HyperValues
from .noise import NoiseModel
from .problem import Problem, _float_dtype
from .steppers import Stepper, StepperState, apply_update, guarded_pair, init_state

PyTree = Any

__all__ = ["euler_maruyama", "underdamped", "diffrax_stepper", "sgd_step_of"]


# ------------------------------------------------------------------------- validation
def _check_dt(dt) -> float:
    return check_number(dt, "dt", 0.0, strict=True, unit="in SGD steps")


def _check_noise(noise) -> NoiseModel:
    if not isinstance(noise, NoiseModel):
        raise ValueError(
            "noise: must be a noise model from sgdsde.noise (isotropic(sigma2), diagonal(variances), "
            f"full(cov), empirical(), from_function(b)), got {type(noise).__name__}: {noise!r}"
        )
    return noise


# ----------------------------------------------------------------------------- clocks
def sgd_step_of(step: jax.Array, dt: float) -> jax.Array:
    """The SGD step whose hyperparameters the SDE step ``step`` uses: the one containing
    the midpoint (step + ½)·dt of the SDE step (integer arithmetic when dt = 1/m)."""
    step = jnp.asarray(step)
    inverse = 1.0 / dt
    per_sgd = round(inverse)
    if per_sgd >= 1 and abs(inverse - per_sgd) <= 1e-9 * inverse:
        return step // per_sgd if per_sgd > 1 else step
    midpoint = (step.astype(jnp.result_type(float)) + 0.5) * dt
    return jnp.floor(midpoint).astype(step.dtype)


def _values(state: StepperState, hyper: Hyper, dt: float) -> HyperValues:
    return hyper.at(sgd_step_of(state.step, dt))


def _noise_amplitude(values: HyperValues, noise: NoiseModel, problem: Problem, dtype):
    """√(f/S): the factor between ξ ~ N(0, C) and the minibatch-gradient noise."""
    s = values.batch_size.astype(dtype)
    factor = noise.variance_factor(values.batch_size, problem.num_examples)
    return jnp.sqrt(jnp.asarray(factor, dtype) / s)


def _effective_lr(values: HyperValues, dtype):
    """η/(1 − β): the overdamped models' learning rate (η when β = 0)."""
    return (values.learning_rate / (1 - values.momentum)).astype(dtype)


def _no_momentum(values: HyperValues) -> HyperValues:
    return values._replace(momentum=jnp.zeros_like(values.momentum))


_REUSED: dict = {}  # (factory, arguments by value) -> Stepper; bounded, oldest dropped first
_REUSED_MAX = 256


def _value_key(value):
    """A hashable key for ``value`` by content (a noise model's arrays by their bytes), or
    None when it cannot be keyed (tracers, unhashable fields): then nothing is reused."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (np.ndarray, jax.Array)):
        arr = np.asarray(value)
        return ("array", arr.dtype.str, arr.shape, arr.tobytes())
    if dataclasses.is_dataclass(value) and isinstance(value, NoiseModel):
        parts = [type(value)]
        for field in dataclasses.fields(value):
            part = _value_key(getattr(value, field.name))
            if part is None:
                return None
            parts.append((field.name, part))
        return tuple(parts)
    try:
        hash(value)
    except TypeError:
        return None
    return (type(value), value)


def _reused(factory: str, arguments: tuple, make) -> Stepper:
    """One Stepper per factory and argument values, so that ``sd.run(key,
    sd.euler_maruyama(sd.noise.isotropic(1.0), 0.5), …)`` written inline (a notebook cell
    run again) reuses its compiled program instead of compiling anew (as ``sd.sgd`` does)."""
    keys = [_value_key(a) for a in arguments]
    if any(k is None for k in keys):
        return make()
    key = (factory, tuple(keys))
    if key not in _REUSED:
        if len(_REUSED) >= _REUSED_MAX:
            _REUSED.pop(next(iter(_REUSED)))
        _REUSED[key] = make()
    return _REUSED[key]


def _init(noise: NoiseModel):
    def init(params: PyTree, problem: Problem | None = None) -> StepperState:
        noise.check(params, problem)  # shapes only: works on tracers, raises before compiling
        return init_state(params)

    return init


# ------------------------------------------------------------------ Euler–Maruyama
def euler_maruyama(noise: NoiseModel, dt: float = 1.0) -> Stepper:
    """Overdamped Langevin model of SGD by Euler–Maruyama, step ``dt`` in SGD steps:

        θ' = θ − η g(θ) dt + η √(f/S) √dt ξ,   ξ = noise.sample(key, θ) ~ N(0, C(θ)).

    dt = 1 is Gaussian SGD. Weak order 1 in dt; on a quadratic the stationary covariance
    is biased by O(η h dt) relative to the continuous Lyapunov solution. A momentum β in
    ``Hyper`` enters as the effective learning rate η/(1 − β) (see the module docstring).
    """
    dt = _check_dt(dt)
    noise = _check_noise(noise)
    return _reused("euler_maruyama", (noise, dt), lambda: _euler_maruyama(noise, dt))


def _euler_maruyama(noise: NoiseModel, dt: float) -> Stepper:
    drift = lambda problem, params, lr: problem.grad(params)
    make_step = lambda guard: overdamped_em_step(noise, dt, drift, guard)
    return guarded_pair(_init(noise), make_step, f"euler_maruyama({noise!r}, dt={dt:g})", dt)


def overdamped_em_step(noise: NoiseModel, dt: float, drift, guard: bool = True):
    """The Euler–Maruyama step θ' = θ − η dt·drift(problem, θ, η) + η √(f/S) √dt ξ
    (η the effective learning rate η/(1 − β)); drift = g is :func:`euler_maruyama`.
    guard: with the divergence guard of :func:`apply_update` (False: the unguarded step)."""

    def step(key: jax.Array, state: StepperState, problem: Problem, hyper: Hyper) -> StepperState:
        values = _values(state, hyper, dt)
        dtype = _float_dtype(state.params)
        lr = _effective_lr(values, dtype)
        amplitude = lr * _noise_amplitude(values, noise, problem, dtype) * jnp.sqrt(jnp.asarray(dt, dtype))
        grad = drift(problem, state.params, lr)
        xi = noise.sample(key, state.params, problem)
        increment = jax.tree_util.tree_map(lambda g, x: -(lr * dt) * g + amplitude * x, grad, xi)
        return apply_update(state, increment, _no_momentum(values), guard=guard)

    return step


# ---------------------------------------------------------------------- underdamped
def underdamped(noise: NoiseModel, dt: float = 1.0) -> Stepper:
    """Underdamped (momentum) Langevin model of SGD, friction μ = 1 − β per SGD step:

        dθ = v dt,  dv = (−μ v − η g) dt + η √(f/S) B dW,

    by semi-implicit Euler (velocity first, then position with the new velocity):

        v' = (1 − μ dt) v − η g(θ) dt + η √(f/S) √dt ξ,   θ' = θ + v' dt.

    With dt = 1 this is exactly heavy-ball SGD with Gaussian noise,
    v' = β v − η (g + ξ̃), θ' = θ + v'. ``state.velocity`` holds θ' − θ = v' dt.
    The scheme needs μ dt < 2 and (as heavy ball) η λ_max dt² < 2(2 − μ dt).
    """
    dt = _check_dt(dt)
    noise = _check_noise(noise)
    return _reused("underdamped", (noise, dt), lambda: _underdamped(noise, dt))


def _underdamped(noise: NoiseModel, dt: float) -> Stepper:
    def make_step(guard: bool):
        def step(key: jax.Array, state: StepperState, problem: Problem, hyper: Hyper) -> StepperState:
            values = _values(state, hyper, dt)
            dtype = _float_dtype(state.params)
            lr = values.learning_rate.astype(dtype)
            beta = values.momentum.astype(dtype)
            # u = v·dt (the displacement) obeys the heavy-ball form u' = (1 − μ dt) u + δ with
            # δ = dt·(−η g dt + η √(f/S) √dt ξ), so apply_update does the update and the divergence check.
            friction = beta if dt == 1.0 else 1 - (1 - beta) * dt
            amplitude = lr * _noise_amplitude(values, noise, problem, dtype) * jnp.sqrt(jnp.asarray(dt, dtype))
            grad = problem.grad(state.params)
            xi = noise.sample(key, state.params, problem)
            if dt == 1.0:
                increment = jax.tree_util.tree_map(lambda g, x: -lr * g + amplitude * x, grad, xi)
            else:
                increment = jax.tree_util.tree_map(
                    lambda g, x: dt * (-(lr * dt) * g + amplitude * x), grad, xi
                )
            return apply_update(state, increment, values._replace(momentum=friction), guard=guard)

        return step

    return guarded_pair(_init(noise), make_step, f"underdamped({noise!r}, dt={dt:g})", dt)


# -------------------------------------------------------------------------- diffrax
def diffrax_stepper(solver, noise: NoiseModel, dt: float = 1.0) -> Stepper:
    """The overdamped SDE dθ = −η g dt + η √(f/S) B dW advanced by one step of a diffrax
    solver per call (``solver.step`` on ``MultiTerm(ODETerm, ControlTerm)``), so diffrax's
    Milstein, Heun and stochastic Runge–Kutta solvers run inside :func:`sgdsde.run`.

    The state is solved on the flattened parameters; the diffusion is the materialised
    d×k matrix η √(f/S) B(θ) (``noise.matrix``; for ``empirical()`` k = N, all
    per-example gradients: small problems). The Brownian increment over the step is
    √dt·z with z = normal(key, noise_shape) — the same z that ``euler_maruyama`` uses,
    so ``diffrax.Euler()`` reproduces it up to rounding; solvers that need space-time
    (-time) Lévy area (SRA1, ShARK, …) get it from independent draws of fold_in(key, 1),
    fold_in(key, 2). The solver state is re-initialised each step (one-step use only:
    solvers must evaluate the Brownian motion over the whole step, as all diffrax SDE
    solvers do).

    SGD's SDE is Itô. Stratonovich solvers (Heun, SRA1, ShARK, Milstein-Stratonovich…)
    agree with it only for state-independent noise (isotropic, diagonal, full); with
    ``empirical()`` or ``from_function`` they are rejected — use ``diffrax.Euler()`` or
    ``diffrax.ItoMilstein()``. Momentum β enters as η/(1 − β), as in ``euler_maruyama``.
    """
    import diffrax

    dt = _check_dt(dt)
    noise = _check_noise(noise)
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(
            f"solver: must be a diffrax solver instance such as diffrax.Euler(), got {type(solver).__name__}"
        )
    ito = isinstance(solver, diffrax.AbstractItoSolver)
    stratonovich = isinstance(solver, diffrax.AbstractStratonovichSolver)
    if not (ito or stratonovich):
        raise ValueError(
            f"solver: {type(solver).__name__} is not an SDE solver (neither Itô nor Stratonovich); "
            "use e.g. diffrax.Euler(), diffrax.ItoMilstein(), diffrax.Heun(), diffrax.ShARK()"
        )
    if stratonovich and noise.state_dependent:
        raise ValueError(
            f"solver: {type(solver).__name__} converges to the Stratonovich solution, which differs from "
            f"SGD's Itô SDE for the state-dependent noise {noise!r}; use diffrax.Euler() or diffrax.ItoMilstein()"
        )
    levy_area = _levy_area_type(solver)
    return _reused("diffrax_stepper", (solver, noise, dt), lambda: _diffrax_stepper(solver, noise, dt, levy_area))


def _diffrax_stepper(solver, noise: NoiseModel, dt: float, levy_area) -> Stepper:
    import diffrax

    def make_step(guard: bool):
        def step(key: jax.Array, state: StepperState, problem: Problem, hyper: Hyper) -> StepperState:
            values = _values(state, hyper, dt)
            flat, unravel = ravel_pytree(state.params)
            dtype = flat.dtype
            lr = _effective_lr(values, dtype)
            amplitude = lr * _noise_amplitude(values, noise, problem, dtype)

            def drift(t, y, args):
                return -lr * ravel_pytree(problem.grad(unravel(y)))[0]

            def diffusion(t, y, args):
                return amplitude * noise.matrix(unravel(y), problem)

            shape = noise.noise_shape(state.params, problem)
            path = _make_path(key, shape, dtype, levy_area)
            terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, path))
            t0, t1 = jnp.zeros((), dtype), jnp.asarray(dt, dtype)
            solver_state = solver.init(terms, t0, t1, flat, None)
            y1, _, _, _, _ = solver.step(terms, t0, t1, flat, None, solver_state, False)
            return apply_update(state, unravel(y1 - flat), _no_momentum(values), guard=guard)

        return step

    return guarded_pair(_init(noise), make_step, f"diffrax_stepper({type(solver).__name__}, {noise!r}, dt={dt:g})", dt)


def _levy_area_type(solver):
    import diffrax

    needed = getattr(solver, "minimal_levy_area", diffrax.AbstractBrownianIncrement)
    for kind in (diffrax.BrownianIncrement, diffrax.SpaceTimeLevyArea, diffrax.SpaceTimeTimeLevyArea):
        if issubclass(kind, needed):
            return kind
    raise ValueError(f"solver: needs Lévy area {needed.__name__}, which sgdsde cannot provide")


_PATH_CLASS = None


def _path_class():
    """A diffrax Brownian path for one step: increments √(t1 − t0)·z from draws made once."""
    global _PATH_CLASS
    if _PATH_CLASS is not None:
        return _PATH_CLASS
    import diffrax
    import equinox as eqx

    class StepBrownianIncrement(diffrax.AbstractBrownianPath):
        z: jax.Array
        hh: Any
        kk: Any
        levy_area: type = eqx.field(static=True)

        @property
        def t0(self):
            return -jnp.inf

        @property
        def t1(self):
            return jnp.inf

        def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
            del left
            if t1 is None:
                raise ValueError("sgdsde's one-step Brownian path only provides increments evaluate(t0, t1)")
            h = jnp.asarray(t1 - t0, self.z.dtype)
            std = jnp.sqrt(h)
            w = std * self.z
            if not use_levy:
                return w
            if self.levy_area is diffrax.BrownianIncrement:
                return diffrax.BrownianIncrement(dt=h, W=w)
            if self.levy_area is diffrax.SpaceTimeLevyArea:
                return diffrax.SpaceTimeLevyArea(dt=h, W=w, H=std / math.sqrt(12) * self.hh)
            return diffrax.SpaceTimeTimeLevyArea(
                dt=h, W=w, H=std / math.sqrt(12) * self.hh, K=std / math.sqrt(720) * self.kk
            )

    _PATH_CLASS = StepBrownianIncrement
    return _PATH_CLASS


def _make_path(key, shape, dtype, levy_area):
    import diffrax

    z = jax.random.normal(key, shape, dtype)
    hh = kk = None
    if levy_area is not diffrax.BrownianIncrement:
        hh = jax.random.normal(jax.random.fold_in(key, 1), shape, dtype)
    if levy_area is diffrax.SpaceTimeTimeLevyArea:
        kk = jax.random.normal(jax.random.fold_in(key, 2), shape, dtype)
    return _path_class()(z, hh, kk, levy_area)
