"""The finite-volume operator: Markov structure, exact discrete equilibria, cross-diffusion
and momentum forms, against closed forms (docs/theory.md §3, §5)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
import sgdsde.fokker_planck as fp


def dense(gen):
    """G as a dense matrix (columns = images of unit masses)."""
    n = gen.grid.size
    with jax.enable_x64(True):
        cols = jax.vmap(lambda e: gen.apply(e.reshape(gen.grid.shape)).reshape(-1))(jnp.eye(n))
    return np.asarray(cols).T


def assert_markov(gen):
    g = dense(gen)
    scale = np.abs(g).max()
    off = g - np.diag(np.diag(g))
    assert off.min() >= 0.0  # non-negative rates
    # zero column sums, to the rounding of summing rates of size `scale`
    assert np.abs(g.sum(axis=0)).max() <= 1e-14 * scale * np.sqrt(g.shape[0])


def double_well(x):
    return (x[0] ** 2 - 1) ** 2 + 0.3 * x[0]


def test_bernoulli_function():
    with jax.enable_x64(True):
        x = jnp.asarray([-800.0, -30.0, -1.0, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 1.0, 30.0, 800.0])
        b = np.asarray(fp.bernoulli(x))
        xn = np.asarray(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            exact = np.where(xn == 0, 1.0, xn / np.expm1(xn))  # NumPy's expm1 is accurate near 0
        np.testing.assert_allclose(b, exact, rtol=2e-16 * 4)
        # B(−x) = B(x) + x, and the gradient is finite everywhere (−1/2 at 0)
        np.testing.assert_allclose(np.asarray(fp.bernoulli(-x) - fp.bernoulli(x)), xn, rtol=1e-14, atol=1e-13)
        grads = np.asarray(jax.vmap(jax.grad(fp.bernoulli))(x))
        assert np.all(np.isfinite(grads)) and abs(grads[5] + 0.5) < 1e-15


def test_generators_are_markov():
    # 1-D potential, 2-D drift field with state-dependent diffusion, 2-D and 3-D full
    # matrices; zero-flux and periodic axes
    g1 = fp.grid(-2.0, 2.0, 12, periodic=True)
    assert_markov(fp.langevin_generator(g1, potential=lambda x: jnp.cos(np.pi * x[0] / 2), diffusion=0.3))
    g2 = fp.grid([-2.0, -1.0], [2.0, 1.0], [6, 7], periodic=[False, True])
    drift = lambda x: jnp.stack([-x[0] + x[1], -x[1] - 0.5 * x[0]])  # noqa: E731  (not a gradient)
    assert_markov(fp.langevin_generator(g2, drift=drift, diffusion=lambda x: 0.2 + 0.1 * jnp.sin(x) ** 2))
    assert_markov(fp.langevin_generator(g2, potential=lambda x: x @ x, diffusion=[[0.3, -0.1], [-0.1, 0.2]]))
    g3 = fp.grid([-1.0] * 3, [1.0] * 3, [4, 4, 5], periodic=[True, False, True])
    d3 = np.array([[0.4, 0.1, -0.05], [0.1, 0.3, 0.05], [-0.05, 0.05, 0.3]])
    assert_markov(fp.langevin_generator(g3, potential=lambda x: x @ x, diffusion=d3))


def test_currents_are_the_scheme_fluxes():
    g = fp.grid([-2.0, -1.0], [2.0, 1.0], [7, 6], periodic=[False, True])
    gen = fp.langevin_generator(g, potential=lambda x: x[0] ** 2 + jnp.cos(np.pi * x[1]),
                                diffusion=[[0.3, 0.08], [0.08, 0.2]])
    m = np.random.default_rng(0).random(g.shape)
    m /= m.sum()
    f0, f1 = fp.currents(gen, m)
    assert f0.shape == (6, 6) and f1.shape == (7, 6)  # zero-flux axis: interior faces only
    div = np.diff(np.pad(f0, ((1, 1), (0, 0))), axis=0) + (f1 - np.roll(f1, 1, axis=1))
    with jax.enable_x64(True):
        dm = np.asarray(gen.apply(jnp.asarray(m)))
    np.testing.assert_allclose(-div, dm, rtol=0, atol=1e-14 * np.abs(dm).max())


def test_stationary_is_discrete_boltzmann_1d():
    # the exact discrete equilibrium: m ∝ exp(−U/D) at the centres, to rounding
    g = fp.grid(-2.5, 2.5, 400)
    gen = fp.langevin_generator(g, potential=double_well, diffusion=0.25)
    exact = fp.boltzmann(g, double_well, 0.25)
    assert np.abs(fp.stationary(gen) - exact).max() <= 1e-12
    # periodic axis: U = cos, no net drift around the circle. Backward Euler's fixed point
    # is G m = 0; with Δt = 1e4 each step shrinks the distance by 1/(1 + Δt λ₁) ≈ 1e-4, so 10
    # steps reach the equilibrium to rounding (tests the cyclic flux-form solve).
    gp = fp.grid(-np.pi, np.pi, 64, periodic=True)
    genp = fp.langevin_generator(gp, potential=lambda x: jnp.cos(x[0]), diffusion=0.4)
    relaxed = fp.evolve(genp, fp.point_mass(gp, [1.0]), 1e5, dt=1e4, method="backward_euler").mass[-1]
    assert np.abs(relaxed - fp.boltzmann(gp, lambda x: jnp.cos(x[0]), 0.4)).max() <= 1e-12


def coupled(x):
    return (x[0] ** 2 - 1) ** 2 + 0.3 * x[0] + 0.5 * x[1] ** 2 + 0.3 * x[0] * x[1]


@pytest.mark.filterwarnings("ignore::sgdsde.fokker_planck.CoarseGridWarning")
def test_stationary_is_discrete_boltzmann_2d_3d():
    # exact at any cell Péclet number: these grids are coarse near their boundaries on
    # purpose (the warning is about cell masses as cell integrals, not this identity)
    g2 = fp.grid([-2.0, -2.0], [2.0, 2.0], [32, 32])
    gen2 = fp.langevin_generator(g2, potential=coupled, diffusion=0.4)
    assert np.abs(fp.stationary(gen2) - fp.boltzmann(g2, coupled, 0.4)).max() <= 1e-12
    # diagonal D and a separable U: m ∝ exp(−U₁/D₁ − U₂/D₂) (same grid shape: same compiled solver)
    sep = lambda x: jnp.stack([(x[0] ** 2 - 1) ** 2, 0.5 * x[1] ** 2])  # noqa: E731
    gen_d = fp.langevin_generator(g2, potential=lambda x: jnp.sum(sep(x)), diffusion=[0.4, 0.25])
    exact = fp.boltzmann(g2, lambda x: jnp.sum(sep(x) / jnp.array([0.4, 0.25])), 1.0)
    assert np.abs(fp.stationary(gen_d) - exact).max() <= 1e-12
    g3 = fp.grid([-2.0, -2.0, -1.5], [2.0, 2.0, 1.5], [10, 11, 12])
    u3 = lambda x: coupled(x[:2]) + 0.8 * x[2] ** 2 + 0.2 * x[1] * x[2]  # noqa: E731
    gen3 = fp.langevin_generator(g3, potential=u3, diffusion=0.5)
    assert np.abs(fp.stationary(gen3) - fp.boltzmann(g3, u3, 0.5)).max() <= 1e-12


def test_drift_field_matches_potential():
    # b = −∇U integrated along each edge (Gauss–Legendre, exact for quintics) = ΔU
    g = fp.grid([-2.0, -2.0], [2.0, 2.0], [9, 8])
    a = fp.langevin_generator(g, potential=coupled, diffusion=0.3)
    b = fp.langevin_generator(g, drift=lambda x: -jax.grad(coupled)(x), diffusion=0.3)
    for fa, fb in zip(a.forward + a.backward, b.forward + b.backward):
        np.testing.assert_allclose(np.asarray(fb), np.asarray(fa), rtol=1e-12, atol=1e-12)


def test_state_dependent_diffusion_converges_to_ito_equilibrium():
    # ∂p/∂t = ∂(U′p) + ∂²(D p): stationary p ∝ exp(−∫U′/D)/D (zero flux). Second order in h.
    u = lambda x: 0.5 * x[0] ** 2 + 0.2 * x[0]  # noqa: E731
    d = lambda x: 0.2 + 0.1 * jnp.sin(2 * x[0]) ** 2  # noqa: E731
    fine = np.linspace(-3.0, 3.0, 600001)
    psi_prime = (fine + 0.2) / (0.2 + 0.1 * np.sin(2 * fine) ** 2)
    psi = np.concatenate([[0.0], np.cumsum(0.5 * (psi_prime[1:] + psi_prime[:-1]) * np.diff(fine))])
    errors = []
    for n in (60, 120):
        g = fp.grid(-3.0, 3.0, n)
        m = fp.stationary(fp.langevin_generator(g, potential=u, diffusion=d))
        x = g.centers[0]
        p = np.exp(-np.interp(x, fine, psi)) / (0.2 + 0.1 * np.sin(2 * x) ** 2)
        errors.append(np.abs(m - p / p.sum()).max() / m.max())
    order = np.log2(errors[0] / errors[1])
    assert 1.8 < order < 2.2, errors  # second order in h (halving h divides the error by ≈ 4)
    assert errors[1] < 2e-3


def test_full_noise_matches_lyapunov_covariance():
    # constant anisotropic C on a quadratic: Gaussian with AΣ + ΣA = (η/S) C (docs/theory.md §5),
    # a non-equilibrium state with a probability current. Grid error O(h²): with h and h/2
    # (one grid shape, boxes ±12σ and ±6σ, so one compiled solver; truncation e^{−18}),
    # check the observed order of convergence.
    a = np.array([[1.0, 0.3], [0.3, 0.5]])
    c = np.array([[1.0, 0.5], [0.5, 0.8]])
    eta, s = 0.1, 1
    problem = sd.problems.quadratic(a, c, 16, key=jax.random.PRNGKey(0))
    with jax.enable_x64(True):
        sigma = np.asarray(sd.theory.ou_stationary_cov(a, c, eta, s))
    std = np.sqrt(sigma.diagonal().max())
    covs = []
    for half in (12 * std, 6 * std):
        g = fp.grid([-half, -half], [half, half], [32, 32])
        gen = fp.generator(g, problem, hyper=sd.Hyper(eta, s), noise=sd.noise.full(c))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fp.CoarseGridWarning)  # h = 0.75σ is coarse, on purpose
            m = fp.stationary(gen).reshape(-1)
        x = g.points().reshape(-1, 2)
        mean = m @ x
        covs.append((x - mean).T @ ((x - mean) * m[:, None]))
        assert np.abs(mean).max() < 1e-14
    e_coarse, e_fine = (np.abs(cv - sigma).max() for cv in covs)
    # measured here: e_coarse ≈ 4·e_fine, e_fine ≈ 4.4e-3 (Σ entries 0.009 … 0.075)
    assert 1.8 < np.log2(e_coarse / e_fine) < 2.2, (e_coarse, e_fine)
    # the stationary state carries a current (not detailed balance): compare with the
    # fluxes of a Gaussian displaced by one standard deviation
    stationary_current = max(np.abs(f).max() for f in fp.currents(gen, m.reshape(g.shape)))
    displaced = max(np.abs(f).max() for f in fp.currents(gen, fp.gaussian(g, [std, 0.0], sigma)))
    assert stationary_current > 1e-2 * displaced


def test_momentum_form_is_maxwell_boltzmann():
    # heavy ball β: P ∝ exp(−(μ/D_v)(ηL + v²/2)), μ = 1 − β, D_v = η²σ²/(2S); the θ-marginal is
    # Boltzmann with noise n/(1 − β) (docs/theory.md §3). Exact at the cell centres, to rounding.
    eta, s, beta, s2 = 0.1, 1.0, 0.9, 1.0
    loss = lambda th: 0.5 * th[0] ** 2 + 0.1 * th[0] ** 4  # noqa: E731
    mu, d_v = 1 - beta, eta**2 * s2 / (2 * s)
    g = fp.grid([-4.0, -1.4], [4.0, 1.4], [32, 32])
    gen = fp.momentum_generator(g, loss=loss, hyper=sd.Hyper(eta, s, beta), noise=sd.noise.isotropic(s2))
    assert_markov(gen)
    m = fp.stationary(gen)
    mb = fp.boltzmann(g, lambda x: (mu / d_v) * (eta * loss(x[:1]) + 0.5 * x[1] ** 2), 1.0)
    assert np.abs(m - mb).max() <= 1e-12
    temperature = (eta / s) / (1 - beta) * s2 / 2  # T = (n/(1−β)) σ²/2
    g_theta = fp.grid(-4.0, 4.0, 32)
    assert np.abs(fp.marginal(g, m, 0) - fp.boltzmann(g_theta, loss, temperature)).max() <= 1e-12


def test_empirical_noise_reproduces_the_isotropic_equilibrium(x64):
    # double_well_1d has C(θ) = σ² I exactly (whitened data; float64 data under the x64
    # fixture, float32 data would give C to 1e-7 only): the state-dependent (Itô) path with
    # the problem's own C(θ) (fp.generator's default noise) must give the Boltzmann law
    # exp(−L/T), T = nσ²/2 with n = η/S, to rounding (C(θ) is computed from 16 examples)
    problem = sd.problems.double_well_1d(barrier=0.5, tilt=0.1, sigma2=1.0, num_examples=16,
                                         key=jax.random.PRNGKey(3))
    g = fp.grid(-2.5, 2.5, 200)
    gen = fp.generator(g, problem, hyper=sd.Hyper(0.1, 2))
    temperature = (0.1 / 2) * 1.0 / 2
    assert np.abs(fp.stationary(gen) - fp.boltzmann(g, problem.loss, temperature)).max() <= 1e-12
