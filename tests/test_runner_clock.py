"""The clock option of the runner: ``run(..., clock=...)`` and ``RunResult.on_clock``.

SGD time after k calls of a stepper is k·dt SGD steps; SME time is Σ η over the elapsed
SGD steps (η·k·dt for a constant η). Every expected value below is computed by hand in
NumPy from the run's own step counts, so the checks are exact (no Monte Carlo).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd


@pytest.fixture(scope="module")
def quad1():
    with jax.enable_x64(True):
        yield sd.problems.quadratic([[1.0]], [[1.0]], 16, key=jax.random.key(0))


# one stepper and one observer list for every run, so that runs of the same size share
# one compiled program (the runner caches programs per stepper and observer objects)
SGD = sd.sgd("iid")
OBSERVERS = [
    sd.observers.snapshots(4),
    sd.observers.loss_curve(8),
    sd.observers.first_passage(lambda theta: theta[0] < 0.5),
    sd.observers.moments(burn_in=4),
]
STEPS, REPLICAS = 48, 6


def _passage_stats(times):
    """mean_time and mean_time_stderr over the replicas that arrived (times ≥ 0)."""
    hit = times >= 0
    n = max(hit.sum(), 1)
    mean = times[hit].sum() / n
    var = ((times[hit] - mean) ** 2).sum() / max(n - 1, 1)
    return mean, np.sqrt(var / n)


def test_constant_learning_rate(quad1):
    """One configuration, constant η: SME time = η·k; SGD steps unchanged (dt = 1)."""
    eta = 0.1
    with jax.enable_x64(True):
        args = (jax.random.key(1), SGD, quad1, sd.Hyper(eta, 2), jnp.array([2.0]), STEPS)
        steps = sd.run(*args, replicas=REPLICAS, observers=OBSERVERS)
        sme = sd.run(*args, replicas=REPLICAS, observers=OBSERVERS, clock="sme")
    assert steps.clock == "steps" and steps.dt == 1.0 and sme.clock == "sme" and sme.dt == 1.0
    np.testing.assert_array_equal(steps["snapshots"]["times"], np.arange(0, STEPS + 1, 4))
    np.testing.assert_allclose(sme["snapshots"]["times"], eta * np.arange(0, STEPS + 1, 4), rtol=1e-15)
    np.testing.assert_allclose(sme["loss_curve"]["times"], eta * np.arange(0, STEPS + 1, 8), rtol=1e-15)
    # values and non-time outputs are untouched
    np.testing.assert_array_equal(sme["snapshots"]["values"], steps["snapshots"]["values"])
    np.testing.assert_array_equal(sme["moments"]["cov"], steps["moments"]["cov"])
    # first passage: times scaled, −1 (never) kept, mean and stderr recomputed
    fp_steps, fp_sme = steps["first_passage"], sme["first_passage"]
    assert (fp_steps["times"] >= 0).sum() >= 3  # the test exercises real passages
    expected = np.where(fp_steps["times"] >= 0, eta * fp_steps["times"], -1.0)
    np.testing.assert_allclose(fp_sme["times"], expected, rtol=1e-15)
    mean, stderr = _passage_stats(expected)
    np.testing.assert_allclose(fp_sme["mean_time"], mean, rtol=1e-12)
    np.testing.assert_allclose(fp_sme["mean_time_stderr"], stderr, rtol=1e-12)
    np.testing.assert_allclose(fp_sme["mean_time"], eta * fp_steps["mean_time"], rtol=1e-6)
    # converting afterwards equals asking up front, and converts back
    back = sme.on_clock("steps")
    np.testing.assert_array_equal(back["snapshots"]["times"], steps["snapshots"]["times"])
    np.testing.assert_array_equal(back["first_passage"]["times"], fp_steps["times"])
    np.testing.assert_allclose(steps.on_clock("sme")["first_passage"]["mean_time"], mean, rtol=1e-12)
    np.testing.assert_allclose(sme.duration, eta * STEPS)
    np.testing.assert_allclose(sme.clock_times([0, 10, 40]), eta * np.array([0, 10, 40]))
    np.testing.assert_array_equal(steps.clock_times(7), 7)


def test_grid_of_learning_rates(quad1):
    """A grid (η × S): the times take the grid's shape, each row with its own η."""
    etas, sizes = np.array([0.05, 0.1, 0.3]), [1, 4]
    with jax.enable_x64(True):
        result = sd.run(jax.random.key(2), SGD, quad1, sd.Hyper.grid(etas, sizes),
                        jnp.array([2.0]), STEPS, replicas=REPLICAS, observers=OBSERVERS, clock="sme")
    k = np.arange(0, STEPS + 1, 4)
    times = result["snapshots"]["times"]
    assert times.shape == (3, 2, k.size)
    np.testing.assert_allclose(times, etas[:, None, None] * k[None, None, :] * np.ones((1, 2, 1)), rtol=1e-15)
    raw = result.on_clock("calls")["first_passage"]["times"]
    fp = result["first_passage"]
    assert fp["times"].shape == (3, 2, REPLICAS) and fp["mean_time"].shape == (3, 2)
    for i, eta in enumerate(etas):
        for j in range(2):
            expected = np.where(raw[i, j] >= 0, eta * raw[i, j], -1.0)
            np.testing.assert_allclose(fp["times"][i, j], expected, rtol=1e-15)
            mean, stderr = _passage_stats(expected)
            np.testing.assert_allclose(fp["mean_time"][i, j], mean, rtol=1e-12)
            np.testing.assert_allclose(fp["mean_time_stderr"][i, j], stderr, rtol=1e-12)
    np.testing.assert_allclose(result.duration, etas[:, None] * STEPS * np.ones((1, 2)))


def test_learning_rate_schedule(quad1):
    """A schedule: SME time is the cumulative Σ_{j<k} η_j, not η_k·k."""
    schedule = lambda k: 0.3 / (1.0 + 0.1 * k)
    eta = 0.3 / (1.0 + 0.1 * np.arange(STEPS))
    elapsed = np.concatenate([[0.0], np.cumsum(eta)])
    with jax.enable_x64(True):
        result = sd.run(jax.random.key(3), SGD, quad1, sd.Hyper(schedule, 2),
                        jnp.array([2.0]), STEPS, replicas=REPLICAS, observers=OBSERVERS, clock="sme")
    np.testing.assert_allclose(result["snapshots"]["times"], elapsed[::4], rtol=1e-12)
    np.testing.assert_allclose(result["loss_curve"]["times"], elapsed[::8], rtol=1e-12)
    raw = result.on_clock("steps")["first_passage"]["times"]
    assert (raw >= 0).sum() >= 3
    expected = np.where(raw >= 0, elapsed[np.maximum(raw, 0)], -1.0)
    np.testing.assert_allclose(result["first_passage"]["times"], expected, rtol=1e-12)
    mean, _ = _passage_stats(expected)
    np.testing.assert_allclose(result["first_passage"]["mean_time"], mean, rtol=1e-12)
    np.testing.assert_allclose(result.duration, elapsed[-1], rtol=1e-12)
    assert not np.isclose(result.duration, schedule(STEPS) * STEPS)


def test_sde_stepper_dt_quarter(quad1):
    """An SDE stepper with dt = 0.25: 4 calls per SGD step. Default clock: SGD steps, k·dt;
    "calls": k, as the runner counts them; "sme": η·k·dt, and with a schedule Σ η(⌊k·dt⌋)·dt."""
    dt, eta = 0.25, np.array([0.1, 0.2])
    stepper = sd.euler_maruyama(sd.noise.isotropic(1.0), dt=dt)
    assert stepper.dt == dt
    with jax.enable_x64(True):
        args = (jax.random.key(4), stepper, quad1, sd.Hyper(eta, 2), jnp.array([2.0]), STEPS)
        steps = sd.run(*args, replicas=REPLICAS, observers=OBSERVERS)
        default = sd.run(*args, replicas=REPLICAS, observers=OBSERVERS, clock="calls")  # the runner's count
        sme = default.on_clock("sme")
        scheduled = sd.run(jax.random.key(4), stepper, quad1, sd.Hyper(lambda k: 0.2 / (1.0 + k), 2),
                           jnp.array([2.0]), STEPS, replicas=REPLICAS, observers=OBSERVERS, clock="sme")
    assert default.clock == "calls" and steps.clock == "steps" and sme.clock == "sme"
    assert default.dt == steps.dt == dt
    k = np.arange(0, 49, 4)
    np.testing.assert_array_equal(default["snapshots"]["times"][0], k)
    np.testing.assert_allclose(steps["snapshots"]["times"], np.tile(k * dt, (2, 1)), rtol=1e-15)
    np.testing.assert_allclose(sme["snapshots"]["times"], eta[:, None] * dt * k, rtol=1e-15)
    raw = default["first_passage"]["times"]
    assert (raw >= 0).sum() >= 3
    np.testing.assert_allclose(steps["first_passage"]["times"], np.where(raw >= 0, dt * raw, -1.0))
    np.testing.assert_allclose(steps["first_passage"]["mean_time"], dt * default["first_passage"]["mean_time"],
                               rtol=1e-6)
    np.testing.assert_allclose(sme["first_passage"]["times"], np.where(raw >= 0, eta[:, None] * dt * raw, -1.0))
    np.testing.assert_allclose(steps.duration, [12.0, 12.0])
    np.testing.assert_allclose(sme.duration, eta * 12.0)
    # schedule evaluated at the SGD step containing each call: calls 4j … 4j+3 use η_j
    elapsed = np.concatenate([[0.0], np.cumsum(dt * 0.2 / (1.0 + np.arange(48) // 4))])
    np.testing.assert_allclose(scheduled["snapshots"]["times"], elapsed[::4], rtol=1e-12)


def test_divergence_time(quad1):
    """divergence_step stays the index of the update (calls); divergence_time is the
    time after it on the result's clock (−1 if none)."""
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.DivergenceWarning)
        stepper = sd.euler_maruyama(sd.noise.isotropic(1.0), dt=0.5)
        hyper = sd.Hyper(np.array([0.1, 1e20]), 2)  # the second one blows up (|1 − η dt h| ≫ 1)
        result = sd.run(jax.random.key(5), stepper, quad1, hyper, jnp.array([1e100]), 20, replicas=3, clock="sme")
    assert not result.diverged[0].any() and result.diverged[1].all()
    np.testing.assert_array_equal(result.divergence_time[0], -1)
    step = result.divergence_step[1]
    np.testing.assert_allclose(result.divergence_time[1], 1e20 * 0.5 * (step + 1))
    np.testing.assert_allclose(result.on_clock("steps").divergence_time[1], 0.5 * (step + 1))
    np.testing.assert_array_equal(result.on_clock("calls").divergence_time[1], step + 1)
    np.testing.assert_array_equal(result.on_clock("calls").divergence_step, result.divergence_step)


def test_bad_clock(quad1, monkeypatch):
    from sgdsde import runner

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(runner, "_compile", no_compile)
    for bad in ("epochs", "SME", 1, True):
        with pytest.raises(ValueError, match="^clock: "):
            sd.run(jax.random.key(0), sd.sgd(), quad1, sd.Hyper(0.1, 2), jnp.ones(1), 5, clock=bad)


def test_custom_observer_keeps_calls(quad1):
    """An observer without ``retime`` is left in calls; clock_times converts its counts."""
    base = sd.observers.snapshots(5)
    custom = sd.observers.Observer("mine", base.init, base.update, base.finalize)
    with jax.enable_x64(True):
        result = sd.run(jax.random.key(6), SGD, quad1, sd.Hyper(0.2, 2), jnp.ones(1), 10,
                        observers=[custom, base], clock="sme")
    np.testing.assert_array_equal(result["mine"]["times"], [0, 5, 10])
    np.testing.assert_allclose(result["snapshots"]["times"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(result.clock_times(result["mine"]["times"]), [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="^calls: "):
        result.clock_times(11)
