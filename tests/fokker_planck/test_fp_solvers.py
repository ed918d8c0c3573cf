"""Linear solvers of sgdsde.fokker_planck: the sparse direct and the Krylov path converge on
non-reversible problems up to 256² (2-D) and 64³ (3-D), the stationary covariance of a
full-noise anisotropic OU process converges to the Lyapunov solution at second order in h
(docs/theory.md §5: A Σ + Σ A = (η/S) C), and a solve that cannot reach its tolerance raises."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg as sparse_linalg

import sgdsde as sd
import sgdsde.fokker_planck as fp
from sgdsde.fokker_planck import sparse as fp_sparse
from sgdsde.fokker_planck.solve import _check_solver

ETA, BATCH = 0.1, 1


def ou_stationary(a, c, cells, solver="auto", tol=1e-12):
    """The FP stationary state of L = ½θᵀAθ with constant noise C on a cube of ±6 σ_max
    (truncation e^{−18}, far below the grid error) with `cells` cells per axis (equal h,
    so the full-noise stencil is monotone when |C_ab| sums stay below C_aa). Returns the
    grid, the generator, the mass, its covariance and the exact Lyapunov covariance."""
    problem = sd.problems.quadratic(a, c, 16, key=jax.random.PRNGKey(0))
    with jax.enable_x64(True):
        sigma = np.asarray(sd.theory.ou_stationary_cov(a, c, ETA, BATCH))
    half = 6.0 * np.sqrt(sigma.diagonal().max())
    d = len(a)
    g = fp.grid([-half] * d, [half] * d, [cells] * d)
    gen = fp.generator(g, problem, hyper=sd.Hyper(ETA, BATCH), noise=sd.noise.full(c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fp.CoarseGridWarning)  # the box corners are coarse; the mass is not
        m = np.asarray(fp.stationary(gen, solver=solver, tol=tol))
    x = g.points().reshape(-1, d)
    flat = m.reshape(-1)
    mean = flat @ x
    cov = (x - mean).T @ ((x - mean) * flat[:, None])
    return g, gen, m, cov, sigma


def test_full_noise_anisotropic_ou_2d_converges_at_second_order():
    # A and C do not commute: the stationary state carries a probability current (no detailed
    # balance), so only a linear solve gives it. This is the case where ADI-GMRES stalled at
    # backward error ~0.05 at 256² (covariance off by 50 %); "auto" factorises it exactly.
    a = np.array([[1.0, 0.3], [0.3, 0.5]])
    c = np.array([[1.0, 0.5], [0.5, 0.8]])
    assert np.abs(a @ c - c @ a).max() > 0.1
    spacing, errors = [], []
    for cells in (64, 128, 192, 256):
        g, gen, m, cov, sigma = ou_stationary(a, c, cells)
        assert _check_solver(gen, "auto") == "direct"
        # converged: the backward error ‖Gm‖/‖|G||m|‖ is at the rounding floor of a 9-point
        # stencil sum, ≈ 9 ε ≈ 2e-15, far below tol = 1e-12 (measured 4e-16 … 1.9e-15)
        assert fp.residual(gen, m) <= 1e-14
        assert abs(m.sum() - 1.0) <= 1e-13 and m.min() >= 0.0
        spacing.append(g.spacing[0])
        errors.append(np.abs(cov - sigma).max() / np.abs(sigma).max())
    orders = np.log(np.divide(errors[:-1], errors[1:])) / np.log(np.divide(spacing[:-1], spacing[1:]))
    # expected order 2 (second-order fluxes, midpoint moments); the O(h⁴) term shifts the
    # estimate by ≈ κ(h₁² − h₂²)/log(h₁/h₂), measured 0.009 for 64→128 and shrinking ∝ h²
    # after: |order − 2| ≤ 0.05 leaves 5× that margin and rejects a first-order scheme
    assert np.all(np.abs(orders - 2.0) <= 0.05), (errors, orders)
    # and the error itself: measured 1.5e-2 (64²) → 9.6e-4 (256²) relative to max|Σ|
    assert errors[-1] < 1.2e-3, errors


def test_full_noise_anisotropic_ou_3d_at_64_cubed():
    # 64³ = 262 144 cells: the LU factor would need ≈ 4·10⁸ entries, so "auto" takes the
    # ADI-preconditioned Krylov path. A stationary Krylov solve at this size costs about a
    # minute of CPU (docs/fokker_planck.md), so this test takes one backward-Euler step
    # (Δt = 10 SGD steps, Δt·λ_max ≈ 1.2–1.5·10²: a stiff implicit solve) from the exact stationary
    # law N(0, Σ), Σ the Lyapunov solution, which the continuum keeps for all t: the
    # covariance after the step differs from Σ only by the grid error (the step's time
    # error acts on that O(h²) deviation only). Two boxes, ±12 σ_max and ±6 σ_max, on one
    # grid shape (one compiled program) give h and h/2.
    a = np.array([[1.0, 0.3, 0.1], [0.3, 0.8, 0.2], [0.1, 0.2, 0.6]])
    c = np.array([[1.0, 0.3, -0.2], [0.3, 0.8, 0.2], [-0.2, 0.2, 0.7]])
    assert np.abs(a @ c - c @ a).max() > 0.1
    problem = sd.problems.quadratic(a, c, 16, key=jax.random.PRNGKey(0))
    with jax.enable_x64(True):
        sigma = np.asarray(sd.theory.ou_stationary_cov(a, c, ETA, BATCH))
    errors = []
    for width in (12.0, 6.0):
        half = width * np.sqrt(sigma.diagonal().max())
        g = fp.grid([-half] * 3, [half] * 3, [64] * 3)
        gen = fp.generator(g, problem, hyper=sd.Hyper(ETA, BATCH), noise=sd.noise.full(c))
        assert _check_solver(gen, "auto") == "krylov"
        # evolve raises ConvergenceError unless the solve reaches backward error ≤ tol = 1e-11
        m = fp.evolve(gen, fp.gaussian(g, [0.0] * 3, sigma), 10.0, dt=10.0, method="backward_euler").mass[-1]
        assert abs(m.sum() - 1.0) <= 1e-12  # zero-mass Krylov corrections
        x = g.points().reshape(-1, 3)
        flat = m.reshape(-1)
        cov = (x - flat @ x).T @ ((x - flat @ x) * flat[:, None])
        errors.append(np.abs(cov - sigma).max() / np.abs(sigma).max())
    order = np.log2(errors[0] / errors[1])
    # expected order 2; the O(h⁴) term at h = 0.375 σ_max shifts the estimate by ≈ 4× the
    # 0.009 measured in 2-D at half that h: |order − 2| ≤ 0.1
    assert abs(order - 2.0) <= 0.1, (errors, order)


def _solver_l1_bound(gen, dt, tol, steps, masses):
    """ℓ¹ bound on the difference of two TR-BDF2 evolves whose every solve reaches backward
    error ω ≤ tol (direct and Krylov): (I + cK)⁻¹ ≥ 0 has unit column sums (ℓ¹-contractive),
    so each solve adds at most ‖r‖₁ ≤ √N ω ‖|A||x| + |y|‖₂ of ℓ¹ error, with
    ‖|A||x| + |y|‖₂ ≤ (2 + 2cλ) max‖m‖₂ (c ≤ Δt, λ the largest exit rate); 2 stages per
    step, and both evolves err."""
    with jax.enable_x64(True):
        rate = float(jnp.max(gen.exit_rates()))
    flat = np.asarray(masses).reshape(np.shape(masses)[0], -1)
    per_solve = np.sqrt(flat.shape[1]) * tol * (2 + 2 * dt * rate) * np.linalg.norm(flat, axis=1).max()
    return 2 * 2 * steps * per_solve


def test_direct_evolve_factorises_once_and_matches_krylov(monkeypatch):
    # TR-BDF2 uses one matrix I + cΔtK for both stages: one factorisation for all 40 solves
    a = np.array([[1.0, 0.3], [0.3, 0.5]])
    c = np.array([[1.0, 0.5], [0.5, 0.8]])
    problem = sd.problems.quadratic(a, c, 16, key=jax.random.PRNGKey(0))
    g = fp.grid([-1.2, -1.2], [1.2, 1.2], [32, 32])
    gen = fp.generator(g, problem, hyper=sd.Hyper(ETA, BATCH), noise=sd.noise.full(c))
    m0 = fp.gaussian(g, [0.3, -0.2], 0.1**2)
    calls = []
    real_splu = sparse_linalg.splu
    monkeypatch.setattr(fp_sparse.sparse_linalg, "splu", lambda *args, **kw: calls.append(1) or real_splu(*args, **kw))
    fp_sparse._cache.clear()
    steps, dt, tol = 20, 0.5, 1e-11
    direct = fp.evolve(gen, m0, steps * dt, dt=dt, solver="direct", save_every=1, tol=tol).mass
    assert len(calls) == 1
    krylov = fp.evolve(gen, m0, steps * dt, dt=dt, solver="krylov", save_every=1, tol=tol).mass
    assert len(calls) == 1  # the Krylov path never factorises
    # mass: each correction is projected onto zero mass, so Σm moves only by the rounding of
    # the final additions (≈ √N ε per step)
    assert np.abs(direct.sum(axis=(1, 2)) - 1.0).max() <= 1e-12
    assert np.abs(direct - krylov).sum(axis=(1, 2)).max() <= _solver_l1_bound(gen, dt, tol, steps, direct)


def test_direct_evolve_runs_on_the_host_and_matches_the_traced_path(monkeypatch):
    """Concrete inputs with the direct solver: the whole time loop runs on the host (NumPy
    and SuperLU, no compiled loop); inside a user's trace the compiled loop with one
    callback per solve runs instead. Same steps, same factor: they differ only in the
    rounding of the reductions (the mass projection's mean, ≤ ε‖δ‖₁ per entry, and fused
    multiply-adds, ≤ 1 ulp), ≤ 3Nε in ℓ¹ per solve (masses ≤ 1, ‖δ‖₁ ≤ 2), carried by
    ℓ¹-contractive steps: ≤ 2 solves × steps × 3Nε in all."""
    from sgdsde.fokker_planck import stepping

    a = np.array([[1.0, 0.3], [0.3, 0.5]])
    c = np.array([[1.0, 0.5], [0.5, 0.8]])  # full noise: a non-reversible generator
    problem = sd.problems.quadratic(a, c, 16, key=jax.random.PRNGKey(0))
    g = fp.grid([-1.2, -1.2], [1.2, 1.2], [32, 32])
    gen = fp.generator(g, problem, hyper=sd.Hyper(ETA, BATCH), noise=sd.noise.full(c))
    m0 = fp.gaussian(g, [0.3, -0.2], 0.1**2)
    steps, dt = 20, 0.5
    for method in ("tr_bdf2", "backward_euler"):
        with monkeypatch.context() as patch:
            patch.setattr(stepping, "_evolve", lambda *args, **kw: pytest.fail("compiled loop used"))
            host = fp.evolve(gen, m0, steps * dt, dt=dt, method=method, solver="direct", save_every=1).mass
        with jax.enable_x64(True):
            traced = jax.jit(lambda m: fp.evolve(gen, m, steps * dt, dt=dt, method=method, solver="direct",
                                                 save_every=1).mass)(jnp.asarray(m0))
        bound = 2 * steps * 3 * g.size * np.finfo(np.float64).eps
        assert np.abs(host - np.asarray(traced)).sum(axis=(1, 2)).max() <= bound, method
        assert np.abs(host.sum(axis=(1, 2)) - 1.0).max() <= 1e-12


def test_gradients_through_direct_solves_match_finite_differences(x64):
    # d/dη, d/dS of a basin mass through the 2-D direct stationary solve (full noise: no
    # detailed balance) and through direct implicit steps; the adjoint uses the transposed
    # factor (custom_linear_solve)
    c = np.array([[1.0, 0.4], [0.4, 0.8]])
    g = fp.grid([-2.0, -2.0], [2.0, 2.0], [24, 24])

    def loss(x):
        return (x[0] ** 2 - 1) ** 2 + 0.3 * x[0] + 0.5 * x[1] ** 2 + 0.3 * x[0] * x[1]

    right = lambda th: (th[0] > 0).astype(jnp.int32)  # noqa: E731
    m0 = fp.gaussian(g, [-0.8, 0.3], 0.25**2)

    def masses(eta, batch):
        gen = fp.generator(g, loss=loss, hyper=sd.Hyper(eta, batch), noise=sd.noise.full(1.5 * c), clock="sme")
        pi = fp.stationary(gen, solver="direct")
        late = fp.evolve(gen, m0, 2.0, dt=0.25, solver="direct").mass[-1]
        return jnp.stack([fp.basin_masses(g, pi, right, 2)[1], fp.basin_masses(g, late, right, 2)[1]])

    args = (0.4, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fp.CoarseGridWarning)
        jac = jax.jacobian(masses, argnums=(0, 1))(*args)
        for i in range(2):
            step = 1e-5 * args[i]
            up, down = list(args), list(args)
            up[i] += step
            down[i] -= step
            fd = (np.asarray(masses(*up)) - np.asarray(masses(*down))) / (2 * step)
            # central differences: truncation O(step²) ≈ 1e-10 relative; rounding of the
            # solves (backward error ≈ 1e-16) over the step 1e-5·arg: ≈ 1e-11 relative
            np.testing.assert_allclose(np.asarray(jac[i]), fd, rtol=1e-6)
            assert np.all(np.abs(np.asarray(jac[i])) > 1e-4)  # not trivially zero


def test_a_solve_that_cannot_converge_raises():
    # tol = 1e-30 is below the rounding floor (≈ 1e-16) of any solve: both solvers must say so
    c = np.array([[1.0, 0.5], [0.5, 0.8]])
    g = fp.grid([-2.0, -2.0], [2.0, 2.0], [16, 16])

    def generator(scale):
        return fp.langevin_generator(g, potential=lambda x: 0.5 * x @ x + 0.2 * x[0] * x[1], diffusion=scale * c)

    gen = generator(0.3)
    with pytest.raises(fp.ConvergenceError, match=r'krylov solve stopped at backward error .* > tol = 1e-30.*solver="direct"'):
        fp.stationary(gen, solver="krylov", tol=1e-30)
    with pytest.raises(fp.ConvergenceError, match=r"direct solve stopped at backward error .* > tol = 1e-30"):
        fp.stationary(gen, solver="direct", tol=1e-30)
    m0 = fp.gaussian(g, [0.2, 0.0], 0.3**2)
    with pytest.raises(fp.ConvergenceError, match=r"evolve: the krylov solve stopped"):
        fp.evolve(gen, m0, 1.0, dt=0.5, solver="krylov", tol=1e-30)
    assert issubclass(fp.ConvergenceError, RuntimeError)
    with pytest.raises(ValueError, match="solver"):
        fp.stationary(gen, solver="lu")

    # inside a trace nothing can raise: the non-converged result is NaN, never a number
    def left_mass(scale, tol):
        return fp.stationary(generator(scale), tol=tol)[: g.shape[0] // 2].sum()

    with jax.enable_x64(True):
        assert np.isnan(float(jax.grad(left_mass)(0.3, 1e-30)))
        assert np.isfinite(float(jax.grad(left_mass)(0.3, 1e-12)))


def test_factor_cache_tells_apart_rates_with_the_same_summary(monkeypatch):
    """The factor cache is looked up by a cheap summary (σ, pin, each rate array's sum and
    end values) and confirmed by exact comparison: a generator whose forward rates differ
    only by two swapped interior entries (same summary) is factorised anew and solved with
    its own factor (bit for bit the result of an empty cache)."""
    import dataclasses

    problem = sd.problems.quadratic(np.diag([1.0, 0.5]), np.eye(2), 16, key=jax.random.PRNGKey(0))
    g = fp.grid([-1.5, -1.5], [1.5, 1.5], [12, 12])
    gen = fp.generator(g, problem, hyper=sd.Hyper(ETA, BATCH), noise=sd.noise.isotropic(1.0))
    forward = np.array(gen.forward[0])
    forward[3, 4], forward[5, 6] = forward[5, 6], forward[3, 4]
    assert forward[3, 4] != forward[5, 6]
    original = np.asarray(gen.forward[0])
    assert float(forward.sum()) == float(original.sum())  # the same summary: only the exact comparison tells
    swapped = dataclasses.replace(gen, forward=(forward.astype(np.asarray(gen.forward[0]).dtype), *gen.forward[1:]))
    m0 = fp.gaussian(g, [0.3, -0.2], 0.2**2)
    calls = []
    real_splu = sparse_linalg.splu
    monkeypatch.setattr(fp_sparse.sparse_linalg, "splu", lambda *args, **kw: calls.append(1) or real_splu(*args, **kw))
    fp_sparse._cache.clear()
    fp.evolve(gen, m0, 2.0, dt=0.5, solver="direct")
    cached = np.asarray(fp.evolve(swapped, m0, 2.0, dt=0.5, solver="direct").mass)
    assert len(calls) == 2
    fp_sparse._cache.clear()
    np.testing.assert_array_equal(cached, np.asarray(fp.evolve(swapped, m0, 2.0, dt=0.5, solver="direct").mass))


def test_auto_factorises_a_large_grid_only_when_the_steps_repay_it(monkeypatch):
    """Above DIRECT_MAX_ENTRIES, "auto" weighs one factorisation against the Krylov steps it
    saves: at 48³ (estimated 1.4·10⁸ factor entries) the cost model's break-even is 67 TR-BDF2
    steps, so 10 steps take Krylov and 100 take the direct path; without a step count (the
    stationary solve) and when the factor would not fit in memory, Krylov."""
    from sgdsde.fokker_planck import diagnostics

    g = fp.grid([-2.0] * 3, [2.0] * 3, [48] * 3)
    gen = fp.langevin_generator(g, potential=lambda x: 0.5 * jnp.sum(x**2), diffusion=0.25)
    assert fp_sparse.estimated_factor_entries(g.shape) > diagnostics.DIRECT_MAX_ENTRIES
    assert 60 <= diagnostics.direct_break_even_steps(g.shape) <= 70
    assert _check_solver(gen, "auto", 10) == "krylov"
    assert _check_solver(gen, "auto", 100) == "direct"
    assert _check_solver(gen, "auto") == "krylov"
    assert _check_solver(gen, "direct", 1) == "direct" and _check_solver(gen, "krylov", 10**6) == "krylov"
    monkeypatch.setattr(diagnostics, "direct_memory_entries", lambda: 1e8)  # a machine with ≈ 9 GiB
    assert _check_solver(gen, "auto", 100) == "krylov"
    # below the size threshold the step count does not matter
    small = fp.langevin_generator(fp.grid([-2.0] * 3, [2.0] * 3, [12] * 3),
                                  potential=lambda x: 0.5 * jnp.sum(x**2), diffusion=0.25)
    assert _check_solver(small, "auto", 1) == "direct"


def test_evolve_counts_its_steps_for_the_solver_choice(monkeypatch):
    """evolve passes its number of TR-BDF2 steps (a backward-Euler step, one solve, counts
    half) to the choice: with the size threshold at 0 and a break-even of 8 steps, 8 TR-BDF2
    steps factorise and 7 do not, and 16 backward-Euler steps factorise and 15 do not."""
    from sgdsde.fokker_planck import diagnostics

    monkeypatch.setattr(diagnostics, "DIRECT_MAX_ENTRIES", 0.0)
    monkeypatch.setattr(diagnostics, "direct_break_even_steps", lambda shape: 8.0)
    calls = []
    real_splu = sparse_linalg.splu
    monkeypatch.setattr(fp_sparse.sparse_linalg, "splu", lambda *args, **kw: calls.append(1) or real_splu(*args, **kw))
    g = fp.grid([-1.5, -1.5], [1.5, 1.5], [12, 12])
    gen = fp.langevin_generator(g, potential=lambda x: 0.5 * jnp.sum(x**2), diffusion=1.0)
    m0 = fp.gaussian(g, [0.3, -0.2], 0.25**2)
    for method, steps, factorises in (("tr_bdf2", 7, False), ("tr_bdf2", 8, True),
                                      ("backward_euler", 15, False), ("backward_euler", 16, True)):
        fp_sparse._cache.clear()
        fp_sparse._krylov_ledger.clear()
        calls.clear()
        fp.evolve(gen, m0, steps * 0.25, dt=0.25, method=method)
        assert bool(calls) == factorises, (method, steps)


def test_auto_rents_krylov_until_the_steps_of_repeated_evolves_repay_a_factor(monkeypatch):
    """The ski-rental rule of "auto" above the size threshold (break-even patched to 8
    TR-BDF2 steps): evolves of 3 steps each of one system take Krylov while the steps run
    so far plus their own stay below 8 (calls 1 and 2: 3, 6), the third factorises (6 + 3
    ≥ 8), and later calls find the factor cached and only back-solve. The ledger is kept
    per system: another Δt or other rates start again from 0, and another rate array
    with the same cheap key is told apart by the exact comparison. Every call's answer
    equals the direct solve's to the Krylov tolerance."""
    from sgdsde.fokker_planck import diagnostics

    monkeypatch.setattr(diagnostics, "DIRECT_MAX_ENTRIES", 0.0)
    monkeypatch.setattr(diagnostics, "direct_break_even_steps", lambda shape: 8.0)
    factorised, chosen = [], []
    real_splu, real_check = sparse_linalg.splu, diagnostics._check_solver
    monkeypatch.setattr(fp_sparse.sparse_linalg, "splu",
                        lambda *args, **kw: factorised.append(1) or real_splu(*args, **kw))
    from sgdsde.fokker_planck import stepping

    monkeypatch.setattr(stepping, "_check_solver", lambda *a: chosen.append(real_check(*a)) or chosen[-1])
    fp_sparse._cache.clear()
    fp_sparse._krylov_ledger.clear()
    g = fp.grid([-1.5, -1.5], [1.5, 1.5], [12, 12])
    gen = fp.langevin_generator(g, potential=lambda x: 0.5 * jnp.sum(x**2), diffusion=1.0)
    m0 = fp.gaussian(g, [0.3, -0.2], 0.25**2)
    reference = np.asarray(fp.evolve(gen, m0, 0.75, dt=0.25, solver="direct").mass)
    fp_sparse._cache.clear()
    factorised.clear()
    chosen.clear()
    masses = [np.asarray(fp.evolve(gen, m0, 0.75, dt=0.25).mass) for _ in range(5)]
    assert chosen == ["krylov", "krylov", "direct", "direct", "direct"]
    assert len(factorised) == 1
    assert fp_sparse.krylov_steps(fp_sparse.system_key(gen, 1.0 / stepping._solve_coefficient("tr_bdf2", 0.25))) == 6
    bound = _solver_l1_bound(gen, 0.25, 1e-11, 3, reference)  # evolve's default tol
    for mass in masses:
        assert np.abs(mass - reference).sum(axis=tuple(range(1, mass.ndim))).max() <= bound
    # another Δt is another system: its ledger starts at 0
    chosen.clear()
    fp.evolve(gen, m0, 0.6, dt=0.2)
    assert chosen == ["krylov"]
    # rates differing only inside an array (same sum and end values) are another system
    import dataclasses

    swapped = np.array(gen.forward[0])
    swapped[3, 4], swapped[5, 6] = swapped[5, 6], swapped[3, 4]
    assert swapped[3, 4] != swapped[5, 6] and float(swapped.sum()) == float(np.asarray(gen.forward[0]).sum())
    other = dataclasses.replace(gen, forward=(jnp.asarray(swapped), *gen.forward[1:]))
    assert fp_sparse.krylov_steps(fp_sparse.system_key(other, 1.0 / stepping._solve_coefficient("tr_bdf2", 0.25))) == 0
    fp_sparse._cache.clear()
    fp_sparse._krylov_ledger.clear()


def test_factor_cache_keeps_within_the_memory_budget(monkeypatch):
    """The factor cache drops its oldest factors while their entries exceed
    direct_memory_entries(), always keeping the newest: with a budget below two factors of
    a 12² grid only the last one stays (and is reused)."""
    fp_sparse._cache.clear()
    g = fp.grid([-1.5, -1.5], [1.5, 1.5], [12, 12])
    gen = fp.langevin_generator(g, potential=lambda x: 0.5 * jnp.sum(x**2), diffusion=0.25)
    one = fp_sparse.host_factor(gen, 1.0).lu.nnz
    monkeypatch.setattr(fp_sparse, "direct_memory_entries", lambda: 1.5 * one)
    newest = fp_sparse.host_factor(gen, 2.0)
    assert len(fp_sparse._cache) == 1
    assert fp_sparse.host_factor(gen, 2.0) is newest
    monkeypatch.setattr(fp_sparse, "direct_memory_entries", lambda: 0.5 * one)
    fp_sparse.host_factor(gen, 3.0)
    assert len(fp_sparse._cache) == 1  # over budget on its own: kept, as the newest
    monkeypatch.setattr(fp_sparse, "direct_memory_entries", lambda: 10 * one)
    for shift in (4.0, 5.0, 6.0, 7.0, 8.0):
        fp_sparse.host_factor(gen, shift)
    assert len(fp_sparse._cache) == fp_sparse._CACHE_SIZE
    fp_sparse._cache.clear()


def test_host_evolve_checks_the_first_and_the_last_solve(monkeypatch):
    """The host loop of a direct evolve computes the backward error of its first and last
    solves only (a factor's backward error does not depend on the right-hand side), and a
    bad first solve still raises ConvergenceError."""
    from sgdsde.fokker_planck import stepping

    g = fp.grid([-1.5, -1.5], [1.5, 1.5], [12, 12])
    gen = fp.langevin_generator(g, potential=lambda x: 0.5 * jnp.sum(x**2), diffusion=1.0)
    m0 = fp.gaussian(g, [0.3, -0.2], 0.25**2)
    real = stepping.host_implicit_solver
    flags, omegas = [], []

    def recording(gen, c):
        solve = real(gen, c)

        def wrapped(y, x0, check=True):
            flags.append(check)
            x, omega = solve(y, x0, True)
            omegas.append(omega)
            return x, omega if check else 0.0

        return wrapped

    monkeypatch.setattr(stepping, "host_implicit_solver", recording)
    for method, solves in (("tr_bdf2", 2 * 7), ("backward_euler", 7)):
        flags.clear()
        fp.evolve(gen, m0, 7 * 0.25, dt=0.25, method=method, save_every=3, solver="direct")
        assert flags == [True] + [False] * (solves - 2) + [True], (method, flags)
    # every solve is at the rounding floor, the unchecked ones too: ω of a back-solve with a
    # growth-≤ 2 factor is a few ε for a 5-point stencil (measured ≤ 2.3e-16 on 64²–256²);
    # 1e-15 ≈ 4.5ε allows that and fails any factor that has lost a digit
    assert max(omegas) <= 1e-15

    def failing_first(gen, c):
        solve = real(gen, c)
        return lambda y, x0, check=True: (solve(y, x0, check)[0], 1.0 if check else 0.0)

    monkeypatch.setattr(stepping, "host_implicit_solver", failing_first)
    with pytest.raises(fp.ConvergenceError):
        fp.evolve(gen, m0, 1.0, dt=0.25, solver="direct")
