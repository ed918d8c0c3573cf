"""sgdsde.simulate: the pure core under sd.run — a pytree of JAX arrays that works under
jax.jit, jax.vmap and jax.grad; sd.run gives its numbers bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd

from _rounding import iterated_map_atol


@pytest.fixture(scope="module")
def quad():
    with jax.enable_x64(True):
        a = np.array([[1.0, 0.3], [0.3, 2.0]])
        c = np.array([[1.0, 0.2], [0.2, 0.5]])
        yield sd.problems.quadratic(a, c, 64, key=jax.random.key(0))


OBSERVERS = (sd.observers.endpoint(), sd.observers.moments(burn_in=10), sd.observers.loss_curve(5))


def test_run_is_simulate_bit_for_bit(quad):
    """The plain sd.run executes sd.simulate's one compiled program: the same bits."""
    with jax.enable_x64(True):
        args = (jax.random.key(3), sd.sgd("subset"), quad, sd.Hyper.grid([0.05, 0.2], [4, 16]), jnp.ones(2), 40)
        sim = sd.simulate(*args, replicas=5, observers=OBSERVERS)
        run = sd.run(*args, replicas=5, observers=OBSERVERS)
    assert isinstance(sim, sd.Simulation) and sim["endpoint"].shape == (2, 2, 5, 2)
    for name in ("endpoint", "moments", "loss_curve"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, jax.tree_util.tree_map(np.asarray, sim[name]),
                               run.on_clock("calls")[name])
    np.testing.assert_array_equal(sim.diverged, run.diverged)
    np.testing.assert_array_equal(sim.state.params, run.state.params)


def test_simulation_and_run_result_are_pytrees(quad):
    with jax.enable_x64(True):
        args = (jax.random.key(1), sd.sgd(), quad, sd.Hyper(0.1, 8), jnp.zeros(2), 10)
        sim = sd.simulate(*args, replicas=3)
        run = sd.run(*args, replicas=3, clock="sme")
    leaves, tree = jax.tree_util.tree_flatten(sim)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    again = jax.tree_util.tree_unflatten(tree, leaves)
    np.testing.assert_array_equal(again["endpoint"], sim["endpoint"])
    doubled = jax.tree_util.tree_map(lambda x: 2 * x if np.issubdtype(np.asarray(x).dtype, np.floating) else x, run)
    assert isinstance(doubled, sd.RunResult) and doubled.clock == "sme" and doubled.grid_shape == ()
    np.testing.assert_array_equal(doubled["endpoint"], 2 * run["endpoint"])
    np.testing.assert_allclose(doubled.duration, 2 * run.duration, rtol=1e-15)  # η is a leaf: SME time doubles


def test_simulate_under_jit_and_vmap(quad):
    """jit over η and vmap over η and over keys give the numbers of the runs done one by
    one. These are different XLA programs (batched vs not): they agree to the rounding of
    one SGD trajectory (tests/_rounding.py: per step |θ| + η(‖A‖|θ| + max|x_i|), ~10
    operations, contraction ρ = 1 − 0.05·λ_min ≈ 0.96 over 40 steps)."""
    with jax.enable_x64(True):
        theta0 = jnp.ones(2)
        stepper, key = sd.sgd("iid"), jax.random.key(5)
        end = lambda k, eta: sd.simulate(k, stepper, quad, sd.Hyper(eta, 8), theta0, 40, replicas=4)["endpoint"]
        etas = jnp.array([0.05, 0.1, 0.2])
        jitted = jax.jit(lambda eta: end(key, eta))(0.1)
        over_eta = jax.vmap(lambda eta: end(key, eta))(etas)
        keys = jax.random.split(key, 3)
        over_keys = jax.vmap(lambda k: end(k, 0.1))(keys)
        alone = [np.asarray(sd.run(key, stepper, quad, sd.Hyper(float(e), 8), theta0, 40, replicas=4)["endpoint"])
                 for e in etas]
        alone_keys = [np.asarray(end(k, 0.1)) for k in keys]
    x_max = float(np.abs(np.asarray(quad.data)).max())
    atol = iterated_map_atol(1.5 + 0.2 * (2.1 * 1.5 + x_max), operations=8 + 10, steps=40, contraction=0.96)
    np.testing.assert_allclose(jitted, alone[1], rtol=0, atol=atol)
    for i in range(3):
        np.testing.assert_allclose(over_eta[i], alone[i], rtol=0, atol=atol)
        np.testing.assert_allclose(over_keys[i], alone_keys[i], rtol=0, atol=atol)
    assert not np.allclose(over_keys[0], over_keys[1])


def _per_replica_derivative(loss_of_eta, eta):
    """d/dη of each replica's final loss (forward mode: R outputs, one input), and the
    Monte-Carlo mean and standard error of their average."""
    per_replica = np.asarray(jax.jacfwd(loss_of_eta)(eta))
    return per_replica.mean(), per_replica.std(ddof=1) / np.sqrt(per_replica.size), per_replica


def test_grad_through_euler_maruyama_matches_the_exact_derivative():
    """EM on L = hθ²/2 with isotropic noise σ² (reparameterised: θ' = θ − ηhθ dt + η√(dt/S) σ z,
    z independent of η) is a linear AR(1) chain; its stationary variance is
    v = ησ²/(S h (2 − ηh dt)), so E[L] = ησ²/(2S(2 − ηh dt)) and exactly
        d E[L]/dη = σ² / (S (2 − ηh dt)²).
    From θ₀ = 0 after K = 300 steps the transient term K·ρ^{2K} (ρ = 1 − ηh dt = 0.9) is
    ~1e-25. The pathwise derivatives of 4000 replicas estimate it; tolerance 4 standard
    errors (two-sided p ≈ 6e-5)."""
    h, sigma2, size, eta, dt = 1.0, 1.0, 4, 0.2, 0.5
    with jax.enable_x64(True):
        problem = sd.problems.quadratic([[h]], [[sigma2]], 16, key=jax.random.key(0))
        stepper = sd.euler_maruyama(sd.noise.isotropic(sigma2), dt)

        def final_losses(eta):
            sim = sd.simulate(jax.random.key(11), stepper, problem, sd.Hyper(eta, size), jnp.zeros(1), 300,
                              replicas=4000)
            return jax.vmap(problem.loss)(sim["endpoint"])

        mean, stderr, _ = _per_replica_derivative(final_losses, eta)
        reverse = jax.grad(lambda e: jnp.mean(final_losses(e)))(eta)
    exact = sigma2 / (size * (2 - eta * h * dt) ** 2)
    assert abs(mean - exact) < 4 * stderr, (mean, stderr, exact)
    assert stderr < 0.05 * exact  # the check has power: a 20 % error would show
    # reverse mode = the average of the forward-mode derivatives (same sums, other order)
    np.testing.assert_allclose(reverse, mean, rtol=1e-9)


def test_grad_through_sgd_matches_the_exact_discrete_theory(quad):
    """SGD (iid minibatches, drawn independently of η) on the quadratic: E[L] = ½ tr(A Σ(η))
    with Σ(η) the exact discrete stationary covariance (sd.theory.sgd_stationary_cov), so
    d E[L]/dη is that closed form's derivative (JAX through the Lyapunov solve). 4000
    replicas × 300 steps from θ* (transient ρ^{2K}, ρ = 1 − 0.1·0.91: ~1e-24); 4 s.e."""
    a, c, eta, size = quad.info["hessian"], quad.info["noise_cov"], 0.1, 4
    with jax.enable_x64(True):
        def final_losses(eta):
            sim = sd.simulate(jax.random.key(2), sd.sgd("iid"), quad, sd.Hyper(eta, size), jnp.zeros(2), 300,
                              replicas=4000)
            return jax.vmap(quad.loss)(sim["endpoint"])

        mean, stderr, _ = _per_replica_derivative(final_losses, eta)
        closed = lambda e: 0.5 * jnp.trace(jnp.asarray(a) @ sd.theory.sgd_stationary_cov(a, c, e, size))
        exact = float(jax.grad(closed)(eta))
        h = 1e-5  # the closed form's derivative itself, by central differences (O(h²) ≈ 1e-10)
        np.testing.assert_allclose(exact, (closed(eta + h) - closed(eta - h)) / (2 * h), rtol=1e-6)
    assert abs(mean - exact) < 4 * stderr, (mean, stderr, exact)
    assert stderr < 0.05 * abs(exact)


def test_traced_batch_size_needs_max_batch_size(quad):
    with jax.enable_x64(True):
        f = lambda s: sd.simulate(jax.random.key(0), sd.sgd(), quad, sd.Hyper(0.1, s), jnp.zeros(2), 3)["endpoint"]
        with pytest.raises(ValueError, match="max_batch_size"):
            jax.jit(f)(8)
        g = lambda s: sd.simulate(jax.random.key(0), sd.sgd(), quad, sd.Hyper(0.1, s, max_batch_size=16),
                                  jnp.zeros(2), 3)["endpoint"]
        np.testing.assert_array_equal(jax.jit(g)(8).shape, (1, 2))


def test_bad_values_are_still_checked_before_compiling(quad):
    with pytest.raises(ValueError, match="learning_rate"):
        sd.simulate(jax.random.key(0), sd.sgd(), quad, sd.Hyper(-0.1, 8), jnp.zeros(2), 3)
    with pytest.raises(ValueError, match="replicas"):
        sd.simulate(jax.random.key(0), sd.sgd(), quad, sd.Hyper(0.1, 8), jnp.zeros(2), 3, replicas=0)
