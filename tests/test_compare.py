"""The weak-error harness (sgdsde.compare) on the 1-D Ornstein–Uhlenbeck problem, where
every expectation is known exactly (docs/theory.md §5), and its statistics on synthetic data.

Problem: L = ½ h θ², per-example noise exactly σ² (whitened data), h = σ² = 1, N = 64;
``sgd("iid")`` draws S examples with replacement, so the minibatch noise variance is
exactly σ²/S. Float64 throughout, fixed seeds. Statistical checks allow 4 Monte-Carlo
standard errors per estimate (a two-sided 6·10⁻⁵ chance each) unless stated otherwise.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde import compare
from sgdsde.steppers import Stepper, apply_update, init_state

H, SIGMA2, N = 1.0, 1.0, 64
ETAS = np.array([0.05, 0.1, 0.2, 0.4])  # η h from 0.05 to 0.4
NOISE = 0.05  # fixed η/S: S = 1, 2, 4, 8
SIZES = ETAS / NOISE


@pytest.fixture(scope="module")
def ou():
    with jax.enable_x64(True):
        yield sd.problems.quadratic([[H]], [[SIGMA2]], N, key=jax.random.key(0))


def exact_ou_stepper() -> Stepper:
    """The SDE dθ = −η h θ dt + (η/√S) σ dW solved exactly over one SGD step (the OU
    transition): θ' = e^{−ηh} θ + √(Σ(1 − e^{−2ηh})) z, Σ = ησ²/(2Sh). No discretisation
    error, so SGD against it shows the SGD-vs-SDE gap of docs/theory.md §5 exactly."""

    def init(params, problem=None):
        return init_state(params)

    def step(key, state, problem, hyper):
        values = hyper.at(state.step)
        eta, size = values.learning_rate, values.batch_size.astype(state.params.dtype)
        decay = jnp.exp(-eta * H)
        var = eta * SIGMA2 / (2 * size * H) * (1 - decay**2)
        new = decay * state.params + jnp.sqrt(var) * jax.random.normal(key, state.params.shape, state.params.dtype)
        return apply_update(state, new - state.params, values._replace(momentum=jnp.zeros_like(values.momentum)))

    return Stepper(init, step, "exact_ou", 1.0)


def _within(measured, expected, stderr, k=4.0):
    measured, expected, stderr = map(np.asarray, (measured, expected, stderr))
    z = (measured - expected) / stderr
    assert np.all(np.abs(z) <= k), f"|z| > {k}: measured {measured}, expected {expected}, stderr {stderr}, z {z}"


def test_stationary_variance_gap_and_order(ou):
    """Time-averaged θ² over t_sme ∈ [4, 24] from θ = 0 (relaxed: the variance deficit is
    e^{−2ht} ≤ e^{−8} at t0 = 4, far below the 0.4 % standard errors).
    Exact: Var_SGD = ησ²/(Sh(2 − ηh)), Var_SDE = ησ²/(2Sh), so the relative gap is
    ηh/(2 − ηh) = O(η)."""
    with jax.enable_x64(True):
        result = compare.weak_error(
            jax.random.key(1), ou, exact_ou_stepper(), jnp.zeros(1), learning_rates=ETAS, noise_scale=NOISE,
            observables={"var": compare.coordinate(0, 2)}, window=(4.0, 24.0), sgd=sd.sgd("iid"), replicas=6000,
        )
    var_sgd = ETAS * SIGMA2 / (SIZES * H * (2 - ETAS * H))
    var_sde = ETAS * SIGMA2 / (2 * SIZES * H)
    np.testing.assert_array_equal(result.batch_sizes, SIZES)
    a, b, gap = result.sgd["var"], result.sde["var"], result.gap["var"]
    _within(a["mean"][:, 0], var_sgd, a["stderr"][:, 0])
    _within(b["mean"][:, 0], var_sde, b["stderr"][:, 0])
    _within(gap["value"][:, 0], var_sgd - var_sde, gap["stderr"][:, 0])
    # the error bars are the size Monte Carlo predicts, not inflated: relative error of a
    # time average over W = 20 of an OU θ² (correlation time 1/(2h)) is √(2/(W R))
    predicted = var_sde * math.sqrt(2 / (20 * 6000))
    assert np.all((b["stderr"][:, 0] > 0.7 * predicted) & (b["stderr"][:, 0] < 1.3 * predicted))
    assert gap["resolved"][1:, 0].all()  # η ≥ 0.1 resolved at 3 stderr (η = 0.05: z ≈ 2.5 expected)
    fit = result.order["var"][0]
    # the exact gaps ∝ η/(2 − η): a local order 1 + ηh/(2 − ηh), from 1.03 to 1.25 over the
    # sweep; fitted with the same points and covariance they give the slope to expect
    exact_fit = compare.fit_order(ETAS, var_sgd - var_sde, gap["covariance"][0], use=fit.used)
    assert 1.0 < exact_fit.slope < 1.25
    # within 3 of the fit's standard errors (a 99.7 % interval; the reported 95 % CI misses
    # by construction one time in 20)
    assert abs(fit.slope - exact_fit.slope) < 3 * fit.stderr, (fit, exact_fit.slope)
    assert abs(fit.slope - 1) < 0.3 and fit.stderr < 0.1  # order ≈ 1, measured to ±0.1
    assert result.clock == "sme" and not result.diverged["sgd"].any()
    assert "order of the gap" in result.table()


def _moments(theta0, rate, noise_var, steps):
    """E[θ_k], E[θ_k²] of θ' = (1 − rate) θ + √noise_var z, k = 0 … steps."""
    mean, second = [theta0], [theta0**2]
    for _ in range(steps):
        mean.append((1 - rate) * mean[-1])
        second.append((1 - rate) ** 2 * second[-1] + noise_var)
    return np.array(mean), np.array(second)


def _interpolated(exact, calls, t, per_call):
    """The harness's value at t: exact[k] at an integer step, else linear between neighbours."""
    lo, hi = calls
    w = t / per_call - lo
    assert (lo == hi and abs(w) < 1e-9) or (hi == lo + 1 and 0 < w < 1)
    return exact[lo] if hi == lo else (1 - w) * exact[lo] + w * exact[hi]


def test_transient_moments_at_equal_sme_time(ou):
    """E[θ] and E[θ²] at t_sme = 0.5 and 1.5 from θ0 = 2: SGD against Euler–Maruyama with
    dt = 1/4. At η = 0.2 and 0.4 the SGD times fall between steps (t/η = 2.5, 1.25,
    3.75): the harness interpolates linearly, so the oracle is the same interpolation
    of the exact discrete moments (SGD: rate ηh, noise η²σ²/S per step; EM: rate ηh·dt,
    noise η²σ² dt/S per call)."""
    dt, theta0, times = 0.25, 2.0, np.array([0.5, 1.5])
    stepper = sd.euler_maruyama(sd.noise.isotropic(SIGMA2), dt=dt)
    with jax.enable_x64(True):
        result = compare.weak_error(
            jax.random.key(2), ou, stepper, jnp.array([theta0]), learning_rates=ETAS, noise_scale=NOISE,
            observables={"mean": compare.coordinate(0), "second": compare.coordinate(0, 2)},
            times=times, sgd=sd.sgd("iid"), replicas=6000,
        )
    assert result.calls["sgd"][3, 0].tolist() == [1, 2] and result.calls["sde"][3, 0].tolist() == [5, 5]
    exact = {}
    for label, per_call, rate, noise in (("sgd", ETAS, ETAS * H, ETAS**2 * SIGMA2 / SIZES),
                                         ("sde", ETAS * dt, ETAS * H * dt, ETAS**2 * SIGMA2 * dt / SIZES)):
        calls = result.calls[label]
        for g in range(ETAS.size):
            mean, second = _moments(theta0, rate[g], noise[g], int(calls[g].max()))
            for j, t in enumerate(times):
                for name, values in (("mean", mean), ("second", second)):
                    exact[label, name, g, j] = _interpolated(values, calls[g, j], t, per_call[g])
                    got = getattr(result, label)[name]
                    _within(got["mean"][g, j], exact[label, name, g, j], got["stderr"][g, j])
    for name in ("mean", "second"):
        expected_gap = np.array([[exact["sgd", name, g, j] - exact["sde", name, g, j] for j in range(2)]
                                 for g in range(ETAS.size)])
        gap = result.gap[name]
        _within(gap["value"], expected_gap, gap["stderr"])
        # order: the exact (interpolated) gaps fitted with the same points and covariance give
        # the slope to expect; the measured one lies within 3 of its standard errors
        for j in range(2):
            fit = result.order[name][j]
            assert fit.used.sum() >= 3, (name, j, fit)
            exact_fit = compare.fit_order(ETAS, expected_gap[:, j], gap["covariance"][j], use=fit.used)
            assert abs(fit.slope - exact_fit.slope) < 3 * fit.stderr, (name, j, fit, exact_fit.slope)
    # the mean's gap at t = 1.5, (1 − ηh)^{t/η} − (1 − ηh dt)^{t/(η dt)} ≈ −θ0 e^{−ht} h² t η (1 − dt)/2:
    # order 1 (E[θ²] mixes a negative mean² gap with a positive variance gap: no clean power)
    fit = result.order["mean"][1]
    assert fit.contains(1.0) and fit.stderr < 0.1, fit


def test_error_bars_are_honest_self_comparison(ou):
    """A stepper against itself (independent keys): every gap is pure Monte-Carlo noise,
    so the z-scores must look standard normal. All 16 (4 η × 2 times × 2 observables)
    within 3 stderr, and no fit is claimed (nothing resolved at min_z = 3)."""
    stepper = sd.euler_maruyama(sd.noise.isotropic(SIGMA2), dt=0.5)
    with jax.enable_x64(True):
        result = compare.weak_error(
            jax.random.key(3), ou, stepper, jnp.array([1.0]), learning_rates=ETAS, noise_scale=NOISE,
            observables={"mean": compare.coordinate(0), "loss": "loss"}, times=[0.4, 2.0],
            sgd=stepper, replicas=2000,
        )
    z = np.stack([result.gap[name]["z"] for name in result.observables])
    assert np.all(np.abs(z) < 3), z
    assert not any(result.gap[name]["resolved"].any() for name in result.observables)
    assert all(math.isnan(fit.slope) for fits in result.order.values() for fit in fits)


def test_error_bars_match_the_spread_of_repeated_runs(ou):
    """The reported standard error of a gap equals the spread of the gap over independent
    repetitions (different keys). 40 repetitions of a self-comparison: the ratio of the
    empirical variance to the mean reported variance is χ²₃₉/39-distributed, inside
    [0.45, 1.75] with probability > 0.998."""
    stepper = sd.euler_maruyama(sd.noise.isotropic(SIGMA2), dt=1.0)
    observables = {"x": compare.coordinate(0)}  # the same objects each time: one compiled program
    gaps, variances = [], []
    with jax.enable_x64(True):
        for seed in range(40):
            result = compare.weak_error(
                jax.random.key(100 + seed), ou, stepper, jnp.array([1.0]), learning_rates=ETAS[:2],
                batch_size=2, observables=observables, times=[1.0], sgd=stepper, replicas=200,
            )
            gaps.append(result.gap["x"]["value"][:, 0])
            variances.append(result.gap["x"]["stderr"][:, 0] ** 2)
    ratio = np.var(gaps, axis=0, ddof=1) / np.mean(variances, axis=0)
    assert np.all((ratio > 0.45) & (ratio < 1.75)), ratio


def test_fit_order_recovers_slope_and_covers():
    """Synthetic gaps Δ_g = c η_g^p (1 + ε_g), ε ~ N(0, V) correlated across η (as under
    common random numbers): the GLS slope is unbiased and its 95 % interval covers the
    true p in 95 % ± 1.5 % of 2000 data sets (binomial stderr 0.5 %)."""
    rng = np.random.default_rng(0)
    eta = np.array([0.025, 0.05, 0.1, 0.2, 0.4])
    p, c = 1.0, 0.3
    rel = np.array([0.08, 0.06, 0.04, 0.03, 0.02])
    corr = 0.6 + 0.4 * np.eye(eta.size)
    truth = c * eta**p
    cov = np.outer(rel * truth, rel * truth) * corr
    root = np.linalg.cholesky(cov)
    covered, slopes = 0, []
    for _ in range(2000):
        gaps = truth + root @ rng.standard_normal(eta.size)
        fit = compare.fit_order(eta, gaps, cov)
        slopes.append(fit.slope)
        covered += fit.ci[0] <= p <= fit.ci[1]
    assert abs(covered / 2000 - 0.95) < 0.015, covered / 2000
    assert abs(np.mean(slopes) - p) < 0.01
    one = compare.fit_order(eta, truth, cov)
    assert abs(one.slope - p) < 1e-12 and one.chi2 < 1e-20 and one.dof == 3
    none = compare.fit_order(eta, truth, cov, use=np.arange(5) == 0)
    assert math.isnan(none.slope) and "no fit" in none.note


def test_fit_order_equals_textbook_gls():
    """The whitened least squares equals β = (XᵀV⁻¹X)⁻¹XᵀV⁻¹y, Cov β = (XᵀV⁻¹X)⁻¹, χ² = rᵀV⁻¹r
    on a well-conditioned case (κ(V) ≈ 10, κ(X) ≈ 10): two backward-stable routes agree to
    a few κ(V)κ(X)·eps relative; 1e-12 is that with room (κ·eps ≈ 2e-14). A singular V falls
    back to the diagonal (variance) weights."""
    rng = np.random.default_rng(1)
    eta = np.array([0.025, 0.05, 0.1, 0.2, 0.4])
    truth = 0.3 * eta
    rel = np.array([0.08, 0.06, 0.04, 0.03, 0.02])
    cov = np.outer(rel * truth, rel * truth) * (0.6 + 0.4 * np.eye(5))
    gaps = truth * (1 + rel * rng.standard_normal(5))
    fit = compare.fit_order(eta, gaps, cov)
    x = np.stack([np.ones(5), np.log(eta)], axis=1)
    y = np.log(np.abs(gaps))
    vinv = np.linalg.inv(cov / np.outer(gaps, gaps))
    beta_cov = np.linalg.inv(x.T @ vinv @ x)
    beta = beta_cov @ x.T @ vinv @ y
    resid = y - x @ beta
    assert abs(fit.slope - beta[1]) <= 1e-12 * abs(beta[1])
    assert abs(fit.intercept - beta[0]) <= 1e-12 * abs(beta[0])
    assert abs(fit.chi2 - resid @ vinv @ resid) <= 1e-12 * abs(resid @ vinv @ resid)
    assert abs(fit.stderr_mc - np.sqrt(beta_cov[1, 1])) <= 1e-12 * np.sqrt(beta_cov[1, 1])
    singular = np.outer(rel * truth, rel * truth)  # rank 1
    diag_fit = compare.fit_order(eta, gaps, singular)
    w = np.diag(np.outer(gaps, gaps).diagonal() / np.diag(singular))
    beta_diag = np.linalg.solve(x.T @ w @ x, x.T @ w @ y)
    assert abs(diag_fit.slope - beta_diag[1]) <= 1e-12 * abs(beta_diag[1])


def test_divergence_is_reported_not_averaged(ou):
    """At fixed S = 2, η = 3 (ηh > 2) diverges for SGD and for Gaussian SGD (EM, dt = 1):
    |1 − ηh| = 2 per step from θ0 = 1e300 overflows within the 40 steps to t_sme = 120.
    Reported as a diverged fraction; the mean is over the surviving replicas (here none:
    NaN, never an average of inf); the point is left out of the fit. η = 0.5, 1 are stable."""
    etas = np.array([0.5, 1.0, 3.0])
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("error", sd.DivergenceWarning)  # the harness reports, it does not warn
        result = compare.weak_error(
            jax.random.key(4), ou, sd.euler_maruyama(sd.noise.isotropic(SIGMA2), dt=1.0), jnp.array([1e300]),
            learning_rates=etas, batch_size=2,
            observables={"x": compare.basin_indicator(lambda p: (p[0] > 0).astype(jnp.int32), 1)},
            times=[120.0], sgd=sd.sgd("iid"), replicas=20,
        )
    for label in ("sgd", "sde"):
        assert result.diverged[label][2, 0] == 1.0 and result.diverged[label][:2].sum() == 0
        stats = getattr(result, label)["x"]
        assert stats["replicas_used"][2, 0] == 0 and math.isnan(stats["mean"][2, 0])
        assert stats["mean"][0] == 1.0  # η = 0.5: θ = 1e300·0.5²⁴⁰ ≈ 6e227 > 0, all 20 replicas used
        assert 0 < stats["mean"][1] < 1  # η = 1: θ' = −noise, either sign
        assert (stats["replicas_used"][:2] == 20).all()
    assert not result.gap["x"]["resolved"][2, 0] and not result.order["x"][0].used[2]
    assert "SGD diverged 100.0%" in result.table()


def test_non_finite_observable_is_left_out(ou):
    """An observable that overflows (params still finite) removes the replica from every
    observable at that time and counts as diverged; ``expectations`` on its own."""
    with jax.enable_x64(True):
        result = compare.expectations(
            jax.random.key(5), ou, sd.euler_maruyama(sd.noise.isotropic(SIGMA2)), jnp.zeros(1),
            learning_rates=[0.1], batch_size=2, times=[1.0], replicas=50,
            observables={"f": lambda p: jnp.where(p[0] > 0, jnp.inf, 1.0), "x": compare.coordinate(0)},
        )
    left_out = result.diverged[0, 0]
    assert 0.2 < left_out < 0.8  # θ > 0 for about half of the replicas
    assert result.mean["f"][0, 0] == 1.0 and result.replicas_used["f"][0, 0] == round(50 * (1 - left_out))
    assert np.isnan(result.samples["x"][0, 0][np.isnan(result.samples["f"][0, 0])]).all()
    assert result["x"]["mean"][0, 0] < 0 and result.clock == "sme" and result.calls.tolist() == [[[10, 10]]]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(batch_size=2, noise_scale=0.05), "batch_size, noise_scale"),
        (dict(noise_scale=0.03), "noise_scale"),  # η/0.03 is not an integer
        (dict(batch_size=[1, 2]), "batch_size"),  # one per η needed
        (dict(batch_size=100), "batch_size"),  # S > N
        (dict(batch_size=2, window=(1.0, 2.0)), "times, window"),
        (dict(batch_size=2, times=None), "times, window"),
        (dict(batch_size=2, times=[-1.0]), "times"),
        (dict(batch_size=2, times=None, window=(2.0, 1.0)), "window"),
        (dict(batch_size=2, observables={"x": "not loss"}), "observables"),
        (dict(batch_size=2, observables={}), "observables"),
        (dict(batch_size=2, replicas=1), "replicas"),
        (dict(batch_size=2, learning_rates=[0.1, 0.1]), "learning_rates"),
        (dict(batch_size=2, learning_rates=[0.1, -0.1]), "learning_rates"),
        (dict(batch_size=2, every=0, times=None, window=(1.0, 2.0)), "every"),
        (dict(batch_size=2, confidence=1.5), "confidence"),
    ],
)
def test_bad_input(ou, kwargs, argument, monkeypatch):
    from sgdsde import runner

    monkeypatch.setattr(runner, "_compile", lambda *a, **k: pytest.fail("compiled before validating"))
    args = dict(learning_rates=ETAS, times=[1.0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{argument}: "):
        compare.weak_error(jax.random.key(0), ou, sd.euler_maruyama(sd.noise.isotropic(1.0)), jnp.zeros(1), **args)


def test_observable_helpers():
    point = jnp.array([1.0, -2.0])
    theta = jnp.array([2.0, 0.0])
    assert float(compare.squared_distance(point)(theta)) == pytest.approx(5.0)
    left = compare.basin_indicator(lambda p: (p[0] > 0).astype(jnp.int32), 0)
    assert float(left(theta)) == 0.0 and float(left(-theta)) == 1.0
    assert float(compare.coordinate(1, 2)(jnp.array([3.0, -2.0]))) == pytest.approx(4.0)
