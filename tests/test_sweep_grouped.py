"""Sweeps grouped by batch size (the default): the configurations of each batch size S
run apart, drawing minibatches of S (no masked work). A configuration keeps the random
numbers of a run on its own (the first S of a draw at any size are the draw at S,
docs/sampling.md), so the grouped sweep equals

- ``sd.run`` over each batch size's configurations at the sweep's ``config_block``: the
  same program, bit for bit;
- ``sd.run`` of each configuration on its own, and the masked sweep (every chunk drawn at
  S_max, zero weights on the rest): other programs that sum in another order or over
  zero-weighted terms, so equal to the rounding bound of tests/_rounding.py, for each of
  the three samplers (different random numbers would differ by the SGD noise, ~10⁻¹).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _rounding import iterated_map_atol, rounding_atol

import sgdsde as sd
from sgdsde import sweep

HESSIAN = np.diag([1.0, 3.0])
PROBLEM = sd.problems.quadratic(HESSIAN, np.eye(2), 32, key=jax.random.key(0))
ETAS, SIZES = [0.05, 0.2, 0.4], [2, 8, 32]
HYPER = sd.Hyper.grid(ETAS, SIZES)  # 3 × 3: a column per batch size
STEPS, REPLICAS, BLOCK = 40, 4, 2
INIT = jnp.array([1.0, -1.0])


def _sweep(tmp_path, stepper, observers, **kwargs):
    return sweep.run_sweep(tmp_path / "grid", jax.random.key(1), stepper, PROBLEM, HYPER, INIT, STEPS,
                           replicas=REPLICAS, observers=observers, config_block=BLOCK, progress=False, **kwargs)


def _atol(theta_max: float) -> float:
    """Bound on |Δθ_T| between two programs for one trajectory (tests/_rounding.py,
    iterated_map_atol): per step (S_max + d + 8)·eps32·Σ|terms|, Σ|terms| = |θ| + η(‖A‖|θ| +
    max|x_i|) (the minibatch weights sum to 1), carried over T steps contracting by
    ρ = max|1 − ηλ| (0.95 here: at most 20×)."""
    rho = max(abs(1 - eta * lam) for eta in ETAS for lam in np.diag(HESSIAN))
    step_abs_sum = theta_max + max(ETAS) * (HESSIAN.max() * theta_max + float(np.abs(PROBLEM.data).max()))
    return iterated_map_atol(step_abs_sum, max(SIZES) + 2 + 8, STEPS, rho, np.float32)


def test_grouped_equals_runs_per_batch_size_bitwise_and_per_configuration_to_rounding(tmp_path, monkeypatch):
    stepper, observers = sd.sgd("subset"), [sd.observers.endpoint(), sd.observers.loss_curve(10)]
    drawn_at, run = [], sd.runner.run
    monkeypatch.setattr(sd.runner, "run", lambda *a, **k: drawn_at.append(a[3].max_batch_size) or run(*a, **k))
    grouped = _sweep(tmp_path, stepper, observers, configs_per_chunk=3)
    assert drawn_at == SIZES  # one chunk per batch size, drawn at its own S: no masked work
    key = jax.random.key(1)
    for j, size in enumerate(SIZES):
        # the same program: the column's 3 configurations in blocks of 2 at draw size S
        column = sd.run(key, stepper, PROBLEM, sd.Hyper(np.asarray(ETAS), size), INIT, STEPS, replicas=REPLICAS,
                        observers=observers, config_block=BLOCK)
        jax.tree_util.tree_map(np.testing.assert_array_equal, column.observations,
                               jax.tree_util.tree_map(lambda x: x[:, j], grouped.observations))
        for i, eta in enumerate(ETAS):  # alone: unblocked, one configuration wide
            alone = sd.run(key, stepper, PROBLEM, sd.Hyper(eta, size), INIT, STEPS, replicas=REPLICAS,
                           observers=observers)
            theta = grouped["endpoint"][i, j]
            atol = _atol(max(1.0, float(np.abs(theta).max())) + 1.0)  # + 1: room for the noise
            np.testing.assert_allclose(theta, alone["endpoint"], rtol=0, atol=atol)
            assert not np.array_equal(theta, grouped["endpoint"][i, (j + 1) % 3])  # S matters: a real check


@pytest.mark.parametrize("sampling", ["iid", "subset", "epoch"])
def test_grouped_equals_masked_to_rounding(tmp_path, sampling):
    stepper, observers = sd.sgd(sampling), [sd.observers.endpoint(), sd.observers.loss_curve(10)]
    grouped = _sweep(tmp_path / "grouped", stepper, observers)
    masked = _sweep(tmp_path / "masked", stepper, observers, group_batch_sizes=False)
    theta_max = max(1.0, float(np.abs(grouped["endpoint"]).max())) + 1.0
    atol = _atol(theta_max)
    np.testing.assert_allclose(grouped["endpoint"], masked["endpoint"], rtol=0, atol=atol)
    # L = ½ uᵀAu: |ΔL| ≤ d·‖A‖|θ|·|Δθ|, plus L's own rounding (2d + 4 operations on terms ≤ ‖A‖|θ|²)
    loss_atol = 2 * HESSIAN.max() * theta_max * atol + rounding_atol(HESSIAN.max() * theta_max**2, 8, np.float32)
    np.testing.assert_allclose(grouped["loss_curve"]["values"], masked["loss_curve"]["values"], rtol=0,
                               atol=loss_atol)
    assert atol < 1e-3  # far below the SGD noise that different minibatches would leave
    spread = np.abs(grouped["endpoint"][:, 0] - grouped["endpoint"][:, 2]).max()  # S = 2 vs 32
    assert spread > 100 * atol
