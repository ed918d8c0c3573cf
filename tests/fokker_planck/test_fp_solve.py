"""Time stepping, stationary solves, spectral gap and gradients of sgdsde.fokker_planck,
against closed forms (docs/theory.md §3, §5) and an Euler–Maruyama ensemble."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sgdsde as sd
import sgdsde.fokker_planck as fp


def double_well(x):
    return (x[0] ** 2 - 1) ** 2 + 0.3 * x[0]


def coupled(x):
    return (x[0] ** 2 - 1) ** 2 + 0.3 * x[0] + 0.5 * x[1] ** 2 + 0.3 * x[0] * x[1]


def test_mass_is_conserved_over_long_runs():
    # conservation is structural (flux form); rounding per step is unbiased ~1e-16
    g = fp.grid(-2.5, 2.5, 400)
    gen = fp.langevin_generator(g, potential=double_well, diffusion=0.25)
    m0 = fp.gaussian(g, 1.0, 0.05**2)
    for method in ("tr_bdf2", "backward_euler"):
        sol = fp.evolve(gen, m0, 1000.0, dt=0.05, method=method, save_every=1000)  # 20 000 steps
        assert np.abs(sol.mass.sum(axis=1) - 1.0).max() <= 1e-12
    g2 = fp.grid([-2.0, -2.0], [2.0, 2.0], [32, 32])
    gen2 = fp.langevin_generator(g2, potential=coupled, diffusion=0.4)
    m2 = fp.gaussian(g2, [1.0, 0.0], 0.1**2)
    sol2 = fp.evolve(gen2, m2, 100.0, dt=0.5, method="backward_euler", save_every=50)  # 200 GMRES steps
    assert np.abs(sol2.mass.sum(axis=(1, 2)) - 1.0).max() <= 1e-12
    # and it relaxes to the exact discrete Boltzmann law
    assert np.abs(sol2.mass[-1] - fp.boltzmann(g2, coupled, 0.4)).max() < 1e-6


def test_masses_stay_non_negative():
    # (step counts and saves as in the test above: the compiled programs are shared)
    g = fp.grid(-2.5, 2.5, 400)
    gen = fp.langevin_generator(g, potential=double_well, diffusion=0.25)
    start = fp.point_mass(g, [1.0])
    for dt in (1e-3, 1.0, 100.0):  # backward Euler: (I − ΔtG)⁻¹ ≥ 0 for any Δt
        sol = fp.evolve(gen, start, 20_000 * dt, dt=dt, method="backward_euler", save_every=1000)
        assert sol.mass.min() >= 0.0
    # TR-BDF2 is positive when cΔt·(max exit rate) ≤ 1, c = 1 − 1/√2
    with jax.enable_x64(True):
        max_exit = float(jnp.max(gen.exit_rates()))
    dt = 1.0 / ((1 - 2**-0.5) * max_exit)
    assert fp.evolve(gen, start, 20_000 * dt, dt=dt, save_every=1000).mass.min() >= 0.0
    # 2-D (GMRES): non-negative up to the solver tolerance (1e-11 relative residual)
    g2 = fp.grid([-2.0, -2.0], [2.0, 2.0], [32, 32])
    gen2 = fp.langevin_generator(g2, potential=coupled, diffusion=0.4)
    sol2 = fp.evolve(gen2, fp.point_mass(g2, [1.0, 0.0]), 2000.0, dt=10.0, method="backward_euler", save_every=50)
    assert sol2.mass.min() >= -1e-11 * sol2.mass.max()


def test_second_order_convergence_in_space():
    # tilted double well from N(1, 0.15²) to t = 2, against a 16× refined grid with the same
    # time steps (the time error is common to all grids), compared on the coarse cells.
    dt, t_final = 0.02, 2.0
    ref_n = 1600

    def solve(n):
        g = fp.grid(-2.5, 2.5, n)
        gen = fp.langevin_generator(g, potential=double_well, diffusion=0.25)
        return fp.evolve(gen, fp.gaussian(g, 1.0, 0.15**2), t_final, dt=dt).mass[-1]

    reference = solve(ref_n)
    errors = []
    for n in (100, 200):
        coarse_ref = reference.reshape(n, ref_n // n).sum(axis=1)
        width = 5.0 / n
        errors.append(np.abs(solve(n) - coarse_ref).max() / width)  # error of the density
    order = np.log2(errors[0] / errors[1])
    assert 1.8 < order < 2.2, errors  # measured ≈ 1.97 (5.4e-3 → 1.4e-3)


def ou_setup(n):
    # L = ½hθ², η = 0.1, S = 1, σ² = 1: U = 0.05θ², D = 0.005, Σ = ησ²/(2Sh) = 0.05
    curvature, eta, s, sigma2 = 1.0, 0.1, 1, 1.0
    problem = sd.problems.quadratic([[curvature]], [[sigma2]], 8, key=jax.random.PRNGKey(1))
    g = fp.grid(-1.6, 2.0, n)
    return problem, g, fp.generator(g, problem, hyper=sd.Hyper(eta, s), noise=sd.noise.isotropic(sigma2))


def test_ou_transient_matches_exact_gaussian_transition():
    # from N(1, 0.1²): law at t = 10 steps is Gaussian with mean e^{−ηht}, variance
    # e^{−2ηht}·0.01 + (Σ − e^{−2ηht}Σ) (docs/theory.md §5). Space O(h²), time O(Δt²): halving
    # both divides the error by ≈ 4.
    t = 10.0
    with jax.enable_x64(True):
        exact = sd.theory.ou_transition([[1.0]], [[1.0]], 0.1, 1, [1.0], t)
    decay = np.exp(-0.1 * t)
    mean = float(exact.mean[0])
    var = float(exact.cov[0, 0]) + decay**2 * 0.1**2
    errors = []
    for n, dt in ((120, 0.5), (240, 0.25)):
        _, g, gen = ou_setup(n)
        m = fp.evolve(gen, fp.gaussian(g, 1.0, 0.1**2), t, dt=dt).mass[-1]
        x = g.centers[0]
        target = np.exp(-0.5 * (x - mean) ** 2 / var)
        errors.append(np.abs(m - target / target.sum()).max() / m.max())
        assert abs(m @ x - mean) < 20 * errors[-1] * np.sqrt(var)
    assert 1.7 < np.log2(errors[0] / errors[1]) < 2.3, errors
    assert errors[1] < 2e-3


def test_spectral_gap_matches_ou_rate():
    # slowest relaxation rate of the OU process: ηh per step (h per unit of SME time)
    gaps = []
    for n in (60, 120):
        problem, g, gen = ou_setup(n)
        gaps.append(fp.spectral_gap(gen))
    errors = [abs(gap - 0.1) / 0.1 for gap in gaps]
    assert 1.7 < np.log2(errors[0] / errors[1]) < 2.3, gaps  # O(h²) discretisation error
    # Richardson extrapolation leaves O(h⁴): a further factor (h/σ)² ≈ 0.02 (h = 0.03,
    # σ = √0.05); allow 0.1
    richardson = (4 * gaps[1] - gaps[0]) / 3
    assert abs(richardson - 0.1) / 0.1 < 0.1 * errors[1], (gaps, richardson)
    gen_sme = fp.generator(g, problem, hyper=sd.Hyper(0.1, 1), noise=sd.noise.isotropic(1.0), clock="sme")
    np.testing.assert_allclose(fp.spectral_gap(gen_sme), gaps[1] / 0.1, rtol=1e-9)


def test_sme_clock_is_rescaled_step_clock():
    problem, g, gen = ou_setup(60)
    gen_sme = fp.generator(g, problem, hyper=sd.Hyper(0.1, 1), noise=sd.noise.isotropic(1.0), clock="sme")
    assert gen.clock == "steps" and gen_sme.clock == "sme"
    for a, b in zip(gen.forward + gen.backward, gen_sme.forward + gen_sme.backward):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a) / 0.1, rtol=1e-14)
    m0 = fp.gaussian(g, 1.0, 0.1**2)
    steps = fp.evolve(gen, m0, 10.0, dt=0.5)
    sme = fp.evolve(gen_sme, m0, 1.0, dt=0.05)  # t_sme = η·steps
    np.testing.assert_allclose(sme.times, 0.1 * steps.times, rtol=1e-14)
    np.testing.assert_allclose(sme.mass, steps.mass, rtol=1e-12, atol=1e-15)


def test_gradients_of_basin_mass_match_finite_differences(x64):
    # d/dη, d/dS, d/dσ² of the mass in the right well after 20 SGD steps
    problem = sd.problems.double_well_1d(barrier=0.5, tilt=0.1, num_examples=8, key=jax.random.PRNGKey(0))
    g = fp.grid(-2.5, 2.5, 80)
    m0 = fp.gaussian(g, -0.5, 0.2**2)
    right = lambda th: (th[0] > 0).astype(jnp.int32)  # noqa: E731

    def basin_mass(eta, batch, sigma2):
        gen = fp.generator(g, problem, hyper=sd.Hyper(eta, batch), noise=sd.noise.Isotropic(sigma2, False))
        return fp.basin_masses(g, fp.evolve(gen, m0, 20.0, dt=1.0).mass[-1], right, 2)[1]

    args = (0.2, 2.0, 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fp.CoarseGridWarning)
        grads = jax.grad(basin_mass, argnums=(0, 1, 2))(*args)
        for i, grad in enumerate(grads):
            step = 1e-5 * args[i]
            up, down = list(args), list(args)
            up[i] += step
            down[i] -= step
            fd = (basin_mass(*up) - basin_mass(*down)) / (2 * step)
            # central differences: truncation O(step²) ≈ 1e-10 relative, rounding 1e-16/1e-5
            np.testing.assert_allclose(float(grad), float(fd), rtol=1e-6)
        assert all(abs(float(gr)) > 1e-6 for gr in grads)  # the derivatives are not trivially zero
        # and through the stationary solver (exact 1-D detailed balance)
        def stationary_mass(eta):
            gen = fp.generator(g, problem, hyper=sd.Hyper(eta, 2.0), noise=sd.noise.isotropic(1.5))
            return fp.basin_masses(g, fp.stationary(gen), right, 2)[1]

        fd = (stationary_mass(0.2 + 1e-6) - stationary_mass(0.2 - 1e-6)) / 2e-6
        np.testing.assert_allclose(float(jax.grad(stationary_mass)(0.2)), float(fd), rtol=1e-6)


def test_agrees_with_euler_maruyama_histogram():
    # the same SGD system simulated by Euler–Maruyama (dt = 0.1 step, 20 000 replicas) and
    # evolved by Fokker–Planck from the same Gaussian; histograms on the same edges at
    # t = 30 steps. Pearson χ² over bins with ≥ 20 expected counts, against the 0.999
    # quantile of χ²(K−1) (the EM time-step bias, O(ηL″dt) ≈ 1e-2 relative, is below
    # the Monte-Carlo error of ~2 % per bin).
    problem = sd.problems.double_well_1d(barrier=0.5, tilt=0.1, num_examples=8, key=jax.random.PRNGKey(0))
    hyper = sd.Hyper(0.1, 2)
    noise = sd.noise.isotropic(1.0)
    g = fp.grid(-2.5, 2.5, 500)
    edges = g.edges[0][::25]  # 20 bins of width 0.25, on grid edges (exact re-binning)
    replicas, dt, t_final = 20_000, 0.1, 30.0
    num_calls = int(round(t_final / dt))

    def init(key):
        return 0.3 + 0.1 * jax.random.normal(key, (1,))

    result = sd.run(
        jax.random.PRNGKey(7), sd.euler_maruyama(noise, dt=dt), problem, hyper, init, num_calls,
        replicas=replicas, observers=[sd.observers.histogram(edges, burn_in=num_calls)],
    )
    counts = np.asarray(result["histogram"]["counts"])
    assert counts.sum() + int(result["histogram"]["outside"]) == replicas
    gen = fp.generator(g, problem, hyper=hyper, noise=noise)
    sol = fp.evolve(gen, fp.gaussian(g, 0.3, 0.1**2), t_final, dt=0.1)
    expected = replicas * fp.histogram(g, sol.mass[-1], edges)["mass"]
    use = expected >= 20
    chi2 = np.sum((counts[use] - expected[use]) ** 2 / expected[use])
    assert chi2 < stats.chi2.ppf(0.999, use.sum() - 1), (chi2, use.sum())
    assert counts[~use].sum() < 100  # nothing hides in the neglected bins


def test_bad_input_is_rejected_with_clear_messages():
    g = fp.grid(-2.0, 2.0, 40)
    for bad in (0.0, -1.0, [0.1, 0.2]):
        with pytest.raises(ValueError, match="diffusion"):
            fp.langevin_generator(g, potential=double_well, diffusion=bad)
    with pytest.raises(ValueError, match="diffusion: must be > 0 at every cell centre, got minimum -1.95"):
        fp.langevin_generator(g, potential=double_well, diffusion=lambda x: x[0])
    with pytest.raises(ValueError, match="exactly one"):
        fp.langevin_generator(g, diffusion=1.0)
    g2 = fp.grid([-2.0, -1.0], [2.0, 1.0], [8, 8])  # h_0/h_1 = 2
    with pytest.raises(ValueError, match=r"monotone .*h_0/h_1 in \(0\.9, 1\.111\)"):
        fp.langevin_generator(g2, potential=lambda x: x @ x, diffusion=[[0.1, 0.09], [0.09, 0.1]])
    problem = sd.problems.double_well_1d(num_examples=8, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="momentum"):
        fp.generator(g, problem, hyper=sd.Hyper(0.1, 2, 0.9), noise=sd.noise.isotropic(1.0))
    with pytest.raises(ValueError, match="must be > 0"):
        fp.generator(g, problem, hyper=sd.Hyper(0.1, 2), noise=sd.noise.isotropic(0.0))
    with pytest.raises(ValueError, match="learning_rate"):
        fp.generator(g, problem, hyper=sd.Hyper(-0.1, 2), noise=sd.noise.isotropic(1.0))
    gen = fp.langevin_generator(g, potential=double_well, diffusion=0.5)
    with pytest.raises(ValueError, match="summing to 1"):
        fp.evolve(gen, np.full(40, 0.5), 1.0, dt=0.1)
    with pytest.raises(ValueError, match="method"):
        fp.evolve(gen, fp.point_mass(g, [0.0]), 1.0, dt=0.1, method="rk4")
    with pytest.raises(ValueError, match="dt"):
        fp.evolve(gen, fp.point_mass(g, [0.0]), 1.0, dt=0.0)


def test_coarse_grid_warns_with_the_peclet_number():
    # D = 0.01 on the double well: the Boltzmann width near a minimum is √(D/L″) ≈ 0.035,
    # cells of 0.5 cannot resolve it
    g = fp.grid(-2.5, 2.5, 10)
    gen = fp.langevin_generator(g, potential=double_well, diffusion=0.01)
    with pytest.warns(fp.CoarseGridWarning, match=r"cell Péclet number \d+(\.\d+)? > 2"):
        fp.stationary(gen)
    with pytest.warns(fp.CoarseGridWarning, match="Péclet"):
        fp.evolve(gen, fp.point_mass(g, [1.0]), 1.0, dt=0.5)
    fine = fp.grid(-2.5, 2.5, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fp.CoarseGridWarning)
        fp.stationary(fp.langevin_generator(fine, potential=double_well, diffusion=0.01))
