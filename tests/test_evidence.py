"""sgdsde.landscape evidence: the Laplace evidence log p(y) ≈ −C(ω₀) − ½ log det(H/λ)
(docs/theory.md §8) against the exact Gaussian evidence, against quadrature of
∫ p(y | ω) p(ω) dω for logistic regression (the gap falls like 1/N), and Smith & Le's
random-label experiment on a small linear model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from scipy import integrate

import sgdsde as sd

ls = sd.landscape


def linear_data(seed, n, d, noise_var):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, x @ rng.normal(size=d) + np.sqrt(noise_var) * rng.normal(size=n)


# ------------------------------------------------------------------ Gaussian: exact
@pytest.mark.parametrize("noise_var, prior_precision", [(0.5, 2.0), (2.0, 0.1), (0.05, 30.0)])
def test_laplace_is_exact_for_bayesian_linear_regression(x64, noise_var, prior_precision):
    """A Gaussian likelihood linear in ω makes C quadratic: Laplace = log N(y; 0, σ²I + λ⁻¹XXᵀ).

    Tolerance 1e-10: both sides sum O(N) terms of size ≲ |log p| ≈ 10² (N = 40) in float64,
    and a Cholesky log det of an N × N (or d × d) matrix is backward stable, so each side
    is within ≈ N²·eps·|log p| ≈ 4·10⁻¹¹ of the exact value (tests/_rounding.py)."""
    n, d = 40, 3
    x, y = linear_data(0, n, d, noise_var)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def nll(params):  # −log p(y | ω), constants included; a dict of params (any pytree)
        residual = yj - xj[:, :2] @ params["a"] - xj[:, 2] * params["b"]
        return 0.5 * jnp.sum(residual**2) / noise_var + 0.5 * n * jnp.log(2 * jnp.pi * noise_var)

    start = {"a": jnp.zeros(2), "b": jnp.zeros(())}
    laplace = ls.laplace_log_evidence(nll, start, prior_precision)
    exact = ls.linear_regression_log_evidence(x, y, noise_var, prior_precision)
    assert laplace.newton_steps <= 2 and laplace.log_evidence_stderr == 0.0
    assert abs(laplace.log_evidence - exact) <= 1e-10
    # the closed form itself against SciPy's multivariate normal (an independent implementation)
    cov = noise_var * np.eye(n) + x @ x.T / prior_precision
    reference = scipy.stats.multivariate_normal(np.zeros(n), cov).logpdf(y)
    assert abs(exact - reference) <= 1e-10
    # ω₀ is the posterior mean (XᵀX/σ² + λI)⁻¹Xᵀy/σ²; conditioning ≲ 10³ of a 3 × 3 solve
    mean = np.linalg.solve(x.T @ x / noise_var + prior_precision * np.eye(d), x.T @ y / noise_var)
    got = np.concatenate([laplace.minimum["a"], np.atleast_1d(laplace.minimum["b"])])
    np.testing.assert_allclose(got, mean, rtol=0, atol=1e-12 * np.abs(mean).max() * 1e3)


def test_slq_log_det_agrees_with_dense_within_its_standard_error(x64):
    """The network path (no Newton, stochastic Lanczos log det) on a 20-parameter linear model:
    with num_steps = d the Lanczos quadrature is exact per probe, so the only error is the
    probes' Monte-Carlo error: |SLQ − dense| ≤ 4 standard errors."""
    n, d, noise_var, lam = 60, 20, 0.3, 1.5
    x, y = linear_data(1, n, d, noise_var)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    nll = lambda w: 0.5 * jnp.sum((yj - xj @ w) ** 2) / noise_var + 0.5 * n * jnp.log(2 * jnp.pi * noise_var)
    dense = ls.laplace_log_evidence(nll, jnp.zeros(d), lam)
    slq = ls.laplace_log_evidence(nll, dense.minimum, lam, minimize=False, log_det="slq", key=jax.random.key(3),
                                  num_probes=40, num_steps=d)
    assert slq.newton_steps == 0 and slq.log_evidence_stderr > 0
    assert abs(slq.log_evidence - dense.log_evidence) <= 4 * slq.log_evidence_stderr
    # without minimising, the dense path at ω₀ reproduces the minimised one (Newton's ω₀ exact to ~1e-13)
    again = ls.laplace_log_evidence(nll, dense.minimum, lam, minimize=False)
    assert abs(again.log_evidence - dense.log_evidence) <= 1e-10


# ------------------------------------------------------------------ logistic regression
def logistic_base(seed, n0, slope):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n0)
    return x, (rng.uniform(size=n0) < 1 / (1 + np.exp(-slope * x))).astype(float)


def test_logistic_newton_optimum_and_hessian(x64):
    """Quadrature-free: ∇C(ω₀) = 0 to the tolerance, and log det(H/λ) and C(ω₀) from the
    closed forms H = Xᵀ diag(p(1 − p)) X + λI, C = Σ log(1 + e^{−s_i x_iᵀω}) + λ‖ω‖²/2 (NumPy)."""
    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(50), rng.normal(size=(50, 2))])
    y = (rng.uniform(size=50) < 1 / (1 + np.exp(-x @ np.array([0.3, 1.0, -2.0])))).astype(float)
    lam = 0.7
    ev = ls.logistic_regression_log_evidence(x, y, lam)
    w = np.asarray(ev.minimum)
    p = 1 / (1 + np.exp(-x @ w))
    grad = x.T @ (p - y) + lam * w
    assert ev.gradient_norm <= 1e-10 and np.max(np.abs(grad)) <= 1e-10
    hess = x.T @ (p * (1 - p) * x.T).T + lam * np.eye(3)
    # 50 terms of size ≲ 10 summed two ways, then a 3 × 3 log det: well under 1e-11
    np.testing.assert_allclose(ev.log_det, np.linalg.slogdet(hess / lam)[1], rtol=0, atol=1e-11)
    cost = np.sum(np.logaddexp(0, -(2 * y - 1) * (x @ w))) + 0.5 * lam * w @ w
    np.testing.assert_allclose(ev.cost, cost, rtol=0, atol=1e-11)
    assert ev.log_evidence == pytest.approx(-cost - 0.5 * np.linalg.slogdet(hess / lam)[1], abs=1e-11)


def _log_evidence_1d(x, y, k, lam, w0, cost0, curvature):
    """Exact log p(y) of the 1-parameter model on k copies of (x, y): ½ log(λ/2π) − C₀ +
    log ∫ e^{−(C(ω) − C₀)} dω by adaptive quadrature (relative error ≲ 1e-12)."""
    cost = lambda w: k * np.sum(np.logaddexp(0, -(2 * y - 1) * x * w)) + 0.5 * lam * w * w
    width = 40 / np.sqrt(curvature)  # 40 standard deviations of the Laplace Gaussian
    integral, error = integrate.quad(lambda w: np.exp(-(cost(w) - cost0)), w0 - width, w0 + width,
                                     epsabs=0, epsrel=1e-13, limit=200)
    assert error <= 1e-11 * integral
    return 0.5 * np.log(lam / (2 * np.pi)) - cost0 + np.log(integral)


def _log_evidence_2d(x, y, k, lam, w0, cost0, hessian, points):
    """Exact log p(y) of the 2-parameter model (intercept, slope) on k copies: the integral
    in whitened coordinates z (ω = ω₀ + L⁻ᵀz, H = LLᵀ) by the trapezoid rule on [−12, 12]²,
    spectrally accurate for this smooth, fast-decaying integrand."""
    chol = np.linalg.cholesky(hessian)
    z = np.linspace(-12, 12, points)
    zz = np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2)
    w = w0 + np.linalg.solve(chol.T, zz.T).T
    logits = w[:, :1] + w[:, 1:] * x[None, :]
    cost = k * np.sum(np.logaddexp(0, -(2 * y - 1) * logits), axis=1) + 0.5 * lam * np.sum(w * w, axis=1)
    vals = np.exp(-(cost - cost0)).reshape(points, points)
    integral = integrate.trapezoid(integrate.trapezoid(vals, z, axis=1), z) / np.prod(np.diag(chol))
    return np.log(lam) - np.log(2 * np.pi) - cost0 + np.log(integral)


def _fitted_order(sizes, gaps):
    return np.polyfit(np.log(sizes), np.log(np.abs(gaps)), 1)[0]


def test_logistic_laplace_gap_falls_like_one_over_n(x64):
    """Laplace's error is O(1/N): on k copies of a data set (N = k·n₀, C = k·NLL₀ + λ‖ω‖²/2)
    the gap to the exact evidence, by quadrature, has fitted order −1 in N for a 1- and a
    2-parameter model. A wrong constant (a missing 2π, λ or ½) would leave a gap that does
    not fall (order 0). The next term is O(1/N²), ≈ 25 % of the gap at k = 8, so the order
    is fitted from k = 32 … 256, where it is within 0.06 of −1; the gap·N must settle too."""
    lam, copies = 1.0, np.array([32, 64, 128, 256])
    x, y = logistic_base(1, 20, 1.5)
    gaps_1d, gaps_2d = [], []
    design = np.column_stack([np.ones_like(x), x])
    for k in copies:
        ev = ls.logistic_regression_log_evidence(np.tile(x, k)[:, None], np.tile(y, k), lam)
        exact = _log_evidence_1d(x, y, k, lam, float(ev.minimum[0]), ev.cost, lam * np.exp(ev.log_det))
        gaps_1d.append(ev.log_evidence - exact)
        ev2 = ls.logistic_regression_log_evidence(np.tile(design, (k, 1)), np.tile(y, k), lam)
        w0 = np.asarray(ev2.minimum)
        p = 1 / (1 + np.exp(-design @ w0))
        hessian = k * design.T @ (p * (1 - p) * design.T).T + lam * np.eye(2)
        exact2 = _log_evidence_2d(x, y, k, lam, w0, ev2.cost, hessian, 241)
        # the quadrature converged: a coarser grid gives the same value to 1e-10
        assert abs(exact2 - _log_evidence_2d(x, y, k, lam, w0, ev2.cost, hessian, 181)) <= 1e-10
        gaps_2d.append(ev2.log_evidence - exact2)
    for gaps in (np.array(gaps_1d), np.array(gaps_2d)):
        assert np.all(np.sign(gaps) == np.sign(gaps[0])) and np.all(np.abs(gaps) < 0.01)
        sizes = 20 * copies
        order = _fitted_order(sizes, gaps)
        assert abs(order + 1) <= 0.06, f"fitted order {order:.3f}, gaps {gaps}"
        scaled = gaps * sizes  # → the constant of the 1/N term
        assert abs(scaled[-1] - scaled[-2]) <= 0.1 * abs(scaled[-1])


def test_real_labels_have_higher_evidence_than_random_labels(x64):
    """Smith & Le's point on a small linear model (logistic regression, d = N = 40, weak
    prior λ = 0.02): real labels y = [xᵀ1 > 0] and random labels are both fit exactly
    (training accuracy 1, mean cross-entropy < 0.02, a training-loss gap under 1 nat in
    total), yet the evidence prefers the real labels. Over 8 seeds (each a new data set)
    the mean evidence gap exceeds 3 standard errors of the mean, and real labels win in
    at least 7 of 8 (measured: mean ≈ 10 nats, standard error ≈ 2.5)."""
    n, d, lam = 40, 40, 0.02
    gaps, loss_gaps = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, d))
        labels = {"real": (x @ np.ones(d) > 0).astype(float), "random": rng.integers(0, 2, n).astype(float)}
        evidence, loss = {}, {}
        for name, y in labels.items():
            ev = ls.logistic_regression_log_evidence(x, y, lam)
            logits = x @ np.asarray(ev.minimum)
            assert np.all((logits > 0) == (y == 1))  # training accuracy 1
            loss[name] = np.sum(np.logaddexp(0, -(2 * y - 1) * logits))
            assert loss[name] / n < 0.02
            evidence[name] = ev.log_evidence
        gaps.append(evidence["real"] - evidence["random"])
        loss_gaps.append(loss["random"] - loss["real"])
    gaps = np.array(gaps)
    assert np.max(np.abs(loss_gaps)) < 1.0
    assert gaps.mean() > 3 * gaps.std(ddof=1) / np.sqrt(len(gaps)), gaps
    assert np.sum(gaps > 0) >= 7, gaps


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: ls.laplace_log_evidence(lambda w: jnp.sum(w**2), jnp.zeros(2), 0.0), "prior_precision"),
        (lambda: ls.laplace_log_evidence(lambda w: jnp.sum(w**2), jnp.zeros(2), -1.0), "prior_precision"),
        (lambda: ls.laplace_log_evidence("nll", jnp.zeros(2), 1.0), "negative_log_likelihood"),
        (lambda: ls.laplace_log_evidence(lambda w: jnp.sum(w**2), jnp.zeros(2), 1.0, log_det="lu"), "log_det"),
        (lambda: ls.laplace_log_evidence(lambda w: jnp.sum(w**2), jnp.zeros(2), 1.0, log_det="slq"), "key"),
        (lambda: ls.linear_regression_log_evidence(np.ones((3, 2)), np.ones(4), 1.0, 1.0), "y"),
        (lambda: ls.linear_regression_log_evidence(np.ones((3, 2)), np.ones(3), 0.0, 1.0), "noise_var"),
        (lambda: ls.logistic_regression_log_evidence(np.ones((3, 2)), np.array([0, 1, 2]), 1.0), "y"),
        (lambda: ls.logistic_regression_log_evidence(np.ones(3), np.array([0, 1, 1]), 1.0), "x"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_not_a_minimum_is_refused(x64):
    # a concave likelihood term: C = −w² + (λ/2)w² with λ = 1 has no minimum (H = −1)
    with pytest.raises(ValueError, match="positive definite"):
        ls.laplace_log_evidence(lambda w: -jnp.sum(w**2), jnp.zeros(1), 1.0, minimize=False)


# ------------------------------------------------------------------ networks: SLQ log det
def _tiny_network(seed=0, n=48, hidden=4):
    """A 4-4-2 tanh MLP (d = 30) on n = 48 Gaussian inputs with labels of a linear rule,
    at the end of 300 full-batch gradient steps on the Laplace cost (not an exact minimum)."""
    import sgdsde.nn as snn

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float64)
    y = (x @ np.array([1.0, -1.0, 0.5, 0.0]) > 0).astype(np.int32)
    dataset = snn.data.make_dataset(x, y, num_classes=2, name="tiny")
    problem = snn.classification_problem(snn.MLP(2, hidden=(hidden,), activation=jnp.tanh), dataset)
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.result_type(float)), problem.info["init_params"](jax.random.key(seed)))
    lam = 1.0
    cost = lambda p: n * problem.data_loss(p) + 0.5 * lam * sum(jnp.sum(v**2) for v in jax.tree_util.tree_leaves(p))
    step = jax.jit(lambda p: jax.tree_util.tree_map(lambda a, g: a - 0.02 * g, p, jax.grad(cost)(p)))
    params = jax.jit(lambda p: jax.lax.fori_loop(0, 300, lambda _, q: step(q), p))(params)
    return problem, params, lam, cost


def test_network_evidence_by_slq_against_the_dense_hessian(x64):
    """On a tiny MLP (d = 30) the SLQ log det of H = ∇²C(ω₀) (``curvature="hessian"``) and
    of the Gauss–Newton matrix G + λI against slogdet of the same matrices formed densely
    (jax.hessian; G = Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i from the Jacobian of the logits).
    With num_steps = d the Lanczos quadrature is exact per probe (Gauss quadrature of
    degree 2d − 1 ≥ the degree of the minimal polynomial), so the only error is the
    probes' Monte-Carlo error: |SLQ − dense| ≤ 4 standard errors (P ≈ 6e-5 under the
    null), and the standard error itself is small (< 10 % of |log det| with 60 probes)."""
    from jax.flatten_util import ravel_pytree

    problem, params, lam, cost = _tiny_network()
    flat, unravel = ravel_pytree(params)
    d = flat.size
    hess = np.asarray(jax.jit(jax.hessian(lambda w: cost(unravel(w))))(flat))
    sign, dense_logdet = np.linalg.slogdet(hess / lam)
    assert sign > 0, "the test network must sit where H is positive definite"
    ev = ls.network_log_evidence(problem, params, lam, key=jax.random.key(1), num_probes=60, num_steps=d,
                                 batch_size=60)
    assert ev.log_evidence_stderr > 0 and 2 * ev.log_evidence_stderr < 0.1 * abs(dense_logdet)
    assert abs(ev.log_det - dense_logdet) <= 4 * 2 * ev.log_evidence_stderr, (ev.log_det, dense_logdet)
    assert ev.cost == pytest.approx(float(cost(params)), rel=1e-12)
    assert ev.log_evidence == pytest.approx(-ev.cost - 0.5 * ev.log_det, abs=1e-9)
    # Gauss–Newton: J (N·K × d) by forward mode, the softmax Hessian per example
    logits = lambda w: problem.info["logits"](unravel(w), problem.data["x"])
    jac = np.asarray(jax.jit(jax.jacfwd(logits))(flat))  # (N, K, d)
    p = np.asarray(jax.nn.softmax(logits(flat)))
    h_out = np.einsum("nk,kl->nkl", p, np.eye(2)) - np.einsum("nk,nl->nkl", p, p)
    ggn = np.einsum("nkd,nkl,nle->de", jac, h_out, jac) + lam * np.eye(d)
    ggn_logdet = np.linalg.slogdet(ggn / lam)[1]
    gn = ls.network_log_evidence(problem, params, lam, key=jax.random.key(2), curvature="gauss_newton",
                                 num_probes=60, num_steps=d, batch_size=60)
    assert abs(gn.log_det - ggn_logdet) <= 4 * 2 * gn.log_evidence_stderr, (gn.log_det, ggn_logdet)
    assert gn.cost == ev.cost and gn.gradient_norm == ev.gradient_norm


def test_network_evidence_bad_input():
    problem, params, lam, _ = _tiny_network(n=8)
    with pytest.raises(ValueError, match="curvature"):
        ls.network_log_evidence(problem, params, lam, key=jax.random.key(0), curvature="fisher")
    with pytest.raises(ValueError, match="prior_precision"):
        ls.network_log_evidence(problem, params, 0.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        ls.network_log_evidence(problem, params, lam, key=None)
