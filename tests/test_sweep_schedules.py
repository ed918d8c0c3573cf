"""Sweeps over stacked schedules (:func:`sgdsde.schedules.stack`): the schedules'
parameters are leaves with a configuration axis, so a sweep indexes them per chunk like
array fields. A batch-size schedule is grouped by its largest size S_max,g = round(max_k
s_g(k)) — the size ``sd.run`` draws at for that configuration alone (masked below it) —
so each configuration runs the program of a run on its own.

Checked: the sweep equals ``sd.run`` over each group's configurations at the sweep's
``config_block`` bit for bit (the same program); each configuration run alone and the
masked sweep (drawn at the grid's S_max) to the rounding bound of tests/_rounding.py; a
deleted configuration file is recomputed to the same bits; a schedule parameter changed
between calls is refused (fingerprinted by value); times on the "sme" clock per
configuration (Σ η_g over the steps)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _rounding import iterated_map_atol

import sgdsde as sd
from sgdsde import schedules as sch
from sgdsde import sweep

HESSIAN = np.diag([1.0, 3.0])
PROBLEM = sd.problems.quadratic(HESSIAN, np.eye(2), 32, key=jax.random.key(0))
STEPS, REPLICAS, BLOCK, PERIOD = 40, 4, 2, 6
INIT = jnp.array([1.0, -1.0])
# learning rates: a square cycle 0.05 ↔ 0.2 and a constant 0.1; batch sizes: a square cycle
# 4 ↔ 16 (S_max 16), a constant 16 and a triangle 2 ↔ 8 (S_max 8): grid (2, 3), groups
# S_max = 16 (columns 0, 1) and 8 (column 2)
LEARNING_RATES = [sch.cyclic(0.05, 0.2, PERIOD, "square"), 0.1]
BATCH_SIZES = [sch.cyclic(4, 16, PERIOD, "square"), 16, sch.cyclic(2, 8, 4)]
MAX_ETA, MAX_S = 0.2, 16


def _hyper(learning_rates=LEARNING_RATES):
    return sd.Hyper.grid(sch.stack(learning_rates), sch.stack(BATCH_SIZES))


def _sweep(folder, hyper=None, **kwargs):
    return sweep.run_sweep(folder, jax.random.key(1), sd.sgd("subset"), PROBLEM, hyper or _hyper(), INIT, STEPS,
                           replicas=REPLICAS, observers=[sd.observers.endpoint(), sd.observers.loss_curve(10)],
                           config_block=BLOCK, progress=False, **kwargs)


def _atol(theta) -> float:
    """|Δθ_T| between two programs (tests/_rounding.py, iterated_map_atol): per step
    (S_max + d + 8)·eps32·(|θ| + η(‖A‖|θ| + max|x_i|)), over T steps with no contraction
    assumed (ρ = 1: the cyclic η changes the step's map; T = 40)."""
    theta_max = max(1.0, float(np.abs(theta).max())) + 1.0
    step_abs_sum = theta_max + MAX_ETA * (HESSIAN.max() * theta_max + float(np.abs(PROBLEM.data).max()))
    return iterated_map_atol(step_abs_sum, MAX_S + 2 + 8, STEPS, 1.0, np.float32)


def _config(hyper, i, j):
    """Configuration (i, j) of the grid as a Hyper of its own (no grid axes)."""
    flat = hyper.flatten_grid()
    g = i * 3 + j
    one = lambda v: jax.tree_util.tree_map(lambda x: x[g], v)
    return sd.Hyper(one(flat.learning_rate), one(flat.batch_size))


def test_stacked_schedules_sweep_equals_runs_per_group_bitwise_and_alone_to_rounding(tmp_path, monkeypatch):
    drawn_at, run = [], sd.runner.run
    monkeypatch.setattr(sd.runner, "run", lambda *a, **k: drawn_at.append(a[3].max_batch_size) or run(*a, **k))
    hyper = _hyper()
    result = _sweep(tmp_path / "grid", configs_per_chunk=4)
    assert result.grid_shape == (2, 3) and result["endpoint"].shape == (2, 3, REPLICAS, 2)
    assert drawn_at == [16, 8]  # one chunk per group, drawn at the group's S_max: no masking beyond it
    assert result.hyper["learning_rate"].startswith("Choice") and result.hyper["batch_size"].startswith("Choice")
    key, stepper = jax.random.key(1), sd.sgd("subset")
    observers = [sd.observers.endpoint(), sd.observers.loss_curve(10)]
    flat = hyper.flatten_grid()
    for members in ([0, 1, 3, 4], [2, 5]):  # the groups S_max = 16 and 8, in grid order
        index = np.asarray(members)
        pick = lambda v: jax.tree_util.tree_map(lambda x: x[index], v)
        group = sd.run(key, stepper, PROBLEM, sd.Hyper(pick(flat.learning_rate), pick(flat.batch_size)), INIT,
                       STEPS, replicas=REPLICAS, observers=observers, config_block=BLOCK)
        for n, g in enumerate(members):  # the same program: bit for bit
            jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a[n], b[divmod(g, 3)]),
                                   group.observations, result.observations)
    for i in range(2):
        for j in range(3):  # each configuration alone (unblocked): other rounding only
            alone = sd.run(key, stepper, PROBLEM, _config(hyper, i, j), INIT, STEPS, replicas=REPLICAS)
            theta = result["endpoint"][i, j]
            np.testing.assert_allclose(theta, alone["endpoint"], rtol=0, atol=_atol(theta))
    # the schedules matter (a real check): configurations differ by the SGD noise, ≫ the bound
    assert np.abs(result["endpoint"][0, 0] - result["endpoint"][1, 0]).max() > 100 * _atol(result["endpoint"])


def test_stacked_schedules_sweep_masked_resumed_and_fingerprinted(tmp_path):
    folder = tmp_path / "grid"
    first = _sweep(folder, configs_per_chunk=2)
    masked = _sweep(tmp_path / "masked", group_batch_sizes=False)  # every chunk drawn at S_max = 16
    np.testing.assert_allclose(first["endpoint"], masked["endpoint"], rtol=0, atol=_atol(first["endpoint"]))
    # resumable: a deleted configuration is recomputed to the same bits
    files = sorted(os.listdir(folder / "configs"))
    os.remove(folder / "configs" / files[4])
    again = _sweep(folder, configs_per_chunk=2)
    jax.tree_util.tree_map(np.testing.assert_array_equal, first.observations, again.observations)
    # schedule parameters are fingerprinted by value: another period is another sweep
    other = [sch.cyclic(0.05, 0.2, PERIOD + 2, "square"), 0.1]
    with pytest.raises(ValueError, match="grid"):
        _sweep(folder, hyper=_hyper(other))


def test_stacked_learning_rate_schedule_on_the_sme_clock(tmp_path):
    """t_sme,g(k) = Σ_{i<k} η_g(i) per configuration, for sd.run and the sweep."""
    hyper = _hyper()
    result = _sweep(tmp_path / "grid", clock="sme")
    run = sd.run(jax.random.key(1), sd.sgd("subset"), PROBLEM, hyper, INIT, STEPS, replicas=REPLICAS,
                 observers=[sd.observers.loss_curve(10)], clock="sme")
    cyclic = np.where((np.arange(STEPS) % PERIOD) * 2 < PERIOD, 0.05, 0.2)
    rates = [cyclic, np.full(STEPS, 0.1)]
    for i in range(2):
        elapsed = np.concatenate([[0.0], np.cumsum(rates[i])])
        for j in range(3):
            expected = elapsed[np.arange(0, STEPS + 1, 10)]
            np.testing.assert_allclose(run["loss_curve"]["times"][i, j], expected, rtol=1e-6)
            np.testing.assert_allclose(result["loss_curve"]["times"][i, j], expected, rtol=1e-6)
            np.testing.assert_allclose(run.duration[i, j], elapsed[-1], rtol=1e-6)
