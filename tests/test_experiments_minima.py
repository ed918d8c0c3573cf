"""The main job (sgdsde minima) on small settings: the five views agree where theory says
they must, and the pieces behave."""

import json

import jax
import numpy as np
import pytest

from sgdsde import cli, landscape
from sgdsde.experiments import minima
from sgdsde.experiments.output import save_outputs


@pytest.fixture(scope="module")
def small_run():
    return minima.minima_selection(
        "sharp-wide", batch_sizes=(2, 3), replicas=128, escape_replicas=128, max_steps=1600,
        max_escape_steps=1000, grid_cells=(64, 56), quadrature_cells=(128, 112), progress=False,
    )


def test_fokker_planck_is_the_midpoint_boltzmann_law(small_run):
    """The FP stationary state is exactly exp(−U/D) at the cell centres, so its basin masses
    equal the midpoint-rule Boltzmann masses on the same 64×56 cells up to the stationary
    solver's tolerance (1e-8 here); against the finer 128×112 quadrature they differ by
    less than the quadrature's (upper-bound) error estimate."""
    spec = minima.load_landscape("sharp-wide")
    problem = minima.build_problem(spec)
    with jax.enable_x64(True):
        same_cells = landscape.boltzmann_basin_masses(
            problem.info["loss"], problem.info["classify"], 2, lower=spec["lower"], upper=spec["upper"],
            cells=[64, 56], noise_scale=np.asarray(small_run["noise_scale_effective"]), sigma2=spec["sigma2"],
        )
    p = small_run["probabilities"]
    fokker_planck = np.asarray(p["fokker_planck"]["value"])
    np.testing.assert_allclose(fokker_planck, np.asarray(same_cells.masses), atol=1e-8)
    difference = np.abs(fokker_planck - np.asarray(p["quadrature"]["value"]))
    assert np.all(difference <= np.asarray(p["quadrature"]["error"]))
    assert np.max(difference) < 2e-3


def test_euler_maruyama_matches_the_sdes_law(small_run):
    """EM (dt = 0.25 SGD steps) ensemble basin masses against the exact Boltzmann masses:
    within 4 replica standard errors (≈ 0.03 with 128 replicas) — the EM time-step bias,
    ≈ −0.004 at these settings (measured with 512 replicas), is well inside."""
    p = small_run["probabilities"]
    em, se = np.asarray(p["euler_maruyama"]["value"])[:, 0], np.asarray(p["euler_maruyama"]["stderr"])[:, 0]
    exact = np.asarray(p["quadrature"]["value"])[:, 0]
    assert np.all(np.abs(em - exact) <= 4 * se), (em, exact, se)
    assert small_run["burn_in_relaxations"] >= 3.0


def test_laplace_and_escape_times(small_run):
    """Laplace's sharp-basin share follows the exact one to 0.01 at these noise levels (the
    wells are nearly harmonic where their mass lies); simulated EM escape times match the
    grid's backward-Kolmogorov times within 4 standard errors (plus 5 % for the time step)."""
    p = small_run["probabilities"]
    np.testing.assert_allclose(np.asarray(p["laplace"]["value"]), np.asarray(p["quadrature"]["value"]), atol=0.01)
    esc = small_run["escape"]
    em, grid = np.asarray(esc["euler_maruyama"], float), np.asarray(esc["grid"])
    simulated = np.isfinite(em[..., 0])
    assert simulated.sum() >= 1  # escapes expected within 1000/5 steps: deep sharp → shallow wide at S = 2
    assert np.all(em[..., 2][simulated] > 0.99)  # nearly every replica arrived
    gap = np.abs(em[..., 0] - grid)[simulated]
    assert np.all(gap <= 4 * em[..., 1][simulated] + 0.05 * grid[simulated])
    # Kramers is asymptotic: below the exact time at these low barriers, and finite
    assert np.all(np.asarray(esc["kramers"]) < grid)


def test_table_figure_json(small_run, tmp_path):
    table = minima.format_table(small_run)
    assert "Crossover noise" in table and "Mean escape times" in table
    assert max(len(line) for line in table.splitlines()) <= 100
    save_outputs(small_run, tmp_path, "minima", minima.plot, minima.format_table)
    data = json.loads((tmp_path / "minima.json").read_text())
    assert data["batch_sizes"] == [2, 3] and (tmp_path / "minima.png").stat().st_size > 10_000


def test_crossover_interpolation():
    """log(p_A/p_B) linear in log n crosses zero exactly where the line does."""
    n = np.geomspace(1e-3, 1e-2, 5)
    ratio = 2.0 * (np.log(n) - np.log(3e-3))
    value, stderr = minima._log_ratio_crossover(n, ratio, np.full(5, 0.1))
    assert value == pytest.approx(3e-3, rel=1e-12)
    # 3e-3 lies between n[1] and n[2] at fraction w of the log step; δn* = n*·δy/|slope|,
    # δy = hypot((1 − w)·0.1, w·0.1), slope 2 (exact, to rounding)
    w = np.log(3e-3 / n[1]) / np.log(n[2] / n[1])
    assert stderr == pytest.approx(3e-3 * np.hypot(0.1 * (1 - w), 0.1 * w) / 2.0, rel=1e-12)
    assert minima._log_ratio_crossover(n, np.ones(5)) == (None, None)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="neither a built-in"):
        minima.load_landscape("no-such-landscape")
    with pytest.raises(ValueError, match="batch_sizes"):
        minima.minima_selection(batch_sizes=(0, 2), progress=False)
    with pytest.raises(ValueError, match="noise range"):
        minima.batch_sizes_for_noise((0.5, 1.0), 4, 0.025)
    bad = tmp_path / "land.json"
    bad.write_text(json.dumps({"centers": [[0.0], [1.0]], "levels": [0, 1], "hessians": [1, 1], "sigma2": 1,
                               "lower": [-1], "upper": [2]}))
    with pytest.raises(ValueError, match="2-D"):
        minima.load_landscape(str(bad))
    assert cli.main(["minima", "--landscape", "no-such-landscape", "--out", str(tmp_path)]) == 2
    assert minima.batch_sizes_for_noise((0.004, 0.012), 5, 0.025) == [2, 3, 4, 5, 6]
