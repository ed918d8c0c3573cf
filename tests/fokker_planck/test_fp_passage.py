"""Mean first-passage times from the grid's backward Kolmogorov equation, against the
exact 1-D double-integral formula of docs/theory.md §4."""

import jax
import numpy as np
import pytest

import sgdsde.fokker_planck as fp
from sgdsde.fokker_planck.passage import generator_matrix, mean_first_passage_time

D = 0.25


def _potential(x):
    return (x[0] ** 2 - 1) ** 2


def _quadrature_mfpt(a: float, c: float, lower: float = -2.5, points: int = 400_001) -> float:
    """T(a→c) = (1/D)∫_a^c e^{U(y)/D} ∫_lower^y e^{−U(z)/D} dz dy by the trapezoid rule on
    4·10⁵ points (relative error ≈ 1e-10, far below the grid errors tested)."""
    y = np.linspace(lower, c, points)
    u = (y**2 - 1) ** 2
    weight = np.exp(-u / D)
    inner = np.concatenate([[0.0], np.cumsum(0.5 * (weight[1:] + weight[:-1]) * np.diff(y))])
    outer = np.exp(u / D) * inner
    keep = y >= a
    return float(np.trapezoid(outer[keep], y[keep]) / D)


def test_generator_matrix_is_the_generator(x64):
    g = fp.grid([-1.0, -1.0], [1.0, 1.0], [7, 5])
    gen = fp.langevin_generator(g, potential=lambda x: x[0] ** 2 + 0.5 * x[0] * x[1], diffusion=0.3)
    mass = np.random.default_rng(0).random(g.shape)
    matrix = generator_matrix(gen)
    np.testing.assert_allclose(matrix @ mass.ravel(), np.asarray(gen.apply(mass)).ravel(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=0)).ravel(), 0.0, atol=1e-12)  # zero column sums


def test_double_well_mfpt_second_order(x64):
    """From −1 to the right well (cells x ≥ 1; both points are cell centres for these
    grids): the error against the quadrature falls ≈ 4× per halving of h (O(h²)), and is
    below 1e-4 relative at h = 5/805."""
    reference = _quadrature_mfpt(-1.0, 1.0)
    errors = []
    for cells in (405, 805):
        g = fp.grid(-2.5, 2.5, cells)
        x = g.centers[0]
        tau = mean_first_passage_time(fp.langevin_generator(g, potential=_potential, diffusion=D), x >= 1 - 1e-9)
        errors.append(abs(tau[np.argmin(abs(x + 1))] / reference - 1))
    assert errors[1] < 1e-4
    assert 3.5 < errors[0] / errors[1] < 4.5


def test_mfpt_bad_target(x64):
    g = fp.grid(-1.0, 1.0, 10)
    gen = fp.langevin_generator(g, potential=lambda x: x[0] ** 2, diffusion=1.0)
    with pytest.raises(ValueError, match="some but not all"):
        mean_first_passage_time(gen, np.zeros(10, bool))
    with pytest.raises(ValueError, match="shape"):
        mean_first_passage_time(gen, np.zeros(11, bool))
