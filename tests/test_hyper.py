"""sgdsde.Hyper: validation (in Python, naming the argument), grids, schedules, pytree use."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sgdsde as sd
from sgdsde import Hyper

N = 100  # number of examples used for the batch-size range [1, N]


# ------------------------------------------------------------------ validate: errors
@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(learning_rate=0.0, batch_size=8), "learning_rate"),
        (dict(learning_rate=-0.1, batch_size=8), "learning_rate"),
        (dict(learning_rate=np.nan, batch_size=8), "learning_rate"),
        (dict(learning_rate=np.inf, batch_size=8), "learning_rate"),
        (dict(learning_rate=np.array([0.1, 0.0]), batch_size=8), "learning_rate"),
        (dict(learning_rate=0.1, batch_size=0), "batch_size"),
        (dict(learning_rate=0.1, batch_size=N + 1), "batch_size"),
        (dict(learning_rate=0.1, batch_size=-4), "batch_size"),
        (dict(learning_rate=0.1, batch_size=8.5), "batch_size"),
        (dict(learning_rate=0.1, batch_size=np.array([8, 16.5])), "batch_size"),
        (dict(learning_rate=0.1, batch_size=np.array([], dtype=int)), "batch_size"),
        (dict(learning_rate=0.1, batch_size=8, momentum=-0.1), "momentum"),
        (dict(learning_rate=0.1, batch_size=8, momentum=1.0), "momentum"),
        (dict(learning_rate=0.1, batch_size=8, momentum=np.array([0.0, 0.9, 1.5])), "momentum"),
    ],
)
def test_validate_rejects_bad_values(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        Hyper(**kwargs).validate(N, 10)


def test_validate_rejects_non_numeric_value():
    with pytest.raises(ValueError, match="learning_rate"):
        Hyper("fast", 8).validate(N, 10)


def test_validate_accepts_boundaries():
    # S = 1 and S = N, β = 0 and β just below 1, tiny positive η, integer-valued floats
    out = Hyper(1e-12, np.array([1, N]), np.array([0.0, 0.999])).validate(N, 5)
    assert out.max_batch_size == N
    assert Hyper(0.1, 8.0).validate(N).max_batch_size == 8
    # unknown N: no upper bound on S
    assert Hyper(0.1, 10**6).validate(None).max_batch_size == 10**6


def test_grid_arrays_that_do_not_broadcast():
    hyper = Hyper(np.array([0.1, 0.2]), np.array([4, 8, 16]))
    with pytest.raises(ValueError, match="learning_rate.*batch_size"):
        hyper.validate(N, 10)
    with pytest.raises(ValueError, match="broadcast"):
        hyper.grid_shape


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        # η_k = 0.1 − 0.002 k: positive for k < 50, negative from k = 51 (k = 50 is ≈ 0)
        (dict(learning_rate=optax.linear_schedule(0.1, -0.1, 100), batch_size=8), "learning_rate"),
        # a batch-size schedule that exceeds N = 100 at k ≥ 48
        (dict(learning_rate=0.1, batch_size=lambda k: 4 + 2 * k), "batch_size"),
        # a batch-size schedule that turns non-integer at k = 50
        (dict(learning_rate=0.1, batch_size=lambda k: jnp.where(k < 50, 8.0, 8.5)), "batch_size"),
        # momentum reaching 1 at k = 50
        (dict(learning_rate=0.1, batch_size=8, momentum=optax.linear_schedule(0.5, 1.0, 50)), "momentum"),
        # a schedule that turns non-finite at k = 55
        (dict(learning_rate=lambda k: 0.1 / (55 - k) ** 2, batch_size=8), "learning_rate"),
    ],
)
def test_schedules_checked_at_every_step(kwargs, argument):
    """Schedules are evaluated at k = 0 … num_steps − 1: bad values within the run raise,
    bad values beyond its end do not."""
    Hyper(**kwargs).validate(N, 45)  # all steps fine up to k = 44
    with pytest.raises(ValueError, match=argument):
        Hyper(**kwargs).validate(N, 60)


# ------------------------------------------------------------------ max batch size
def test_max_batch_size_from_arrays():
    hyper = Hyper(np.array([[0.1], [0.2], [0.3]]), np.array([[4, 16, 8, 2]]))
    assert hyper.max_batch_size is None
    out = hyper.validate(N, 10)
    assert out.max_batch_size == 16
    assert out.grid_shape == (3, 4)
    # validate returns a copy: the original is untouched
    assert hyper.max_batch_size is None and out is not hyper


@pytest.mark.parametrize("num_steps, expected", [(1, 4), (10, 13), (30, 20)])
def test_max_batch_size_from_optax_schedule(num_steps, expected):
    # S_k = 4 + k for k ≤ 16, then 20 (exact integers in float32): max over k < num_steps
    schedule = optax.linear_schedule(4, 20, 16)
    assert Hyper(0.1, schedule).validate(N, num_steps).max_batch_size == expected


@pytest.mark.parametrize("num_steps, expected", [(10, 8), (11, 32), (100, 32)])
def test_max_batch_size_from_cyclic_schedule(num_steps, expected):
    def cyclic(k):  # 8 for 10 steps, 32 for 10 steps, …
        return jnp.where((k // 10) % 2 == 0, 8, 32)

    assert Hyper(0.1, cyclic).validate(N, num_steps).max_batch_size == expected


def test_non_vmappable_schedule_is_evaluated_step_by_step():
    def python_schedule(k):  # Python control flow on the step: cannot be vmapped
        return 8 if int(k) < 5 else 16

    assert Hyper(0.1, python_schedule).validate(N, 5).max_batch_size == 8
    assert Hyper(0.1, python_schedule).validate(N, 6).max_batch_size == 16


# ------------------------------------------------------------------ grids
def test_grid_shapes_and_values():
    lrs, sizes, moms = [0.1, 0.2], [8, 16, 32], [0.0, 0.9]
    hyper = Hyper.grid(lrs, sizes, moms)
    assert hyper.grid_shape == (2, 3, 2)
    for i, j, k in np.ndindex(2, 3, 2):
        assert hyper.learning_rate[i, j, k] == lrs[i]
        assert hyper.batch_size[i, j, k] == sizes[j]
        assert hyper.momentum[i, j, k] == moms[k]
    # scalars add no axis; schedules stay schedules and are no part of the grid
    two = Hyper.grid(lrs, 8, np.array([0.0, 0.5, 0.9]))
    assert two.grid_shape == (2, 3)
    assert np.shape(two.batch_size) == ()
    schedule = optax.linear_schedule(0.1, 0.01, 10)
    three = Hyper.grid(schedule, sizes)
    assert three.grid_shape == (3,) and three.learning_rate is schedule
    assert Hyper.grid(0.1, 8).grid_shape == ()
    assert Hyper(0.1, 8).grid_shape == ()


def test_flatten_grid():
    hyper = Hyper.grid([0.1, 0.2], [8, 16, 32])
    flat = hyper.flatten_grid()
    assert flat.grid_shape == (6,)
    # C order: the last axis (batch size) varies fastest
    np.testing.assert_allclose(flat.learning_rate, [0.1, 0.1, 0.1, 0.2, 0.2, 0.2], rtol=1e-7)
    np.testing.assert_array_equal(flat.batch_size, [8, 16, 32, 8, 16, 32])
    assert flat.batch_size.dtype == jnp.int32
    np.testing.assert_array_equal(flat.momentum, np.zeros(6))  # the scalar broadcast to the grid
    # a single configuration flattens to one entry; schedules pass through
    schedule = optax.constant_schedule(0.3)
    single = Hyper(schedule, 8).flatten_grid()
    assert single.grid_shape == (1,) and single.learning_rate is schedule
    # the static max batch size is kept
    assert Hyper(0.1, np.array([4, 8])).validate(N).flatten_grid().max_batch_size == 8


# ------------------------------------------------------------------ pytree
def test_pytree_round_trip():
    schedule = optax.linear_schedule(0.1, 0.01, 10)
    hyper = Hyper(schedule, np.array([8, 16]), 0.9, max_batch_size=16)
    leaves, treedef = jax.tree_util.tree_flatten(hyper)
    # the schedule is static (not a leaf); arrays and scalars are leaves
    assert len(leaves) == 2
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(back, Hyper)
    assert back.learning_rate is schedule and back.max_batch_size == 16
    np.testing.assert_array_equal(back.batch_size, [8, 16])
    assert back.momentum == 0.9
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, hyper)
    np.testing.assert_array_equal(doubled.batch_size, [16, 32])
    assert doubled.learning_rate is schedule


def test_vmap_and_jit_over_a_flattened_grid():
    flat = Hyper.grid([0.1, 0.2], [8, 16, 32], [0.0, 0.5]).validate(N).flatten_grid()
    assert flat.max_batch_size == 32

    def resolve(h):
        v = h.at(3)
        assert v.max_batch_size == 32  # static inside the trace
        return v.learning_rate, v.batch_size, v.momentum

    lr, bs, mom = jax.jit(jax.vmap(resolve))(flat)
    np.testing.assert_allclose(lr, flat.learning_rate)
    np.testing.assert_array_equal(bs, flat.batch_size)
    np.testing.assert_allclose(mom, flat.momentum)
    assert bs.shape == (12,) and bs.dtype == jnp.int32


def test_at_evaluates_schedules():
    hyper = Hyper(optax.linear_schedule(0.1, 0.0, 10), lambda k: 8 + 8 * (k % 2), optax.constant_schedule(0.9))
    values = hyper.at(5)
    np.testing.assert_allclose(values.learning_rate, 0.05, rtol=1e-6)
    assert int(values.batch_size) == 16 and values.batch_size.dtype == jnp.int32
    np.testing.assert_allclose(values.momentum, 0.9, rtol=1e-7)
    assert values.max_batch_size == 16  # from the concrete value when not set
    assert int(hyper.at(4).batch_size) == 8
    np.testing.assert_allclose(hyper.at(20).learning_rate, 0.0, atol=1e-8)
    # arrays pass through
    plain = Hyper(0.3, 12, 0.5).at(7)
    assert float(plain.learning_rate) == pytest.approx(0.3, rel=1e-7)  # float32
    assert (int(plain.batch_size), float(plain.momentum)) == (12, 0.5)


def test_at_traced_step_with_schedules():
    validated = Hyper(optax.linear_schedule(0.1, 0.01, 10), lambda k: 8 + 8 * (k % 2)).validate(N, 20)
    assert validated.max_batch_size == 16
    lr, bs = jax.jit(lambda k: (validated.at(k).learning_rate, validated.at(k).batch_size))(jnp.int32(3))
    np.testing.assert_allclose(lr, 0.1 - 0.09 * 0.3, rtol=1e-6)
    assert int(bs) == 16
    # without a static max batch size a scheduled S cannot be resolved under tracing
    raw = Hyper(0.1, lambda k: 8 + 8 * (k % 2))
    with pytest.raises(ValueError, match="batch_size.*max_batch_size"):
        jax.jit(lambda k: raw.at(k).batch_size)(jnp.int32(3))


def test_repr_names_fields():
    text = repr(Hyper(optax.constant_schedule(0.1), np.array([8, 16]), 0.9))
    assert "learning_rate=" in text and "batch_size=array(2,)" in text and "momentum=0.9" in text


def test_run_rejects_bad_hyper_before_compiling():
    """sd.run validates the hyper in Python: the error names the argument."""
    problem = sd.problems.quadratic(1.0, 1.0, 10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        sd.run(jax.random.key(0), sd.sgd(), problem, Hyper(0.1, 11), jnp.zeros(1), 5)
    with pytest.raises(ValueError, match="learning_rate"):
        sd.run(jax.random.key(0), sd.sgd(), problem, Hyper(optax.linear_schedule(0.1, -0.1, 10), 2), jnp.zeros(1), 8)
