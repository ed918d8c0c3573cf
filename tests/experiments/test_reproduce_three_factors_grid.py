"""Three Factors (a) ``three-factors-sharpness`` and the shared helper
``_three_factors``: the quick run end to end (JSON + PNG, verdict fields), and every
closed form the helper computes — the finite-difference Hessian norm on a quadratic and
a cubic loss (trainable parameters only), the three-point end curvature, the barrier."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde.experiments import reproduce
from sgdsde.experiments.reproduce import _three_factors as tf
from sgdsde.experiments.reproduce import three_factors_grid as grid

VERDICT_FIELDS = {"claim", "statistic", "value", "interval", "p_value", "verdict", "text"}
VERDICTS = {reproduce.CONFIRMED, reproduce.NOT_CONFIRMED, reproduce.CONTRADICTED}


def only(module, monkeypatch):
    """The registry restricted to ``module``'s experiments (the others need not be importable)."""
    monkeypatch.setattr(reproduce, "experiments", lambda: {e.name: e for e in module.EXPERIMENTS})


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("three-factors-a")
    with pytest.MonkeyPatch.context() as mp:
        only(grid, mp)
        results = reproduce.reproduce("a", quick=True, out=out, seed=0, progress=False)
    return out, results


def test_quick_run_writes_json_png_and_verdicts(quick):
    out, results = quick
    stem = "three_factors_sharpness"
    assert (out / f"{stem}.png").stat().st_size > 10_000
    saved = json.loads((out / f"{stem}.json").read_text())
    assert saved["experiment"]["name"] == "three-factors-sharpness" and saved["experiment"]["label"] == "a"
    assert len(saved["verdicts"]) == 3
    for v in saved["verdicts"]:
        assert set(v) == VERDICT_FIELDS and v["verdict"] in VERDICTS and v["statistic"] == "spearman"
        assert -1 <= v["value"] <= 1 and 0 <= v["p_value"] <= 1
    shape = (len(grid.QUICK["learning_rates"]), len(grid.QUICK["batch_sizes"]), grid.QUICK["replicas"])
    for key in ("hessian_norm_fd", "hessian_norm_exact", "lambda_max", "test_accuracy", "train_accuracy"):
        assert np.shape(saved[key]) == shape
    lam, norm = np.asarray(saved["lambda_max"]), np.asarray(saved["hessian_norm_fd"])
    # ‖H‖_F ≥ λ_max for every matrix (the finite-difference value more so on a ReLU net);
    # the estimate with 6 probes may fall below by its noise, hence the median
    assert np.all(np.isfinite(lam)) and np.all(lam > 0) and np.median(norm / lam) > 1
    assert np.all(np.isnan(np.asarray(saved["hessian_norm_exact"], float)))  # checked at the default size only
    # the sign of the sharpness effect shows even at the quick size (ρ < 0 over 6 configurations)
    assert saved["verdicts"][0]["value"] < 0 and saved["verdicts"][1]["value"] < 0
    # the paper's budget: the same number of epochs, ⌈epochs·N/S⌉ steps
    setup = saved["setup"]
    assert setup["budget"] == "epochs"
    expected = np.ceil(setup["epochs"] * setup["n_train"] / np.asarray(setup["batch_sizes"]))
    np.testing.assert_array_equal(np.asarray(setup["steps_per_config"]), np.broadcast_to(expected, shape[:2]))
    assert max(len(line) for line in grid.table(results).splitlines()) <= 100


# ----------------------------------------------------------------------------- closed forms
def _quadratic_problem(a: np.ndarray, stats_weight: float = 0.0):
    """l_i(θ) = ½ (a_iᵀθ)² + ½ w·s‖θ‖² with params {"params": θ, "batch_stats": s}: the
    Hessian in θ is AᵀA/N + w s I; s enters the gradient in θ, so perturbing it would
    change a finite difference (only θ may move)."""
    def loss(params, example):
        theta, s = params["params"], params["batch_stats"]
        return 0.5 * jnp.dot(example, theta) ** 2 + 0.5 * stats_weight * s * jnp.sum(theta**2)
    return sd.Problem(loss, jnp.asarray(a))


def test_finite_difference_hessian_norm_on_a_quadratic(x64):
    rng = np.random.default_rng(0)
    n, d = 40, 12
    a = rng.normal(size=(n, d))
    problem = _quadratic_problem(a, stats_weight=0.7)
    s = 1.3
    hessian = a.T @ a / n + 0.7 * s * np.eye(d)
    params = {"params": jnp.asarray(rng.normal(size=(3, d))), "batch_stats": jnp.full((3,), s)}
    samples = 1000
    fd, fd_se = tf.hessian_norm(problem, params, jax.random.key(1), num_samples=samples, epsilon=1e-3)
    exact, _ = tf.hessian_norm_exact(problem, params, jax.random.key(1), num_samples=samples)
    # a quadratic has no truncation error: forward differences equal exact HVPs on the same
    # probes up to rounding, ~ 1e-16·‖∇L‖/ε relative in float64
    np.testing.assert_allclose(fd, exact, rtol=1e-8)
    # Monte Carlo: E‖Hv‖² = ‖H‖_F², Var ‖Hv‖² = 2‖H²‖_F² (v ~ N(0, I)); 4 standard errors
    frob2 = np.sum(hessian**2)
    se = np.sqrt(2 * np.sum((hessian @ hessian) ** 2) / samples)
    np.testing.assert_allclose(fd_se, se, rtol=0.3)  # the sample se estimates the true se
    assert np.all(np.abs(fd**2 - frob2) < 4 * se)


def test_forward_difference_bias_is_first_order_on_a_cubic(x64):
    """L(θ) = ½θᵀAθ + (c/6) Σ θ_j³: H = A + c·diag(θ). A forward step s = ε v/‖v‖ gives
    Δg/ε·‖v‖ = Hv + (c ε / 2) v⊙v/‖v‖: bias O(ε), halved with ε; central: none (cubic)."""
    rng = np.random.default_rng(1)
    d, c = 8, 3.0
    m = rng.normal(size=(d, d))
    a = m @ m.T / d
    problem = sd.Problem(lambda p, ex: 0.5 * p["params"] @ a @ p["params"] + c / 6 * jnp.sum(p["params"] ** 3)
                         + 0 * ex, jnp.zeros(1))
    params = {"params": jnp.asarray(rng.normal(size=(1, d)))}
    exact, _ = tf.hessian_norm_exact(problem, params, jax.random.key(2), num_samples=200)
    closed = np.linalg.norm(a + c * np.diag(np.asarray(params["params"][0])))
    assert abs(exact[0] - closed) / closed < 0.2  # 200 probes: Monte Carlo, se ≈ 5 % here
    errors = [tf.hessian_norm(problem, params, jax.random.key(2), num_samples=200, epsilon=eps)[0][0] - exact[0]
              for eps in (1e-2, 5e-3)]
    assert errors[0] != 0 and errors[1] / errors[0] == pytest.approx(0.5, rel=0.02)  # O(ε) + O(ε²)
    central = tf.hessian_norm(problem, params, jax.random.key(2), num_samples=200, epsilon=1e-2, scheme="central")[0]
    np.testing.assert_allclose(central, exact, rtol=1e-9)  # exact for a cubic, up to rounding


def test_end_curvature_is_exact_for_cubics_with_error_h2_f4_over_12():
    alphas = np.linspace(-1, 2, 61)  # h = 0.05
    h = 0.05
    cubic = 2 * alphas**3 - alphas**2 + 0.5 * alphas + 3
    for at in (0.0, 1.0):
        assert tf.end_curvature(alphas, cubic, at) == pytest.approx(12 * at - 2, abs=1e-9)
    # quartic α⁴: second difference = 12α² + 2h² exactly (the h²/12·f⁗ term, f⁗ = 24)
    assert tf.end_curvature(alphas, alphas**4, 1.0) == pytest.approx(12 + 2 * h**2, rel=1e-9)
    with pytest.raises(ValueError, match="interior"):
        tf.end_curvature(alphas, cubic, -1.0)


def test_barrier_is_the_height_above_the_chord():
    alphas = np.linspace(-0.5, 1.5, 41)  # 0.5 is a node
    bump = 2 - alphas + 0.3 * np.sin(np.pi * alphas)
    assert tf.barrier(alphas, bump) == pytest.approx(0.3, abs=1e-12)
    convex = (alphas - 0.3) ** 2
    assert tf.barrier(alphas, convex) == pytest.approx(0.0, abs=1e-12)  # the ends themselves: 0


def test_budget_must_be_epochs_or_steps(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        grid.run(quick=True, out=tmp_path, budget="time", progress=False)


def test_line_ends_are_the_endpoints():
    splits = tf.load_splits(None, None, seed=0, train_examples=200, test_examples=50)
    problem = tf.make_problem(splits, (8, 8, 8, 8))
    p0 = problem.info["init_params"](jax.random.key(0))
    p1 = problem.info["init_params"](jax.random.key(1))
    line = tf.line_metrics(problem, p0, p1, [0.0, 0.5, 1.0], {"train": "train", "test": splits.test})
    both = jax.tree_util.tree_map(lambda x, y: jnp.stack([x, y]), p0, p1)
    ends = tf.evaluate(problem, both, splits.test)
    np.testing.assert_allclose(line["test_loss"][[0, 2]], ends["loss"], rtol=1e-6)
    np.testing.assert_allclose(line["test_accuracy"][[0, 2]], ends["accuracy"])
