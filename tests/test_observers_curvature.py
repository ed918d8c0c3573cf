"""The sharpness and gradient-noise observers, through sgdsde.run, on a quadratic problem.

(Both record "every k steps" through the same helper as ``snapshots``; the run below
uses it for gradient_noise only, to keep compiles few — sharpness measured every k steps
and by power iteration are the same code paths as tested in tests/test_curvature.py.)

``sgdsde.problems.quadratic(A, C, N)`` has Hessian A and per-example gradient covariance
C exactly, at every θ, so the oracles are closed forms: top eigenvalues of A, tr A,
tr C, ‖A(θ − θ*)‖² from the recorded parameters. The run is in float32 (the library
default): deterministic quantities are compared to float32 rounding (relative
~d·eps₃₂ ≈ 1e-6, with margin), Monte-Carlo ones by z-tests at 4σ (fixed seeds).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde import observers as obs

from _rounding import rounding_atol

Z = 4.0
D, N, REPLICAS, STEPS, EVERY = 5, 64, 3, 30, 10
LAM = np.array([5.0, 3.0, 2.0, 1.0, 0.5])
TRACE_SAMPLES, NOISE_SAMPLES = 64, 32
F32 = 1e-5  # float32 rounding, relative (≈ 10·d·eps₃₂)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    a = (q * LAM) @ q.T
    c = np.diag(np.linspace(0.5, 2.0, D))
    theta_star = rng.normal(size=D)
    problem = sd.problems.quadratic(a, c, N, key=jax.random.key(1), minimum=theta_star)
    observers = [
        obs.snapshots(EVERY),
        obs.sharpness(k=2, num_iterations=D, trace_samples=TRACE_SAMPLES),
        obs.gradient_noise(),
        obs.gradient_noise(every=EVERY, method="sample", num_samples=NOISE_SAMPLES)._replace(name="noise_every"),
    ]
    result = sd.run(jax.random.key(2), sd.sgd("subset"), problem, sd.Hyper.grid([0.05, 0.1], [8]),
                    jnp.asarray(theta_star + 1.0, jnp.float32), STEPS, replicas=REPLICAS, observers=observers)
    return {"a": a, "c": c, "theta_star": theta_star, "result": result, "x": np.asarray(problem.data, np.float64)}


def test_sharpness_final_eigenvalues_and_trace(setup):
    out = setup["result"]["sharpness"]
    assert out["eigenvalues"].shape == (2, 1, REPLICAS, 2) and out["eigenvalues"].dtype == np.float32
    # Lanczos with num_iterations = d is exact: the top two eigenvalues of A, to float32 rounding
    np.testing.assert_allclose(out["eigenvalues"], np.broadcast_to(LAM[:2], (2, 1, REPLICAS, 2)), rtol=F32)
    # Hutchinson: Var(zᵀAz) = 2 Σ_{i≠j} A_ij² for Rademacher z
    a = setup["a"]
    exact_se = np.sqrt(2 * np.sum((a - np.diag(np.diag(a))) ** 2) / TRACE_SAMPLES)
    assert np.all(np.abs(out["trace"] - LAM.sum()) <= Z * exact_se)
    assert np.all(out["trace_stderr"] > 0)
    # common random numbers: the Hessian is the same everywhere, and so are the probes; the
    # Hessian-vector products at different θ differ by float32 rounding of d-term sums: F32
    np.testing.assert_allclose(out["trace"], out["trace"].flat[0], rtol=F32)


def _grad_norm_sq(a, theta_star, params):
    g = (np.asarray(params, np.float64) - theta_star) @ a  # A symmetric
    return np.sum(g**2, axis=-1)


def _gradient_terms(setup, params):
    """m_ik = |A(θ − θ*)|_k + |x_ik| (A, θ* taken as |A|(|θ| + |θ*|), as they are rounded
    to float32 too): the size of the terms of g_i = A(θ − θ*) + x_i, per example i and
    coordinate k, shape (..., N, D)."""
    u = np.abs(np.asarray(params, np.float64)) + np.abs(setup["theta_star"])
    return (u @ np.abs(setup["a"]))[..., None, :] + np.abs(setup["x"])


def _grad_norm_sq_atol(setup, params):
    """Float32 rounding of ‖g‖², g = (1/N)Σ_i g_i: each g_k is off by at most
    δ_k = (N + D + 8)·eps₃₂·mean_i m_ik (tests/_rounding.py), so ‖g‖² by max over the records of Σ_k 2|g_k|δ_k + δ_k²;
    g here is the exact one plus δ (a bound, as |g_k| ≤ |g_k exact| + δ_k)."""
    mean_terms = _gradient_terms(setup, params).mean(axis=-2)  # (..., D)
    delta = (N + D + 8) * np.finfo(np.float32).eps * mean_terms
    g = np.abs((np.asarray(params, np.float64) - setup["theta_star"]) @ setup["a"]) + delta
    return float(np.max(np.sum(2 * g * delta + delta**2, axis=-1)))  # the largest over the records


def _trace_cov_atol(setup, params):
    """Float32 rounding of tr C = (1/N)Σ_i ‖g_i − ḡ‖²: g_i − ḡ (= x_i − x̄ exactly, a
    cancellation of terms of size m_ik) carries the error of ḡ, ≲ (N + D + 8)·eps₃₂·m, and
    squaring doubles it relative to the terms; summing the N·D squares adds N·D·eps₃₂ of
    their size: 2(N·D + N + D + 8)·eps₃₂·mean_i Σ_k m_ik² (tests/_rounding.py)."""
    abs_sum = np.sum((_gradient_terms(setup, params) ** 2).mean(axis=-2), axis=-1)
    return rounding_atol(abs_sum, 2 * (N * D + N + D + 8), np.float32)


def test_gradient_noise_exact_at_the_end(setup):
    result, a = setup["result"], setup["a"]
    out = result["gradient_noise"]
    assert set(out) == {"trace_cov", "grad_norm_sq", "noise_scale"}
    final = result["snapshots"]["values"][:, :, -1]  # STEPS is a multiple of EVERY
    # float32 rounding of a cancellation (bound from the size of the terms, not of tr C)
    np.testing.assert_allclose(out["trace_cov"], np.trace(setup["c"]), rtol=0, atol=_trace_cov_atol(setup, final))
    expected = _grad_norm_sq(a, setup["theta_star"], final)
    # float32: g is a mean of N terms of size m_ik (‖g‖ itself may be small)
    np.testing.assert_allclose(out["grad_norm_sq"], expected, rtol=0, atol=_grad_norm_sq_atol(setup, final))
    # one float32 division of the observer's own outputs: ≤ eps₃₂ relative, F32 with margin
    np.testing.assert_allclose(out["noise_scale"], out["trace_cov"] / out["grad_norm_sq"], rtol=F32)


def test_gradient_noise_sampled_every_k_steps(setup):
    result, a = setup["result"], setup["a"]
    out = result["noise_every"]
    times = np.arange(0, STEPS + 1, EVERY)
    np.testing.assert_array_equal(out["times"][1, 0], times)
    values = out["values"]
    trace_c = np.trace(setup["c"])
    # E‖ξ‖² = tr C with ξ ~ N(0, C); Var ‖ξ‖² = 2 tr C²: z-test on every record
    exact_se = np.sqrt(2 * np.trace(setup["c"] @ setup["c"]) / NOISE_SAMPLES)
    assert np.all(np.abs(values["trace_cov"] - trace_c) <= Z * exact_se)
    assert np.all(values["trace_cov_stderr"] > 0)
    # ‖g‖² at each record time, from the parameters recorded at the same steps
    expected = _grad_norm_sq(a, setup["theta_star"], result["snapshots"]["values"])
    atol = _grad_norm_sq_atol(setup, result["snapshots"]["values"])
    np.testing.assert_allclose(values["grad_norm_sq"], expected, rtol=0, atol=atol)
    np.testing.assert_allclose(values["noise_scale"], values["trace_cov"] / values["grad_norm_sq"], rtol=F32)


def test_gradient_noise_scale_is_infinite_where_the_gradient_vanishes(x64):
    # at the minimum g = 0 exactly: tr C / ‖g‖² is +inf (flagged), never NaN
    problem = sd.problems.quadratic(np.eye(2), np.eye(2), 8, key=jax.random.key(3))
    result = sd.run(jax.random.key(0), sd.sgd("subset"), problem, sd.Hyper(0.1, 2), jnp.zeros(2), 0,
                    observers=[obs.gradient_noise()])
    out = result["gradient_noise"]
    assert np.all(out["grad_norm_sq"] == 0) and np.all(np.isposinf(out["noise_scale"]))
    np.testing.assert_allclose(out["trace_cov"], 2.0, rtol=1e-12)


def test_observer_arguments_are_checked():
    with pytest.raises(ValueError, match="every"):
        obs.sharpness(every=0)
    with pytest.raises(ValueError, match="k:"):
        obs.sharpness(k=0)
    with pytest.raises(ValueError, match="method"):
        obs.sharpness(method="arnoldi")
    with pytest.raises(ValueError, match="num_iterations"):
        obs.sharpness(k=3, num_iterations=2)
    with pytest.raises(ValueError, match="trace_samples"):
        obs.sharpness(trace_samples=1)
    with pytest.raises(ValueError, match="seed"):
        obs.sharpness(seed=1.5)
    with pytest.raises(ValueError, match="method"):
        obs.gradient_noise(method="approximate")
    with pytest.raises(ValueError, match="num_samples"):
        obs.gradient_noise(num_samples=1)
    with pytest.raises(ValueError, match="every"):
        obs.gradient_noise(every=-1)
    assert obs.sharpness(k=2) is obs.sharpness(k=2)  # cached: inline runs reuse compiled programs
