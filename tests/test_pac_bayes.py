"""He, Liu & Tao's PAC-Bayes bounds (sgdsde.pac_bayes) against docs/theory.md §6, float64.

Everything here is deterministic dense linear algebra on d ≤ 8 matrices, so the
tolerances are float64 rounding: relative 1e-10 on quantities built from O(d³) sums of
O(1) numbers (≈ d³·eps ≈ 1e-13, with margin).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde import pac_bayes as pb

RTOL = 1e-10
ETA, S, N, DELTA, RISK = 0.1, 16, 500, 0.05, 0.02


def _spd(rng, d, low=0.5, high=4.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * rng.uniform(low, high, d)) @ q.T


def _pair(seed=0, d=6):
    rng = np.random.default_rng(seed)
    return _spd(rng, d), _spd(rng, d, 0.2, 2.0)  # A and C with different eigenvectors: they do not commute


def _bound(a, c, **kw):
    args = dict(learning_rate=ETA, batch_size=S, num_examples=N, delta=DELTA, empirical_risk=RISK)
    args.update(kw)
    return pb.bound_from_matrices(a, c, **args)


def test_sigma_solves_lyapunov_and_trace_identity(x64):
    a, c = _pair()
    sigma = pb.lyapunov_sigma(a, c, learning_rate=ETA, batch_size=S)
    # the eigenbasis solve equals the library's Kronecker-sum Lyapunov solver
    reference = np.asarray(sd.theory.continuous_lyapunov(jnp.asarray(a), jnp.asarray(ETA / S * c)))
    np.testing.assert_allclose(sigma, reference, rtol=RTOL, atol=RTOL * np.abs(reference).max())
    np.testing.assert_allclose(a @ sigma + sigma @ a, ETA / S * c, atol=RTOL * np.abs(c).max())
    # tr Σ = (η/2S) tr(C A⁻¹) for any Lyapunov solution (here A and C do not commute)
    trace_identity = ETA / (2 * S) * np.trace(c @ np.linalg.inv(a))
    assert abs(np.trace(sigma) - trace_identity) <= RTOL * trace_identity
    assert abs(float(sd.theory.lyapunov_trace(a, c, ETA, S)) - trace_identity) <= RTOL * trace_identity
    result = _bound(a, c)
    np.testing.assert_allclose(result.sigma, sigma, rtol=RTOL)
    assert abs(result.trace_term - 2 * np.trace(sigma)) <= RTOL * result.trace_term


def test_theorem_formulas_term_by_term(x64):
    a, c = _pair(1)
    d = a.shape[0]
    result = _bound(a, c)
    sigma = np.asarray(sd.theory.continuous_lyapunov(jnp.asarray(a), jnp.asarray(ETA / S * c)))
    tr_cainv = np.trace(c @ np.linalg.inv(a))
    logdet_sigma = np.linalg.slogdet(sigma)[1]
    logdet_cainv = np.linalg.slogdet(c @ np.linalg.inv(a))[1]
    log_terms = math.log(1 / DELTA) + math.log(N)
    theorem1 = RISK + math.sqrt(
        (ETA / S * tr_cainv - 2 * logdet_sigma - 2 * d + 4 * log_terms + 8) / (8 * N - 4)
    )
    theorem2 = RISK + math.sqrt(
        (ETA / (2 * S) * tr_cainv + d * math.log(2 * S / ETA) - logdet_cainv - d + 2 * log_terms + 4) / (4 * N - 2)
    )
    assert abs(result.theorem1 - theorem1) <= RTOL * theorem1
    assert abs(result.theorem2 - theorem2) <= RTOL * theorem2
    assert abs(result.log_det_sigma - logdet_sigma) <= RTOL * abs(logdet_sigma)
    assert abs(result.log_det_c_ainv - logdet_cainv) <= RTOL * max(1.0, abs(logdet_cainv))
    # Theorem 1 is McAllester's sqrt((KL + log(1/δ) + log N + 2)/(2N − 1)) with KL(N(θ*, Σ) ‖ N(θ*, I))
    kl = 0.5 * (np.trace(sigma) - d - logdet_sigma)
    assert abs(result.kl - kl) <= RTOL * kl
    assert abs(result.gap1 - math.sqrt((kl + log_terms + 2) / (2 * N - 1))) <= RTOL * result.gap1
    assert result.gap2 == pytest.approx(math.sqrt((result.kl_commuting + log_terms + 2) / (2 * N - 1)), rel=RTOL)
    # non-commuting A and C: Σ ≠ (η/2S) C A⁻¹ and the theorems differ
    assert result.commutation_error > 1e-3
    assert abs(result.theorem1 - result.theorem2) > 1e-6


@pytest.mark.parametrize("case", ["polynomial", "diagonal"])
def test_theorem2_equals_theorem1_when_sigma_commutes_with_a(case, x64):
    rng = np.random.default_rng(2)
    if case == "polynomial":  # C a polynomial in A: C, A and Σ share eigenvectors
        a = _spd(rng, 6)
        c = 0.3 * a @ a - 0.2 * a + 1.0 * np.eye(6)  # eigenvalues 0.3λ² − 0.2λ + 1 > 0
    else:
        a, c = np.diag(rng.uniform(0.5, 4.0, 6)), np.diag(rng.uniform(0.2, 2.0, 6))
    result = _bound(a, c)
    np.testing.assert_allclose(result.sigma, ETA / (2 * S) * c @ np.linalg.inv(a), rtol=RTOL, atol=RTOL * np.abs(result.sigma).max())
    assert result.commutation_error < RTOL
    assert abs(result.kl - result.kl_commuting) <= RTOL * result.kl
    assert abs(result.theorem2 - result.theorem1) <= RTOL * result.theorem1


def test_bound_grows_with_batch_size_over_learning_rate(x64):
    # with Σ(x) = Σ₁/x, x = S/η, each numerator is tr(CA⁻¹)/x·const + 2d log x + const (Theorem 1; half
    # of it for Theorem 2): decreasing below x* = tr(CA⁻¹)/(2d), increasing above (Assumption 2: d > (η/2S) tr(CA⁻¹))
    a, c = _pair(3)
    d = a.shape[0]
    x_star = np.trace(c @ np.linalg.inv(a)) / (2 * d)
    ratios = x_star * np.geomspace(1 / 30, 30, 41)  # x* is the middle point (index 20)
    eta = 0.1
    bounds = np.array([[r.theorem1, r.theorem2] for r in (_bound(a, c, learning_rate=eta, batch_size=eta * x) for x in ratios)])
    above = ratios > x_star * (1 + 1e-9)
    below = ratios < x_star * (1 - 1e-9)
    for column in bounds.T:
        assert np.all(np.diff(column[above]) > 0)  # grows with S/η where Assumption 2 holds
        assert np.all(np.diff(column[below]) < 0)
        assert np.argmin(column) == 20  # the grid point at x*
    flags = np.array([_bound(a, c, learning_rate=eta, batch_size=eta * x).assumption2 for x in ratios[[10, 30]]])
    assert flags.tolist() == [False, True]


def test_bound_for_a_problem_at_its_minimum(x64):
    # sgdsde.problems.quadratic has Hessian A and per-example gradient covariance C exactly
    a, c = _pair(4, d=4)
    theta_star = np.array([0.5, -1.0, 0.0, 2.0])
    problem = sd.problems.quadratic(a, c, N, key=jax.random.key(0), minimum=theta_star)
    result = pb.bound(problem, jnp.asarray(theta_star), learning_rate=ETA, batch_size=S, delta=DELTA, empirical_risk=RISK)
    reference = _bound(a, c)
    assert result.num_examples == N and result.dimension == 4
    for name in ("theorem1", "theorem2", "trace_term", "log_det_sigma", "kl"):
        assert getattr(result, name) == pytest.approx(getattr(reference, name), rel=RTOL), name
    assert result.min_hessian_eigenvalue == pytest.approx(np.linalg.eigvalsh(a)[0], rel=RTOL)


def test_bad_input_raises_clear_errors(x64):
    a, c = _pair(5, d=3)
    indefinite = np.diag([1.0, -0.5, 2.0])
    with pytest.raises(ValueError, match="hessian: the Hessian A is not positive definite"):
        _bound(indefinite, c)
    with pytest.raises(ValueError, match="hessian: the Hessian A is not positive definite"):
        _bound(np.diag([1.0, 0.0, 2.0]), c)  # semi-definite: flat direction, no stationary law
    with pytest.raises(ValueError, match="hessian: the Hessian A is not positive definite"):
        pb.lyapunov_sigma(indefinite, c, learning_rate=ETA, batch_size=S)
    with pytest.raises(ValueError, match="noise_cov: the gradient covariance C is not positive definite"):
        _bound(a, np.diag([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="hessian: must be symmetric"):
        _bound(a + np.triu(np.ones((3, 3)), 1), c)
    with pytest.raises(ValueError, match="noise_cov: shape"):
        _bound(a, np.eye(2))
    with pytest.raises(ValueError, match="delta"):
        _bound(a, c, delta=1.0)
    with pytest.raises(ValueError, match="empirical_risk"):
        _bound(a, c, empirical_risk=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        _bound(a, c, learning_rate=-0.1)
    with pytest.raises(ValueError, match="num_examples"):
        _bound(a, c, num_examples=0)
    # a problem at a maximum: the error names params
    well = sd.problems.double_well_1d(num_examples=8, key=jax.random.key(1))
    with pytest.raises(ValueError, match="params: the Hessian of the loss at params is not positive definite"):
        pb.bound(well, jnp.zeros(1), learning_rate=ETA, batch_size=S, empirical_risk=RISK)
    # a rank-deficient gradient covariance (here by construction; always when d ≥ N)
    flat = sd.problems.quadratic(a, np.diag([1.0, 1.0, 0.0]), 8, key=jax.random.key(2))
    with pytest.raises(ValueError, match="noise_cov: .*vacuous"):
        pb.bound(flat, jnp.zeros(3), learning_rate=ETA, batch_size=S, empirical_risk=RISK)
    with pytest.raises(ValueError, match="problem"):
        pb.bound(a, jnp.zeros(3), learning_rate=ETA, batch_size=S, empirical_risk=RISK)


@pytest.mark.parametrize("eta,s", [(1e300, 1e-300), (1e308, 1e-10)])
def test_extreme_noise_scale_gives_inf_with_warning(eta, s):
    """η/S = 1e600 or 1e318 (beyond float64): (η/S) tr(CA⁻¹) is inf, so both bounds are inf with a
    PacBayesRangeWarning naming the parameters, never an OverflowError / math domain error."""
    a, c = _pair(seed=0)
    with pytest.warns(pb.PacBayesRangeWarning, match=r"overflows.*learning_rate="):
        b = pb.bound_from_matrices(a, c, learning_rate=eta, batch_size=s, num_examples=100, empirical_risk=0.1)
    assert b.theorem1 == math.inf and b.theorem2 == math.inf


def test_tiny_noise_scale_and_delta_stay_finite():
    """η/S = 1e-600 (η/S underflows; old code: log(η/2S) → math domain error) and δ = 5e-324
    (1/δ overflows): the logs are formed directly, so the bound is finite and equals the
    formula with log(η/S) = log η − log S, log(1/δ) = −log δ. Its ingredients are sums of
    O(d) terms of size ≤ 1e4, so 1e-12 relative is far above their rounding."""
    a, c = _pair(seed=0)
    b = pb.bound_from_matrices(a, c, learning_rate=1e-300, batch_size=1e300, num_examples=100,
                               delta=5e-324, empirical_risk=0.1)
    d = a.shape[0]
    log_scale = math.log(1e-300) - math.log(1e300)
    sigma_unit = pb.lyapunov_sigma(a, c, learning_rate=1.0, batch_size=1.0)
    log_det = d * log_scale + np.linalg.slogdet(sigma_unit)[1]
    numerator1 = -2 * log_det - 2 * d + 4 * (-math.log(5e-324) + math.log(100)) + 8  # trace term 0
    assert math.isfinite(b.theorem1)
    assert abs(b.gap1 - math.sqrt(numerator1 / (8 * 100 - 4))) <= 1e-12 * b.gap1


def test_extreme_invalid_parameters_still_raise():
    a, c = _pair(seed=0)
    for bad in (-1e-300, 0.0, math.inf):
        with pytest.raises(ValueError, match="learning_rate"):
            pb.bound_from_matrices(a, c, learning_rate=bad, batch_size=1.0, num_examples=100, empirical_risk=0.1)
    with pytest.raises(ValueError, match="delta"):
        pb.bound_from_matrices(a, c, learning_rate=0.1, batch_size=1.0, num_examples=100, delta=0.0,
                               empirical_risk=0.1)
