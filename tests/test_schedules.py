"""sgdsde.schedules: values against their formulas, ranges, stacking, validation before
compile, and a grid of schedules (cyclic batch size, cyclic learning rate, the constant
pair of the Three Factors paper's Fig. 4, scaled down) run in one compiled program that
equals the runs done one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sgdsde as sd
from sgdsde import schedules as sch

from test_compile_once import compile_names, count_compiles
from test_runner import _sgd_rounding_atol

N = 100  # examples: the batch-size range is [1, N]


def values_at(schedule, steps):
    return np.asarray(jax.vmap(schedule)(jnp.asarray(steps, jnp.int32)))


# ------------------------------------------------------------------ values
def test_constant_and_piecewise_constant(x64):
    np.testing.assert_array_equal(values_at(sch.constant(0.3), [0, 7, 10**6]), [0.3, 0.3, 0.3])
    decay = sch.piecewise_constant([10, 30], [0.1, 0.05, 0.01])
    # values[j] for boundaries[j−1] ≤ k < boundaries[j]
    np.testing.assert_array_equal(values_at(decay, [0, 9, 10, 29, 30, 10**6]), [0.1, 0.1, 0.05, 0.05, 0.01, 0.01])
    np.testing.assert_array_equal([decay.min, decay.max], [0.01, 0.1])


@pytest.mark.parametrize("period", [8, 7])
def test_cyclic_against_its_formulas(x64, period):
    """triangle: low + (high − low)(1 − |2r − P|/P), square: low for 2r < P else high, with
    r = (k + offset) mod P; compared with the formula in NumPy over three periods."""
    low, high = 0.001, 0.005
    k = np.arange(3 * period + 1)
    for offset in (0, period // 2, 3):
        r = (k + offset) % period
        triangle = low + (high - low) * (1 - np.abs(2 * r - period) / period)
        square = np.where(2 * r < period, low, high)
        got_t = values_at(sch.cyclic(low, high, period, "triangle", offset=offset), k)
        got_s = values_at(sch.cyclic(low, high, period, "square", offset=offset), k)
        # the same few float64 operations in another order: 4 operations · eps · high
        np.testing.assert_allclose(got_t, triangle, rtol=0, atol=4 * np.finfo(float).eps * high)
        np.testing.assert_array_equal(got_s, square)  # a selection: exact
    # landmarks: low at k = 0, high at k = P/2 (even P), back to low at k = P
    tri = values_at(sch.cyclic(1.0, 5.0, 8), [0, 2, 4, 6, 8, 9])
    np.testing.assert_allclose(tri, [1, 3, 5, 3, 1, 2], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(values_at(sch.cyclic(1, 5, 8, "square"), np.arange(9)), [1, 1, 1, 1, 5, 5, 5, 5, 1])


def test_warmup_and_cosine_against_optax(x64):
    """Independent implementations: optax.linear_schedule and optax.cosine_decay_schedule."""
    k = np.arange(0, 130, 3)
    eps = np.finfo(float).eps
    warm = values_at(sch.linear_warmup(0.0, 0.4, 50), k)
    np.testing.assert_allclose(warm, [optax.linear_schedule(0.0, 0.4, 50)(i) for i in k], rtol=0, atol=8 * eps)
    cos = values_at(sch.cosine(0.4, 0.04, 100), k)
    expected = [optax.cosine_decay_schedule(0.4, 100, alpha=0.1)(i) for i in k]
    np.testing.assert_allclose(cos, expected, rtol=0, atol=16 * eps)  # a cosine and a few products
    np.testing.assert_allclose(values_at(sch.cosine(0.4, 0.04, 100), [0, 50, 100, 500]), [0.4, 0.22, 0.04, 0.04],
                               rtol=1e-15)


# ------------------------------------------------------------------ stacking, pytree
def test_stack_same_kind_stacks_parameters(x64):
    stacked = sch.stack([sch.cyclic(8, 40, 10), sch.cyclic(16, 32, 6), sch.cyclic(4, 12, 10)])
    assert isinstance(stacked, sch.Cyclic) and stacked.batch_shape == (3,)
    assert np.shape(stacked.period) == (3,)
    np.testing.assert_array_equal(stacked.min, [8, 16, 4])
    np.testing.assert_array_equal(stacked.max, [40, 32, 12])
    k = np.arange(25)
    for i, one in enumerate([sch.cyclic(8, 40, 10), sch.cyclic(16, 32, 6), sch.cyclic(4, 12, 10)]):
        np.testing.assert_array_equal(values_at(stacked, k)[:, i], values_at(one, k))


def test_stack_of_different_kinds_selects_exactly(x64):
    items = [0.1, sch.cyclic(0.02, 0.1, 10, "square", offset=5), sch.piecewise_constant([5], [0.3, 0.2])]
    stacked = sch.stack(items)
    assert isinstance(stacked, sch.Choice) and stacked.batch_shape == (3,)
    np.testing.assert_array_equal(stacked.min, [0.1, 0.02, 0.2])
    np.testing.assert_array_equal(stacked.max, [0.1, 0.1, 0.3])
    k = np.arange(23)
    single = [values_at(sch.constant(0.1), k), values_at(items[1], k), values_at(items[2], k)]
    np.testing.assert_array_equal(values_at(stacked, k), np.stack(single, axis=1))
    with pytest.raises(ValueError, match="schedules"):
        sch.stack([stacked, 0.1])
    with pytest.raises(ValueError, match="schedules"):
        sch.stack([])


def test_parameters_are_leaves_one_compile_for_new_values():
    schedule = sch.cyclic(0.1, 0.5, 10)
    leaves = jax.tree_util.tree_leaves(schedule)
    assert len(leaves) == 4  # low, high, period, offset; the shape is static
    value = jax.jit(lambda s, k: s(k))
    value(schedule, 3)
    again = count_compiles(lambda: [value(sch.cyclic(0.2, 0.7, 12), 3), value(sch.cyclic(0.3, 0.4, 8, offset=2), 5)])
    assert again == 0
    np.testing.assert_allclose(value(sch.cyclic(0.2, 0.7, 12), 3), 0.2 + 0.5 * 0.5, rtol=1e-6)
    assert value._cache_size() == 1


# ------------------------------------------------------------------ Hyper
def test_hyper_grid_shape_and_max_batch_size_from_schedules():
    batch = sch.stack([sch.cyclic(8, 40, 10, "square"), 16, sch.cyclic(8, 41, 10)])
    hyper = sd.Hyper(0.1, batch)
    assert hyper.grid_shape == (3,)
    assert hyper.validate(N, 5).max_batch_size == 41  # the range's max, not the first 5 steps'
    grid = sd.Hyper.grid([0.1, 0.2], batch)
    assert grid.grid_shape == (2, 3)
    flat = grid.validate(N).flatten_grid()
    assert flat.grid_shape == (6,) and flat.batch_size.batch_shape == (6,)
    sizes = jax.vmap(lambda h: h.at(5).batch_size)(flat)  # k = 5: 40 (square, 2nd half), 16, 41 (peak)
    np.testing.assert_array_equal(sizes, [40, 16, 41, 40, 16, 41])
    # the triangle's S_k = round(8 + 33(1 − |2r − 10|/10)): k = 1 → 14.6 → 15
    assert int(sd.Hyper(0.1, sch.cyclic(8, 41, 10)).validate(N).at(1).batch_size) == 15
    # a schedule mixed with a plain array broadcasts like two arrays
    assert sd.Hyper(np.array([[0.1], [0.2]]), batch).grid_shape == (2, 3)
    # plain callables are still static and no part of the grid
    assert sd.Hyper(optax.constant_schedule(0.1), batch).grid_shape == (3,)
    assert len(jax.tree_util.tree_leaves(sd.Hyper(optax.constant_schedule(0.1), 8))) == 2  # S and β


@pytest.mark.parametrize(
    "hyper, argument",
    [
        (lambda: sd.Hyper(sch.cyclic(-0.1, 0.1, 10), 8), "learning_rate"),
        (lambda: sd.Hyper(sch.piecewise_constant([5], [0.1, 0.0]), 8), "learning_rate"),
        # S = 200 > N only at k = 50 of each cycle: refused even for a shorter run
        (lambda: sd.Hyper(0.1, sch.cyclic(8, 200, 100)), "batch_size"),
        (lambda: sd.Hyper(0.1, sch.stack([8, sch.cyclic(0, 16, 10, "square")])), "batch_size"),
        (lambda: sd.Hyper(0.1, 8, sch.cyclic(0.5, 1.0, 10)), "momentum"),
    ],
)
def test_schedule_range_checked_before_compile(monkeypatch, hyper, argument):
    problem = sd.problems.quadratic(1.0, 1.0, N, key=jax.random.key(0))
    monkeypatch.setattr(sd.simulation, "_core", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError, match=argument):
        sd.run(jax.random.key(0), sd.sgd(), problem, hyper(), jnp.zeros(1), 3)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: sch.constant(np.nan), "value"),
        (lambda: sch.cyclic(0.1, 0.2, 0), "period"),
        (lambda: sch.cyclic(0.1, 0.2, 2.5), "period"),
        (lambda: sch.cyclic(0.1, 0.2, 10, "sine"), "shape"),
        (lambda: sch.piecewise_constant([10, 5], [0.1, 0.2, 0.3]), "boundaries"),
        (lambda: sch.piecewise_constant([10], [0.1]), "values"),
        (lambda: sch.linear_warmup(0.0, 0.1, 0), "warmup_steps"),
        (lambda: sch.cosine(0.1, "x", 10), "end"),
    ],
)
def test_bad_schedule_parameters(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_traced_batch_schedule_needs_max_batch_size():
    def resolve(high):
        return sd.Hyper(0.1, sch.cyclic(8, high, 10)).validate(N, 5).max_batch_size

    with pytest.raises(ValueError, match="batch_size.*max_batch_size"):
        jax.jit(resolve)(16)


# ------------------------------------------------------------------ one program
def test_cyclic_batch_size_and_learning_rate_grid_in_one_program(x64):
    """Fig. 4 of the Three Factors paper, scaled down (S 8 ↔ 40 at η = 0.1 against η
    0.1 ↔ 0.02 at S = 8, square cycles of P steps, and the constant pair η/S = 0.02/8 =
    0.1/40): the four configurations as one grid, one compiled program, equal to the runs
    done one by one, and η/S equal in each pair at every step."""
    period, steps = 10, 35
    configs = [
        (0.1, sch.cyclic(8, 40, period, "square")),                       # cyclic batch size
        (sch.cyclic(0.02, 0.1, period, "square", offset=period // 2), 8),  # cyclic learning rate
        (0.02, 8),
        (0.1, 40),
    ]
    hyper = sd.Hyper(sch.stack([c[0] for c in configs]), sch.stack([c[1] for c in configs]))
    assert hyper.grid_shape == (4,)
    flat = hyper.validate(N).flatten_grid()
    k = jnp.arange(3 * period)
    ratio = jax.vmap(lambda h: jax.vmap(lambda i: h.at(i).learning_rate / h.at(i).batch_size)(k))(flat)
    np.testing.assert_allclose(ratio[0], ratio[1], rtol=2 * np.finfo(float).eps)  # one division each
    np.testing.assert_allclose(ratio[2], ratio[3], rtol=2 * np.finfo(float).eps)
    assert np.ptp(np.asarray(ratio[0])) > 0  # the cyclic pair does change its noise

    problem = sd.problems.quadratic(np.diag([1.0, 3.0]), np.eye(2), N, key=jax.random.key(2))
    theta0, key, stepper = jnp.array([1.0, -1.0]), jax.random.key(5), sd.sgd("subset")
    results = []
    run_grid = lambda h: results.append(sd.run(key, stepper, problem, h, theta0, steps, replicas=3)) or results[-1]
    assert count_core_compiles(lambda: run_grid(hyper)) == 1  # the whole grid: one program
    # new schedule values of the same kinds and the same S_max (period 12, η halved): the same program
    other = sd.Hyper(sch.stack([0.05, sch.cyclic(0.01, 0.05, 12, "square", offset=6), 0.01, 0.05]),
                     sch.stack([sch.cyclic(8, 40, 12, "square"), 8, 8, 40]))
    assert count_core_compiles(lambda: run_grid(other)) == 0
    grid = results[0]["endpoint"]
    assert grid.shape == (4, 3, 2)
    for i, (lr, batch) in enumerate(configs):
        alone = sd.run(key, stepper, problem, sd.Hyper(lr, batch), theta0, steps, replicas=3)["endpoint"]
        # different programs (a vmapped grid masked at S_max = 40 against a run alone): each step
        # rounds θ − η(Aθ + mean x_i) differently; bound from tests/_rounding.py (iterated_map_atol)
        atol = _sgd_rounding_atol(problem, [0.1], [theta0, grid[i]], steps, 40)
        np.testing.assert_allclose(grid[i], alone, rtol=0, atol=atol)


def count_core_compiles(fn) -> int:
    """Compilations of the run's jitted core (simulation._core) while ``fn()`` runs."""
    with compile_names() as names:
        jax.block_until_ready(fn().observations)
    return sum(name == "jit(core)" for name in names)


# ------------------------------------------------------------------ stacked schedules as leaves
def test_stacked_learning_rate_schedule_on_the_sme_clock_with_dt():
    """on_clock("sme") of a stacked learning-rate schedule: per configuration g,
    t_g(k) = Σ_{i<k} η_g(⌊i·dt⌋)·dt (dt = ½: SGD step ⌊i/2⌋ for call i), for Euler–Maruyama."""
    dt, calls, period = 0.5, 24, 4
    problem = sd.problems.quadratic(np.diag([1.0, 3.0]), np.eye(2), N, key=jax.random.key(2))
    lrs = sch.stack([sch.cyclic(0.05, 0.2, period, "square"), sch.linear_warmup(0.01, 0.1, 5)])
    stepper = sd.euler_maruyama(sd.noise.isotropic(1.0), dt)
    result = sd.run(jax.random.key(1), stepper, problem, sd.Hyper(lrs, 8), jnp.zeros(2), calls,
                    observers=[sd.observers.loss_curve(4)], clock="sme")
    sgd_steps = np.arange(calls) // 2
    rates = [np.where((sgd_steps % period) * 2 < period, 0.05, 0.2), 0.01 + 0.09 * np.minimum(sgd_steps, 5) / 5]
    for g in range(2):
        elapsed = np.concatenate([[0.0], np.cumsum(rates[g] * dt)])
        np.testing.assert_allclose(result["loss_curve"]["times"][g], elapsed[::4], rtol=1e-6)
        np.testing.assert_allclose(result.duration[g], elapsed[-1], rtol=1e-6)


def test_grad_through_a_stacked_schedule_parameter_matches_finite_differences(x64):
    """d/d(high) of the final mean loss of sd.simulate, for a stacked cyclic learning
    rate whose ``high`` leaf has a grid axis of 2 (one leaf per configuration), against
    central differences f(h ± δ). SGD (iid minibatches, drawn independently of η) is a
    smooth function of η along a fixed path. Tolerance derived from the differences
    themselves: central differences err by c·δ² (+ rounding ≈ eps·|f|/δ), so the
    difference between the estimates at δ and δ/2 (¾ c·δ²) bounds the error of the δ/2
    one; the rounding term is added."""
    problem = sd.problems.quadratic(np.diag([1.0, 3.0]), np.eye(2), N, key=jax.random.key(2))
    weights = jnp.array([1.0, 2.0])

    def objective(high):
        lr = sch.Cyclic(jnp.array([0.05, 0.02]), high, np.array([6, 4]), np.array([0, 0]), "triangle")
        sim = sd.simulate(jax.random.key(3), sd.sgd("iid"), problem, sd.Hyper(lr, 4), jnp.array([1.0, -1.0]), 30,
                          replicas=8)
        losses = jax.vmap(jax.vmap(problem.loss))(sim["endpoint"])  # (2 configurations, R)
        return jnp.sum(weights * losses.mean(axis=1))

    high = jnp.array([0.2, 0.3])
    grad = np.asarray(jax.grad(objective)(high))
    f0 = float(objective(high))
    for g in range(2):
        unit = jnp.zeros(2).at[g].set(1.0)
        central = lambda d: float(objective(high + d * unit) - objective(high - d * unit)) / (2 * d)
        delta = 1e-4
        coarse, fine = central(delta), central(delta / 2)
        atol = abs(coarse - fine) + 100 * np.finfo(float).eps * abs(f0) / (delta / 2)
        assert abs(grad[g] - fine) <= atol, (g, grad[g], fine, atol)
        assert abs(grad[g]) > 100 * atol  # a real derivative, far above the tolerance
