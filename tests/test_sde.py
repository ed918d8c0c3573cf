"""SDE steppers (sgdsde.sde) against the exact oracles of docs/theory.md §2, §3 and §5.

Every statistical check uses a tolerance of 5 Monte-Carlo standard errors (stated at
each assert); the deterministic discretisation bias of each scheme is computed exactly
(linear recursions / Lyapunov equations) and either shown to be below the MC error or
used as the oracle, as each test says. Float64 throughout, fixed seeds.
"""

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
from scipy.optimize import curve_fit

import sgdsde as sd
from sgdsde import noise, sde
from sgdsde.runner import replica_keys

from _rounding import iterated_map_atol

A2 = np.array([[1.0, 0.3], [0.3, 0.4]])  # anisotropic Hessian, eigenvalues 1.124 and 0.276
C2 = np.array([[1.0, 0.5], [0.5, 2.0]])  # full, non-diagonal gradient-noise covariance


@pytest.fixture(scope="module")
def quad2():
    with jax.enable_x64(True):
        yield sd.problems.quadratic(A2, C2, 16, key=jax.random.key(0))


@pytest.fixture(scope="module")
def quad1():
    """1-D OU: h = 1, σ² = 1, N = 8."""
    with jax.enable_x64(True):
        yield sd.problems.quadratic([[1.0]], [[1.0]], 8, key=jax.random.key(1))


def _within(measured, expected, stderr, k=5.0):
    measured, expected, stderr = map(np.asarray, (measured, expected, stderr))
    bad = np.abs(measured - expected) > k * stderr
    assert not bad.any(), (
        f"|measured − expected| > {k} stderr:\nmeasured {measured}\nexpected {expected}\n"
        f"stderr {stderr}\nz {(measured - expected) / stderr}"
    )


# --------------------------------------------------------------------- validation
@pytest.mark.parametrize("dt", [0, -0.5, float("nan"), float("inf"), "0.1", True, [0.1]])
@pytest.mark.parametrize("make", [sde.euler_maruyama, sde.underdamped])
def test_bad_dt(make, dt):
    with pytest.raises(ValueError, match="^dt: "):
        make(noise.isotropic(1.0), dt=dt)
    if make is sde.euler_maruyama:
        with pytest.raises(ValueError, match="^dt: "):
            sde.diffrax_stepper(diffrax.Euler(), noise.isotropic(1.0), dt=dt)


@pytest.mark.parametrize("bad", ["empirical", None, np.eye(2), sd.sgd()])
def test_bad_noise(bad):
    for make in (sde.euler_maruyama, sde.underdamped):
        with pytest.raises(ValueError, match="^noise: "):
            make(bad, dt=0.1)
    with pytest.raises(ValueError, match="^noise: "):
        sde.diffrax_stepper(diffrax.Euler(), bad, 0.1)


def test_bad_solver():
    with pytest.raises(ValueError, match="^solver: "):
        sde.diffrax_stepper("Euler", noise.isotropic(1.0), 0.1)
    with pytest.raises(ValueError, match="^solver: .*not an SDE solver"):
        sde.diffrax_stepper(diffrax.Tsit5(), noise.isotropic(1.0), 0.1)
    # Stratonovich solvers converge to the wrong (Stratonovich) SDE for state-dependent noise
    for solver in (diffrax.Heun(), diffrax.ShARK()):
        with pytest.raises(ValueError, match="^solver: .*Stratonovich"):
            sde.diffrax_stepper(solver, noise.empirical(), 0.1)
    sde.diffrax_stepper(diffrax.ItoMilstein(), noise.empirical(), 0.1)  # Itô: fine


def test_noise_shape_mismatch_raises_in_run(quad2):
    """A 3×3 covariance for 2 parameters: ValueError naming ``cov`` from sgdsde.run's
    initialisation (shapes only, before the step is compiled)."""
    with jax.enable_x64(True):
        stepper = sde.euler_maruyama(noise.full(np.eye(3)), dt=0.1)
        with pytest.raises(ValueError, match="^cov: is 3×3 but params have d = 2"):
            sd.run(jax.random.key(0), stepper, quad2, sd.Hyper(0.1, 4), jnp.zeros(2), 5)


def test_schedule_clock():
    """Hyperparameters of SDE step k come from the SGD step containing its midpoint."""
    k = jnp.arange(40)
    np.testing.assert_array_equal(sde.sgd_step_of(k, 1.0), k)
    np.testing.assert_array_equal(sde.sgd_step_of(k, 0.1), k // 10)
    np.testing.assert_array_equal(sde.sgd_step_of(k, 0.3), np.floor((np.arange(40) + 0.5) * 0.3))
    np.testing.assert_array_equal(sde.sgd_step_of(k, 2.0), 2 * np.arange(40) + 1)


# ------------------------------------------------------ dt = 1 is Gaussian SGD (exact)
@pytest.mark.parametrize("kind", ["euler_maruyama", "underdamped"])
def test_dt1_is_gaussian_sgd(quad2, kind):
    """dt = 1: euler_maruyama is SGD with the minibatch gradient ĝ replaced by g + ξ̃,
    ξ̃ ~ N(0, fC/S) (Gaussian SGD), underdamped is heavy-ball momentum with that noise.
    Recomputed by hand in NumPy from the same draws ξ = noise.sample(step key) (the runner's
    keys: fold_in(fold_in(key, replica), step)); equal to rounding. EM uses finite_n (the
    factor f = (N−S)/(N−1)) and a momentum grid (β enters EM as η/(1−β)); underdamped uses
    f = 1 and β = 0.6."""
    eta, size, steps, replicas = 0.1, 8, 12, 3
    with jax.enable_x64(True):
        if kind == "euler_maruyama":
            model, betas = noise.full(C2, finite_n=True), np.array([0.0, 0.5])
            stepper = sde.euler_maruyama(model, dt=1.0)
        else:
            model, betas = noise.full(C2), np.array([0.6])
            stepper = sde.underdamped(model, dt=1.0)
        key, theta0 = jax.random.key(11), np.array([1.5, -0.7])
        result = sd.run(
            key, stepper, quad2, sd.Hyper(eta, size, momentum=betas), jnp.asarray(theta0), steps,
            replicas=replicas, observers=[sd.observers.snapshots(1)],
        )
        got = result["snapshots"]["values"]  # (G, T+1, R, 2)

        n = quad2.num_examples
        f = (n - size) / (n - 1) if model.finite_n else 1.0
        keys = replica_keys(key, replicas)
        draw = jax.jit(jax.vmap(lambda k, p: model.sample(k, p, quad2)))
        for g, beta in enumerate(betas):
            theta = np.tile(theta0, (replicas, 1))
            velocity = np.zeros_like(theta)
            step_abs = 0.0  # running max of Σ|terms| of one update, for the rounding bound
            for k in range(steps):
                step_keys = jax.vmap(lambda kr: jax.random.fold_in(kr, k))(keys)
                xi = np.asarray(draw(step_keys, jnp.asarray(theta)))
                size_theta = np.abs(theta).max() + np.abs(velocity).max()
                step_abs = max(step_abs, size_theta + eta / (1 - beta) * (
                    np.abs(A2).sum(axis=1).max() * np.abs(theta).max() + math.sqrt(f / size) * np.abs(xi).max()))
                grad = theta @ A2.T  # g = A(θ − θ*), θ* = 0
                gaussian_grad = grad - math.sqrt(f / size) * xi  # ĝ → g + ξ̃ (ξ is symmetric)
                if kind == "euler_maruyama":  # Gaussian SGD at the effective rate η/(1 − β)
                    theta = theta - eta / (1 - beta) * gaussian_grad
                else:  # heavy ball: v' = βv − η ĝ, θ' = θ + v'
                    velocity = beta * velocity - eta * gaussian_grad
                    theta = theta + velocity
                # jitted scan vs NumPy replay: (d + 8)·eps·Σ|terms| per step, carried over k + 1
                # steps without contraction and, through the velocity, up to 1/(1 − β) times
                atol = iterated_map_atol(step_abs, 2 + 8, k + 1) / (1 - beta)
                np.testing.assert_allclose(got[g, k + 1], theta, rtol=0, atol=atol)


# ------------------------------------------------------------ exact OU transition
def test_em_ou_transition(quad2):
    """EM with small dt against the exact OU transition (docs/theory.md §5), step time:
    mean e^{−ηAt}θ0, covariance Σ − e^{−ηAt}Σe^{−ηAt}, AΣ + ΣA = (η/S)C, anisotropic A and
    full C (noise.full). Oracle: the closed form. dt = 0.025 makes the EM bias (computed
    below exactly from the EM recursion θ' = (I − ηA dt)θ + η√(dt/S) ξ) below 0.4 MC
    standard errors, so a 5-stderr tolerance tests the transition itself."""
    eta, size, dt, replicas = 0.1, 2, 0.025, 4000
    times = np.array([10.0, 30.0, 60.0])  # SGD steps
    every = int(round(10 / dt))  # snapshot every 10 SGD steps = 400 SDE steps
    theta0 = np.array([2.0, -1.0])
    with jax.enable_x64(True):
        result = sd.run(
            jax.random.key(5), sde.euler_maruyama(noise.full(C2), dt=dt), quad2, sd.Hyper(eta, size),
            jnp.asarray(theta0), int(round(times[-1] / dt)), replicas=replicas,
            observers=[sd.observers.snapshots(every)],
        )
    snap = result["snapshots"]
    sgd_times = np.asarray(snap["times"])  # the default clock: SGD steps, t = k·dt
    sigma = sla.solve_continuous_lyapunov(A2, eta / size * C2)
    p, q = np.eye(2) - eta * dt * A2, eta**2 * dt / size * C2
    em_mean, em_cov, done = theta0.copy(), np.zeros((2, 2)), 0
    for t in times:
        (index,) = np.flatnonzero(np.isclose(sgd_times, t))
        x = np.asarray(snap["values"][index])  # (R, 2)
        decay = sla.expm(-eta * A2 * t)
        mean, cov = decay @ theta0, sigma - decay @ sigma @ decay.T
        # Gaussian sampling errors: se(mean_i) = √(Σ_ii/R), se(cov_ij) = √((Σ_ii Σ_jj + Σ_ij²)/(R−1))
        se_mean = np.sqrt(np.diag(cov) / replicas)
        se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / (replicas - 1))
        while done < round(t / dt):  # the exact EM moments: its bias is below 0.4 stderr
            em_mean, em_cov, done = p @ em_mean, p @ em_cov @ p.T + q, done + 1
        assert np.all(np.abs(em_mean - mean) < 0.4 * se_mean) and np.all(np.abs(em_cov - cov) < 0.4 * se_cov)
        _within(x.mean(0), mean, se_mean)
        _within(np.cov(x.T), cov, se_cov)


# ------------------------------------------- stationary covariance → Lyapunov, O(dt)
def test_em_stationary_cov_converges_linearly_in_dt():
    """EM's stationary covariance solves Σ = PΣPᵀ + η² dt C/S, P = I − η dt A, i.e.
    AΣ + ΣA − η dt AΣA = (η/S)C (exact for the EM recursion), so its distance to the
    continuous Lyapunov Σ (AΣ + ΣA = (η/S)C) shrinks as O(η h dt). Simulated at
    dt = 1, 0.5, 0.25 (moments observer, stderr from independent replicas): each Σ̂_dt
    equals the exact EM Σ_dt within 5 stderr; the relative error of the stiff entry
    e(dt) = Σ̂_dt[0,0]/Σ[0,0] − 1 is resolved (> 5 stderr), and its fitted log-log slope
    equals, within 3 stderr, the slope of the exact e(dt) = c1 dt + O(dt²), which is 1.14
    over this range (η λ_max dt = 0.42 at dt = 1); measured 1.16 ± 0.05 (seed 20)."""
    a = np.array([[2.0, 0.3], [0.3, 1.5]])
    eta, size, replicas = 0.2, 2, 1000
    dts = np.array([1.0, 0.5, 0.25])
    with jax.enable_x64(True):
        problem = sd.problems.quadratic(a, C2, 16, key=jax.random.key(2))
        sigma = sla.solve_continuous_lyapunov(a, eta / size * C2)
        errors, stderrs, exact_errors = [], [], []
        for i, dt in enumerate(dts):
            burn, sample = int(round(25 / dt)), int(round(200 / dt))  # in SDE steps
            result = sd.run(
                jax.random.key(20 + i), sde.euler_maruyama(noise.full(C2), dt=dt), problem,
                sd.Hyper(eta, size), jnp.zeros(2), burn + sample, replicas=replicas,
                observers=[sd.observers.moments(burn_in=burn)],
            )
            mom = result["moments"]
            cov, se = np.asarray(mom["cov"]), np.asarray(mom["cov_stderr"])
            step = np.eye(2) - eta * dt * a  # EM: θ' = (I − η dt A)θ + η√(dt/S) ξ
            exact = sla.solve_discrete_lyapunov(step, eta**2 * dt / size * C2)
            # SciPy's residual: a few d-term products of ‖A‖‖Σ‖ ≈ 0.3-sized terms, ~1e-16; 1e-14 with margin
            np.testing.assert_allclose(a @ exact + exact @ a - eta * dt * a @ exact @ a, eta / size * C2, atol=1e-14)
            _within(cov, exact, se)
            errors.append(cov[0, 0] / sigma[0, 0] - 1)
            stderrs.append(se[0, 0] / sigma[0, 0])
            exact_errors.append(exact[0, 0] / sigma[0, 0] - 1)
    errors, stderrs, exact_errors = np.array(errors), np.array(stderrs), np.array(exact_errors)
    assert np.all(errors > 5 * stderrs), (errors, stderrs)
    # weighted least squares for log e = log c + p log dt, se(log e) = se(e)/e
    x, w = np.log(dts), (errors / stderrs) ** 2
    design = np.stack([np.ones_like(x), x], 1)
    normal = design.T @ (w[:, None] * design)
    slope = np.linalg.solve(normal, design.T @ (w * np.log(errors)))[1]
    exact_slope = np.linalg.solve(normal, design.T @ (w * np.log(exact_errors)))[1]
    slope_se = math.sqrt(np.linalg.inv(normal)[1, 1])
    assert 1.0 < exact_slope < 1.2 and slope_se < 0.1, (exact_slope, slope_se)
    assert abs(slope - exact_slope) < 3 * slope_se, (slope, slope_se, exact_slope, errors)


# ------------------------------------------------- weak order 1 on a nonlinear SDE
class _GivenIncrements(noise.NoiseModel):
    """Test-only noise model: returns the 'key' it is given as ξ. The steppers pass their
    key straight to noise.sample, so feeding pre-summed Brownian increments through the
    key slot drives the real euler_maruyama step with common random numbers."""

    finite_n = False

    def noise_shape(self, params, problem=None):
        return np.shape(params)

    def sample(self, key, params, problem=None):
        return key.astype(params.dtype)


def test_em_weak_order_one_double_well():
    """Weak order of Euler–Maruyama on the 1-D double well L = (θ² − 1)², noise σ² = 4,
    η = 0.1, S = 1, θ0 = 0.3, horizon T = 10 SGD steps, φ = θ_T², dt = 0.2 … 0.025.

    Common random numbers: each path's Brownian motion is fixed on a fine grid
    dt_ref = 0.00625 (1600 increments); a step of size dt = m·dt_ref uses the sum of its m
    fine increments, and all five step sizes run side by side in one scan. The weak error
    e(dt) = E φ_dt − E φ_ref is then the mean of per-path differences whose spread is the
    *strong* error (O(dt) for additive noise), not the O(1) spread of φ itself, so 32000
    paths resolve every e(dt) to ~6 %. Fit: e(dt) = c (dt^p − dt_ref^p) (the reference's
    own error is modelled, not ignored) by generalised least squares with the estimated
    covariance of the four errors (they share paths); p must be 1 within 3 stderr + 0.05,
    the allowance for the O(dt²) term (over four seeds p = 1.00–1.06, stderr 0.03)."""
    eta, sigma2, theta0, horizon, paths = 0.1, 4.0, 0.3, 10.0, 32000
    levels = np.array([0.2, 0.1, 0.05, 0.025])
    dt_ref = levels[-1] / 4
    per_level = [int(round(dt / dt_ref)) for dt in levels] + [1]  # fine increments per step
    per_coarse = per_level[0]
    with jax.enable_x64(True):
        problem = sd.problems.double_well_1d(1.0, 1.0, sigma2=sigma2, num_examples=2, key=jax.random.key(3))
        hyper, base = sd.Hyper(eta, 1), jax.random.key(4)
        steppers = [sde.euler_maruyama(_GivenIncrements(), dt=m * dt_ref) for m in per_level]

        def body(states, k):  # one coarsest step: its fine increments z ~ N(0, 1), shared by all levels
            z = jax.random.normal(jax.random.fold_in(base, k), (per_coarse, paths, 1))
            advanced = []
            for stepper, m, state in zip(steppers, per_level, states):
                xi = math.sqrt(sigma2 / m) * z.reshape(per_coarse // m, m, paths, 1).sum(1)  # σ ΔW/√dt
                step = jax.vmap(stepper.step, in_axes=(0, 0, None, None))
                state, _ = jax.lax.scan(lambda s, x: (step(x, s, problem, hyper), None), state, xi)
                advanced.append(state)
            return tuple(advanced), None

        start = tuple(jax.vmap(s.init)(jnp.full((paths, 1), theta0)) for s in steppers)
        coarse = jnp.arange(int(round(horizon / levels[0])), dtype=jnp.uint32)
        final, _ = jax.jit(lambda states: jax.lax.scan(body, states, coarse))(start)
        assert not any(bool(s.diverged.any()) for s in final)
        phi = np.stack([np.asarray(s.params[:, 0]) ** 2 for s in final])
    diffs = phi[:-1] - phi[-1]  # (4, paths): φ_dt − φ_ref per path
    errors, cov_errors = diffs.mean(1), np.cov(diffs) / paths
    assert np.all(np.abs(errors) > 5 * np.sqrt(np.diag(cov_errors))), errors  # every error resolved
    model = lambda dt, c, p: c * (dt**p - dt_ref**p)
    (_, slope), cov_fit = curve_fit(
        model, levels, errors, p0=[errors[0] / levels[0], 1.0], sigma=cov_errors, absolute_sigma=True
    )
    slope_se = math.sqrt(cov_fit[1, 1])
    assert slope_se < 0.05, slope_se
    assert abs(slope - 1) < 3 * slope_se + 0.05, (slope, slope_se, errors)


# ---------------------------------------------------------------------- underdamped
def _underdamped_stationary_var(eta, h, sigma2, size, beta, dt):
    """Exact stationary Var θ of the semi-implicit Euler recursion on a 1-D quadratic:
    state (θ, u = v dt): u' = (1 − μdt)u − ηh dt² θ + c dt^{3/2} ξ, θ' = θ + u', c = η σ/√S."""
    mu = 1 - beta
    p = np.array([[1 - eta * h * dt**2, 1 - mu * dt], [-eta * h * dt**2, 1 - mu * dt]])
    b = eta * math.sqrt(sigma2 / size) * dt**1.5 * np.ones(2)
    return sla.solve_discrete_lyapunov(p, np.outer(b, b))[0, 0]


def test_underdamped_small_dt_boltzmann_and_momentum_factor(quad1):
    """Underdamped Langevin, small dt = 0.2, β ∈ {0, 0.5, 0.9} in one grid run on the 1-D
    OU (h = 1, σ² = 1, η = 0.1, S = 2). docs/theory.md §3: the θ-marginal is Boltzmann with
    noise n/(1 − β), Var = ησ²/(2Sh(1 − β)). Oracles: (i) the exact stationary variance of
    the integrator (discrete Lyapunov), within 5 MC stderr; (ii) that exact value is within
    0.2 % of Boltzmann (semi-implicit Euler's θ-variance bias is O(dt²): 0.11 % at dt = 0.2,
    0.026 % at dt = 0.1); (iii) the measured ratio Var(β)/Var(0) equals 1/(1 − β) within
    5 stderr + 0.2 % (stderr of a ratio: relative errors in quadrature)."""
    eta, size, dt, replicas = 0.1, 2, 0.2, 1000
    betas = np.array([0.0, 0.5, 0.9])
    burn, sample = int(round(150 / dt)), int(round(400 / dt))
    with jax.enable_x64(True):
        result = sd.run(
            jax.random.key(8), sde.underdamped(noise.isotropic(1.0), dt=dt), quad1,
            sd.Hyper(eta, size, momentum=betas), jnp.zeros(1), burn + sample, replicas=replicas,
            observers=[sd.observers.moments(burn_in=burn)],
        )
    var = np.asarray(result["moments"]["cov"])[:, 0, 0]
    se = np.asarray(result["moments"]["cov_stderr"])[:, 0, 0]
    boltzmann = eta * 1.0 / (2 * size * 1.0 * (1 - betas))
    scheme = np.array([_underdamped_stationary_var(eta, 1.0, 1.0, size, b, dt) for b in betas])
    np.testing.assert_allclose(scheme, boltzmann, rtol=0.002)
    _within(var, scheme, se)
    ratio = var / var[0]
    ratio_se = ratio * np.sqrt((se / var) ** 2 + (se[0] / var[0]) ** 2)
    ratio_se[0] = 1e-12
    assert np.all(np.abs(ratio - 1 / (1 - betas)) < 5 * ratio_se + 0.002 / (1 - betas)), (ratio, ratio_se)


def test_underdamped_dt1_heavy_ball_variance(quad1):
    """dt = 1: the exact discrete heavy-ball stationary variance (docs/theory.md §5)
    Var = ησ²(1 + β)/(Sh(1 − β)(2(1 + β) − ηh)), β ∈ {0, 0.5, 0.9}, within 5 stderr."""
    eta, size, replicas = 0.1, 2, 1000
    betas = np.array([0.0, 0.5, 0.9])
    with jax.enable_x64(True):
        result = sd.run(
            jax.random.key(9), sde.underdamped(noise.isotropic(1.0), dt=1.0), quad1,
            sd.Hyper(eta, size, momentum=betas), jnp.zeros(1), 2200, replicas=replicas,
            observers=[sd.observers.moments(burn_in=200)],
        )
    var = np.asarray(result["moments"]["cov"])[:, 0, 0]
    se = np.asarray(result["moments"]["cov_stderr"])[:, 0, 0]
    exact = eta * (1 + betas) / (size * (1 - betas) * (2 * (1 + betas) - eta))
    np.testing.assert_allclose(
        [_underdamped_stationary_var(eta, 1.0, 1.0, size, b, 1.0) for b in betas], exact, rtol=1e-12
    )
    _within(var, exact, se)


# -------------------------------------------------------------------------- diffrax
def test_diffrax_euler_equals_euler_maruyama():
    """diffrax_stepper(diffrax.Euler()) reproduces euler_maruyama to rounding (same keys,
    same z), with pytree params, state-dependent noise B(θ) (d×k, k = 2 < d = 3) and a
    momentum grid (β enters both as η/(1 − β))."""

    def loss(params, x):
        w, b = params["w"], params["b"]
        return 0.5 * (w @ w + 2 * b**2) + 0.25 * (w[0] * b) ** 2 + x[:2] @ w + x[2] * b

    def factor(params):  # ravel order: b, w0, w1
        b, w = params["b"], params["w"]
        return jnp.array([[1.0 + 0.5 * b**2, 0.0], [0.3 * w[0], 1.0], [0.2, 0.5 + 0.1 * w[1] ** 2]])

    with jax.enable_x64(True):
        problem = sd.Problem(loss, jax.random.normal(jax.random.key(0), (12, 3)))
        params = {"w": jnp.array([0.8, -0.4]), "b": jnp.array(0.3)}
        model = noise.from_function(factor)
        args = (problem, sd.Hyper(0.1, 4, momentum=[0.0, 0.5]), params, 40)
        kwargs = dict(replicas=4, observers=[sd.observers.snapshots(10)])
        em = sd.run(jax.random.key(6), sde.euler_maruyama(model, dt=0.5), *args, **kwargs)
        dfx = sd.run(jax.random.key(6), sde.diffrax_stepper(diffrax.Euler(), model, dt=0.5), *args, **kwargs)
    # two programs for one recursion (same keys, same z): per step (N + d + 20)·eps·Σ|terms|,
    # Σ|terms| = |θ| + η_eff·dt·(gradient terms: 2|θ| + |θ|³ + |x|) + η_eff·√dt·(|B| entries
    # ≤ 1.5 + 0.3|θ|²)·(k = 2)·(|z| ≤ 5), η_eff = η/(1 − β) ≤ 0.2, carried over 40 steps
    # without contraction (tests/_rounding.py)
    size = max(np.abs(np.asarray(leaf)).max() for leaf in jax.tree_util.tree_leaves(em["snapshots"]["values"]))
    x_max = float(np.abs(np.asarray(problem.data)).max())
    eta_eff, dt = 0.1 / (1 - 0.5), 0.5
    step_abs = size + eta_eff * dt * (2 * size + size**3 + x_max) + eta_eff * dt**0.5 * (1.5 + 0.3 * size**2) * 2 * 5
    atol = iterated_map_atol(step_abs, 12 + 3 + 20, 40)
    for leaf_em, leaf_dfx in zip(jax.tree_util.tree_leaves(em["snapshots"]), jax.tree_util.tree_leaves(dfx["snapshots"])):
        np.testing.assert_allclose(leaf_dfx, leaf_em, rtol=0, atol=atol)
    assert np.ptp(np.asarray(em["snapshots"]["values"]["b"])[:, -1]) > 0.01  # the runs did move, differently per replica


def _heun_stationary_var(a, b2, dt):
    """Heun on dθ = −aθ dt + b dW: θ' = (1 − x + x²/2)θ + (1 − x/2) b ΔW, x = a dt."""
    x = a * dt
    return b2 * dt * (1 - x / 2) ** 2 / (1 - (1 - x + x**2 / 2) ** 2)


def test_diffrax_heun_stationary_variance(quad1):
    """diffrax.Heun (additive noise: Itô = Stratonovich) through sgdsde.run on the 1-D OU
    (h = 1, σ² = 1, η = 0.1, S = 2, dt = 1): the continuous Var = ησ²/(2Sh) = 0.025 within
    5 stderr (Heun's bias is −x²/4 = −0.25 %, x = ηh dt, about 1 stderr; EM at this dt
    would be +5.3 %, > 20 stderr), and the exact Heun recursion's variance within 5 stderr."""
    eta, size, replicas = 0.1, 2, 2000
    with jax.enable_x64(True):
        result = sd.run(
            jax.random.key(10), sde.diffrax_stepper(diffrax.Heun(), noise.isotropic(1.0), dt=1.0), quad1,
            sd.Hyper(eta, size), jnp.zeros(1), 2100, replicas=replicas,
            observers=[sd.observers.moments(burn_in=100)],
        )
    var = float(result["moments"]["cov"][0, 0])
    se = float(result["moments"]["cov_stderr"][0, 0])
    continuous = eta / (2 * size)
    heun = _heun_stationary_var(eta, eta**2 / size, 1.0)
    em = eta / (size * (2 - eta))
    assert abs(em - continuous) > 20 * se  # the test can tell Heun from Euler–Maruyama
    _within(var, continuous, se)
    _within(var, heun, se)


def test_inline_sde_steppers_reuse_their_compiled_program():
    """sd.euler_maruyama(sd.noise.isotropic(1.0), 0.5) written inline (a notebook cell run
    again) returns the same Stepper for equal arguments, so sd.run reuses its compiled
    program instead of compiling every call; different values give different steppers."""
    import sgdsde.simulation as simulation

    em = lambda s2=1.0, dt=0.5: sde.euler_maruyama(noise.isotropic(s2), dt)
    assert em() is em() and em() is not em(2.0) and em() is not em(dt=0.25)
    full = lambda: sde.underdamped(noise.full(np.array([[1.0, 0.2], [0.2, 2.0]])), 0.5)
    assert full() is full()
    problem = sd.problems.quadratic(np.eye(2), np.eye(2), 16, key=jax.random.key(0))
    run = lambda: sd.run(jax.random.key(1), em(), problem, sd.Hyper(0.1, 4), jnp.zeros(2), 5, replicas=2)
    run()
    before = simulation._core.cache_info()
    run()
    after = simulation._core.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
