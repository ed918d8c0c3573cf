"""Noise scales along a run: sd.observers.noise_scales (B_simple = tr C/‖g‖², B_noise =
tr(HC)/(gᵀHg)), sd.observers.scaling_rule_check (NSR = f·B_simple/S) and the two-batch
estimator sd.theory.two_batch_estimate (docs/theory.md §8).

Oracles: on a nonlinear problem (logistic regression with a regulariser) the definitions
computed densely (explicit per-example gradients, jax.hessian); on sd.problems.quadratic
the closed forms H = A, C = info["noise_cov"], g = A(θ − θ*), so tr(HC) = tr(AC). Runs
are in float64 (the x64 fixture) and deterministic comparisons use rounding bounds from
tests/_rounding.py; sampled estimates are z-tested at 4 standard errors (fixed seeds).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde import observers as obs

from _rounding import rounding_atol

Z = 4.0  # two-sided Gaussian tail 6e-5 per comparison
N, D, STEPS, EVERY, REPLICAS = 32, 3, 6, 3, 3
SUBSAMPLE, PAIRS, SMALL, LARGE = 8, 256, 2, 8


# ----------------------------------------------------------------- dense oracle
def test_noise_scales_match_the_dense_definitions_on_a_nonlinear_problem(x64):
    problem = sd.problems.logistic_regression(24, 4, key=jax.random.key(0), regularization=0.05)
    result = sd.run(jax.random.key(1), sd.sgd("subset"), problem, sd.Hyper(0.5, 4), jnp.full(4, 0.3), 3,
                    replicas=2, observers=[obs.noise_scales(chunk_size=5)])
    out = result["noise_scales"]
    @jax.jit
    def dense(theta):  # the definitions, one compiled program for both replicas
        return (jax.jacobian(problem.per_example_losses)(theta),  # (N, d); R carries no noise
                jax.hessian(problem.loss)(theta),  # regulariser included
                problem.grad(theta),
                jax.vmap(jax.hessian(problem.per_example_loss), (None, 0))(theta, problem.data))

    for r, theta in enumerate(np.asarray(result.state.params)):
        grads, hessian, g, per_example_h = (np.asarray(x) for x in dense(jnp.asarray(theta)))
        u = grads - grads.mean(axis=0)
        trace_cov, trace_hc = np.mean(np.sum(u**2, axis=1)), np.mean(np.einsum("ij,jk,ik->i", u, hessian, u))
        g_hg = g @ hessian @ g
        # rounding: the terms of tr(HC) are |u_i|ᵀ|H||u_i| with |u_i| ≤ |∇l_i| + mean|∇l_j| (the
        # centring cancels), H itself a sum over N examples; N·d² terms, each entry of H carrying
        # N + d more operations: rounding_atol with N·d² + N + d + 10 operations
        size = np.abs(grads) + np.abs(grads).mean(axis=0)
        abs_h = np.abs(per_example_h).mean(axis=0) + 0.1 * np.eye(4)  # + |∇²R| = 2τ I
        ops = 24 * 16 + 24 + 4 + 10
        atol_hc = rounding_atol(np.mean(np.einsum("ij,jk,ik->i", size, abs_h, size)), ops)
        atol_cov = rounding_atol(np.mean(np.sum(size**2, axis=1)), ops)
        g_size = np.abs(grads).mean(axis=0) + 0.1 * np.abs(theta)
        atol_ghg = rounding_atol(g_size @ abs_h @ g_size, ops)
        atol_gg = rounding_atol(g_size @ g_size, ops)
        np.testing.assert_allclose(out["trace_cov"][r], trace_cov, rtol=0, atol=atol_cov)
        np.testing.assert_allclose(out["trace_hc"][r], trace_hc, rtol=0, atol=atol_hc)
        np.testing.assert_allclose(out["g_hg"][r], g_hg, rtol=0, atol=atol_ghg)
        np.testing.assert_allclose(out["grad_norm_sq"][r], g @ g, rtol=0, atol=atol_gg)
        # a ratio a/b moves by at most (|Δa| + |a/b||Δb|)/|b| (first order)
        b_noise, b_simple = trace_hc / g_hg, trace_cov / (g @ g)
        np.testing.assert_allclose(out["b_noise"][r], b_noise, rtol=0,
                                   atol=2 * (atol_hc + abs(b_noise) * atol_ghg) / abs(g_hg))
        np.testing.assert_allclose(out["b_simple"][r], b_simple, rtol=0,
                                   atol=2 * (atol_cov + abs(b_simple) * atol_gg) / (g @ g))
    assert out["b_noise"][0] != pytest.approx(out["b_simple"][0], rel=0.05)  # H is not ∝ I: they differ
    assert out["replicas_used"] == 2
    np.testing.assert_allclose(out["mean"]["b_noise"], out["b_noise"].mean(), rtol=1e-14)


# ------------------------------------------------- the quadratic: closed forms
@pytest.fixture(scope="module")
def quadratic():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        q, _ = np.linalg.qr(rng.normal(size=(D, D)))
        a = (q * np.array([4.0, 1.5, 0.5])) @ q.T
        c = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, -0.4], [0.0, -0.4, 0.8]])
        theta_star = rng.normal(size=D)
        problem = sd.problems.quadratic(a, c, N, key=jax.random.key(2), minimum=theta_star)
        observers = [
            obs.snapshots(EVERY),
            obs.noise_scales(every=EVERY),
            obs.noise_scales(every=1, method="subsample", num_examples=SUBSAMPLE)._replace(name="subsample"),
            obs.noise_scales(method="two_batch", batch_sizes=(SMALL, LARGE), num_pairs=PAIRS,
                             sampling="subset")._replace(name="two_batch"),
        ]
        result = sd.run(jax.random.key(4), sd.sgd("subset"), problem, sd.Hyper.grid([0.05, 0.2], [4, 16]),
                        jnp.asarray(theta_star + 2.0), STEPS, replicas=REPLICAS, observers=observers)
        x = np.asarray(problem.data)
    return {"a": a, "c": c, "theta_star": theta_star, "result": result, "x": x}


def test_quadratic_against_the_closed_form(quadratic):
    a, c, result = quadratic["a"], quadratic["c"], quadratic["result"]
    values = result["noise_scales"]["values"]
    assert values["b_noise"].shape == (2, 2, STEPS // EVERY + 1, REPLICAS)
    theta = np.asarray(result["snapshots"]["values"])  # (2, 2, T, R, d), the same record times
    g = (theta - quadratic["theta_star"]) @ a
    g_ag = np.einsum("...i,ij,...j->...", g, a, g)
    # rounding (float64): per-example gradients A(θ − θ*) + x_i of size m = |A||θ − θ*| + |x_i|;
    # N·d² terms plus the N-term sums inside each: (N·d² + N + d + 10)·eps·(size of the terms)
    m = np.abs(theta - quadratic["theta_star"]).max() * np.abs(a).sum(axis=1).max() + np.abs(quadratic["x"]).max()
    ops = N * D * D + N + D + 10
    atol_hc = rounding_atol(D * D * np.abs(a).max() * m**2, ops)
    np.testing.assert_allclose(values["trace_hc"], np.trace(a @ c), rtol=0, atol=atol_hc)
    np.testing.assert_allclose(values["trace_cov"], np.trace(c), rtol=0, atol=rounding_atol(D * m**2, ops))
    atol_gag = rounding_atol(D * D * np.abs(a).max() * m**2, ops)
    np.testing.assert_allclose(values["g_hg"], g_ag, rtol=0, atol=atol_gag)
    b_noise = np.trace(a @ c) / g_ag
    np.testing.assert_allclose(values["b_noise"], b_noise, rtol=0,
                               atol=np.max(2 * (atol_hc + b_noise * atol_gag) / g_ag))
    # replica means and their spread (no replica diverged)
    np.testing.assert_allclose(values["mean"]["b_noise"], values["b_noise"].mean(axis=-1), rtol=1e-12)
    np.testing.assert_allclose(values["mean_stderr"]["g_hg"], values["g_hg"].std(axis=-1, ddof=1) / np.sqrt(REPLICAS),
                               rtol=1e-9)
    assert np.all(values["replicas_used"] == REPLICAS)


def test_subsample_mode_within_its_standard_error(quadratic):
    a, x = quadratic["a"], quadratic["x"]
    values = quadratic["result"]["subsample"]["values"]
    # u_i = x_i − x̄ does not depend on θ: every record estimates the same tr C and tr(AC)
    # from its own draw of m examples without replacement (keys folded with the step; the
    # replicas and configurations share them), so the STEPS + 1 records are independent draws
    u = x - x.mean(axis=0)
    for estimate, reported, terms in (("trace_hc", "trace_hc_stderr", np.einsum("ij,jk,ik->i", u, a, u)),
                                      ("trace_cov", "trace_cov_stderr", np.sum(u**2, axis=1))):
        sigma2 = terms.var()  # population variance of the N terms
        exact_se = np.sqrt(sigma2 / SUBSAMPLE * (N - SUBSAMPLE) / (N - 1))  # mean of m drawn without replacement
        est = values[estimate][0, 0, :, 0]
        assert np.all(np.abs(est - terms.mean()) <= Z * exact_se)
        assert abs(est.mean() - terms.mean()) <= Z * exact_se / np.sqrt(len(est))
        # the reported s²·(1 − m/N)/m estimates exact_se² unbiasedly; Var(s²) ≈ (μ₄ − σ⁴)/m, so
        # the mean of the T reported variances lies within 4·√((μ₄/σ⁴ − 1)/(mT)) of it (relative)
        kurtosis = np.mean((terms - terms.mean()) ** 4) / sigma2**2
        ratio = np.mean(values[reported][0, 0, :, 0] ** 2) / exact_se**2
        assert abs(ratio - 1) <= Z * np.sqrt((kurtosis - 1) / (SUBSAMPLE * len(est)))
    assert np.all(np.isfinite(values["b_noise_stderr"])) and np.all(values["b_noise_stderr"] > 0)


def test_two_batch_mode_within_its_standard_error(quadratic):
    a, c, result = quadratic["a"], quadratic["c"], quadratic["result"]
    out = result["two_batch"]
    theta = np.asarray(result.state.params)
    g = (theta - quadratic["theta_star"]) @ a
    exact = {"grad_norm_sq": np.sum(g**2, axis=-1), "trace_cov": np.trace(c),
             "g_hg": np.einsum("...i,ij,...j->...", g, a, g), "trace_hc": np.trace(a @ c)}
    for name, value in exact.items():  # the mean over PAIRS pairs, its stderr from their spread
        assert np.all(np.abs(out[name] - value) <= Z * out[name + "_stderr"]), name
    # the same pairs with the iid formulas are biased by tr C/N (on ‖g‖²) and by N/(N − 1) (on
    # tr C); the subset formulas remove exactly that
    assert np.all(out["trace_cov_stderr"] > 0)


def test_scaling_rule_check_against_the_dense_ratio(quadratic):
    result = quadratic["result"]
    check = obs.scaling_rule_check(result, num_examples=N)
    values = result["noise_scales"]["values"]
    s = np.array([4.0, 16.0])[None, :, None]  # the grid's S, per record
    f = (N - s) / (N - 1)
    theta = np.asarray(result["snapshots"]["values"])
    g = (theta - quadratic["theta_star"]) @ quadratic["a"]
    dense = f[..., None] * np.trace(quadratic["c"]) / (s[..., None] * np.sum(g**2, axis=-1))
    # B_simple = tr C/‖g‖²: each g_k is a mean of N gradients of size m (the closed-form test's
    # bound), off by δ ≤ (N + D + 10)·eps·m, so ‖g‖² by 2|g|δ + δ² (tr C likewise); then two
    # more float64 operations
    m = np.abs(theta - quadratic["theta_star"]).max() * np.abs(quadratic["a"]).sum(axis=1).max() + np.abs(quadratic["x"]).max()
    delta = rounding_atol(m, N + D + 10)
    norm = np.sqrt(np.sum(g**2, axis=-1))
    rel = 2 * D * (norm * delta + delta**2) / norm**2 + rounding_atol(D * m**2, N * D + N + D + 10) / np.trace(quadratic["c"])
    assert np.all(np.abs(check["nsr"] - dense) <= (rel + 4 * np.finfo(float).eps) * dense)
    np.testing.assert_allclose(check["nsr_mean"], f * values["mean"]["b_simple"] / s, rtol=1e-14)
    np.testing.assert_allclose(check["kappa_star"], check["nsr_mean"].min(axis=-1), rtol=0)
    assert check["batch_size"].shape == (2, 2, STEPS // EVERY + 1)
    iid = obs.scaling_rule_check(result)  # no finite-population factor
    np.testing.assert_allclose(iid["nsr"] * f[..., None], check["nsr"], rtol=1e-14)


# ------------------------------------------------------- the two-batch estimator
@pytest.mark.parametrize("sampling", ["iid", "subset"])
def test_two_batch_estimate_is_unbiased(x64, sampling):
    rng = np.random.default_rng(7)
    n, b, big, pairs = 12, 2, 6, 40_000
    grads = rng.normal(size=(n, 3)) + np.array([0.5, -0.2, 0.1])
    mean = grads.mean(axis=0)
    trace_cov = np.mean(np.sum((grads - mean) ** 2, axis=1))
    if sampling == "iid":
        idx = rng.integers(0, n, size=(pairs, big))
    else:
        idx = np.argsort(rng.random((pairs, n)), axis=1)[:, :big]  # uniform subsets, random order
    y_small = np.sum(grads[idx[:, :b]].mean(axis=1) ** 2, axis=1)  # the small batch: a prefix
    y_large = np.sum(grads[idx].mean(axis=1) ** 2, axis=1)
    est = sd.theory.two_batch_estimate(y_small, y_large, b, big, n if sampling == "subset" else None)
    for value, exact in ((est.grad_norm_sq, mean @ mean), (est.trace_cov, trace_cov)):
        value = np.asarray(value)
        se = value.std(ddof=1) / np.sqrt(pairs)  # Monte-Carlo standard error of the mean
        assert abs(value.mean() - exact) <= Z * se
    if sampling == "subset":  # power: the iid formulas on the same draws are off by tr C/(N − 1)
        wrong = np.asarray(sd.theory.two_batch_estimate(y_small, y_large, b, big).trace_cov)
        assert abs(wrong.mean() - trace_cov) > 10 * wrong.std(ddof=1) / np.sqrt(pairs)


# --------------------------------------------------------- divergence, reuse, errors
def test_diverged_replicas_are_left_out(x64):
    # l(θ, x) = ½(θ − x)² + √θ: a replica started at θ < 0 has a NaN gradient and diverges
    data = jnp.linspace(1.5, 2.5, 8)
    problem = sd.Problem(lambda theta, x: 0.5 * (theta[0] - x) ** 2 + jnp.sqrt(theta[0]), data)
    start = lambda key: jnp.where(jax.random.bernoulli(key), 1.0, -1.0)[None]
    with pytest.warns(sd.DivergenceWarning):
        result = sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper(0.01, 2), start, 2, replicas=8,
                        observers=[obs.noise_scales()])
    out, ok = result["noise_scales"], ~result.diverged
    assert 0 < ok.sum() < 8 and out["replicas_used"] == ok.sum()
    assert np.all(np.isnan(out["b_noise"][~ok]))
    np.testing.assert_allclose(out["mean"]["b_noise"], out["b_noise"][ok].mean(), rtol=1e-14)


def test_inline_noise_scales_reuse_the_compiled_program():
    import sgdsde.simulation as simulation

    problem = sd.problems.quadratic(np.eye(2), np.eye(2), 8, key=jax.random.key(0))
    run = lambda: sd.run(jax.random.key(1), sd.sgd(), problem, sd.Hyper.grid([0.1], [2, 4]), jnp.ones(2), 2,
                         replicas=2, observers=[obs.noise_scales(every=1)])
    assert obs.noise_scales(every=1) is obs.noise_scales(every=1)
    run()
    before = simulation._core.cache_info()
    run()
    after = simulation._core.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses


def test_bad_arguments_raise():
    for kwargs, match in [({"every": 0}, "every"), ({"method": "hutchinson"}, "method"),
                          ({"num_examples": 1}, "num_examples"), ({"batch_sizes": (8, 8)}, "batch_sizes"),
                          ({"batch_sizes": (2, 8.0)}, "batch_sizes"), ({"num_pairs": 1}, "num_pairs"),
                          ({"sampling": "epoch"}, "sampling"), ({"chunk_size": 0}, "chunk_size"),
                          ({"seed": 0.5}, "seed")]:
        with pytest.raises(ValueError, match=match):
            obs.noise_scales(**kwargs)
    problem = sd.problems.quadratic(np.eye(2), np.eye(2), 8, key=jax.random.key(0))
    for observer, match in [(obs.noise_scales(method="subsample", num_examples=9), "num_examples"),
                            (obs.noise_scales(method="two_batch", batch_sizes=(2, 9)), "batch_sizes")]:
        with pytest.raises(ValueError, match=match):  # raised while tracing, before XLA compiles
            sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper(0.1, 2), jnp.ones(2), 1, observers=[observer])
    with pytest.raises(ValueError, match="small_batch"):
        sd.theory.two_batch_estimate(1.0, 0.5, 8, 4)
    with pytest.raises(ValueError, match="num_examples"):
        sd.theory.two_batch_estimate(1.0, 0.5, 2, 8, num_examples=4)
    with pytest.raises(ValueError, match="batch_size"):
        sd.theory.noise_to_signal_ratio(1.0, 1.0, 0)
    result = sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper(0.1, 2), jnp.ones(2), 1,
                    observers=[obs.endpoint()])
    with pytest.raises(ValueError, match="name"):
        obs.scaling_rule_check(result)
