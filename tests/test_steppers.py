"""SGD on the quadratic (OU) problem against the exact discrete theory of docs/theory.md §5.

Tolerances: ``moments`` gives, per covariance entry, the standard error from the spread
between independent replicas (each replica's time average is one independent sample,
so time correlation is accounted for). Each entry must lie within 4 standard errors of
the exact value (two-sided Gaussian tail 6e-5 per entry). Each test also shows its
power: the nearest wrong theory is rejected by the same statistic.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd

HESSIAN = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.4], [0.0, 0.4, 3.0]])
NOISE = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 1.5]])
N = 64
LEARNING_RATES, BATCH_SIZES = [0.1, 0.3], [4, 16]


def _z_scores(measured, stderr, expected):
    iu = np.triu_indices(expected.shape[-1])
    return np.abs(measured[iu] - expected[iu]) / stderr[iu]


def _stationary_moments(sampling, replicas=300, burn_in=480, num_steps=4000, momentum=0.0):
    with jax.enable_x64(True):
        problem = sd.problems.quadratic(HESSIAN, NOISE, N, key=jax.random.key(11))
        hyper = sd.Hyper.grid(LEARNING_RATES, BATCH_SIZES, momentum)
        # epoch boundaries fall every m = N/S steps: every = 16 is a boundary for S = 4 and 16
        every = 16 if sampling == "epoch" else 1
        result = sd.run(jax.random.key(5), sd.sgd(sampling), problem, hyper, jnp.zeros(3), num_steps,
                        replicas=replicas, observers=[sd.observers.moments(burn_in=burn_in, every=every)])
    return result["moments"]


def _theory(sampling, lr, size, momentum=0.0):
    with jax.enable_x64(True):
        return np.asarray(sd.theory.sgd_stationary_cov(HESSIAN, NOISE, lr, size, sampling=sampling,
                                                       num_examples=N, momentum=momentum))


@pytest.mark.parametrize("sampling, wrong", [("iid", "subset"), ("subset", "iid"), ("epoch", "subset")])
def test_stationary_covariance_matches_exact_discrete_theory(sampling, wrong):
    moments = _stationary_moments(sampling)
    worst_wrong = 0.0
    for i, lr in enumerate(LEARNING_RATES):
        for j, size in enumerate(BATCH_SIZES):
            cov, stderr = moments["cov"][i, j], moments["cov_stderr"][i, j]
            z = _z_scores(cov, stderr, _theory(sampling, lr, size))
            assert z.max() < 4.0, (sampling, lr, size, z)
            worst_wrong = max(worst_wrong, _z_scores(cov, stderr, _theory(wrong, lr, size)).max())
            # relative precision reached, for the record: a few per cent of the diagonal
            assert np.all(np.diag(stderr) < 0.03 * np.diag(cov))
    assert worst_wrong > 10.0, f"the {wrong} theory should be rejected (max z {worst_wrong:.1f})"


def test_epoch_covariance_is_much_smaller_than_subset():
    """docs/theory.md §1: random reshuffling's noise sums to zero over an epoch, so its
    stationary covariance is smaller than fresh-subset SGD's in every direction (here
    by a factor ≈ 2 in trace; the size of the factor depends on A, η and S)."""
    subset, epoch = _theory("subset", 0.2, 8), _theory("epoch", 0.2, 8)
    assert np.linalg.eigvalsh(subset - epoch).min() > 0
    assert 1.5 < np.trace(subset) / np.trace(epoch) < 3.0


@pytest.mark.parametrize("momentum", [0.5, 0.9])
def test_momentum_variance_1d(momentum):
    """Heavy-ball SGD on a 1-D quadratic (iid sampling): Var = ησ²(1+β)/(Sh(1−β)(2(1+β)−ηh))."""
    h, sigma2, lr, size = 2.0, 1.5, 0.1, 4
    with jax.enable_x64(True):
        problem = sd.problems.quadratic([[h]], [[sigma2]], 200, key=jax.random.key(2))
        result = sd.run(jax.random.key(3), sd.sgd("iid"), problem, sd.Hyper(lr, size, momentum), jnp.zeros(1),
                        6000, replicas=300, observers=[sd.observers.moments(burn_in=1000)])
        exact = float(sd.theory.sgd_momentum_variance_1d(h, sigma2, lr, size, momentum))
        without = float(sd.theory.sgd_stationary_variance_1d(h, sigma2, lr, size))
    var, stderr = result["moments"]["cov"][0, 0], result["moments"]["cov_stderr"][0, 0]
    assert abs(var - exact) < 4 * stderr, (var, exact, stderr)
    assert abs(var - without) > 10 * stderr  # the 1/(1−β)-like factor is resolved


def test_momentum_covariance_3d():
    """3-D momentum: the augmented-state exact solution of sgd_stationary_cov."""
    moments = _stationary_moments("iid", momentum=0.5, replicas=200, burn_in=600, num_steps=3000)
    for i, lr in enumerate(LEARNING_RATES):
        for j, size in enumerate(BATCH_SIZES):
            z = _z_scores(moments["cov"][i, j], moments["cov_stderr"][i, j], _theory("iid", lr, size, 0.5))
            assert z.max() < 4.0, (lr, size, z)


def test_stepper_is_one_sgd_update():
    """One step equals θ − η ĝ with the batch the sampler draws (float64, exact)."""
    with jax.enable_x64(True):
        problem = sd.problems.linear_regression(40, 3, key=jax.random.key(0), regularization=0.1)
        stepper = sd.sgd("subset")
        state = stepper.init(jnp.array([0.5, -1.0, 2.0]), problem)
        key = jax.random.key(9)
        new = stepper.step(key, state, problem, sd.Hyper(0.3, 5))
        sampler = sd.sampling.make_sampler("subset")
        idx = np.asarray(sampler.draw(key, sampler.init(40), 40, jnp.int32(5), 5)[0])
        x, y = np.asarray(problem.data["x"]), np.asarray(problem.data["y"])
        theta = np.array([0.5, -1.0, 2.0])
        grad = x[idx].T @ (x[idx] @ theta - y[idx]) / 5 + 2 * 0.1 * theta
    np.testing.assert_allclose(new.params, theta - 0.3 * grad, rtol=1e-13)
    assert int(new.step) == 1 and not bool(new.diverged)
    assert len(set(idx.tolist())) == 5


def test_epoch_init_needs_problem():
    with pytest.raises(ValueError, match="problem"):
        sd.sgd("epoch").init(jnp.zeros(2))
    with pytest.raises(ValueError, match="sampling"):
        sd.sgd("bootstrap")
