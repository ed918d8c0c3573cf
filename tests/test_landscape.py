"""sgdsde.landscape against closed forms (docs/theory.md §4): critical points of the built-in
landscapes, Laplace probabilities against exact Boltzmann quadrature, the critical noise,
Eyring–Kramers against the exact 1-D mean first-passage time, simulated escape times,
and the bad-input paths."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

import sgdsde as sd
import sgdsde.landscape as ls

KEY = jax.random.key(0)

# ------------------------------------------------------------------ shared landscapes
# tilted 1-D double well: minima at the roots of L' = 0 listed in problem.info
DW1 = dict(barrier=1.0, width=1.0, tilt=0.15)
# tilted 2-D double well with transverse curvature 2
DW2 = dict(barrier=1.0, width=1.2, curvature=2.0, tilt=0.3)
# three quadratic wells joined by a soft minimum (softness s): a deep sharp one, a
# shallow wide one and a high one between them, off the line joining the other two
WELLS = dict(
    centers=np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 1.0]]),
    levels=np.array([0.0, 0.06, 0.3]),
    hessians=np.stack([np.diag([8.0, 4.0]), np.array([[2.0, 0.5], [0.5, 1.0]]), 1.5 * np.eye(2)]),
    softness=0.02,
)
WELLS_BOX = dict(lower=[-6.5, -5.0], upper=[6.5, 6.0], cells=[520, 440])


def _dw1():
    return sd.problems.double_well_1d(**DW1, sigma2=1.0, num_examples=8, key=KEY)


def _wells():
    return sd.problems.multi_well(
        WELLS["centers"], WELLS["levels"], WELLS["hessians"], softness=WELLS["softness"],
        sigma2=1.0, num_examples=8, key=KEY,
    )


def _nominal_q(theta):
    """The wells' quadratics q_k(θ) = L_k + ½(θ − μ_k)ᵀH_k(θ − μ_k), shape (..., K)."""
    u = np.asarray(theta)[..., None, :] - WELLS["centers"]
    return WELLS["levels"] + 0.5 * np.einsum("...ki,kij,...kj->...k", u, WELLS["hessians"], u)


def _classify_wells(theta):
    u = theta - jnp.asarray(WELLS["centers"], theta.dtype)
    q = jnp.asarray(WELLS["levels"], theta.dtype) + 0.5 * jnp.einsum(
        "ki,kij,kj->k", u, jnp.asarray(WELLS["hessians"], theta.dtype), u
    )
    return jnp.argmin(q)


@pytest.fixture(scope="module")
def wells():
    """The three-well problem, its minima (16 starts) and saddles, found in float64."""
    with jax.enable_x64(True):
        problem = _wells()
        starts = np.random.default_rng(1).uniform([-5, -3], [5, 4], (16, 2))
        minima = ls.find_minima(problem, starts)
        saddles = ls.find_saddles(problem, minima)
    # nominal index of each found minimum (nearest centre)
    nominal = np.argmin(np.linalg.norm(minima.points[:, None] - WELLS["centers"][None], axis=2), axis=1)
    return problem, minima, saddles, nominal


# --------------------------------------------------------------- critical points
def test_find_minima_double_well_1d_matches_info(x64):
    problem = _dw1()
    roots, values, curvatures = (problem.info[k] for k in ("critical_points", "values", "curvatures"))
    starts = np.concatenate([np.linspace(-2.0, 2.0, 15), [roots[1]]])[:, None]  # the last: on the maximum
    minima = ls.find_minima(problem, starts)
    assert minima.num_minima == 2 and minima.num_failed == 0
    assert minima.counts.sum() == 16 and minima.labels[-1] >= 0  # pushed off the maximum
    expected = [0, 2]  # the deeper (left, tilt > 0) minimum first
    # Newton stops at ‖L'‖ ≤ 1e-10, so |θ − θ*| ≤ 1e-10/L''(θ*) ≈ 1.3e-11; L'' moves by
    # L'''·Δθ ≈ 3e-10; np.roots is accurate to ~1e-15 here
    np.testing.assert_allclose(minima.points[:, 0], roots[expected], atol=1e-10)
    np.testing.assert_allclose(minima.losses, values[expected], atol=1e-14)
    np.testing.assert_allclose(minima.hessians[:, 0, 0], curvatures[expected], rtol=1e-9)
    np.testing.assert_allclose(minima.logdets, np.log(curvatures[expected]), rtol=1e-9)
    assert not minima.degenerate.any()


def test_find_minima_and_saddle_double_well_2d_match_info(x64):
    problem = sd.problems.double_well_2d(**DW2, sigma2=1.0, num_examples=8, key=KEY)
    starts = np.random.default_rng(0).uniform(-2.5, 2.5, (15, 2))
    starts = np.concatenate([starts, [problem.info["saddles"][0]["point"]]])  # one start on the saddle
    minima = ls.find_minima(problem, starts)
    info_minima = sorted(problem.info["minima"], key=lambda c: c["loss"])
    assert minima.num_minima == 2 and minima.converged.all()
    for found, ref in zip(range(2), info_minima):
        np.testing.assert_allclose(minima.points[found], ref["point"], atol=1e-10)  # ‖g‖ ≤ 1e-10, λ ≥ 2
        np.testing.assert_allclose(minima.losses[found], ref["loss"], atol=1e-14)
        np.testing.assert_allclose(minima.hessians[found], ref["hessian"], atol=1e-9)

    saddles = ls.find_saddles(problem, minima)
    (ref,) = problem.info["saddles"]
    assert saddles.num_saddles == 1
    np.testing.assert_allclose(saddles.points[0], ref["point"], atol=1e-10)  # |λ_s| ≈ 2.7
    np.testing.assert_allclose(saddles.losses[0], ref["loss"], atol=1e-14)
    np.testing.assert_allclose(saddles.hessians[0], ref["hessian"], atol=1e-9)
    np.testing.assert_allclose(saddles.negative_eigenvalues[0], ref["hessian"][0, 0], rtol=1e-9)
    np.testing.assert_allclose(saddles.logabsdets[0], np.log(abs(np.linalg.det(ref["hessian"]))), rtol=1e-9)
    np.testing.assert_array_equal(saddles.connects[0], [0, 1])

    # Eyring–Kramers in 2-D: the transverse curvature k cancels from det H_A/|det H_s|
    eta, batch, sigma2 = 0.05, 4, 2.0
    n = eta / batch
    for i, mref in enumerate(info_minima):
        h_a, l_s = mref["hessian"][0, 0], ref["loss"]
        lam_s = ref["hessian"][0, 0]
        rate = eta * abs(lam_s) / (2 * np.pi) * np.sqrt(h_a / abs(lam_s)) * np.exp(-2 * (l_s - mref["loss"]) / (n * sigma2))
        got = ls.kramers_escape_time(minima.at(i), saddles.at(0), learning_rate=eta, batch_size=batch, sigma2=sigma2)
        assert got == pytest.approx(1 / rate, rel=1e-9)
        sme = ls.kramers_escape_time(mref, ref, learning_rate=eta, batch_size=batch, sigma2=sigma2, clock="sme")
        assert sme == pytest.approx(eta / rate, rel=1e-9)


def test_three_wells_minima_and_saddle_connectivity(wells):
    problem, minima, saddles, nominal = wells
    assert minima.num_minima == 3 and minima.converged.all()
    np.testing.assert_array_equal(np.sort(nominal), [0, 1, 2])
    # near μ_k, L = q_k − s log(1 + Σ_j e^{−(q_j − q_k)/s}); the gaps q_j − q_k at μ_k are
    # ≥ 4.3, so minima, losses and Hessians are nominal up to s·e^{−4.3/s} ~ 1e-95 (rounding)
    np.testing.assert_allclose(minima.points, WELLS["centers"][nominal], atol=1e-10)
    np.testing.assert_allclose(minima.losses, WELLS["levels"][nominal], atol=1e-14)
    np.testing.assert_allclose(minima.hessians, WELLS["hessians"][nominal], atol=1e-9)
    # the deep and the wide well are joined only through the high one: their string runs
    # through it, and its top image is one of the two saddles of the high well
    high = int(np.flatnonzero(nominal == 2)[0])
    assert saddles.num_saddles == 2
    pairs = {tuple(sorted(c)) for c in saddles.connects.tolist()}
    assert pairs == {tuple(sorted((high, other))) for other in range(3) if other != high}
    for i in range(saddles.num_saddles):
        with jax.enable_x64(True):
            checked = ls.critical_point(problem, saddles.points[i], kind="saddle")
        assert checked.index == 1 and saddles.gradient_norms[i] <= 1e-10
        assert saddles.losses[i] > minima.losses[saddles.connects[i]].max()
        assert len(saddles.between(*saddles.connects[i]).points) == 1


# ------------------------------------------------------------- Laplace vs quadrature
def _laplace_bound(noise_scale: float) -> float:
    """Bound on the relative difference between the Boltzmann mass of each basin of the
    three-well landscape and its Gaussian (Laplace) integral.

    Inside the ball B_k of radius r_k about μ_k on which every gap q_j − q_k ≥ 30 s,
    |L − q_k| ≤ (K−1) s e^{−30}; outside it the Gaussian N(μ_k, T H_k⁻¹) has mass
    ≤ e^{−λ_min r_k²/(2T)} (χ²₂ tail), and there L ≥ q_k − s ln K. So the basin mass is
    the Gaussian integral to relative (1 + K^{s/T}) e^{−λ_min r²/(2T)} + 2(K−1)(s/T)e^{−30};
    normalising doubles it.
    """
    s, k = WELLS["softness"], len(WELLS["levels"])
    temperature = noise_scale / 2
    axis = np.linspace(-7.0, 7.0, 701)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    q = _nominal_q(grid)
    bounds = []
    for w in range(k):
        gap = np.min(np.delete(q, w, axis=1) - q[:, [w]], axis=1)
        radius = np.min(np.linalg.norm(grid[gap < 30 * s] - WELLS["centers"][w], axis=1)) - (axis[1] - axis[0])
        lam_min = np.linalg.eigvalsh(WELLS["hessians"][w])[0]
        tail = np.exp(-lam_min * radius**2 / (2 * temperature))
        bounds.append((1 + k ** (s / temperature)) * tail + 2 * (k - 1) * (s / temperature) * np.exp(-30))
    return 2 * max(bounds)


def test_laplace_is_exact_on_quadratic_wells(wells):
    problem, minima, _, nominal = wells
    sigma2 = 1.0
    cn = ls.critical_noise(minima, sigma2, pair=(int(np.flatnonzero(nominal == 1)[0]), int(np.flatnonzero(nominal == 0)[0])))
    # (at smaller n the half-resolution grid of the error estimate no longer resolves the
    # sharp well, and the estimate, not the agreement, would set the tolerance)
    noise = np.array([0.05, cn.noise_scale])
    with jax.enable_x64(True):
        exact = ls.boltzmann_basin_masses(problem, _classify_wells, 3, noise_scale=noise, sigma2=sigma2, **WELLS_BOX)
    laplace = ls.laplace_probabilities(minima, noise, sigma2)
    quad = exact.masses[:, nominal]  # reorder to the found minima
    quad_err = exact.error[:, nominal]
    assert np.all(exact.outer_mass < 1e-30) and np.all(exact.unassigned == 0)
    for row, n in enumerate(noise):
        tol = _laplace_bound(n) * laplace[row] + quad_err[row] + 1e-13 * laplace[row] + 1e-300
        assert np.all(np.abs(quad[row] - laplace[row]) <= tol), (n, quad[row], laplace[row], tol)
    # at n* the deep sharp well and the shallow wide one are equally likely: Laplace
    # exactly (rounding), and the exact masses within the bound above
    wide, deep = cn.favoured_above, cn.favoured_below
    assert cn.exists and nominal[wide] == 1 and nominal[deep] == 0
    assert ls.laplace_ratio(minima, cn.noise_scale, sigma2, pair=(wide, deep)) == pytest.approx(1.0, rel=1e-12)
    assert quad[1, wide] / quad[1, deep] == pytest.approx(1.0, abs=2 * _laplace_bound(cn.noise_scale) + 1e-12)
    # below n* the deep well wins, above it the wide one
    ratio = ls.laplace_ratio(minima, [0.5 * cn.noise_scale, 2 * cn.noise_scale], sigma2, pair=(wide, deep))
    assert ratio[0] < 1 < ratio[1]


def _c1(x: float) -> float:
    """First-order coefficient of Laplace's method for ∫ e^{−L/T} about a minimum x of the
    double well: ∫ = e^{−L/T}√(2πT/L″)(1 + T c₁ + O(T²)), c₁ = 5L‴²/(24L″³) − L⁗/(8L″²)."""
    b, w = DW1["barrier"], DW1["width"]
    l2, l3, l4 = 12 * b * x**2 / w**4 - 4 * b / w**2, 24 * b * x / w**4, 24 * b / w**4
    return 5 * l3**2 / (24 * l2**3) - l4 / (8 * l2**2)


def test_laplace_error_is_first_order_in_noise(x64):
    """log p_B(quadrature) − log p_B(Laplace) = T (c_B − Σ_A p_A c_A) + O(T²), T = nσ²/2:
    the error is O(n), with the coefficient of Laplace's method."""
    problem = _dw1()
    roots = problem.info["critical_points"]
    minima = ls.minima_at(problem, roots[[0, 2], None])
    saddle = roots[1]
    noise = np.array([0.1, 0.05, 0.025, 0.0125])
    exact = ls.boltzmann_basin_masses(
        problem, lambda th: (th[0] > saddle).astype(jnp.int32), 2, lower=[-2.5], upper=[2.5], cells=4000,
        noise_scale=noise, sigma2=1.0,
    )
    log_laplace = ls.laplace_log_probabilities(minima, noise, 1.0)
    error = np.log(exact.masses[:, 1]) - log_laplace[:, 1]  # the shallow minimum B
    c = np.array([_c1(roots[0]), _c1(roots[2])])
    predicted = (noise / 2) * (c[1] - np.sum(np.exp(log_laplace) * c, axis=1))
    # O(n): halving n halves the error (ratio 2 + O(n))
    halving = error[:-1] / error[1:]
    assert np.all(np.abs(halving - 2) < 0.15), halving
    # first-order coefficient exact: the remainder is O(n²), so it falls 4× per halving
    remainder = error - predicted
    assert np.all(np.abs(remainder[:-1] / remainder[1:] - 4) < 0.5), remainder[:-1] / remainder[1:]
    assert abs(remainder[-1]) < 0.02 * abs(error[-1])
    # the quadrature is far more accurate than the smallest effect measured here
    assert np.all(exact.error[:, 1] / exact.masses[:, 1] < 1e-3 * np.abs(remainder)), exact.error[:, 1] / exact.masses[:, 1]


# ---------------------------------------------------------------------- critical noise
def _radial_masses(noise_scale: float, sigma2: float, separation: float = 6.0):
    """Exact Boltzmann basin masses of L = min(q_A, q_B) in 4-D, q_A = 0.3 + ¼‖θ − μ_A‖²,
    q_B = 2‖θ − μ_B‖² (Hessians 0.5 I and 4 I), μ_B − μ_A = separation·e₁. The integrand
    depends on (x, ρ) only (ρ the radius across e₁): dV = 4πρ² dρ dx, midpoint rule on a
    fine grid (≥ 10 cells per standard deviation: spectrally accurate on Gaussians; the
    box ends ≥ 11 standard deviations from both centres)."""
    t = noise_scale * sigma2 / 2
    x = (np.arange(2400) + 0.5) * (separation + 6) / 2400 - 4.5
    rho = (np.arange(900) + 0.5) * 4.5 / 900
    xx, rr = np.meshgrid(x, rho, indexing="ij")
    qa = 0.3 + 0.25 * (xx**2 + rr**2)
    qb = 2.0 * ((xx - separation) ** 2 + rr**2)
    weight = np.exp(-np.minimum(qa, qb) / t) * 4 * np.pi * rr**2
    return weight[qa < qb].sum(), weight[qa >= qb].sum()


def test_critical_noise_theory_4d_check():
    """docs/theory.md §4: L_A − L_B = 0.3, H_A = 0.5 I, H_B = 4 I (d = 4), σ² = 1 → n* = 0.1443,
    and the paper's eq. (4) value is n*/4 = 0.0361."""
    d = 4
    values = (0.3, d * np.log(0.5), 0.0, d * np.log(4.0))
    cn = ls.critical_noise(values, 1.0)
    assert cn.exists and cn.favoured_above == 0 and cn.favoured_below == 1
    assert cn.noise_scale == pytest.approx(4 * 0.3 / np.log(8.0**d), rel=1e-14)
    assert round(cn.noise_scale, 4) == 0.1443 and round(cn.paper_noise_scale, 4) == 0.0361
    assert ls.laplace_ratio(values, cn.noise_scale, 1.0) == pytest.approx(1.0, rel=1e-13)
    # the exact basin masses agree: ratio 1.0000 at n*, about 4e-6 at the paper's value.
    # The Gaussians end ≥ 11 standard deviations inside their basins, so the basin
    # masses are the Gaussian integrals to ~1e-20; the grid is good to ~1e-6 relative.
    a, b = _radial_masses(cn.noise_scale, 1.0)
    assert a / b == pytest.approx(1.0, abs=1e-5)
    a, b = _radial_masses(cn.paper_noise_scale, 1.0)
    expected = ls.laplace_ratio(values, cn.paper_noise_scale, 1.0)
    assert expected == pytest.approx(3.9e-6, rel=0.03)
    assert a / b == pytest.approx(expected, rel=1e-5)


def test_critical_noise_without_crossover():
    # A higher and sharper: never favoured
    cn = ls.critical_noise((0.5, 2.0, 0.0, 1.0), 1.0)
    assert not cn.exists and cn.noise_scale == math.inf and cn.favoured_above == cn.favoured_below == 1
    cn = ls.critical_noise((0.0, 1.0, 0.0, 1.0), 1.0)
    assert not cn.exists and cn.noise_scale == math.inf and cn.favoured_above == -1


# ------------------------------------------------------------------- escape times
def test_mean_first_passage_quadrature_linear_potential(x64):
    """L = aθ with a reflecting wall at 0: T(0 → c) = (1/(Dκ))[(e^{κc} − 1)/κ − c], κ = 2a/(nσ²)."""
    a_slope, eta, batch, sigma2 = 0.3, 0.1, 2, 1.5
    d_coef = eta**2 * sigma2 / (2 * batch)
    kappa = 2 * a_slope / ((eta / batch) * sigma2)

    def closed(c):
        return ((np.exp(kappa * c) - 1) / kappa - c) / (d_coef * kappa)

    loss = lambda th: a_slope * th[0]
    with pytest.warns(ls.LandscapeWarning, match="wall"):  # the wall is where the mass is
        t = ls.mean_first_passage_time_1d(loss, 0.5, 2.0, learning_rate=eta, batch_size=batch, sigma2=sigma2,
                                          lower=0.0, points=801)
    exact = closed(2.0) - closed(0.5)
    # Richardson-extrapolated trapezoid: error O(h⁴), far below the reported estimate
    # (the O(h²) error of the fine grid)
    assert abs(t.time - exact) <= 1e-3 * t.error
    # the mirror image (target below the start, wall above) gives the same time
    with pytest.warns(ls.LandscapeWarning, match="wall"):
        mirrored = ls.mean_first_passage_time_1d(lambda th: -a_slope * th[0], -0.5, -2.0, learning_rate=eta,
                                                 batch_size=batch, sigma2=sigma2, upper=0.0, points=801)
    assert mirrored.time == pytest.approx(t.time, rel=1e-12)


def test_kramers_approaches_quadrature_as_barrier_grows(x64):
    """Symmetric double well (b = w = 1): T_quad/T_Kramers − 1 = (c_A + c_s) T + O(T²) with
    T = nσ²/2 and c_A = c_s = 3/(16 b) (Laplace's method at the well and at the barrier top),
    so the relative error (3/8)(T/b) → 0 as b/T grows."""
    problem = sd.problems.double_well_1d(1.0, 1.0, 0.0, sigma2=1.0, num_examples=8, key=KEY)
    info = problem.info
    crit = [{"point": np.array([x]), "loss": v, "hessian": np.array([[h]])}
            for x, v, h in zip(info["critical_points"], info["values"], info["curvatures"])]
    eta, batch = 0.1, 1
    ratios = np.array([4.0, 8.0, 16.0, 32.0])  # barrier / temperature
    gaps, remainders = [], []
    for r in ratios:
        temperature = 1.0 / r
        sigma2 = 2 * temperature * batch / eta
        quad = ls.mean_first_passage_time_1d(problem, -1.0, 1.0, learning_rate=eta, batch_size=batch,
                                             sigma2=sigma2, lower=-3.0)
        kramers = ls.kramers_escape_time(crit[0], crit[1], learning_rate=eta, batch_size=batch, sigma2=sigma2)
        assert quad.relative_error < 1e-10
        gaps.append(quad.time / kramers - 1)
        remainders.append(gaps[-1] - 3 / 8 * temperature)
    gaps, remainders = np.array(gaps), np.array(remainders)
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 0.013  # Kramers within 1.3 % at b/T = 32
    # first order exact, the remainder O(T²): it shrinks ≥ 3× per halving of T
    assert np.all(remainders[:-1] / remainders[1:] > 3), remainders
    assert np.all(np.abs(remainders) < (1 / ratios) ** 2)


def test_simulated_escape_time_matches_quadrature():
    """Euler–Maruyama (dt = 1 SGD step, Gaussian SGD) on the symmetric double well at
    b/T = 2: the mean first-passage time from −1 to +1 equals the exact SDE value within
    Monte-Carlo error. Discretisation bias of EM at η = 0.02 (ηL″ = 0.16), measured off-test
    with 16 000 replicas: −0.4 ± 0.7 %; tolerance 3 standard errors + 1 %."""
    problem = sd.problems.double_well_1d(1.0, 1.0, 0.0, sigma2=1.0, num_examples=8, key=KEY)
    eta, batch, temperature = 0.02, 1, 0.5
    sigma2 = 2 * temperature * batch / eta
    with jax.enable_x64(True):
        quad = ls.mean_first_passage_time_1d(problem, -1.0, 1.0, learning_rate=eta, batch_size=batch,
                                             sigma2=sigma2, lower=-3.0)
    steps = int(9 * quad.time)  # P(τ > 9 T) ≈ e^{−9}: censoring negligible, checked below
    result = sd.run(
        jax.random.key(11), sd.euler_maruyama(sd.noise.isotropic(sigma2)), problem, sd.Hyper(eta, batch),
        jnp.array([-1.0]), steps, replicas=4000, observers=[sd.observers.first_passage(lambda th: th[0] >= 1.0)],
    )
    fp = result["first_passage"]
    assert float(fp["hit_fraction"]) == 1.0
    mean, se = float(fp["mean_time"]), float(fp["mean_time_stderr"])
    assert abs(mean - quad.time) <= 3 * se + 0.01 * quad.time, (mean, se, quad.time)


# ------------------------------------------------------------------ quadrature
def test_boltzmann_masses_gaussian_closed_forms(x64):
    """L = ½θᵀAθ: the Boltzmann law is N(0, T A⁻¹), T = nσ²/2, so the mass of {uᵀθ > c}
    is Φ(−c/√(T uᵀA⁻¹u)). 1-D and 3-D; the reported error estimate must cover the error."""
    n, sigma2 = 0.1, 2.0
    t = n * sigma2 / 2
    # 1-D, split at 0.3
    masses = ls.boltzmann_basin_masses(lambda th: 2.0 * th[0] ** 2, lambda th: (th[0] > 0.3).astype(jnp.int32), 2,
                                       lower=[-2.0], upper=[2.0], cells=400, noise_scale=n, sigma2=sigma2)
    exact = ndtr(-0.3 / np.sqrt(t / 4.0))
    assert abs(masses.masses[1] - exact) <= masses.error[1] + 1e-14
    assert masses.masses.sum() == pytest.approx(1.0, abs=1e-14) and masses.outer_mass < 1e-30
    # 3-D, anisotropic, a tilted plane 2.4 standard deviations out
    a = np.array([[3.0, 0.5, 0.2], [0.5, 2.0, 0.3], [0.2, 0.3, 1.5]])
    u, c = np.array([1.0, -0.5, 0.25]), 0.6
    aj, uj = jnp.asarray(a), jnp.asarray(u)
    masses = ls.boltzmann_basin_masses(lambda th: 0.5 * th @ aj @ th, lambda th: (th @ uj > c).astype(jnp.int32), 2,
                                       lower=[-1.8] * 3, upper=[1.8] * 3, cells=48, noise_scale=n, sigma2=sigma2)
    exact = ndtr(-c / np.sqrt(t * u @ np.linalg.solve(a, u)))
    # the plane cuts cells: the error is O(h) and erratic in h; the estimate counts half
    # the mass of the cut cells, a conservative bound (here ~500× the actual error)
    assert abs(masses.masses[1] - exact) <= masses.error[1] < exact
    # the density is normalised and is the Gaussian at the cell centres (1-D)
    grid = ls.boltzmann_density(lambda th: 2.0 * th[0] ** 2, lower=-2.0, upper=2.0, cells=400, noise_scale=n,
                                sigma2=sigma2)
    x = grid.centers[0]
    np.testing.assert_allclose(grid.density, np.exp(-2 * x**2 / t) / np.sqrt(np.pi * t / 2), rtol=1e-10)


# --------------------------------------------------------------------- bad input
def _bad_loss(theta):
    """θ⁴ (a degenerate minimum at 0) for θ > −1; below, −10(−θ − 1)⁵ wins past a maximum
    near θ = −1.8 and the loss falls to −∞."""
    x = theta[0]
    return x**4 - 10.0 * jnp.where(x < -1.0, (-x - 1.0) ** 5, 0.0)


def test_bad_input_flagged_or_rejected(x64):
    starts = np.array([[1.0], [0.5], [-3.0], [-5.0]])
    with pytest.warns(ls.LandscapeWarning) as record:
        minima = ls.find_minima(_bad_loss, starts, max_steps=60)
    messages = " ".join(str(w.message) for w in record)
    assert "2 of 4 starts did not converge" in messages and "singular Hessian" in messages
    assert minima.num_failed == 2 and list(minima.converged) == [True, True, False, False]
    assert list(minima.labels) == [0, 0, -1, -1] and minima.degenerate.all()
    with pytest.raises(ValueError, match="singular Hessian"):
        ls.laplace_probabilities(minima, 0.1, 1.0)
    with pytest.raises(ValueError, match="none of the 2 starts converged"):
        ls.find_minima(_bad_loss, starts[2:], max_steps=60)

    problem = sd.problems.double_well_2d(**DW2, sigma2=1.0, num_examples=8, key=KEY)
    saddle = problem.info["saddles"][0]["point"]
    with pytest.raises(ValueError, match=r"not positive definite where a minimum is expected, at θ = \[0\.10"):
        ls.critical_point(problem, saddle, kind="minimum")
    with pytest.raises(ValueError, match="not a critical point"):
        ls.critical_point(problem, np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="singular"):
        ls.laplace_probabilities([{"loss": 0.0, "hessian": np.diag([1.0, 0.0])}, {"loss": 0.1, "hessian": np.eye(2)}],
                                 0.1, 1.0)
    with pytest.raises(ValueError, match="not positive definite"):
        ls.laplace_probabilities([{"loss": 0.0, "hessian": np.diag([1.0, -1.0])}], 0.1, 1.0)
    with pytest.raises(ValueError, match="log det H must be finite"):
        ls.laplace_probabilities(([0.0, 1.0], [0.0, -np.inf]), 0.1, 1.0)
    with pytest.raises(ValueError, match="noise_scale"):
        ls.laplace_probabilities(([0.0, 1.0], [0.0, 0.0]), 0.0, 1.0)
    with pytest.raises(ValueError, match="not an index-1 saddle"):
        ls.kramers_escape_time(problem.info["minima"][0], problem.info["minima"][1], learning_rate=0.1,
                               batch_size=1, sigma2=1.0)
    with pytest.raises(ValueError, match="lower"):
        ls.mean_first_passage_time_1d(_dw1(), -1.0, 1.0, learning_rate=0.1, batch_size=1, sigma2=1.0)
    with pytest.raises(ValueError, match="1–3 dimensions"):
        ls.boltzmann_basin_masses(lambda th: th @ th, lambda th: 0, 1, lower=[-1] * 4, upper=[1] * 4, cells=4,
                                  noise_scale=0.1, sigma2=1.0)
    with pytest.raises(ValueError, match="starts"):
        ls.find_minima(_bad_loss, np.array([[np.nan]]))


# ------------------------------------------------------------------ extreme parameters
def _double_well_critical():
    problem = sd.problems.double_well_1d(1.0, 1.0, 0.0, sigma2=1.0, num_examples=8, key=KEY)
    info = problem.info
    crit = [{"point": np.array([x]), "loss": v, "hessian": np.array([[h]])}
            for x, v, h in zip(info["critical_points"], info["values"], info["curvatures"])]
    return problem, crit


@pytest.mark.parametrize(
    "eta,batch,sigma2,limit",
    [
        (1e-200, 1.0, 1e-200, math.inf),  # temperature nσ²/2 = 5e-401 underflows: barrier/T overflows
        (1e-3, 1e300, 1e-10, math.inf),  # n = 1e-303, nσ² underflows
    ],
)
def test_kramers_extreme_parameters_give_limit_with_warning(eta, batch, sigma2, limit):
    """Extreme but valid η, S, σ²: inf (or 0) with a LandscapeWarning naming the quantity and
    the parameters, never a math domain / range error."""
    _, crit = _double_well_critical()
    with pytest.warns(ls.LandscapeWarning, match=r"kramers_escape_time.*(overflows|underflows).*learning_rate="):
        t = ls.kramers_escape_time(crit[0], crit[1], learning_rate=eta, batch_size=batch, sigma2=sigma2)
    assert t == limit


def test_kramers_huge_rate_is_zero_with_warning():
    """η = 1e300, |λ_s| = 1e300: rate η|λ_s|/2π · √(det H_A/|det H_s|) = 1e450/2π, so the time
    1/k underflows: 0 (its limit) with a warning."""
    minimum = {"loss": 0.0, "hessian": np.array([[1.0]])}
    saddle = {"loss": 1.0, "hessian": np.array([[-1e300]])}
    with pytest.warns(ls.LandscapeWarning, match=r"kramers_escape_time.*underflows.*learning_rate=1e\+300"):
        t = ls.kramers_escape_time(minimum, saddle, learning_rate=1e300, batch_size=1.0, sigma2=1.0)
    assert t == 0.0


def test_kramers_huge_barrier_is_inf_with_warning():
    """A barrier of 1e300 at temperature 1e-10: e^{barrier/T} is far beyond float64."""
    minimum = {"loss": 0.0, "hessian": np.array([[1.0]])}
    saddle = {"loss": 1e300, "hessian": np.array([[-1.0]])}
    with pytest.warns(ls.LandscapeWarning, match=r"overflows.*sigma2="):
        t = ls.kramers_escape_time(minimum, saddle, learning_rate=1e-5, batch_size=1.0, sigma2=2e-5)
    assert t == math.inf


@pytest.mark.parametrize("eta,batch,sigma2", [(1e-200, 1.0, 1e-200), (1e-160, 1.0, 1e-3)])
def test_mean_first_passage_extreme_noise_is_inf_with_warning(x64, eta, batch, sigma2):
    """Tiny η²σ²/S: log D is taken in logs (η²σ²/(2S) = 5e-601 and 5e-324 underflow), the time over a
    barrier overflows: inf and a warning naming the parameters."""
    problem, _ = _double_well_critical()
    with pytest.warns(ls.LandscapeWarning, match=r"mean_first_passage_time_1d.*learning_rate="):
        t = ls.mean_first_passage_time_1d(problem, -1.0, 1.0, learning_rate=eta, batch_size=batch,
                                          sigma2=sigma2, lower=-3.0, points=101)
    assert t.time == math.inf


def test_critical_noise_tiny_sigma2_is_inf_with_warning():
    """n* = 4 ΔL/(σ² Δlog det) with σ² Δlog det = 1e-330 (underflows to 0): inf with a warning."""
    with pytest.warns(ls.LandscapeWarning, match=r"critical_noise n\*.*sigma2="):
        cn = ls.critical_noise((1.0, 0.0, 0.0, 1e-30), 1e-300)
    assert cn.noise_scale == math.inf


def test_extreme_invalid_parameters_still_raise():
    _, crit = _double_well_critical()
    for bad in (-1e-300, 0.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="learning_rate"):
            ls.kramers_escape_time(crit[0], crit[1], learning_rate=bad, batch_size=1.0, sigma2=1.0)
        with pytest.raises(ValueError, match="sigma2"):
            ls.critical_noise((1.0, 0.0, 0.0, 1.0), bad)
