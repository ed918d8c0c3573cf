"""SVAG (sd.svag, docs/theory.md §8) against SGD and the exact discrete theory of §5.

One SVAG call is θ' = θ − (η/ℓ)[((1+r)/2) ĝ₁ + ((1−r)/2) ĝ₂], r = √(2ℓ−1): mean g and
covariance ℓ f C/S, so on a quadratic it is SGD with step η/ℓ and batch size S/ℓ (noise
f C/(S/ℓ)), and its exact stationary covariance is
``sgd_stationary_cov(A, f·C, η/ℓ, S/ℓ, sampling="iid")`` (the finite-N factor f of the
real batch size S goes into C). Monte-Carlo tolerances: 4 standard errors of ``moments``
per entry (as in tests/test_steppers.py), with the power of each check shown by rejecting
the nearest wrong theory.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde.svag import svag_weights

from _rounding import rounding_atol

A = np.array([[2.0, 0.5], [0.5, 1.0]])  # eigenvalues 2.21, 0.79
C = np.array([[1.0, 0.5], [0.5, 2.0]])  # non-diagonal gradient-noise covariance
N, ETA, S = 64, 0.5, 4
F = (N - S) / (N - 1)  # subset (without replacement) factor


def _svag_theory(ell):
    """Exact stationary covariance of SVAG(ℓ) with subset batches: SGD at η/ℓ, S/ℓ, noise f·C."""
    with jax.enable_x64(True):
        return np.asarray(sd.theory.sgd_stationary_cov(A, F * C, ETA / ell, S / ell, sampling="iid"))


# ----------------------------------------------------------------------- ℓ = 1 is SGD
@pytest.mark.parametrize("sampling", ["iid", "subset"])
def test_ell_one_is_sgd_bit_for_bit(sampling):
    """Same keys, same program shape (a learning-rate × momentum grid, snapshots every step):
    the trajectories are identical, bit for bit."""
    with jax.enable_x64(True):
        problem = sd.problems.quadratic(A, C, N, key=jax.random.key(0))
        hyper = sd.Hyper.grid([0.1, 0.4], S, [0.0, 0.5])
        run = lambda stepper: sd.run(jax.random.key(3), stepper, problem, hyper, jnp.array([1.0, -1.0]), 20,
                                     replicas=3, observers=[sd.observers.snapshots(1)])
        svag, sgd = run(sd.svag(1, sampling)), run(sd.sgd(sampling))
    assert sd.svag(1, sampling).dt == 1.0
    values = svag["snapshots"]["values"]  # (2, 2, 21, 3, 2): η × β × times × replicas × d
    np.testing.assert_array_equal(values, sgd["snapshots"]["values"])
    assert np.all(values[:, :, -1] != values[:, :, 0])  # it moved


def test_one_call_is_the_svag_update():
    """One call at ℓ = 4 with momentum equals v' = βv − (η/ℓ)[w₁ĝ₁ + w₂ĝ₂], θ' = θ + v', the two
    batches drawn by the subset sampler from the two halves of the split step key, and a
    regulariser (whose gradient enters once: w₁ + w₂ = 1). Recomputed in NumPy: the sums
    (S = 5 examples per batch, d = 3) round differently, so the tolerance is the rounding
    bound of a sum of 2S + d terms of size η/ℓ·|w|·|x||xᵀθ − y| (tests/_rounding.py)."""
    ell, eta, size, beta, tau = 4.0, 0.3, 5, 0.5, 0.1
    w1, w2 = svag_weights(ell)
    assert math.isclose(w1 + w2, 1.0) and math.isclose(w1**2 + w2**2, ell)
    with jax.enable_x64(True):
        problem = sd.problems.linear_regression(40, 3, key=jax.random.key(0), regularization=tau)
        stepper = sd.svag(ell, "subset")
        theta, velocity = np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.0, -0.2])
        state = stepper.init(jnp.asarray(theta), problem)._replace(velocity=jnp.asarray(velocity))
        key = jax.random.key(9)
        hyper = sd.Hyper(eta, size, beta)
        new = jax.jit(lambda k, s: stepper.step(k, s, problem, hyper))(key, state)
        draw = jax.jit(lambda k: sd.sampling.make_sampler("subset").draw(k, (), 40, jnp.int32(size), size)[0])
        first, second = (np.asarray(draw(k)) for k in jax.random.split(key))
    x, y = np.asarray(problem.data["x"]), np.asarray(problem.data["y"])
    batch_grad = lambda idx: x[idx].T @ (x[idx] @ theta - y[idx]) / size + 2 * tau * theta
    velocity_new = beta * velocity - eta / ell * (w1 * batch_grad(first) + w2 * batch_grad(second))
    terms = eta / ell * (abs(w1) + abs(w2)) * np.abs(x).max() * (np.abs(x @ theta - y).max() + 1)
    atol = rounding_atol(np.abs(theta).sum() + terms, 2 * size + 3 + 8)
    np.testing.assert_allclose(new.params, theta + velocity_new, rtol=0, atol=atol)
    assert not set(first.tolist()) == set(second.tolist())  # two different batches
    assert int(new.step) == 1 and stepper.dt == 0.25


# ------------------------------------------------------------ stationary covariance
def test_stationary_covariance_matches_exact_discrete_theory():
    """SVAG(ℓ), subset batches, ℓ = 1, 4, 16, over the same 200 SGD steps (200ℓ calls) after a
    burn-in of 40 SGD steps (relaxation time 1/(ηλ_min) = 2.5 SGD steps): every covariance
    entry within 4 stderr of the exact SVAG covariance. Power: for ℓ ≥ 4 the SGD covariance
    (ℓ = 1) is rejected, and at ℓ = 4 the continuous Lyapunov (SDE) covariance too, by more
    than 10 stderr (exact relative gaps of Σ₀₀ to the SDE value: 123 %, 15 %, 3.4 % at
    ℓ = 1, 4, 16; stderr about 1 % of the diagonal)."""
    with jax.enable_x64(True):
        problem = sd.problems.quadratic(A, C, N, key=jax.random.key(0))
        sgd_cov = _svag_theory(1)
        sde_cov = np.asarray(sd.theory.ou_stationary_cov(A, F * C, ETA, S))
        for ell in (1, 4, 16):
            result = sd.run(jax.random.key(ell), sd.svag(ell), problem, sd.Hyper(ETA, S), jnp.zeros(2),
                            240 * ell, replicas=200, observers=[sd.observers.moments(burn_in=40 * ell)])
            cov, stderr = np.asarray(result["moments"]["cov"]), np.asarray(result["moments"]["cov_stderr"])
            z = np.abs(cov - _svag_theory(ell)) / stderr
            assert z.max() < 4.0, (ell, z)
            if ell > 1:
                assert (np.abs(cov - sgd_cov) / stderr).max() > 10, ell
            if ell == 4:
                assert (np.abs(cov - sde_cov) / stderr).max() > 10


def test_exact_covariance_tends_to_the_sde_like_one_over_ell():
    """‖Σ_ℓ − Σ_SDE‖_F against ℓ = 4 … 256 (exact linear algebra, float64). In A's eigenbasis
    entry (i, j) of the gap is Σ_SDE,ij · y/(1 − y), y = (η/ℓ)λ_iλ_j/(λ_i + λ_j) ≤ ηλ_max/(2ℓ),
    whose log-log slope in ℓ is −1 − y/(1 − y); the norm's slope, and the least-squares fit of
    it, are averages of these, so the fitted order p lies in [1, 1 + x/(1 − x)] with
    x = ηλ_max/(2·4) = 0.14 (rounding: the solver is exact to ~1e-15 relative, the smallest
    gap is 2e-3 relative, so 1e-9 covers it)."""
    ells = 4.0 * 2.0 ** np.arange(7)
    with jax.enable_x64(True):
        sde_cov = np.asarray(sd.theory.ou_stationary_cov(A, F * C, ETA, S))
        gaps = np.array([np.linalg.norm(_svag_theory(ell) - sde_cov) for ell in ells])
    order = -np.polyfit(np.log(ells), np.log(gaps), 1)[0]
    x = ETA * np.linalg.eigvalsh(A).max() / (2 * ells[0])
    assert 1 - 1e-9 <= order <= 1 + x / (1 - x) + 1e-9, (order, x / (1 - x))  # measured 1.021 ≤ 1.16


# ---------------------------------------------------------------- clock, jit, vmap
def test_clock_and_vmap():
    """dt = 1/ℓ: after 12 calls of svag(4) the result reports 3 SGD steps. ``sd.simulate``
    under ``jax.vmap`` over η equals the grid run of ``sd.run`` (the same per-configuration
    program; to rounding: the vmapped and the grid programs may fuse differently)."""
    with jax.enable_x64(True):
        problem = sd.problems.quadratic(A, C, N, key=jax.random.key(0))
        stepper, etas = sd.svag(4, "iid"), jnp.array([0.1, 0.3])
        result = sd.run(jax.random.key(1), stepper, problem, sd.Hyper(etas, S), jnp.ones(2), 12, replicas=4,
                        observers=[sd.observers.snapshots(4), sd.observers.endpoint()])
        assert result.dt == 0.25
        np.testing.assert_allclose(result.on_clock("steps")["snapshots"]["times"], [[0, 1, 2, 3]] * 2)
        one = lambda eta: sd.simulate(jax.random.key(1), stepper, problem, sd.Hyper(eta, S), jnp.ones(2), 12,
                                      replicas=4)["endpoint"]
        vmapped = jax.vmap(one)(etas)
    # 12 calls of a 2-D update with ≤ 2·S + 2 terms of size ≤ 1: a loose 1e3·eps bound
    np.testing.assert_allclose(vmapped, result["endpoint"], rtol=0, atol=rounding_atol(1.0, 1000))


# -------------------------------------------------------------------------- validation
@pytest.mark.parametrize("ell", [0, 0.5, -2, float("nan"), float("inf"), "2", True, [2.0], None])
def test_bad_ell(ell):
    with pytest.raises(ValueError, match="^ell: "):
        sd.svag(ell)


@pytest.mark.parametrize("sampling", ["epoch", "random", None])
def test_bad_sampling(sampling):
    with pytest.raises(ValueError, match="^sampling: "):
        sd.svag(2, sampling)


def test_inline_svag_is_one_object():
    assert sd.svag(4) is sd.svag(4.0) is sd.svag(np.float64(4.0), "subset")
    assert sd.svag(4) is not sd.svag(4, "iid") and sd.svag(4) is not sd.svag(8)
