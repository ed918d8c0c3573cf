"""He, Liu & Tao (2019): the η × S grid under equal epochs and fixed steps
(sgdsde/experiments/reproduce/he_liu_tao.py). The building blocks on constructed data, then
one quick reproduction: files, verdicts, the budgets' step counts and the sign of the
effect under equal epochs."""

import json

import matplotlib
import numpy as np
import pytest
from scipy import stats

from sgdsde.experiments import reproduce
from sgdsde.experiments.reproduce import he_liu_tao as hlt

from ._he_liu_tao_run import quick_cli_run

matplotlib.use("Agg")


def test_grid_is_the_papers():
    eta, size = hlt.grid_values(20)
    np.testing.assert_allclose(eta, 0.01 * np.arange(1, 21))
    np.testing.assert_array_equal(size, 16 * np.arange(1, 21))
    eta, size = hlt.grid_values(3)
    np.testing.assert_allclose(eta, [0.01, 0.10, 0.20])
    np.testing.assert_array_equal(size, [16, 160, 320])
    for bad in (1, 21, 2.5):
        with pytest.raises(ValueError, match="grid_size"):
            hlt.grid_values(bad)


@pytest.mark.parametrize("size", [16, 112, 240, 272, 320])
def test_equal_epochs_step_counts(size):
    """round(E·N/S) steps: the epochs S·steps/N are E to within half a step's worth of
    epochs, S/(2N)."""
    n, epochs = 1258, 200
    steps, every = hlt.epoch_steps(epochs, n, size)
    assert steps == round(epochs * n / size) and every == round(n / size)
    assert abs(steps * size / n - epochs) <= size / (2 * n)


def synthetic_grid(rng, *, diverged_at=None):
    eta, size = hlt.grid_values(5)
    ratio = size[None, :] / eta[:, None]
    test = 0.99 - 0.01 * np.log(ratio)[..., None]              # strictly falling in S/η
    train = np.where(ratio < 2000, 1.0, 0.95)[..., None]
    grid = {"test_accuracy": test, "test_accuracy_best": test + 0.001, "train_accuracy": train,
            "test_loss": -np.log(test), "diverged": np.zeros(test.shape, bool)}
    if diverged_at is not None:
        grid["diverged"][diverged_at] = True
        grid["test_accuracy"] = grid["test_accuracy"].copy()
        grid["test_accuracy"][diverged_at] = 0.1
    return eta, size, ratio, grid


def test_correlations_on_a_constructed_grid():
    eta, size, ratio, grid = synthetic_grid(np.random.default_rng(0))
    c = hlt.correlations(eta, size, grid)
    assert c["test_accuracy_vs_S_over_eta"]["rho"] == pytest.approx(-1.0)
    assert c["best_test_accuracy_vs_S_over_eta"]["rho"] == pytest.approx(-1.0)
    for what in ("test_accuracy", "best_test_accuracy"):  # both ways: ranks reverse, same p
        a, b = c[f"{what}_vs_S_over_eta"], c[f"{what}_vs_eta_over_S"]
        assert b["rho"] == pytest.approx(-a["rho"]) and b["p_value"] == pytest.approx(a["p_value"])
    fitted = ratio < 2000
    assert c["test_accuracy_vs_S_over_eta_fitted"]["n"] == fitted.sum()
    gap = (grid["train_accuracy"] - grid["test_accuracy"])[..., 0]
    expected = stats.spearmanr(ratio.ravel(), gap.ravel())
    assert c["generalization_gap_vs_S_over_eta"]["rho"] == pytest.approx(expected.statistic)
    # a configuration with a diverged replica is left out
    eta, size, ratio, grid = synthetic_grid(np.random.default_rng(0), diverged_at=(0, 0, 0))
    c = hlt.correlations(eta, size, grid)
    assert c["test_accuracy_vs_S_over_eta"]["n"] == ratio.size - 1
    assert c["test_accuracy_vs_S_over_eta"]["rho"] == pytest.approx(-1.0)


@pytest.fixture
def quick():
    """The quick reproduction (run once per session through the command line): its
    results as written to the JSON, and its folder."""
    status, out = quick_cli_run()
    assert status == 0
    return json.loads((out / "he_liu_tao.json").read_text()), out


def test_quick_writes_files_and_verdicts(quick):
    results, out = quick
    assert (out / "he_liu_tao.png").stat().st_size > 10_000
    saved = results
    assert saved["experiment"]["label"] == "hlt" and saved["experiment"]["quick"] is True
    assert len(saved["verdicts"]) == 5
    for v in saved["verdicts"]:
        assert v["statistic"] == "spearman" and "p < 0.005" in v["claim"]
        assert v["verdict"] in (reproduce.CONFIRMED, reproduce.NOT_CONFIRMED, reproduce.CONTRADICTED)
    assert saved["paper"]["spearman_test_accuracy_vs_S_over_eta"]["n"] == 400
    for part in ("steps", "epochs-S016", "epochs-S160", "epochs-S320"):
        assert (out / "he-liu-tao-sweeps" / part / "manifest.json").is_file()
    # the plot redraws from the JSON (NaN written as null) and the table fits in 100 characters
    fig = hlt.plot(saved)
    assert len(fig.axes) == 8  # 4 panels, 4 colour bars
    assert max(len(line) for line in hlt.table(saved).splitlines()) <= 100


def test_quick_budgets(quick):
    results, _ = quick
    n, (eta, size) = results["setup"]["n_train"], hlt.grid_values(hlt.QUICK["grid_size"])
    epochs = results["budgets"]["epochs"]
    np.testing.assert_array_equal(epochs["steps"], np.round(hlt.QUICK["epochs"] * n / size))
    np.testing.assert_allclose(epochs["epochs"], hlt.QUICK["epochs"], atol=size.max() / (2 * n))
    steps = results["budgets"]["steps"]
    np.testing.assert_array_equal(steps["steps"], hlt.QUICK["steps"])
    np.testing.assert_allclose(steps["epochs"], hlt.QUICK["steps"] * size / n)
    for grid in (epochs, steps):
        assert np.shape(grid["test_accuracy"]) == (eta.size, size.size, hlt.QUICK["replicas"])
        assert np.all(np.asarray(grid["test_accuracy_best"]) >= np.asarray(grid["test_accuracy"]))
        assert not np.any(grid["diverged"])


def test_quick_equal_epochs_shows_the_sign(quick):
    """Under equal epochs, test accuracy falls with S/η (the quick grid: 3 × 3, 8 epochs;
    the configurations of large S/η are also under-trained: train accuracy falls too)."""
    results, _ = quick
    first = results["verdicts"][0]
    assert "equal epochs, all configurations" in first["claim"]
    assert first["value"] < -0.8 and first["p_value"] < 0.005 and first["verdict"] == reproduce.CONFIRMED
    sp = results["spearman"]["epochs"]
    assert sp["best_test_accuracy_vs_S_over_eta"]["rho"] == pytest.approx(first["value"])
    assert sp["best_test_accuracy_vs_eta_over_S"]["rho"] == pytest.approx(-first["value"])
    assert sp["train_accuracy_vs_S_over_eta"]["rho"] < 0
