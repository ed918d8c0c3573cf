"""The stationary solver's exact path for reversible generators in 2-D: detailed-balance
products, checked on every face; at low temperature, where an iterative solve loses
accuracy, the result is still the discrete Boltzmann law to rounding."""

import jax
import numpy as np

import sgdsde as sd
import sgdsde.fokker_planck as fp
from sgdsde.fokker_planck.linalg import detailed_balance_nd


def _landscape():
    return sd.problems.multi_well([[-0.7, 0.0], [0.7, 0.0]], [0.0, 0.3], [8.0, 1.0], softness=0.15,
                                  num_examples=10, key=jax.random.key(0)).info["loss"]


def test_low_temperature_2d_is_exact_boltzmann(x64):
    """T = 0.02 (barriers ≈ 20–35 T) on 128×96 cells: ≤ 1e-12 relative to the largest mass
    (the log-mass sums run over ≤ 224 faces: rounding ≈ 224·ε·max|U/T| ≈ 1e-12 at most)."""
    loss = _landscape()
    g = fp.grid([-2.4, -2.0], [3.2, 2.0], [128, 96])
    gen = fp.langevin_generator(g, potential=loss, diffusion=0.02)
    mass = np.asarray(fp.stationary(gen))
    exact = np.asarray(fp.boltzmann(g, loss, 0.02))
    assert np.max(np.abs(mass - exact)) <= 1e-12 * exact.max()
    assert float(detailed_balance_nd(gen.structural())[1]) < 1e-13


def test_non_reversible_generator_falls_back_to_a_linear_solve(x64):
    """Diagonal D with a non-separable potential is not reversible: the face relation is
    violated by O(1) (the check rejects it) and the linear solve (here the sparse LU that
    "auto" picks at 40×32) gives G m = 0 to rounding."""
    loss = _landscape()
    g = fp.grid([-2.4, -2.0], [3.2, 2.0], [40, 32])
    gen = fp.langevin_generator(g, potential=loss, diffusion=np.array([0.3, 0.6]))
    assert float(detailed_balance_nd(gen.structural())[1]) > 1e-3
    mass = np.asarray(fp.stationary(gen))
    assert abs(mass.sum() - 1) < 1e-12 and mass.min() >= 0
    assert np.max(np.abs(np.asarray(gen.apply(mass)))) < 1e-12 * np.max(np.asarray(gen.exit_rates()) * mass)
    assert fp.residual(gen, mass) <= 1e-12  # the backward error stationary() guarantees
