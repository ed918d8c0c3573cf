"""Smith & Le (2018): the optimal batch size (g) and B_opt ∝ εN (h)
(sgdsde/experiments/reproduce/smith_le_batch.py). The quadratic optimum against closed
forms on constructed data, then the quick reproductions end to end: files, verdicts,
fixed-epoch step counts, and resuming after a deleted configuration file."""

import json
import math

import matplotlib
import numpy as np
import pytest

from sgdsde.experiments import reproduce
from sgdsde.experiments.reproduce import CONFIRMED, CONTRADICTED, NOT_CONFIRMED
from sgdsde.experiments.reproduce import smith_le_batch as slb

matplotlib.use("Agg")

VERDICTS = {CONFIRMED, NOT_CONFIRMED, CONTRADICTED}


def test_quadratic_optimum_recovers_an_exact_parabola():
    """Points on y = a + b u + c u² exactly: the weighted fit is exact (rounding only:
    a 3 × 3 solve with entries ≲ (ln 512)⁴ ≈ 1.5e3, so ~1e-9 absolute), the vertex is
    −b/2c, and with equal se σ the delta-method standard error of û is the textbook one,
    √(gᵀ (XᵀX)⁻¹ g) σ with g = (0, −1/2c, b/2c²)."""
    s = 2.0 ** np.arange(1, 10)
    u = np.log(s)
    a, b, c = 0.5, 0.12, -0.015
    y = a + b * u + c * u * u
    sigma = 0.01
    fit = slb.quadratic_optimum(s, y, np.full(s.size, sigma))
    np.testing.assert_allclose(fit["coefficients"], [a, b, c], rtol=0, atol=1e-9)
    assert fit["log_b_opt"] == pytest.approx(-b / (2 * c), abs=1e-7)
    assert fit["b_opt"] == pytest.approx(math.exp(-b / (2 * c)), rel=1e-6)
    x = np.column_stack([np.ones_like(u), u, u * u])
    g = np.array([0.0, -1 / (2 * c), b / (2 * c * c)])
    se = math.sqrt(g @ np.linalg.inv(x.T @ x) @ g) * sigma  # χ² = 0: no rescaling
    assert fit["log_b_opt_se"] == pytest.approx(se, rel=1e-9)
    assert fit["maximum_inside"] and fit["dof"] == s.size - 3
    assert slb.interior_verdict("c", fit).verdict == CONFIRMED


def test_quadratic_optimum_leaves_out_failed_runs_and_reads_the_edges():
    s = 2.0 ** np.arange(1, 9)
    u = np.log(s)
    y = 0.9 + 0.02 * u - 0.004 * u * u
    y_failed = y.copy()
    y_failed[:2] = [0.1, 0.3]  # unstable SGD at the smallest batches: below (0.1 + best)/2
    fit = slb.quadratic_optimum(s, y_failed, np.full(s.size, 0.005), chance=0.1)
    np.testing.assert_array_equal(fit["failed"], [0, 1])
    np.testing.assert_array_equal(fit["fitted"], np.arange(2, 8))
    # a monotone (convex) profile: no interior maximum; significant positive curvature contradicts
    convex = 0.9 + 0.01 * (u - u.mean()) ** 2
    fit = slb.quadratic_optimum(s, convex, np.full(s.size, 0.001))
    assert fit["curvature"] > 0 and not fit["maximum_inside"]
    assert slb.interior_verdict("c", fit).verdict == CONTRADICTED
    # fewer than three usable points: no fit, not confirmed
    fit = slb.quadratic_optimum(s[:3], [0.1, 0.1, 0.9], np.full(3, 0.01), chance=0.1)
    assert math.isnan(fit["b_opt"]) and slb.interior_verdict("c", fit).verdict == NOT_CONFIRMED


def test_slope_verdict_needs_an_interval_that_excludes_zero():
    """B_opt exactly ∝ ε: slope 1 (confirmed when the interval is tight); a noisy
    estimate whose interval holds 0 and 1 is 'not confirmed'."""
    eps = np.array([0.1, 0.2, 0.4, 0.8])
    wiggle = [1e-3, -1e-3, -1e-3, 1e-3]  # orthogonal to ln ε (equally spaced): slope exactly 1, small residuals
    exact = [{"maximum_inside": True, "log_b_opt": math.log(40 * e) + w} for e, w in zip(eps, wiggle)]
    v = slb._slope("c", eps, exact)
    assert v.verdict == CONFIRMED and v.value == pytest.approx(1.0, abs=1e-9)
    noisy = [{"maximum_inside": True, "log_b_opt": x} for x in (1.0, 3.0, 1.2, 3.1)]
    assert slb._slope("c", eps, noisy).verdict == NOT_CONFIRMED


def _profile(u):
    return 0.98 - 0.004 * (u - 3.0) ** 2  # a smooth maximum in u = ln(noise)


def test_collapse_exponent_finds_the_variable_the_accuracy_depends_on():
    """Accuracy exactly a function of ln(ε^a/S) (4 replicas with spread 0.002): the χ²
    profile's minimum is within 0.05 of α = a (noise and the cubic's misfit), the verdict
    confirms α = 1 for a = 1 and contradicts it for a = 0 (no ε dependence)."""
    eps = np.array([0.1, 0.2, 0.4, 0.8])
    sizes = 2.0 ** np.arange(1, 9)
    rng = np.random.default_rng(3)
    for a, expected in ((1.0, CONFIRMED), (0.0, CONTRADICTED)):
        u = a * np.log(eps)[:, None] - np.log(sizes)[None, :] + 6.0
        acc = _profile(u)[..., None] + 0.002 * rng.standard_normal((4, 8, 4))
        fit = slb.collapse_exponent(eps, sizes, acc, chance=0.1)
        assert abs(fit["alpha"] - a) <= 0.05 and fit["interval"][0] <= a <= fit["interval"][1]
        assert slb.collapse_verdict("c", fit).verdict == expected


def _check_common(results, out, stem):
    assert (out / f"{stem}.json").is_file() and (out / f"{stem}.png").is_file()
    saved = json.loads((out / f"{stem}.json").read_text())
    assert saved["experiment"]["quick"] is True
    for v in saved["verdicts"]:
        assert v["verdict"] in VERDICTS and v["claim"] and v["text"]
    return saved


@pytest.fixture(scope="module")
def quick_g(tmp_path_factory):
    out = tmp_path_factory.mktemp("slg")
    return reproduce.reproduce("smith-le-optimal-batch", quick=True, out=out, seed=0, progress=False), out


def test_optimal_batch_quick(quick_g):
    results, out = quick_g
    saved = _check_common(results, out, "smith_le_optimal_batch")
    setup = saved["setup"]
    sizes = np.asarray(saved["batch_sizes"])
    # equal epochs: round(E·N/S) steps per batch size
    np.testing.assert_array_equal(saved["steps"], np.round(setup["epochs"] * setup["N"] / sizes).astype(int))
    np.testing.assert_allclose(saved["noise_scale"], setup["learning_rate"] * setup["N"] / sizes)
    (v,) = saved["verdicts"]
    assert v["statistic"] == "quadratic curvature"
    # the quick run shows the sign of the effect: a concave profile (its CI is not asked for)
    assert v["value"] < 0
    assert all(len(line) <= 100 for line in slb.table_optimal_batch(results).splitlines())


def test_optimal_batch_resumes_after_a_deleted_configuration(quick_g):
    results, out = quick_g
    folder = reproduce.sweep_folder(out, "smith-le-optimal-batch", f"N{results['setup']['N']}-S16")
    files = sorted((folder / "configs").glob("config_*.npz"))
    assert files
    files[0].unlink()
    again = reproduce.reproduce("smith-le-optimal-batch", quick=True, out=out, seed=0, progress=False)
    np.testing.assert_array_equal(again["test_accuracy"], results["test_accuracy"])
    assert files[0].is_file()


def test_scaling_quick(tmp_path):
    results = reproduce.reproduce("smith-le-scaling", quick=True, out=tmp_path, seed=0, progress=False)
    saved = _check_common(results, tmp_path, "smith_le_scaling")
    assert [v["statistic"] for v in saved["verdicts"]] == ["slope", "slope", "collapse exponent"]
    eps, ns = saved["learning_rates"], saved["training_sizes"]
    assert len(saved["eps_scan"]["fits"]) == len(eps) and len(saved["n_scan"]["fits"]) == len(ns)
    assert ns[-1] == saved["setup"]["N"]
    # the N scan's full-N row is the ε scan's row at the N scan's learning rate
    row = eps.index(saved["setup"]["n_scan_learning_rate"])
    np.testing.assert_array_equal(saved["n_scan"]["test_accuracy"][-1], saved["eps_scan"]["test_accuracy"][row])
    assert all(len(line) <= 100 for line in slb.table_scaling(results).splitlines())
