"""The second-order stochastic modified equation (sd.sme2, docs/theory.md §8): its drift
against a dense Hessian, one step against its formula, and its weak order 2 in η
against SGD (Euler–Maruyama of the first-order SDE: order 1) on a 1-D double well.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import sgdsde as sd
from sgdsde.sme import sme2_drift

from _rounding import rounding_atol


def _tanh_problem():
    """l_i(w, b) = log cosh(wᵀx_i + b), R = ¼‖w‖⁴: a non-quadratic loss (Hessian not constant)
    over a dict of params, N = 12, d = 3 + 1."""
    x = np.asarray(jax.random.normal(jax.random.key(0), (12, 3)))
    loss = lambda p, xi: jnp.log(jnp.cosh(p["w"] @ xi + p["b"]))
    return sd.Problem(loss, jnp.asarray(x), regularizer=lambda p: 0.25 * jnp.sum(p["w"] ** 2) ** 2), x


def test_drift_is_g_plus_half_eta_hessian_times_g():
    """sme2_drift = g + (η/2) H g with H the dense Hessian (jax.hessian of the flattened loss).
    Both sides sum N = 12 per-example terms of size ≤ |x|²·|g| per entry, formed in a dozen
    operations each (tanh'' and the regulariser's): rounding bound (N + d + 12)·eps·Σ|terms|."""
    eta = 0.3
    with jax.enable_x64(True):
        problem, x = _tanh_problem()
        params = {"w": jnp.array([0.4, -0.7, 0.2]), "b": jnp.array(0.3)}
        flat, unravel = ravel_pytree(params)
        dense = np.asarray(jax.jit(jax.hessian(lambda v: problem.loss(unravel(v))))(flat))
        g = np.asarray(ravel_pytree(jax.jit(problem.grad)(params))[0])
        got = np.asarray(ravel_pytree(jax.jit(sme2_drift)(problem, params, eta))[0])
    expected = g + 0.5 * eta * dense @ g
    x_abs = np.abs(np.concatenate([x, np.ones((12, 1))], axis=1))
    terms = np.abs(g) + 0.5 * eta * ((x_abs.T @ x_abs) / 12 + 3 * np.sum(np.asarray(params["w"]) ** 2)) @ np.abs(g)
    np.testing.assert_allclose(got, expected, rtol=0, atol=rounding_atol(terms, 12 + 4 + 12))
    assert np.abs(expected - g).max() > 1e3 * rounding_atol(terms, 28)  # the correction is resolved


def test_one_step_is_the_sme2_update():
    """One call on the double well L = (θ² − 1)² (g = 4θ(θ² − 1), H = 12θ² − 4, noise σ²),
    with momentum β = 0.3 (effective rate η_e = η/(1 − β)), dt = 0.25, subset noise factor f:
    θ' = θ − η_e dt (g + (η_e/2) H g) + η_e √(f/S) √dt ξ, ξ = noise.sample(key). Closed form in
    NumPy; a handful of operations on numbers ≤ 10: 32·eps·Σ|terms|."""
    eta, beta, size, dt, sigma2, theta = 0.1, 0.3, 4, 0.25, 2.0, 0.7
    with jax.enable_x64(True):
        problem = sd.problems.double_well_1d(1.0, 1.0, sigma2=sigma2, num_examples=16, key=jax.random.key(0))
        model = sd.noise.isotropic(sigma2, finite_n=True)
        stepper = sd.sme2(model, dt)
        key, hyper = jax.random.key(5), sd.Hyper(eta, size, beta)
        state = stepper.init(jnp.array([theta]), problem)
        new = jax.jit(lambda k, s: stepper.step(k, s, problem, hyper))(key, state)
        xi = float(model.sample(key, jnp.array([theta]), problem)[0])
    lr, f = eta / (1 - beta), (16 - size) / 15
    g, h = 4 * theta * (theta**2 - 1), 12 * theta**2 - 4
    drift, noise_term = lr * dt * (g + 0.5 * lr * h * g), lr * math.sqrt(f / size * dt) * xi
    expected = theta - drift + noise_term
    np.testing.assert_allclose(new.params, [expected], rtol=0,
                               atol=rounding_atol(abs(theta) + abs(drift) + abs(noise_term) + 10, 32))
    assert int(new.step) == 1 and stepper.dt == dt


# --------------------------------------------------------------- weak order in η
SIGMA2, THETA0, HORIZON, DT = 0.01, 0.5, 0.5, 1 / 128
ETAS = np.array([1 / 32, 1 / 16, 1 / 8])


def _deterministic_gaps(order: int) -> np.ndarray:
    """σ → 0 limit of the gap E_SGD[θ_T] − E_model[θ_T] on L = (θ² − 1)²: gradient descent
    against the model's ODE integrated by Euler with the test's step (η·DT in SME time), as
    the stepper does."""
    grad, hess = (lambda u: 4 * u * (u * u - 1)), (lambda u: 12 * u * u - 4)
    gaps = []
    for eta in ETAS:
        gd = THETA0
        for _ in range(int(round(HORIZON / eta))):
            gd -= eta * grad(gd)
        model, h = THETA0, eta * DT
        for _ in range(int(round(HORIZON / h))):
            model -= h * (grad(model) + (0.5 * eta * hess(model) * grad(model) if order == 2 else 0.0))
        gaps.append(gd - model)
    return np.array(gaps)


def test_weak_order_two_against_sgd():
    """E[θ_T] at SME time T = 0.5 from θ₀ = 0.5 on the double well L = (θ² − 1)² (Hessian
    −1 … 8 along the path) with per-example noise σ² = 0.01 (`iid`, S = 1), η = 1/32, 1/16, 1/8
    (η λ_max ≤ 1), by sd.compare: the gap to SGD of sme2 has fitted order 2 (the 95 % CI
    excludes 1), that of euler_maruyama (the first-order SDE) order 1.

    Design. Both SDEs are integrated with dt = 1/128 SGD steps (2048 calls at η = 1/32), so
    that Euler–Maruyama's own O(η·dt) error is small beside the model's O(η²) gap (the σ → 0
    computation below: −8 % of it at η = 1/32, −2 % at 1/8). The noise is small so that
    6000 replicas resolve the smallest gap (≈ 5·10⁻⁴) at ≈ 5 stderr; at this noise level the
    gaps are dominated by the drift, which is where SME-2 differs from the first-order SDE
    (both have the same diffusion). Allowances: the σ → 0 gaps' local log-log slopes (the
    O(η³) and O(η²) terms) lie within 0.2 of 2 for sme2 and within 0.05 of 1 for
    euler_maruyama (asserted below), so the fitted slopes must lie within those plus
    3 stderr. Measured (seeds 1/2): sme2 1.75 ± 0.15 (95 % CI [1.46, 2.04]), euler_maruyama
    0.99 ± 0.03; over the seed pairs 3/4 and 5/6, 1.90 ± 0.08 and 1.80 ± 0.18, 1.00 and 1.01.
    The measured gaps (5.2·10⁻⁴, 2.5·10⁻³, 7.9·10⁻³ for sme2) are within 2 stderr of the
    σ → 0 ones (5.6·10⁻⁴, 2.2·10⁻³, 8.0·10⁻³)."""
    for order, target, allowance in ((2, 2.0, 0.2), (1, 1.0, 0.05)):
        local = np.diff(np.log(np.abs(_deterministic_gaps(order)))) / np.diff(np.log(ETAS))
        assert np.all(np.abs(local - target) < allowance), (order, local)
    common = dict(learning_rates=ETAS, batch_size=1, observables={"theta": sd.compare.coordinate(0)},
                  times=[HORIZON])
    with jax.enable_x64(True):
        problem = sd.problems.double_well_1d(1.0, 1.0, sigma2=SIGMA2, num_examples=16, key=jax.random.key(0))
        model = sd.noise.isotropic(SIGMA2)  # f = 1: iid sampling
        theta0 = jnp.array([THETA0])
        second = sd.compare.weak_error(jax.random.key(1), problem, sd.sme2(model, DT), theta0, sgd=sd.sgd("iid"),
                                       replicas=6000, **common)
        em = sd.compare.expectations(jax.random.key(2), problem, sd.euler_maruyama(model, DT), theta0,
                                     replicas=1500, **common)  # its gaps are 10× larger: fewer replicas
        first = sd.compare.gap(second.sgd, em)
    for result in (second, first):
        assert result.gap["theta"]["resolved"].all(), result.table()
    fit2, fit1 = second.order["theta"][0], first.order["theta"][0]
    assert fit2.ci[0] > 1.0, second.table()
    assert abs(fit2.slope - 2) < 3 * fit2.stderr + 0.2, second.table()
    assert abs(fit1.slope - 1) < 3 * fit1.stderr + 0.05 and fit1.ci[1] < 2, first.table()
    # the second-order model is closer at every η
    assert np.all(np.abs(second.gap["theta"]["value"]) < 0.5 * np.abs(first.gap["theta"]["value"]))


# ------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("dt", [0, -1.0, float("nan"), "0.1", True])
def test_bad_dt(dt):
    with pytest.raises(ValueError, match="^dt: "):
        sd.sme2(sd.noise.isotropic(1.0), dt)


def test_bad_noise():
    with pytest.raises(ValueError, match="^noise: "):
        sd.sme2(1.0, 0.5)


def test_inline_sme2_is_one_object():
    make = lambda s2=1.0, dt=0.5: sd.sme2(sd.noise.isotropic(s2), dt)
    assert make() is make() and make() is not make(2.0) and make() is not make(dt=0.25)
    assert make() is not sd.euler_maruyama(sd.noise.isotropic(1.0), 0.5)
