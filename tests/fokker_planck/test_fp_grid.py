"""Grids, initial conditions, observables and input validation of sgdsde.fokker_planck."""

import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
import sgdsde.fokker_planck as fp


def test_grid_geometry_matches_histogram_edges():
    g = fp.grid([-1.0, 0.0], [1.0, 3.0], [4, 6], periodic=[False, True])
    assert g.ndim == 2 and g.shape == (4, 6) and g.periodic == (False, True)
    assert g.spacing == (0.5, 0.5) and g.cell_volume == 0.25
    np.testing.assert_array_equal(g.edges[0], [-1.0, -0.5, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(g.centers[1], np.arange(6) * 0.5 + 0.25)
    assert g.points().shape == (4, 6, 2)
    np.testing.assert_array_equal(g.points()[2, 3], [0.25, 1.75])
    # the same edge format the runner's histogram observer takes (accepted without error)
    sd.observers.histogram(edges=g.edges)
    one = fp.grid(-2, 2, 8)
    assert one.ndim == 1 and one.shape == (8,) and one.periodic == (False,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lower=0.0, upper=1.0, cells=2), "at least 3 cells"),
        (dict(lower=[0.0, 0.0], upper=[1.0, 1.0], cells=[10, 2]), "axis 1 has 2"),
        (dict(lower=1.0, upper=0.0, cells=10), "upper: must exceed lower"),
        (dict(lower=0.0, upper=1.0, cells=10.5), "cells: must be integers"),
        (dict(lower=[0.0] * 4, upper=[1.0] * 4, cells=5), "1 to 3 axes"),
        (dict(lower=[0.0, 0.0], upper=[1.0, 1.0, 1.0], cells=5), "lower: has 2 entries but the grid has 3 axes"),
    ],
)
def test_grid_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fp.grid(**kwargs)


def test_initial_conditions_are_normalised_masses():
    g = fp.grid([-4.0, -4.0], [4.0, 4.0], [40, 20])
    m = fp.gaussian(g, [0.5, -0.2], [[0.3, 0.1], [0.1, 0.2]])
    assert isinstance(m, np.ndarray) and m.dtype == np.float64 and m.shape == g.shape
    assert abs(m.sum() - 1.0) < 1e-15 and m.min() >= 0
    # midpoint convention: mass ∝ density at the centres
    x = g.points() - np.array([0.5, -0.2])
    dens = np.exp(-0.5 * np.einsum("...i,ij,...j->...", x, np.linalg.inv([[0.3, 0.1], [0.1, 0.2]]), x))
    np.testing.assert_allclose(m, dens / dens.sum(), rtol=1e-12)
    p = fp.point_mass(g, [0.05, 3.99])
    assert p.sum() == 1.0 and p[20, 19] == 1.0
    d = fp.from_density(g, lambda x: jnp.exp(-jnp.sum(x**2)))
    assert abs(d.sum() - 1.0) < 1e-15


def test_initial_conditions_reject_mass_outside_the_box():
    g = fp.grid(-1.0, 1.0, 20)
    # N(0.8, 0.1²): P(x > 1) = P(z > 2) ≈ 0.023 > 1e-6
    with pytest.raises(ValueError, match="holds less than 1 − 1e-06"):
        fp.gaussian(g, 0.8, 0.1**2)
    fp.gaussian(g, 0.0, 0.15**2)  # P(|z| > 6.7) ≈ 2e-11: fine
    with pytest.raises(ValueError, match="outside the box"):
        fp.point_mass(g, [1.5])
    with pytest.raises(ValueError, match="positive definite"):
        fp.gaussian(g, 0.0, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        fp.from_density(g, -np.ones(20))


def test_histogram_rebinning_is_exact_on_grid_edges():
    g = fp.grid([-2.0, -1.0], [2.0, 1.0], [16, 8])
    rng = np.random.default_rng(0)
    m = rng.random(g.shape)
    m /= m.sum()
    edges = (g.edges[0][::4], g.edges[1][::2])  # every 4th / 2nd grid edge
    h = fp.histogram(g, m, edges)
    expected = m.reshape(4, 4, 4, 2).sum(axis=(1, 3))
    np.testing.assert_allclose(h["mass"], expected, rtol=1e-13)
    np.testing.assert_allclose(h["density"], expected / (1.0 * 0.5), rtol=1e-13)
    assert abs(h["outside"]) < 1e-15
    # bins wider than the box: the part outside the bins is reported
    h1 = fp.histogram(fp.grid(0.0, 1.0, 4), np.full(4, 0.25), [0.25, 0.5, 2.0])
    np.testing.assert_allclose(h1["mass"], [0.25, 0.5], rtol=1e-15)
    np.testing.assert_allclose(h1["outside"], 0.25, rtol=1e-15)
    # a bin edge inside a grid cell splits its mass by length (uniform density in a cell)
    h2 = fp.histogram(fp.grid(0.0, 1.0, 4), np.array([0.1, 0.2, 0.3, 0.4]), [0.0, 0.125, 1.0])
    np.testing.assert_allclose(h2["mass"], [0.05, 0.95], rtol=1e-14)


def test_marginal_and_basin_masses():
    g = fp.grid([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [4, 5, 6])
    m = np.random.default_rng(1).random(g.shape)
    m /= m.sum()
    np.testing.assert_allclose(fp.marginal(g, m, 1), m.sum(axis=(0, 2)), rtol=1e-14)
    np.testing.assert_allclose(fp.marginal(g, m, (0, 2)), m.sum(axis=1), rtol=1e-14)
    stacked = np.stack([m, m])
    assert fp.marginal(g, stacked, 2).shape == (2, 6)
    classify = lambda x: (x[0] > 0).astype(jnp.int32) + 2 * (x[2] > 0).astype(jnp.int32)  # noqa: E731
    masses = fp.basin_masses(g, m, classify, 4)
    expected = [m[:2, :, :3].sum(), m[2:, :, :3].sum(), m[:2, :, 3:].sum(), m[2:, :, 3:].sum()]
    np.testing.assert_allclose(masses, expected, rtol=1e-14)
    with pytest.raises(ValueError, match="labels must lie in"):
        fp.basin_masses(g, m, classify, 3)
    with pytest.raises(ValueError, match="axes"):
        fp.marginal(g, m, (2, 0))


def test_boltzmann_law():
    g = fp.grid(-3.0, 3.0, 60)
    b = fp.boltzmann(g, lambda x: 0.5 * x[0] ** 2, 0.3)
    x = g.centers[0]
    expected = np.exp(-0.5 * x**2 / 0.3)
    np.testing.assert_allclose(b, expected / expected.sum(), rtol=1e-13)
    with pytest.raises(ValueError, match="temperature"):
        fp.boltzmann(g, lambda x: x[0] ** 2, -1.0)
