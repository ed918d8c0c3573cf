"""The runner: grids equal separate runs, chunking and keys reproduce, bad input and
divergence are reported."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sgdsde as sd

from _rounding import iterated_map_atol


@pytest.fixture(scope="module")
def quadratic64():
    with jax.enable_x64(True):
        a = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.2], [0.0, 0.2, 3.0]])
        c = np.array([[1.0, 0.4, 0.1], [0.4, 1.5, 0.2], [0.1, 0.2, 0.8]])
        yield sd.problems.quadratic(a, c, 48, key=jax.random.key(0))


def _sgd_rounding_atol(problem, learning_rates, thetas, steps, batch):
    """Rounding bound for two evaluations of the SGD trajectory θ' = θ − η(Aθ + x̄_batch) on
    the quadratic problem: per step (batch + d + 8)·eps·(|θ| + η(‖A‖|θ| + max|x_i|)), carried
    over the steps with contraction ρ = max|1 − ηλ(A)| (iterated_map_atol)."""
    a, x = np.asarray(problem.info["hessian"]), np.asarray(problem.data)
    eta = np.max(learning_rates)
    theta = max(np.abs(np.asarray(t)).max() for t in thetas) + 1.0  # + 1: the replicas wander (|θ| ≲ 1)
    lam = np.linalg.eigvalsh(a)
    rho = max(np.max(np.abs(1 - e * lam)) for e in np.atleast_1d(learning_rates))
    per_step = theta + eta * (np.linalg.norm(a, 2) * theta + np.abs(x).max())
    return iterated_map_atol(per_step, batch + a.shape[0] + 8, steps, contraction=rho)


@pytest.mark.parametrize("sampling", ["iid", "subset", "epoch"])
def test_grid_equals_separate_runs(quadratic64, sampling):
    """A vmapped (η, S) grid gives the numbers of each run done on its own (same keys:
    common random numbers; masked batches drawn at the grid's maximum size)."""
    lrs, sizes = [0.05, 0.2], [4, 16, 48]
    with jax.enable_x64(True):
        theta0 = jnp.array([1.0, -0.5, 0.25])
        key = jax.random.key(7)
        stepper = sd.sgd(sampling)
        grid = sd.run(key, stepper, quadratic64, sd.Hyper.grid(lrs, sizes), theta0, 37, replicas=3)
        assert grid["endpoint"].shape == (2, 3, 3, 3)
        for i, lr in enumerate(lrs):
            for j, size in enumerate(sizes):
                alone = sd.run(key, stepper, quadratic64, sd.Hyper(lr, size), theta0, 37, replicas=3)
                # different programs (vmapped grid, masked at S_max = 48, vs a run alone): each
                # step rounds θ − η(Aθ + mean x_i) differently; tests/_rounding.py
                atol = _sgd_rounding_atol(quadratic64, lr, [theta0, grid["endpoint"][i, j]], 37, max(sizes))
                np.testing.assert_allclose(grid["endpoint"][i, j], alone["endpoint"], rtol=0, atol=atol)


def test_chunked_equals_unchunked_and_same_key_same_numbers(quadratic64):
    with jax.enable_x64(True):
        theta0 = jnp.zeros(3)
        observers = lambda: [sd.observers.endpoint(), sd.observers.moments(burn_in=10), sd.observers.snapshots(9)]
        args = (sd.sgd("epoch"), quadratic64, sd.Hyper(0.1, 8, 0.5), theta0, 100)
        whole = sd.run(jax.random.key(3), *args, replicas=5, observers=observers())
        chunked = sd.run(jax.random.key(3), *args, replicas=5, observers=observers(), chunk_size=17)
        again = sd.run(jax.random.key(3), *args, replicas=5, observers=observers())
        other = sd.run(jax.random.key(4), *args, replicas=5, observers=observers())
    for name in ("endpoint", "snapshots", "moments"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, whole[name], again[name])
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15), whole[name], chunked[name]
        )
    assert not np.allclose(whole["endpoint"], other["endpoint"])


def test_replica_keys_do_not_depend_on_replica_count(quadratic64):
    """Replica r uses fold_in(key, r): the first replicas of a larger run are the same."""
    with jax.enable_x64(True):
        args = (jax.random.key(5), sd.sgd("subset"), quadratic64, sd.Hyper(0.1, 8), jnp.ones(3), 20)
        small = sd.run(*args, replicas=2)["endpoint"]
        large = sd.run(*args, replicas=6)["endpoint"]
    # vmapped over 2 vs 6 replicas: XLA may lay out the batch sums differently (rounding)
    atol = _sgd_rounding_atol(quadratic64, 0.1, [np.ones(3), large], 20, 8)
    np.testing.assert_allclose(small, large[:2], rtol=0, atol=atol)
    assert not np.allclose(large[0], large[1])


def test_schedules_and_batch_size_schedule(quadratic64):
    """A learning-rate schedule and a cyclic batch-size schedule run in one program and
    equal the step-by-step NumPy recursion with the same batches (iid). (The schedule is
    written in jnp so that it evaluates in float64 here; optax schedules compute in
    float32, whose rounding would differ between the jitted run and an eager replay.)"""
    lr = lambda k: 0.2 - 0.15 * jnp.minimum(k, 30) / 30
    batch = lambda k: jnp.where((k // 5) % 2 == 0, 4, 12)
    with jax.enable_x64(True):
        result = sd.run(jax.random.key(1), sd.sgd("iid"), quadratic64, sd.Hyper(lr, batch),
                        jnp.array([1.0, 1.0, 1.0]), 30, replicas=1)
        # replay: draw the same indices as the stepper (iid at max size 12, first S used)
        theta = np.array([1.0, 1.0, 1.0])
        x = np.asarray(quadratic64.data)
        a = quadratic64.info["hessian"]
        replica_key = jax.random.fold_in(jax.random.key(1), 0)
        for k in range(30):
            s = int(batch(k))
            idx = np.asarray(jax.random.randint(jax.random.fold_in(replica_key, k), (12,), 0, 48))[:s]
            g = a @ theta + x[idx].mean(axis=0)
            theta = theta - (0.2 - 0.15 * min(k, 30) / 30) * g
    # NumPy replay vs the jitted scan: rounding of each step, carried over 30 steps
    etas = [0.2 - 0.15 * min(k, 30) / 30 for k in range(30)]
    atol = _sgd_rounding_atol(quadratic64, etas, [np.ones(3), theta], 30, 12)
    np.testing.assert_allclose(result["endpoint"][0], theta, rtol=0, atol=atol)


def test_random_initial_params(quadratic64):
    with jax.enable_x64(True):
        init = lambda key: jax.random.normal(key, (3,))
        r = sd.run(jax.random.key(2), sd.sgd(), quadratic64, sd.Hyper(optax.constant_schedule(0.1), 8), init, 0,
                   replicas=4)
    starts = r["endpoint"]
    assert starts.shape == (4, 3) and len(np.unique(starts[:, 0])) == 4


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(hyper=sd.Hyper(-0.1, 8)), "learning_rate"),
        (dict(hyper=sd.Hyper(0.0, 8)), "learning_rate"),
        (dict(hyper=sd.Hyper(0.1, 0)), "batch_size"),
        (dict(hyper=sd.Hyper(0.1, 49)), "batch_size"),
        (dict(hyper=sd.Hyper(0.1, 8, 1.0)), "momentum"),
        (dict(hyper=sd.Hyper(0.1, 8, -0.2)), "momentum"),
        (dict(hyper=sd.Hyper(np.array([0.1, 0.2]), np.array([4, 8, 16]))), "hyper"),
        (dict(init=jnp.array([0.0, np.nan, 1.0])), "init_params"),
        (dict(init=jnp.zeros(4)), "init_params"),
        (dict(replicas=0), "replicas"),
        (dict(num_steps=-1), "num_steps"),
    ],
)
def test_bad_input_raises_before_compiling(quadratic64, kwargs, argument, monkeypatch):
    compiled = []
    import sgdsde.simulation

    monkeypatch.setattr(sgdsde.simulation, "_core", lambda *a, **k: compiled.append(1))  # one-program path
    monkeypatch.setattr(sd.runner, "_compile", lambda *a, **k: compiled.append(1))  # chunked path
    args = dict(hyper=sd.Hyper(0.1, 8), init=jnp.zeros(3), replicas=2, num_steps=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        sd.run(jax.random.key(0), sd.sgd(), quadratic64, args["hyper"], args["init"], args["num_steps"],
               replicas=args["replicas"])
    assert not compiled


def test_mismatched_data_axes():
    with pytest.raises(ValueError, match="data"):
        sd.Problem(lambda p, e: jnp.sum(p * e["x"]) + e["y"], {"x": jnp.ones((5, 2)), "y": jnp.ones(4)})


def test_divergence_is_reported_not_averaged(quadratic64):
    """η λ_max > 2 diverges: the run names the replicas and the first non-finite step,
    and statistics leave them out instead of returning NaN."""
    hyper = sd.Hyper(np.array([0.1, 1.2]), 8)  # λ_max ≈ 3.06: 0.1·λ stable, 1.2·λ = 3.7 > 2
    with pytest.warns(sd.DivergenceWarning, match="diverged") as record:
        r = sd.run(jax.random.key(0), sd.sgd(), quadratic64, hyper, jnp.ones(3), 3000, replicas=4,
                   observers=[sd.observers.moments(burn_in=100), sd.observers.endpoint()])
    messages = [str(w.message) for w in record if issubclass(w.category, sd.DivergenceWarning)]
    assert len(messages) == 1 and "config (1,)" in messages[0]
    assert not r.diverged[0].any() and r.diverged[1].all()
    assert (r.divergence_step[0] == -1).all()
    first = r.divergence_step[1]
    assert (first > 0).all() and (first < 3000).all()
    # frozen at the last finite state, and excluded from statistics
    assert np.isfinite(r["endpoint"][1]).all()
    assert int(r["moments"]["replicas_used"][0]) == 4 and int(r["moments"]["replicas_used"][1]) == 0
    assert np.isfinite(r["moments"]["cov"][0]).all()
    # the step reported is the one whose update first overflowed: replay it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.DivergenceWarning)
        before = sd.run(jax.random.key(0), sd.sgd(), quadratic64, sd.Hyper(1.2, 8), jnp.ones(3),
                        int(first[0]), replicas=4)
    assert not before.any_diverged
    assert before.divergence_step[0] == -1


# ------------------------------------------------- divergence guards at the ends of chunks
def _spy_programs(monkeypatch) -> list:
    """Record which compiled programs a run executes: ("run", guard) for the one-program
    run (sd.simulate's core), ("chunk", guard) for each chunk of a run in pieces."""
    calls = []
    core, compile_ = sd.simulation._core, sd.runner._compile

    def spy_core(stepper, observers, num_steps, replicas, grid_shape, guard=True):
        program = core(stepper, observers, num_steps, replicas, grid_shape, guard)
        return lambda *args: calls.append(("run", guard)) or program(*args)

    def spy_compile(*args):
        start, advance, finish, unguarded = compile_(*args)
        guarded = lambda *a: calls.append(("chunk", True)) or advance(*a)
        spied = None if unguarded is None else (lambda *a: calls.append(("chunk", False)) or unguarded(*a))
        return start, guarded, finish, spied

    monkeypatch.setattr(sd.simulation, "_core", spy_core)
    monkeypatch.setattr(sd.runner, "_compile", spy_compile)
    return calls


def _guarded_per_step(monkeypatch):
    """Make runs guard every step (the stepper's ``step`` only), as before chunk checks."""
    for module in (sd.simulation, sd.runner):
        monkeypatch.setattr(module, "guarded_at_chunk_ends", lambda stepper: False)


STEPPERS_WITH_UNGUARDED = {
    "sgd": lambda: sd.sgd("subset"),
    "euler_maruyama": lambda: sd.euler_maruyama(sd.noise.isotropic(0.5), 0.5),
    "underdamped": lambda: sd.underdamped(sd.noise.isotropic(0.5), 1.0),
}


@pytest.mark.parametrize("name", sorted(STEPPERS_WITH_UNGUARDED))
def test_unguarded_steps_with_chunk_checks_give_the_guarded_numbers(quadratic64, monkeypatch, name):
    """sd.run steps without per-step divergence guards and checks that every parameter is
    finite at the end of each chunk; a chunk in which a replica diverged is computed again
    from its start with the guarded step (and every chunk after it). Against runs guarded
    at every step: the same flags and first non-finite steps, the same numbers."""
    stepper = STEPPERS_WITH_UNGUARDED[name]()
    assert stepper.unguarded_step is not None
    # η = 0.05 is stable; η = 1000 multiplies θ by |1 − ηλ| ≈ 3000 a step (λ_max ≈ 3.06):
    # it overflows float64 near step 90 whatever the rounding of earlier steps (a relative
    # change of 1e-13 in θ cannot move the overflow by a step when θ grows 3000× a step)
    hyper = sd.Hyper(np.array([0.05, 1000.0]), 8)
    observers = lambda: [sd.observers.endpoint(), sd.observers.moments(burn_in=10), sd.observers.snapshots(20)]
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.DivergenceWarning)
        args = (jax.random.key(2), stepper, quadratic64, hyper, jnp.ones(3), 140)
        calls = _spy_programs(monkeypatch)
        plain = sd.run(*args, replicas=4, observers=observers())
        assert calls == [("run", False), ("run", True)]  # unguarded, then again guarded
        calls.clear()
        chunked = sd.run(*args, replicas=4, observers=observers(), chunk_size=20)
        first = int(plain.divergence_step[1].min())
        assert 40 <= first < 140
        clean = first // 20  # chunks before the one in which the first replica diverged
        assert calls == [("chunk", False)] * (clean + 1) + [("chunk", True)] * (7 - clean)
        calls.clear()
        stable = sd.run(*(args[:3] + (sd.Hyper(0.05, 8),) + args[4:]), replicas=4, observers=observers(),
                        chunk_size=35)
        assert calls == [("chunk", False)] * 4  # nothing diverged: never guarded
        _guarded_per_step(monkeypatch)
        reference = sd.run(*args, replicas=4, observers=observers(), chunk_size=20)
        reference_stable = sd.run(*(args[:3] + (sd.Hyper(0.05, 8),) + args[4:]), replicas=4,
                                  observers=observers(), chunk_size=35)
    assert plain.diverged[1].all() and not plain.diverged[0].any()
    for result in (plain, chunked):
        np.testing.assert_array_equal(result.diverged, reference.diverged)
        np.testing.assert_array_equal(result.divergence_step, reference.divergence_step)
    # different programs (the guard adds selects after the same update; chunks): they
    # round alike in practice, but only agreement to rounding is asserted
    # (tests/_rounding.py). Stable configuration (η = 0.05): one update sums
    # |θ| + η dt(‖A‖|θ| + max|x_i|) + η√(dt/S)·8σ (|ξ| < 8σ; σ = 0 for SGD, whose noise is
    # the batch mean, already in max|x_i|), (S + d + 8) operations, carried over 140 steps
    # contracting by ρ = max|1 − η dt λ|. Covariances are quadratic in θ: 2·max|θ|× that.
    # Diverged replicas are frozen at values near the float64 limit: relative rounding,
    # ≤ (S + d + 8)·eps a step over 140 steps.
    dt, sigma2 = float(stepper.dt), (0.0 if name == "sgd" else 0.5)
    a, x = np.asarray(quadratic64.info["hessian"]), np.asarray(quadratic64.data)
    theta = max(1.0, float(np.abs(reference["endpoint"][0]).max())) + 1.0
    per_step = theta + 0.05 * dt * (np.linalg.norm(a, 2) * theta + np.abs(x).max()) + 0.05 * np.sqrt(dt / 8) * 8 * np.sqrt(sigma2)
    rho = np.max(np.abs(1 - 0.05 * dt * np.linalg.eigvalsh(a)))
    operations = 8 + 3 + 8
    atol = iterated_map_atol(per_step, operations, 140, contraction=rho)
    frozen_rtol = 140 * operations * np.finfo(np.float64).eps
    for result in (plain, chunked):
        for key in ("endpoint", "snapshots"):
            got, want = result[key], reference[key]
            values = (lambda r: r["values"]) if key == "snapshots" else (lambda r: r)
            np.testing.assert_allclose(values(got)[0], values(want)[0], rtol=0, atol=atol)
            np.testing.assert_allclose(values(got)[1], values(want)[1], rtol=frozen_rtol, atol=atol)
        np.testing.assert_allclose(result["moments"]["cov"], reference["moments"]["cov"], rtol=0, atol=2 * theta * atol)
    np.testing.assert_allclose(stable["endpoint"], reference_stable["endpoint"], rtol=0, atol=atol)
    np.testing.assert_allclose(stable["moments"]["mean"], reference_stable["moments"]["mean"], rtol=0, atol=atol)


def test_large_states_run_guarded_chunks_in_place(quadratic64, monkeypatch):
    """States above _CHECKPOINT_MAX_BYTES (here: any) are not checkpointed for replays: every
    chunk runs with per-step guards (donated, in place) — the same program as a run guarded
    at every step, so the same bits, divergence flags and steps included."""
    monkeypatch.setattr(sd.runner, "_CHECKPOINT_MAX_BYTES", 0)
    hyper = sd.Hyper(np.array([0.05, 1000.0]), 8)
    args = (jax.random.key(3), sd.sgd("epoch"), quadratic64, hyper, jnp.ones(3), 100)
    observers = lambda: [sd.observers.endpoint(), sd.observers.moments(burn_in=10)]
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.DivergenceWarning)
        calls = _spy_programs(monkeypatch)
        chunked = sd.run(*args, replicas=4, observers=observers(), chunk_size=20)
        assert calls == [("chunk", True)] * 5
        _guarded_per_step(monkeypatch)
        reference = sd.run(*args, replicas=4, observers=observers(), chunk_size=20)
    assert chunked.diverged[1].all() and not chunked.diverged[0].any()
    np.testing.assert_array_equal(chunked.divergence_step, reference.divergence_step)
    np.testing.assert_array_equal(chunked["endpoint"], reference["endpoint"])
    np.testing.assert_array_equal(chunked["moments"]["cov"], reference["moments"]["cov"])


def test_steppers_without_an_unguarded_step_are_guarded_every_step(quadratic64, monkeypatch):
    """A user stepper built without ``unguarded_step`` runs guarded at every step."""
    base = sd.sgd("iid")
    user = sd.Stepper(base.init, base.step, "user sgd")
    assert user.unguarded_step is None
    with jax.enable_x64(True):
        calls = _spy_programs(monkeypatch)
        sd.run(jax.random.key(0), user, quadratic64, sd.Hyper(0.1, 8), jnp.ones(3), 30, replicas=2)
        sd.run(jax.random.key(0), user, quadratic64, sd.Hyper(0.1, 8), jnp.ones(3), 30, replicas=2, chunk_size=10)
    assert calls == [("run", True)] + [("chunk", True)] * 3
