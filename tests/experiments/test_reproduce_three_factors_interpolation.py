"""Three Factors (b) ``three-factors-interpolation`` and (c) ``three-factors-same-ratio``:
quick runs end to end (JSON + PNG, verdict fields, the statistics recomputed from the
saved lines), resuming after a configuration file is deleted (same numbers), and the
curvature along a line against a quadratic loss with known Hessian."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgdsde import curvature
from sgdsde.experiments import reproduce
from sgdsde.experiments.reproduce import _three_factors as tf
from sgdsde.experiments.reproduce import sweep_folder
from sgdsde.experiments.reproduce import three_factors_interpolation as interp

VERDICT_FIELDS = {"claim", "statistic", "value", "interval", "p_value", "verdict", "text"}
VERDICTS = {reproduce.CONFIRMED, reproduce.NOT_CONFIRMED, reproduce.CONTRADICTED}


def _run(name, out):
    with pytest.MonkeyPatch.context() as mp:  # the registry restricted to this module's experiments
        mp.setattr(reproduce, "experiments", lambda: {e.name: e for e in interp.EXPERIMENTS})
        return reproduce.reproduce(name, quick=True, out=out, seed=0, progress=False)


@pytest.fixture(scope="module")
def quick_b(tmp_path_factory):
    out = tmp_path_factory.mktemp("three-factors-b")
    return out, _run("b", out)


@pytest.fixture(scope="module")
def quick_c(tmp_path_factory):
    out = tmp_path_factory.mktemp("three-factors-c")
    return out, _run("c", out)


def _saved(out, stem):
    assert (out / f"{stem}.png").stat().st_size > 10_000
    saved = json.loads((out / f"{stem}.json").read_text())
    for v in saved["verdicts"]:
        assert set(v) == VERDICT_FIELDS and v["verdict"] in VERDICTS and v["statistic"] == "difference"
        low, high = v["interval"]
        assert low <= v["value"] <= high and 0 <= v["p_value"] <= 1
    return saved


def test_interpolation_quick_run(quick_b):
    out, results = quick_b
    saved = _saved(out, "three_factors_interpolation")
    assert saved["experiment"]["label"] == "b" and len(saved["verdicts"]) == 2
    alphas = np.asarray(saved["alphas"])
    assert alphas[0] == -0.5 and alphas[-1] == 1.5
    loss = np.asarray(saved["lines"]["train_loss"])
    replicas = interp.QUICK_B["replicas"]
    assert loss.shape == (2, replicas, alphas.size) and np.all(np.isfinite(loss))
    # the statistic recomputed from the saved curves: d²L/dα² at each end, paired over replicas
    curv = np.asarray([[[tf.end_curvature(alphas, loss[p, r], at) for at in (0.0, 1.0)] for r in range(replicas)]
                       for p in range(2)])
    np.testing.assert_allclose(curv, saved["lines"]["end_curvature"], rtol=1e-12)
    for p, v in enumerate(saved["verdicts"]):
        d = curv[p, :, 0] - curv[p, :, 1]
        assert v["value"] == pytest.approx(d.mean(), rel=1e-9)
        assert v["interval"][1] - v["value"] == pytest.approx(2 * d.std(ddof=1) / np.sqrt(replicas), rel=1e-9)
    # at the ends the line passes through the trained endpoints
    ends = saved["endpoints"]
    i0 = int(np.argmin(np.abs(alphas)))
    # (another vmap width may round a borderline logit the other way: one test example)
    np.testing.assert_allclose(np.asarray(saved["lines"]["test_accuracy"])[0, :, i0], ends["test_accuracy"][1],
                               atol=1.5 / 359)  # 359 test images
    assert max(len(line) for line in interp.table_interpolation(results).splitlines()) <= 100


def test_interpolation_resumes_with_the_same_numbers(quick_b):
    out, results = quick_b
    files = sorted(sweep_folder(out, interp.NAME_B, "S16").glob("configs/config_*.npz"))
    assert len(files) == 2  # baseline and small η (S = 16); the large batch has its own sweep
    files[0].unlink()
    again = _run("b", out)
    for key in ("train_loss", "test_accuracy", "end_curvature", "barrier"):
        np.testing.assert_array_equal(np.asarray(again["lines"][key]), np.asarray(results["lines"][key]))
    assert [v["value"] for v in again["verdicts"]] == [v["value"] for v in results["verdicts"]]


def test_same_ratio_quick_run(quick_c):
    out, results = quick_c
    saved = _saved(out, "three_factors_same_ratio")
    assert saved["experiment"]["label"] == "c" and len(saved["verdicts"]) == 2
    s = saved["setup"]
    configs = [tuple(c) for c in s["configs"]]
    same = configs[: len(s["betas"])]
    assert len({e / b for e, b in same}) == 1  # one η/S
    # the same number of epochs: steps ∝ 1/S
    steps = np.asarray(s["steps"]) * np.asarray([c[1] for c in configs])
    assert np.ptp(steps) <= max(c[1] for c in configs)
    barrier = np.asarray(saved["lines"]["barrier"])
    assert barrier.shape == (len(s["pairs"]), interp.QUICK_C["replicas"]) and np.all(barrier >= 0)
    b_same = barrier[: s["same_pairs"]].mean(axis=0)
    b_diff = barrier[s["same_pairs"]:].mean(axis=0)
    assert saved["verdicts"][0]["value"] == pytest.approx(np.mean(b_same - b_diff), rel=1e-9)
    assert max(len(line) for line in interp.table_same_ratio(results).splitlines()) <= 100


def test_line_curvature_of_a_quadratic_is_its_hessian_along_the_line(x64):
    """L(θ) = ½ θᵀHθ + bᵀθ: d²L/dα² along θ(α) = (1 − α)θ_A + αθ_B is ΔᵀHΔ, Δ = θ_B − θ_A,
    at every α; the three-point difference is exact for a quadratic (error h²/12·f⁗ = 0),
    so only float64 rounding remains (~1e-16·|L|/h², h = 0.05)."""
    rng = np.random.default_rng(3)
    d = 10
    m = rng.normal(size=(d, d))
    hessian = m @ m.T
    b = rng.normal(size=d)
    loss = lambda theta: 0.5 * theta @ jnp.asarray(hessian) @ theta + jnp.asarray(b) @ theta
    theta_a, theta_b = jnp.asarray(rng.normal(size=d)), jnp.asarray(rng.normal(size=d))
    alphas = interp.alpha_grid([-1.0, 2.0, 0.05])
    values = np.asarray(curvature.loss_along_line(loss, theta_a, theta_b, alphas))
    delta = np.asarray(theta_b - theta_a)
    expected = delta @ hessian @ delta
    for at in (0.0, 1.0):
        assert tf.end_curvature(alphas, values, at) == pytest.approx(expected, rel=1e-9)
    # and the barrier of a convex curve is 0 (it lies below its chord)
    assert tf.barrier(alphas, values) == pytest.approx(0.0, abs=1e-9)


def test_alpha_grid_must_hold_both_ends():
    np.testing.assert_allclose(interp.alpha_grid([-0.5, 1.5, 0.1])[[5, 15]], [0.0, 1.0], atol=1e-12)
    with pytest.raises(ValueError, match="0 and 1"):
        interp.alpha_grid([-0.5, 1.5, 0.3])
