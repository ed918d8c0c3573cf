"""Ready-made problems: their documented exact facts (noise covariance, minima, Hessians)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd

# Exact facts are checked in float64. The data are whitened in float64 with an
# eigendecomposition (relative error ~ cond · ε ≈ 1e-14 for the well-conditioned
# matrices used here), so 1e-12 is the tolerance for "exact".
TOL = 1e-12

A3 = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 3.0]])
C3 = np.array([[1.0, 0.2, -0.1], [0.2, 0.5, 0.0], [-0.1, 0.0, 0.8]])


def _facts(problem, thetas):
    """loss, grad, Hessian and C of a problem at each row of ``thetas``, in one jit compile
    (compiles dominate the cost of these small checks): dict of (len(thetas), …) arrays."""

    def one(theta):
        return {
            "loss": problem.loss(theta),
            "grad": problem.grad(theta),
            "hessian": jax.hessian(problem.loss)(theta),
            "cov": problem.gradient_covariance(theta),
        }

    out = jax.jit(jax.vmap(one))(jnp.atleast_2d(jnp.asarray(thetas)))
    return jax.tree_util.tree_map(np.asarray, out)


def _random_thetas(d, count=4, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=(count, d))


# ------------------------------------------------------------------ quadratic
def test_quadratic_noise_cov_and_loss_exact(x64):
    theta_star = np.array([0.5, -1.0, 2.0])
    problem = sd.problems.quadratic(A3, C3, 10, key=jax.random.key(0), minimum=theta_star)
    assert problem.num_examples == 10
    np.testing.assert_array_equal(problem.info["hessian"], A3)
    np.testing.assert_array_equal(problem.info["noise_cov"], C3)
    np.testing.assert_array_equal(problem.info["minimum"], theta_star)
    thetas = np.vstack([_random_thetas(3), theta_star])
    facts = _facts(problem, thetas)
    for i, theta in enumerate(thetas):
        u = theta - theta_star
        np.testing.assert_allclose(facts["cov"][i], C3, rtol=0, atol=TOL)
        np.testing.assert_allclose(facts["loss"][i], 0.5 * u @ A3 @ u, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(facts["grad"][i], A3 @ u, rtol=0, atol=TOL)
        np.testing.assert_allclose(facts["hessian"][i], A3, rtol=TOL)
    np.testing.assert_allclose(facts["grad"][-1], 0.0, atol=TOL)  # θ* is the minimum


def test_quadratic_scalar_inputs_and_singular_noise(x64):
    # 1-D with plain floats; and a rank-deficient (PSD, not PD) noise covariance
    one = sd.problems.quadratic(2.0, 0.7, 5, key=jax.random.key(1))
    np.testing.assert_allclose(_facts(one, [[0.3]])["cov"][0], [[0.7]], atol=TOL)
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    two = sd.problems.quadratic(np.eye(2), singular, 6, key=jax.random.key(2))
    np.testing.assert_allclose(_facts(two, [[0.1, -2.0]])["cov"][0], singular, atol=TOL)


def test_same_key_same_data_different_key_different_data():
    a = sd.problems.quadratic(A3, C3, 12, key=jax.random.key(3))
    b = sd.problems.quadratic(A3, C3, 12, key=jax.random.key(3))
    c = sd.problems.quadratic(A3, C3, 12, key=jax.random.key(4))
    legacy = sd.problems.quadratic(A3, C3, 12, key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.data, legacy.data)
    assert not np.allclose(a.data, c.data)


def test_whitened_noise_exact_moments():
    cov = C3
    x = sd.problems.whitened_noise(7, cov, key=jax.random.key(5))
    assert x.shape == (7, 3) and x.dtype == np.float64
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=TOL)
    np.testing.assert_allclose(x.T @ x / 7, cov, atol=TOL)


# ------------------------------------------------------------------ isotropic landscapes
def _landscapes():
    key = jax.random.key(6)
    return {
        "double_well_1d": (sd.problems.double_well_1d(0.8, 1.5, tilt=0.2, sigma2=0.3, num_examples=50, key=key), 1, 0.3),
        "double_well_2d": (sd.problems.double_well_2d(1.0, 1.0, 2.0, sigma2=2.5, num_examples=50, key=key), 2, 2.5),
        "multi_well": (
            sd.problems.multi_well([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]], [0.0, 0.3, 0.5], [0.5, 4.0, 1.0],
                                   sigma2=0.7, num_examples=50, key=key),
            2,
            0.7,
        ),
    }


@pytest.mark.parametrize("name", ["double_well_1d", "double_well_2d", "multi_well"])
def test_isotropic_landscapes_have_C_sigma2_identity(x64, name):
    problem, d, sigma2 = _landscapes()[name]
    assert problem.info["sigma2"] == sigma2 and problem.info["dim"] == d
    thetas = _random_thetas(d, seed=1)
    facts = _facts(problem, thetas)
    landscape = np.asarray(jax.jit(jax.vmap(problem.info["loss"]))(jnp.asarray(thetas)))
    for i in range(len(thetas)):
        np.testing.assert_allclose(facts["cov"][i], sigma2 * np.eye(d), rtol=0, atol=TOL)
    # the noise term averages out: the problem's loss is the landscape L itself
    np.testing.assert_allclose(facts["loss"], landscape, rtol=TOL, atol=TOL)


def test_double_well_2d_untilted_facts(x64):
    b, w, k = 0.7, 1.3, 2.0
    problem = sd.problems.double_well_2d(b, w, k, num_examples=20, key=jax.random.key(7))
    minima, saddles = problem.info["minima"], problem.info["saddles"]
    assert len(minima) == 2 and len(saddles) == 1
    points = sorted(m["point"][0] for m in minima)
    np.testing.assert_allclose(points, [-w, w], rtol=TOL)
    for m in minima:
        np.testing.assert_allclose(m["loss"], 0.0, atol=TOL)
        np.testing.assert_allclose(m["hessian"], np.diag([8 * b / w**2, k]), rtol=TOL)
    np.testing.assert_allclose(saddles[0]["point"], [0.0, 0.0], atol=TOL)
    np.testing.assert_allclose(saddles[0]["loss"], b, rtol=TOL)
    np.testing.assert_allclose(saddles[0]["hessian"], np.diag([-4 * b / w**2, k]), rtol=TOL)


@pytest.mark.parametrize("tilt", [0.0, 0.25])
def test_double_well_2d_info_are_critical_points(x64, tilt):
    """The listed minima and saddles are zeros of the gradient, with the stated loss and
    Hessian (jax.hessian of the problem's loss). np.roots on a well-conditioned cubic
    gives the roots to ~1e-15, so the gradient there is ≤ |L''| · 1e-15 ≪ 1e-10."""
    problem = sd.problems.double_well_2d(1.0, 1.2, 0.5, tilt=tilt, num_examples=20, key=jax.random.key(8))
    found = problem.info["minima"] + problem.info["saddles"]
    assert len(problem.info["minima"]) == 2 and len(problem.info["saddles"]) == 1
    facts = _facts(problem, np.stack([c["point"] for c in found]))
    for i, c in enumerate(found):
        np.testing.assert_allclose(facts["grad"][i], 0.0, atol=1e-10)
        np.testing.assert_allclose(facts["loss"][i], c["loss"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(facts["hessian"][i], c["hessian"], rtol=1e-10, atol=1e-10)
    for c in problem.info["minima"]:
        assert np.all(np.linalg.eigvalsh(c["hessian"]) > 0)
    eig = np.linalg.eigvalsh(problem.info["saddles"][0]["hessian"])
    assert eig[0] < 0 < eig[1]
    if tilt > 0:  # a tilt makes the left well deeper
        left, right = sorted(problem.info["minima"], key=lambda c: c["point"][0])
        assert left["loss"] < right["loss"]


@pytest.mark.parametrize("tilt", [0.0, -0.3, 0.5, 3.0])
def test_double_well_1d_critical_points(x64, tilt):
    b, w = 0.9, 1.4
    problem = sd.problems.double_well_1d(b, w, tilt, num_examples=20, key=jax.random.key(9))
    info = problem.info
    points, values, curvatures = info["critical_points"], info["values"], info["curvatures"]
    # a tilt above the cubic's discriminant threshold 8b/(3√3 w) leaves one critical point
    assert len(points) == (3 if abs(tilt) < 8 * b / (3 * np.sqrt(3) * w) else 1)
    assert np.all(np.diff(points) > 0)
    facts = _facts(problem, np.asarray(points)[:, None])
    np.testing.assert_allclose(facts["grad"], 0.0, atol=1e-10)
    np.testing.assert_allclose(facts["loss"], values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(facts["hessian"][:, 0, 0], curvatures, rtol=1e-10, atol=1e-10)
    if tilt == 0.0:
        np.testing.assert_allclose(points, [-w, 0.0, w], atol=1e-12)
        np.testing.assert_allclose(values, [0.0, b, 0.0], atol=1e-12)
        np.testing.assert_allclose(curvatures, [8 * b / w**2, -4 * b / w**2, 8 * b / w**2], rtol=1e-12)


def _multi_well_bounds(mu, lv, hs, s, k):
    """Bounds on the deviation of L = −s log Σ_j exp(−q_j/s) from well k at μ_k.

    With p = softmax(−q/s): ∇L = Σ_j p_j ∇q_j, ∇²L = Σ_j p_j H_j − (1/s) Cov_p(∇q).
    At μ_k, ∇q_k = 0 and p_j ≤ ε_j = exp(−(q_j(μ_k) − L_k)/s) for j ≠ k, so
      |∇L(μ_k)|          ≤ Σ_{j≠k} ε_j |∇q_j|,
      ‖∇²L(μ_k) − H_k‖₂  ≤ Σ_{j≠k} ε_j (‖H_j − H_k‖₂ + |∇q_j|²/s)   (Cov_p ≼ Σ p_j ∇q_j∇q_jᵀ),
      L_k − s Σ ε_j ≤ L(μ_k) ≤ L_k.
    """
    grad_bound = hess_bound = loss_bound = 0.0
    for j in range(len(lv)):
        if j == k:
            continue
        u = mu[k] - mu[j]
        eps = np.exp(-(lv[j] + 0.5 * u @ hs[j] @ u - lv[k]) / s)
        gq = hs[j] @ u
        grad_bound += eps * np.linalg.norm(gq)
        hess_bound += eps * (np.linalg.norm(hs[j] - hs[k], 2) + gq @ gq / s)
        loss_bound += s * eps
    return grad_bound, hess_bound, loss_bound


@pytest.mark.parametrize("softness", [0.02, 1.0])
def test_multi_well_near_centres(x64, softness):
    """Near each centre the gradient vanishes and the Hessian is the nominal one, up to
    the exponentially small bounds of _multi_well_bounds (plus 1e-12 for rounding).
    softness 0.02: bounds < 1e-14 (effectively exact); softness 1.0: bounds ~1e-2 and the
    actual deviations are nonzero, so the inequality itself is exercised."""
    mu = np.array([[-1.5, 0.0], [1.5, 0.5], [0.0, 2.5]])
    lv = np.array([0.0, 0.3, 0.5])
    hs = np.array([0.5 * np.eye(2), 4.0 * np.eye(2), [[2.0, 0.5], [0.5, 1.0]]])
    problem = sd.problems.multi_well(mu, lv, hs, softness=softness, num_examples=20, key=jax.random.key(10))
    np.testing.assert_array_equal(problem.info["centers"], mu)
    np.testing.assert_array_equal(problem.info["levels"], lv)
    np.testing.assert_array_equal(problem.info["hessians"], hs)
    facts = _facts(problem, mu)
    deviations = []
    for k in range(3):
        g_b, h_b, l_b = _multi_well_bounds(mu, lv, hs, softness, k)
        if softness < 0.1:
            assert max(g_b, h_b, l_b) < 1e-14  # below float64 rounding of O(1) quantities
        g_err = np.linalg.norm(facts["grad"][k])
        h_err = np.linalg.norm(facts["hessian"][k] - hs[k], 2)
        loss = facts["loss"][k]
        assert g_err <= g_b + 1e-12, (k, g_err, g_b)
        assert h_err <= h_b + 1e-12, (k, h_err, h_b)
        assert lv[k] - l_b - 1e-12 <= loss <= lv[k] + 1e-12
        deviations.append(g_err)
    if softness >= 1.0:
        assert max(deviations) > 1e-6  # the bound is being tested, not just rounding


def test_multi_well_scalar_hessians_broadcast(x64):
    problem = sd.problems.multi_well([[0.0], [3.0]], [0.0, 0.1], [1.0, 5.0], softness=0.02,
                                     num_examples=10, key=jax.random.key(11))
    np.testing.assert_allclose(problem.info["hessians"], [[[1.0]], [[5.0]]])
    np.testing.assert_allclose(_facts(problem, [[3.0]])["hessian"][0], [[5.0]], rtol=1e-10)


# ------------------------------------------------------------------ regression problems
def test_linear_regression_info_exact(x64):
    tau = 0.15
    problem = sd.problems.linear_regression(40, 4, key=jax.random.key(12), regularization=tau)
    x = np.asarray(problem.data["x"])
    hessian = x.T @ x / 40 + 2 * tau * np.eye(4)
    np.testing.assert_allclose(problem.info["hessian"], hessian, rtol=TOL)
    facts = _facts(problem, np.vstack([_random_thetas(4, count=1), problem.info["minimum"]]))
    np.testing.assert_allclose(facts["hessian"][0], hessian, rtol=TOL, atol=TOL)
    # gradient at θ* = A θ* − Xᵀy/N: cancellation error ≈ ε · ‖A‖ ‖θ*‖ ≈ 1e-15
    np.testing.assert_allclose(facts["grad"][1], 0.0, atol=1e-12)
    assert problem.info["true_weights"].shape == (4,)


def test_logistic_regression_loss_and_finite_differences(x64):
    problem = sd.problems.logistic_regression(60, 3, key=jax.random.key(13), regularization=0.05, scale=3.0)
    assert np.linalg.norm(problem.info["true_weights"]) == pytest.approx(3.0, rel=1e-12)
    assert set(np.unique(np.asarray(problem.data["y"]))) == {-1.0, 1.0}
    theta = np.array([0.7, -0.2, 1.5])
    # central differences: truncation h²|L'''|/6 ≈ 1e-10 and rounding ε|L|/h ≈ 1e-11 at h = 1e-5
    h = 1e-5
    shifted = np.vstack([theta, 1e4 * theta, theta + h * np.eye(3), theta - h * np.eye(3)])
    facts = _facts(problem, shifted)
    assert np.all(np.isfinite(facts["loss"]))
    assert np.all(np.isfinite(facts["grad"][1]))  # huge margins (row 1) must not overflow
    fd = (facts["loss"][2:5] - facts["loss"][5:8]) / (2 * h)
    np.testing.assert_allclose(facts["grad"][0], fd, rtol=0, atol=1e-8)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda k: sd.problems.quadratic([[1.0, 0.5], [0.0, 1.0]], np.eye(2), 10, key=k), "hessian"),
        (lambda k: sd.problems.quadratic(np.ones((2, 3)), np.eye(2), 10, key=k), "hessian"),
        (lambda k: sd.problems.quadratic(np.eye(2), np.eye(3), 10, key=k), "noise_cov"),
        (lambda k: sd.problems.quadratic(np.eye(2), [[1.0, 0.0], [0.0, -0.5]], 10, key=k), "noise_cov"),
        (lambda k: sd.problems.quadratic(np.eye(2), [[1.0, 0.3], [0.0, 1.0]], 10, key=k), "noise_cov"),
        (lambda k: sd.problems.quadratic(np.eye(2), [[1.0, np.nan], [np.nan, 1.0]], 10, key=k), "noise_cov"),
        (lambda k: sd.problems.quadratic(np.eye(2), np.eye(2), 2, key=k), "num_examples"),
        (lambda k: sd.problems.quadratic(np.eye(2), np.eye(2), 10.0, key=k), "num_examples"),
        (lambda k: sd.problems.quadratic(np.eye(2), np.eye(2), 10, key=k, minimum=[0.0]), "minimum"),
        (lambda k: sd.problems.linear_regression(3, 3, key=k), "num_examples"),
        (lambda k: sd.problems.logistic_regression(2, 3, key=k), "num_examples"),
        (lambda k: sd.problems.double_well_1d(-1.0, key=k), "barrier"),
        (lambda k: sd.problems.double_well_1d(1.0, 0.0, key=k), "width"),
        (lambda k: sd.problems.double_well_1d(sigma2=-0.1, key=k), "sigma2"),
        (lambda k: sd.problems.double_well_1d(num_examples=1, key=k), "num_examples"),
        (lambda k: sd.problems.double_well_2d(curvature=0.0, key=k), "curvature"),
        (lambda k: sd.problems.multi_well([[0.0], [1.0]], [0.0], [1.0, 1.0], key=k), "levels"),
        (lambda k: sd.problems.multi_well([[0.0], [1.0]], [0.0, 0.1], [1.0, -1.0], key=k), "hessians"),
        (lambda k: sd.problems.multi_well([[0.0], [1.0]], [0.0, 0.1], [1.0, 1.0], softness=0.0, key=k), "softness"),
    ],
)
def test_bad_input_names_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make(jax.random.key(0))


def test_full_loss_equals_the_data_average(x64):
    """The closed-form full_loss of the ready-made problems equals the average of the
    per-example losses (the whitened noise averages to zero exactly): to rounding."""
    key = jax.random.key(3)
    cases = [
        (sd.problems.quadratic(np.diag([1.0, 2.0]), np.eye(2), 50, key=key, minimum=[0.5, -1.0]), 2),
        (sd.problems.double_well_1d(tilt=0.2, sigma2=2.0, num_examples=40, key=key), 1),
        (sd.problems.double_well_2d(sigma2=0.5, num_examples=40, key=key), 2),
        (sd.problems.multi_well([[0.0, 0.0], [2.0, 1.0]], [0.0, 0.3], [1.0, 4.0], num_examples=40, key=key), 2),
    ]
    for problem, dim in cases:
        assert problem.full_loss is not None
        for theta in np.random.default_rng(0).normal(size=(4, dim)):
            theta = jnp.asarray(theta)
            average = jnp.mean(problem.per_example_losses(theta))
            np.testing.assert_allclose(problem.loss(theta), average, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(
                problem.grad(theta), jnp.mean(problem.per_example_grads(theta), axis=0), rtol=1e-11, atol=1e-12
            )


def test_multi_well_classify_labels_wells():
    """classify(θ) = argmin_k q_k: each centre is labelled by its own well, and a point on
    the segment between two equal wells flips label exactly at the midpoint."""
    problem = sd.problems.multi_well([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], [0.0, 0.0, 0.5], [1.0, 1.0, 3.0],
                                     num_examples=20, key=jax.random.key(3))
    classify = problem.info["classify"]
    assert problem.info["num_basins"] == 3
    for k, centre in enumerate(problem.info["centers"]):
        assert int(classify(jnp.asarray(centre, jnp.float32))) == k
    assert int(classify(jnp.array([-1e-3, 0.0]))) == 0 and int(classify(jnp.array([1e-3, 0.0]))) == 1
