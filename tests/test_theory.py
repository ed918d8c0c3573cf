"""Tests for sgdsde.theory: closed forms checked against independent computations
(scipy solvers, literal sums, the augmented momentum system, Monte Carlo)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

from sgdsde import theory as T

# float64 tests use the shared ``x64`` fixture from tests/conftest.py (jax.enable_x64 context).


def _rotation(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def _quadratic(seed=0, eigs=(0.5, 1.0, 2.0)):
    """A non-diagonal SPD Hessian with the given spectrum and a full-rank noise covariance."""
    rng = np.random.default_rng(seed)
    d = len(eigs)
    q = _rotation(rng, d)
    a = q @ np.diag(eigs) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=(d, d))
    c = b @ b.T / d + 0.2 * np.eye(d)
    return a, c


def _rel(x, y):
    x, y = np.asarray(x), np.asarray(y)
    return np.max(np.abs(x - y)) / np.max(np.abs(y))


# ------------------------------------------------------------------- Lyapunov solvers


@pytest.mark.parametrize("d", [1, 5])
def test_continuous_lyapunov_matches_scipy(x64, d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(d, d)) + d * np.eye(d)  # general (non-symmetric) A
    q = rng.normal(size=(d, d))
    qs = q + q.T
    for rhs in (q, qs):
        x = np.asarray(T.continuous_lyapunov(a, rhs))
        ref = sl.solve_continuous_lyapunov(a, rhs)
        np.testing.assert_allclose(x, ref, rtol=1e-10, atol=1e-12 * np.max(np.abs(ref)))
        np.testing.assert_allclose(a @ x + x @ a.T, rhs, rtol=1e-10, atol=1e-12)
    xs = np.asarray(T.continuous_lyapunov(a, qs))
    assert np.array_equal(xs, xs.T)  # symmetric Q -> exactly symmetric X


@pytest.mark.parametrize("d", [1, 5])
def test_discrete_lyapunov_matches_scipy(x64, d):
    rng = np.random.default_rng(10 + d)
    p = rng.normal(size=(d, d))
    p *= 0.9 / np.max(np.abs(np.linalg.eigvals(p)))
    q = rng.normal(size=(d, d))
    qs = q @ q.T
    for rhs in (q, qs):
        x = np.asarray(T.discrete_lyapunov(p, rhs))
        ref = sl.solve_discrete_lyapunov(p, rhs)
        np.testing.assert_allclose(x, ref, rtol=1e-10, atol=1e-12 * np.max(np.abs(ref)))
    xs = np.asarray(T.discrete_lyapunov(p, qs))
    assert np.array_equal(xs, xs.T)


# Test-only reference: the Kronecker (vec) solve the library used before (O(d⁶) time,
# O(d⁴) memory), kept here for d ≤ 40. Row-major vec: vec(L X Rᵀ) = (L ⊗ R) vec X.
EPS = np.finfo(np.float64).eps


def _kron_operator(terms, d):
    return sum(c * jnp.kron(jnp.asarray(left), jnp.asarray(right)) for c, left, right in terms)


def _kron_solve(terms, q):
    d = np.shape(q)[0]
    return jnp.linalg.solve(_kron_operator(terms, d), jnp.reshape(q, (-1,))).reshape(d, d)


def _terms(case, a, eta=0.0, beta=0.0):
    """(c, L, R) terms of L(X) = Σ c L X Rᵀ for each equation the library solves."""
    i = jnp.eye(a.shape[0])
    lyap = [(1.0, a, i), (1.0, i, a)]
    if case == "continuous":
        return lyap
    if case == "discrete":  # X − P X Pᵀ, a = P
        return [(1.0, i, i), (-1.0, a, a)]
    if case == "shifted":  # AX + XAᵀ − η AXAᵀ (iid SGD)
        return lyap + [(-eta, a, a)]
    k = eta * beta / (1 - beta) ** 2  # heavy ball: (1+β)(AX+XAᵀ) − ηAXAᵀ + k [A, [A, X]]
    return [((1 + beta), a, i), ((1 + beta), i, a), (-eta - 2 * k, a, a), (k, a @ a, i), (k, i, a @ a)]


def _library(case, a, q, eta=0.0, beta=0.0, s=1.0):
    """The library's solve of the same equation, L(X) = Q."""
    if case == "continuous":
        return T.continuous_lyapunov(a, q)
    if case == "discrete":
        return T.discrete_lyapunov(a, q)
    if case == "shifted":
        return T.sgd_stationary_cov(a, q * (s / eta), eta, s)
    return T.sgd_stationary_cov(a, q * (s / eta) * (1 - beta) / (1 + beta), eta, s, momentum=beta)


def _random_case(case, d, symmetric, seed):
    """A random A for ``case`` (stable for SGD where it matters) and a random full Q."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(d, d)) / np.sqrt(d)
    lam = np.linspace(0.5, 2.5, d)
    v = np.eye(d) if symmetric else np.eye(d) + 0.3 * g  # non-normal A: V not orthogonal
    q_rot = _rotation(rng, d)
    a = (q_rot @ v) @ np.diag(lam) @ np.linalg.inv(q_rot @ v)  # real spectrum in [0.5, 2.5]
    if symmetric:
        a = 0.5 * (a + a.T)
    q = rng.normal(size=(d, d))
    if case == "discrete":
        a = np.eye(d) - 0.2 * a  # P with spectrum in [0.5, 0.9]
    eta = 0.5 / 2.5  # η λ_max = 0.5: stable for the β used
    return a, q, eta


_CASES = [(case, sym) for case in ("continuous", "discrete", "shifted", "heavy_ball") for sym in (True, False)]


@pytest.mark.parametrize("case,symmetric", _CASES)
@pytest.mark.parametrize("d", [2, 7, 20, 40])
def test_solvers_match_kronecker_reference(x64, case, symmetric, d):
    """Eigenbasis / Bartels–Stewart against the d²-unknown Kronecker solve.

    Both are backward stable: each solves a problem within c·d·eps (relative) of the given
    one, so they differ by at most κ(K)·c·d·eps relative, κ(K) the condition number of the
    Kronecker operator (1-norm, computed here; 5 to 110 on these cases), so the bound, and
    hence the agreement, is below 1e-10 (measured: below 1e-14).
    """
    a, q, eta = _random_case(case, d, symmetric, seed=100 * d + symmetric)
    beta = 0.5
    terms = _terms(case, jnp.asarray(a), eta, beta)
    k = np.asarray(_kron_operator(terms, d))
    kappa = np.linalg.cond(k, 1)
    ref = np.asarray(_kron_solve(terms, q))
    x = np.asarray(_library(case, a, q, eta, beta))
    tol = 8 * d * EPS * kappa  # c·d·eps backward error, times κ(K)
    assert tol < 1e-10, kappa
    print(f"{case} symmetric={symmetric} d={d}: rel. difference {_rel(x, ref):.2e}, κ₁(K) = {kappa:.3g}")
    assert _rel(x, ref) <= tol, (_rel(x, ref), kappa)


@pytest.mark.parametrize("case,symmetric", _CASES)
def test_solvers_residual_d200(x64, case, symmetric):
    """d = 200 (no Kronecker reference: 40,000 unknowns): the residual of L(X) = Q.

    A backward-stable solve leaves ‖L(X) − Q‖_F ≤ c·d·eps·(Σ_i |c_i| ‖L_i‖_F ‖X‖_F ‖R_i‖_F
    + ‖Q‖_F), the size of the terms summed; c = 4.
    """
    d = 200
    a, q, eta = _random_case(case, d, symmetric, seed=7 + symmetric)
    terms = _terms(case, jnp.asarray(a), eta, 0.5)
    x = _library(case, a, q, eta, 0.5)
    resid = sum(c * (left @ x @ right.T) for c, left, right in terms) - q
    norm = np.linalg.norm
    size = sum(abs(c) * norm(left) * norm(right) for c, left, right in terms) * norm(x) + norm(q)
    print(f"{case} symmetric={symmetric}: residual / (eps · size) = {norm(resid) / (EPS * size):.3g}")
    assert norm(resid) <= 4 * d * EPS * size


@pytest.mark.parametrize("case,symmetric", _CASES)
def test_solver_derivatives_match_kronecker_autodiff(x64, case, symmetric):
    """Forward and reverse derivatives in A, Q and η (implicit: dX = L⁻¹(dQ − dL X)) against
    JAX autodiff through the Kronecker reference. Each is a solve with a right side that
    carries the first solve's error, so they agree to c·d·eps·κ(K)(1 + κ(K)), c = 8.
    """
    d, beta = 4, 0.5
    a, q, eta = _random_case(case, d, symmetric, seed=3)
    rng = np.random.default_rng(4)
    ta, tq = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    if symmetric:
        ta = ta + ta.T

    def ours(a, q, eta):
        return _library(case, a, q, eta, beta)

    def reference(a, q, eta):
        return _kron_solve(_terms(case, a, eta, beta), q)

    kappa = np.linalg.cond(np.asarray(_kron_operator(_terms(case, jnp.asarray(a), eta, beta), d)), 1)
    tol = 8 * d * EPS * kappa * (1 + kappa)
    args, tangents = (a, q, eta), (ta, tq, 0.3 * eta)
    _, jvp = jax.jvp(ours, args, tangents)
    _, jvp_ref = jax.jvp(reference, args, tangents)
    assert _rel(jvp, jvp_ref) <= tol

    def loss(f):
        return lambda *xs: jnp.sum(jnp.sin(f(*xs)))

    argnums = (0, 1) if case in ("continuous", "discrete") else (0, 1, 2)
    grads = jax.grad(loss(ours), argnums)(*args)
    grads_ref = jax.grad(loss(reference), argnums)(*args)
    for g, g_ref in zip(grads, grads_ref):
        assert _rel(g, g_ref) <= tol


def test_solvers_vmap_and_jit(x64):
    """vmap over η and over a batch of A, under jit, equals one eager call per element: the
    same host solve, with inputs that differ only by XLA's rounding of ηC/S (≤ 2 eps relative),
    amplified by κ(K) ≲ 30 at most; 64 eps bounds it."""
    a, c = _quadratic(seed=0)
    etas = jnp.array([0.01, 0.2, 0.5])
    batched = jax.jit(jax.vmap(lambda e: T.sgd_stationary_cov(a, c, e, 8, momentum=0.5)))(etas)
    for i, e in enumerate(np.asarray(etas)):
        assert _rel(batched[i], T.sgd_stationary_cov(a, c, float(e), 8, momentum=0.5)) <= 64 * EPS
    mats = jnp.stack([jnp.asarray(a), jnp.asarray(a) + 0.3 * jnp.triu(jnp.ones((3, 3)), 1)])
    xs = jax.jit(jax.vmap(T.continuous_lyapunov, (0, None)))(mats, c)
    for i in range(2):
        assert _rel(xs[i], T.continuous_lyapunov(mats[i], c)) <= 64 * EPS


# ---------------------------------------------------------- discrete stationary covariance


@pytest.mark.parametrize("eta,h", [(0.01, 1.0), (0.3, 2.0), (1.5, 1.2), (0.05, 30.0)])
def test_iid_1d_matches_closed_form(x64, eta, h):
    sigma2, s = 2.5, 16
    x = T.sgd_stationary_cov(np.array([[h]]), np.array([[sigma2]]), eta, s)
    ref = eta * sigma2 / (s * h * (2 - eta * h))
    assert abs(float(x[0, 0]) / ref - 1) < 1e-12
    assert abs(float(T.sgd_stationary_variance_1d(h, sigma2, eta, s)) / ref - 1) < 1e-12
    ou = T.ou_stationary_variance_1d(h, sigma2, eta, s)
    assert abs(float(ou) / (eta * sigma2 / (2 * s * h)) - 1) < 1e-12
    assert abs(float(T.ou_stationary_cov([[h]], [[sigma2]], eta, s)[0, 0]) / float(ou) - 1) < 1e-12


@pytest.mark.parametrize(
    "beta,eta,h",
    [(b, e, h) for b in (0.0, 0.5, 0.9, 0.99) for e, h in ((0.01, 1.0), (0.3, 2.0), (1.0, 1.9))]
    + [(0.99, 1.0, 3.9), (0.999, 2.0, 1.99)],  # near the stability edge η h < 2(1 + β)
)
def test_momentum_1d_matches_closed_form(x64, beta, eta, h):
    sigma2, s = 1.7, 4
    x = T.sgd_stationary_cov(np.array([[h]]), np.array([[sigma2]]), eta, s, momentum=beta)
    ref = eta * sigma2 * (1 + beta) / (s * h * (1 - beta) * (2 * (1 + beta) - eta * h))
    assert abs(float(x[0, 0]) / ref - 1) < 1e-12
    v = T.sgd_momentum_variance_1d(h, sigma2, eta, s, beta)
    assert abs(float(v) / ref - 1) < 1e-12


@pytest.mark.parametrize("sampling", ["iid", "subset"])
@pytest.mark.parametrize("beta", [0.3, 0.9])
def test_momentum_matches_augmented_system(x64, sampling, beta):
    """θ-block of the literal 2d×2d discrete Lyapunov equation for z = (θ, v)."""
    a, c = _quadratic(seed=3)
    eta, s, n = 0.2, 8, 64
    d = a.shape[0]
    i = np.eye(d)
    m = np.block([[i - eta * a, beta * i], [-eta * a, beta * i]])
    c_eff = c * ((n - s) / (n - 1) if sampling == "subset" else 1.0)
    w = (eta**2 / s) * np.block([[c_eff, c_eff], [c_eff, c_eff]])  # noise −η[ξ; ξ]
    ref = sl.solve_discrete_lyapunov(m, w)[:d, :d]
    x = T.sgd_stationary_cov(a, c, eta, s, sampling=sampling, num_examples=n, momentum=beta)
    assert _rel(x, ref) < 1e-10


def test_iid_and_subset_match_scipy(x64):
    a, c = _quadratic(seed=4)
    eta, s, n = 0.3, 8, 40
    p = np.eye(3) - eta * a
    ref = sl.solve_discrete_lyapunov(p, eta**2 / s * c)
    assert _rel(T.sgd_stationary_cov(a, c, eta, s), ref) < 1e-10
    sub = T.sgd_stationary_cov(a, c, eta, s, sampling="subset", num_examples=n)
    assert _rel(sub, ref * (n - s) / (n - 1)) < 1e-10


def _epoch_literal(a, c, eta, s, n):
    """Literal O(m²) double sum, then scipy's discrete Lyapunov solver."""
    d = a.shape[0]
    m = n // s
    p = np.eye(d) - eta * a
    pw = [np.linalg.matrix_power(p, k) for k in range(m + 1)]
    dsum = np.zeros((d, d))
    for j in range(m):
        for k in range(m):
            cov = c / s * (n - s) / (n - 1) if j == k else -c / (n - 1)
            dsum += pw[m - 1 - j] @ cov @ pw[m - 1 - k].T
    return sl.solve_discrete_lyapunov(pw[m], eta**2 * dsum)


@pytest.mark.parametrize("n,s", [(64, 8), (60, 8), (13, 4), (8, 8)])
def test_epoch_matches_literal_double_sum(x64, n, s):
    a, c = _quadratic(seed=5)
    eta = 0.2
    x = T.sgd_stationary_cov(a, c, eta, s, sampling="epoch", num_examples=n)
    ref = _epoch_literal(a, c, eta, s, n)
    if n == s:  # one full batch per epoch: no noise at all
        assert np.max(np.abs(np.asarray(x))) < 1e-14
    else:
        assert _rel(x, ref) < 1e-10


def test_epoch_single_batch_per_epoch_equals_subset(x64):
    a, c = _quadratic(seed=6)
    eta, s, n = 0.2, 8, 15  # m = 1: one batch per epoch, no cross-batch correlation
    ep = T.sgd_stationary_cov(a, c, eta, s, sampling="epoch", num_examples=n)
    sub = T.sgd_stationary_cov(a, c, eta, s, sampling="subset", num_examples=n)
    assert _rel(ep, sub) < 1e-12


def test_epoch_much_smaller_than_subset(x64):
    a, c = _quadratic(seed=0)
    eta, s, n = 0.2, 8, 64
    ep = T.sgd_stationary_cov(a, c, eta, s, sampling="epoch", num_examples=n)
    sub = T.sgd_stationary_cov(a, c, eta, s, sampling="subset", num_examples=n)
    ratio = float(jnp.trace(sub) / jnp.trace(ep))
    print(f"tr(subset)/tr(epoch) = {ratio:.3f}")
    assert 2.0 < ratio < 8.0
    assert np.all(np.linalg.eigvalsh(np.asarray(sub - ep)) > 0)  # smaller in Loewner order


def test_epoch_monte_carlo_with_reshuffling(x64):
    """Simulate real random reshuffling over a finite centred data set (per-example
    gradient Aθ − z_i) and compare the epoch-boundary covariance with the theory."""
    rng = np.random.default_rng(7)
    a, _ = _quadratic(seed=0)
    eta, s, n, chains = 0.2, 8, 64, 4000
    m = n // s
    z = rng.normal(size=(n, 3)) @ np.diag([1.0, 0.7, 0.4])
    z -= z.mean(axis=0)
    c = z.T @ z / n  # per-example gradient covariance (1/N normalisation)
    p = np.eye(3) - eta * a
    theta = np.zeros((chains, 3))
    epochs = 20  # 160 steps = 16/(η λ_min): start-up bias ~ 0.9^320
    base = np.broadcast_to(np.arange(n), (chains, n))
    for _ in range(epochs):
        perm = rng.permuted(base, axis=1)
        batch_means = z[perm[:, : m * s]].reshape(chains, m, s, 3).mean(axis=2)
        for k in range(m):
            theta = theta @ p.T + eta * batch_means[:, k]  # θ − η(Aθ − z̄_batch)
    x = np.asarray(T.sgd_stationary_cov(a, c, eta, s, sampling="epoch", num_examples=n))
    sub = np.asarray(T.sgd_stationary_cov(a, c, eta, s, sampling="subset", num_examples=n))
    prods = theta[:, :, None] * theta[:, None, :]  # mean is exactly 0 by symmetry
    emp = prods.mean(axis=0)
    se = prods.std(axis=0, ddof=1) / np.sqrt(chains)  # empirical standard error
    assert np.all(np.abs(emp - x) < 4 * se), (emp, x, se)
    assert np.any(np.abs(emp - sub) > 4 * se)  # the white-noise (subset) formula is rejected


# --------------------------------------------------------------- continuous (OU) results


def test_ou_trace_identity(x64):
    for seed in range(3):
        a, c = _quadratic(seed=seed, eigs=(0.1, 0.7, 3.0, 5.0))
        sigma = T.ou_stationary_cov(a, c, 0.05, 32)
        tr = T.lyapunov_trace(a, c, 0.05, 32)
        assert abs(float(jnp.trace(sigma)) / float(tr) - 1) < 1e-12
        assert abs(float(tr) / (0.05 / 64 * np.trace(c @ np.linalg.inv(a))) - 1) < 1e-12


def test_discrete_approaches_continuous_linearly_in_eta(x64):
    a, c = _quadratic(seed=1)
    s = 4

    def err(eta):
        disc = T.sgd_stationary_cov(a, c, eta, s) / eta
        cont = T.ou_stationary_cov(a, c, eta, s) / eta
        return float(jnp.max(jnp.abs(disc - cont)))

    e1, e2, e3 = err(1e-3), err(5e-4), err(2.5e-4)
    assert 1.95 < e1 / e2 < 2.05
    assert 1.95 < e2 / e3 < 2.05
    # leading term: Σ_disc/η − Σ_cont/η = η X1 with A X1 + X1 A = A X0 A, X0 = Σ_cont/η
    x0 = sl.solve_continuous_lyapunov(a, c / s)
    x1 = sl.solve_continuous_lyapunov(a, a @ x0 @ a)
    assert abs(e3 / (2.5e-4 * np.max(np.abs(x1))) - 1) < 1e-3


def test_ou_transition_limits(x64):
    a, c = _quadratic(seed=2)
    eta, s = 0.1, 8
    theta0 = np.array([1.0, -2.0, 0.5])
    sigma = T.ou_stationary_cov(a, c, eta, s)
    tr0 = T.ou_transition(a, c, eta, s, theta0, 0.0)
    assert isinstance(tr0, T.OUTransition)
    np.testing.assert_allclose(tr0.mean, theta0, rtol=1e-14)
    assert np.max(np.abs(np.asarray(tr0.cov))) < 1e-15
    big = T.ou_transition(a, c, eta, s, theta0, 1e4)  # η λ_min t = 500
    assert _rel(big.cov, sigma) < 1e-12
    assert np.max(np.abs(np.asarray(big.mean))) < 1e-12
    # mean against scipy's expm
    t = 7.0
    tr = T.ou_transition(a, c, eta, s, theta0, t)
    np.testing.assert_allclose(tr.mean, sl.expm(-eta * a * t) @ theta0, rtol=1e-12)


@pytest.mark.parametrize("skew", [0.0, 0.3])
def test_ou_transition_solves_lyapunov_ode(x64, skew):
    a, c = _quadratic(seed=3)
    a = a + skew * np.array([[0.0, 1.0, -0.5], [-1.0, 0.0, 0.2], [0.5, -0.2, 0.0]])  # non-normal A
    eta, s = 0.1, 8
    theta0 = np.zeros(3)
    t, h = 5.0, 1e-3

    def cov(tt):
        return np.asarray(T.ou_transition(a, c, eta, s, theta0, tt).cov)

    deriv = (cov(t + h) - cov(t - h)) / (2 * h)
    p = cov(t)
    rhs = -eta * a @ p - p @ (eta * a).T + eta**2 / s * c
    assert _rel(p, p.T) < 1e-14
    assert _rel(deriv, rhs) < 1e-7
    # and against the integral ∫_0^t e^{−ηAu} (η²/S) C e^{−ηAᵀu} du (Van Loan block expm)
    d = 3
    blk = np.zeros((2 * d, 2 * d))
    blk[:d, :d] = eta * a
    blk[:d, d:] = eta**2 / s * c
    blk[d:, d:] = -eta * a.T
    e = sl.expm(blk * t)
    vl = e[d:, d:].T @ e[:d, d:]
    assert _rel(p, vl) < 1e-10


def test_ou_transition_sme_clock(x64):
    a, c = _quadratic(seed=4)
    eta, s = 0.05, 16
    theta0 = np.array([0.3, 0.2, -1.0])
    t_steps = 37.0
    steps = T.ou_transition(a, c, eta, s, theta0, t_steps)
    t_sme = T.step_to_sme_time(t_steps, eta)
    assert abs(float(t_sme) - eta * t_steps) < 1e-15
    assert abs(float(T.sme_to_step_time(t_sme, eta)) - t_steps) < 1e-12
    sme = T.ou_transition(a, c, eta, s, theta0, t_sme, clock="sme")
    np.testing.assert_allclose(sme.mean, steps.mean, rtol=1e-12)
    np.testing.assert_allclose(sme.cov, steps.cov, rtol=1e-12)
    other = T.ou_transition(a, c, eta, s, theta0, t_steps, clock="sme")
    assert _rel(other.cov, steps.cov) > 1e-2  # the clocks really differ


# --------------------------------------------------------------------------- Monte Carlo


def test_iid_monte_carlo(x64):
    """The discrete formula is the stationary covariance of θ' = Pθ − ηξ, ξ ~ N(0, C/S)."""
    rng = np.random.default_rng(11)
    a, c = _quadratic(seed=0)  # eigenvalues 0.5, 1, 2
    eta, s, chains = 0.2, 8, 4000
    p = np.eye(3) - eta * a
    chol = np.linalg.cholesky(c / s)
    burn_in = int(np.ceil(10 / (eta * 0.5)))  # 10/(η λ_min) steps: bias ∝ 0.9^(2·100)
    theta = np.zeros((chains, 3))
    for _ in range(burn_in):
        theta = theta @ p.T - eta * rng.normal(size=(chains, 3)) @ chol.T
    x = np.asarray(T.sgd_stationary_cov(a, c, eta, s))
    emp = theta.T @ theta / chains  # known mean 0: estimator (1/n) Σ θ_i θ_j
    # Standard error: for Gaussian θ ~ N(0, Σ), Isserlis gives
    # E[θ_i² θ_j²] = Σ_ii Σ_jj + 2 Σ_ij², so Var(θ_i θ_j) = Σ_ii Σ_jj + Σ_ij² and the
    # mean of n independent chains has variance (Σ_ii Σ_jj + Σ_ij²)/n.
    se = np.sqrt((np.outer(np.diag(x), np.diag(x)) + x**2) / chains)
    assert np.all(np.abs(emp - x) < 4 * se), (emp, x, se)
    ou = np.asarray(T.ou_stationary_cov(a, c, eta, s))
    assert np.any(np.abs(emp - ou) > 4 * se)  # the test can tell discrete from continuous


# ------------------------------------------------------------------- noise scales, dtype


def test_noise_scales(x64):
    eta, s, n = 0.1, 32, 1000
    assert float(T.noise_scale(eta, s)) == pytest.approx(eta / s, rel=1e-15)
    n_eff = float(T.effective_noise_scale(eta, s, n))
    assert n_eff == pytest.approx(eta / s * (n - s) / (n - 1), rel=1e-15)
    g = float(T.smith_le_noise_scale(eta, s, n))
    assert g == pytest.approx(eta * (n / s - 1), rel=1e-15)
    assert g / (n * n_eff) == pytest.approx((n - 1) / n, rel=1e-14)
    assert float(T.effective_noise_scale(eta, n, n)) == 0.0


def test_float32_dtype_and_accuracy():
    a, c = _quadratic(seed=0)
    a32, c32 = a.astype(np.float32), c.astype(np.float32)
    out = {
        "cont": T.continuous_lyapunov(a32, c32),
        "disc": T.discrete_lyapunov(np.eye(3, dtype=np.float32) - 0.2 * a32, c32),
        "ou": T.ou_stationary_cov(a32, c32, 0.2, 8),
        "iid": T.sgd_stationary_cov(a32, c32, 0.2, 8),
        "mom": T.sgd_stationary_cov(a32, c32, 0.2, 8, momentum=0.9),
        "epoch": T.sgd_stationary_cov(a32, c32, 0.2, 8, sampling="epoch", num_examples=64),
    }
    for v in out.values():
        assert v.dtype == jnp.float32
    assert T.sgd_stationary_variance_1d(1.0, 1.0, 0.1, 4).dtype == jnp.float32
    with jax.enable_x64(True):
        ref = {
            "iid": T.sgd_stationary_cov(a, c, 0.2, 8),
            "mom": T.sgd_stationary_cov(a, c, 0.2, 8, momentum=0.9),
            "epoch": T.sgd_stationary_cov(a, c, 0.2, 8, sampling="epoch", num_examples=64),
        }
        assert ref["iid"].dtype == jnp.float64
        for k, v in ref.items():
            assert _rel(out[k], v) < 1e-4, k


def test_jit_and_grad(x64):
    a, c = _quadratic(seed=0)
    eager = T.sgd_stationary_cov(a, c, 0.2, 8, sampling="epoch", num_examples=64)
    jitted = jax.jit(lambda eta: T.sgd_stationary_cov(a, c, eta, 8, sampling="epoch", num_examples=64))
    assert _rel(jitted(0.2), eager) < 1e-12
    mom = jax.jit(lambda eta, b: T.sgd_stationary_cov(a, c, eta, 8, momentum=b))
    assert _rel(mom(0.2, 0.5), T.sgd_stationary_cov(a, c, 0.2, 8, momentum=0.5)) < 1e-12
    # derivative of the 1-D variance in η: σ²/(S h) · 2/(2 − ηh)²
    h, sigma2, s, eta = 1.5, 2.0, 4, 0.3
    exact = sigma2 / (s * h) * 2 / (2 - eta * h) ** 2
    g1 = jax.grad(lambda e: T.sgd_stationary_variance_1d(h, sigma2, e, s))(eta)
    g2 = jax.grad(lambda e: T.sgd_stationary_cov(jnp.array([[h]]), jnp.array([[sigma2]]), e, s)[0, 0])(eta)
    assert abs(float(g1) / exact - 1) < 1e-12
    assert abs(float(g2) / exact - 1) < 1e-12


# --------------------------------------------------------------------------- bad input


def test_value_errors():
    a, c = _quadratic(seed=0)  # λ_max = 2
    with pytest.raises(ValueError, match=r"learning_rate.*η·λ_max = 2\.2"):
        T.sgd_stationary_cov(a, c, 1.1, 8)
    with pytest.raises(ValueError, match="learning_rate"):
        T.sgd_stationary_cov(a, c, 1.1, 8, sampling="epoch", num_examples=64)
    with pytest.raises(ValueError, match="learning_rate"):
        T.sgd_stationary_cov(a, c, 1.9, 8, momentum=0.5)  # η λ_max = 3.8 > 2(1 + β) = 3
    T.sgd_stationary_cov(a, c, 1.4, 8, momentum=0.5)  # 2.8 < 3: stable with momentum
    with pytest.raises(ValueError, match="learning_rate"):
        T.sgd_stationary_variance_1d(2.0, 1.0, 1.0, 8)
    with pytest.raises(ValueError, match="learning_rate"):
        T.sgd_momentum_variance_1d(2.0, 1.0, 2.0, 8, 0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        T.sgd_stationary_cov(a, c, -0.1, 8)
    with pytest.raises(ValueError, match="hessian"):
        T.sgd_stationary_cov(np.ones((2, 3)), c, 0.1, 8)
    with pytest.raises(ValueError, match="hessian"):
        T.ou_stationary_cov(-a, c, 0.1, 8)
    with pytest.raises(ValueError, match="noise_cov"):
        T.ou_stationary_cov(a, np.eye(2), 0.1, 8)
    with pytest.raises(ValueError, match="sampling"):
        T.sgd_stationary_cov(a, c, 0.1, 8, sampling="shuffle")
    for sampling in ("subset", "epoch"):
        with pytest.raises(ValueError, match="num_examples"):
            T.sgd_stationary_cov(a, c, 0.1, 8, sampling=sampling)
    with pytest.raises(ValueError, match="num_examples"):
        T.sgd_stationary_cov(a, c, 0.1, 8, sampling="subset", num_examples=4)
    with pytest.raises(ValueError, match="momentum"):
        T.sgd_stationary_cov(a, c, 0.1, 8, sampling="epoch", num_examples=64, momentum=0.9)
    with pytest.raises(ValueError, match="momentum"):
        T.sgd_stationary_cov(a, c, 0.1, 8, momentum=1.0)
    with pytest.raises(ValueError, match="clock"):
        T.ou_transition(a, c, 0.1, 8, np.zeros(3), 1.0, clock="epochs")
    with pytest.raises(ValueError, match="theta0"):
        T.ou_transition(a, c, 0.1, 8, np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="batch_size"):
        T.noise_scale(0.1, 0)
    with pytest.raises(ValueError, match="q"):
        T.continuous_lyapunov(a, np.eye(2))
    # validation never breaks jit: a traced unstable η is not checked
    out = jax.jit(lambda eta: T.sgd_stationary_cov(a, c, eta, 8))(1.1)
    assert out.shape == (3, 3)
