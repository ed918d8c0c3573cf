"""Noise models (sgdsde.noise): covariances, exact sampling, pytrees, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import sgdsde as sd
from sgdsde import noise

from _rounding import rounding_atol

C3 = np.array([[1.0, 0.4, 0.1], [0.4, 1.5, -0.3], [0.1, -0.3, 0.8]])
DRAWS = 20000


def _params():
    """A pytree with d = 3 parameters; ravel_pytree order: b, w0, w1."""
    return {"w": jnp.array([0.3, -0.2]), "b": jnp.array(0.5)}


def _factor(params):
    """A state-dependent B(θ), d×k = 3×2 (rank 2 < d: a singular C)."""
    flat, _ = ravel_pytree(params)
    return jnp.array([[1.0 + flat[0] ** 2, 0.0], [flat[1], 1.0], [0.5, 0.7 + flat[2]]])


@pytest.fixture(scope="module")
def quad3():
    with jax.enable_x64(True):
        yield sd.problems.quadratic(np.diag([1.0, 2.0, 3.0]), C3, 24, key=jax.random.key(0))


def _models():
    return {
        "isotropic": noise.isotropic(0.7),
        "diagonal": noise.diagonal([0.5, 1.0, 2.0]),
        "diagonal_pytree": noise.diagonal({"w": jnp.array([1.0, 2.0]), "b": 0.25}),
        "full": noise.full(C3),
        "from_function": noise.from_function(_factor),
    }


def _expected_cov(name, params):
    flat, _ = ravel_pytree(params)
    return {
        "isotropic": 0.7 * np.eye(3),
        "diagonal": np.diag([0.5, 1.0, 2.0]),
        "diagonal_pytree": np.diag([0.25, 1.0, 2.0]),
        "full": C3,
        "from_function": np.asarray(_factor(params) @ _factor(params).T),
    }[name]


def _check_sample_moments(samples, cov):
    """Zero-mean Gaussian draws (M, d): sample mean within 5·√(C_ii/M), sample second
    moment within 5·√((C_ii C_jj + C_ij²)/M) entrywise (Var(x_i x_j) for a Gaussian)."""
    m = samples.shape[0]
    diag = np.diag(cov)
    se_mean = np.sqrt(diag / m)
    se_cov = np.sqrt((np.outer(diag, diag) + cov**2) / m)
    assert np.all(np.abs(samples.mean(0)) < 5 * se_mean), (samples.mean(0), se_mean)
    second = samples.T @ samples / m
    assert np.all(np.abs(second - cov) < 5 * se_cov), (second, cov, se_cov)


@pytest.mark.parametrize("name", list(_models()))
def test_sample_covariance_matches_model(name):
    with jax.enable_x64(True):
        model, params = _models()[name], _params()
        model.check(params)
        cov = _expected_cov(name, params)
        # closed forms of d ≤ 3-term sums of O(1) numbers: rounding ≲ 1e-15; 1e-14 with margin
        np.testing.assert_allclose(model.covariance(params), cov, rtol=1e-12, atol=1e-14)
        keys = jax.random.split(jax.random.key(1), DRAWS)
        samples = jax.jit(jax.vmap(lambda k: ravel_pytree(model.sample(k, params))[0]))(keys)
        assert jax.tree_util.tree_structure(model.sample(keys[0], params)) == jax.tree_util.tree_structure(params)
        _check_sample_moments(np.asarray(samples), cov)
        # sample = apply(normal(key, noise_shape)) = matrix @ z, and covariance = B Bᵀ
        z = jax.random.normal(keys[0], model.noise_shape(params), jnp.float64)
        b = np.asarray(model.matrix(params))
        # jitted/eager B z vs NumPy's: a k-term sum that may cancel, (k + 4)·eps·(|B||z|)
        atol = rounding_atol(np.abs(b) @ np.abs(np.asarray(z).ravel()), b.shape[1] + 4)
        np.testing.assert_allclose(ravel_pytree(model.sample(keys[0], params))[0], b @ np.asarray(z), rtol=0, atol=atol)
        # B Bᵀ (NumPy) vs the closed form: (k + 4)·eps·(|B||B|ᵀ) ≲ 1e-15 for these O(1) B; 1e-14 with margin
        np.testing.assert_allclose(b @ b.T, cov, rtol=1e-12, atol=1e-14)


def test_full_root_computed_once_and_symmetric():
    model = noise.full(C3)
    np.testing.assert_allclose(model.root @ model.root.T, C3, atol=1e-14)
    np.testing.assert_allclose(model.root, model.root.T, atol=1e-15)
    singular = noise.full(np.ones((2, 2)))  # PSD, rank 1: eigen root, no Cholesky failure
    np.testing.assert_allclose(singular.root @ singular.root.T, np.ones((2, 2)), atol=1e-14)


def test_empirical_matches_problem_noise(quad3):
    """empirical() is the problem's own C(θ): covariance = gradient_covariance = noise_cov
    (exact for problems.quadratic), samples = problem.noise_sample (same key), matrix B
    with B Bᵀ = C, and the sample covariance matches within MC error."""
    with jax.enable_x64(True):
        model, theta = noise.empirical(), jnp.array([0.2, -1.0, 0.5])
        model.check(theta, quad3)
        assert model.noise_shape(theta, quad3) == (24,)
        np.testing.assert_allclose(model.covariance(theta, quad3), quad3.gradient_covariance(theta), rtol=1e-12)
        np.testing.assert_allclose(model.covariance(theta, quad3), C3, rtol=1e-10, atol=1e-12)
        b = np.asarray(model.matrix(theta, quad3))
        assert b.shape == (3, 24)
        np.testing.assert_allclose(b @ b.T, C3, rtol=1e-10, atol=1e-12)
        key = jax.random.key(3)
        np.testing.assert_array_equal(model.sample(key, theta, quad3), quad3.noise_sample(key, theta))
        z = jax.random.normal(key, (24,), jnp.float64)
        atol = rounding_atol(np.abs(b) @ np.abs(np.asarray(z)), 24 + 4)  # 24-term sum B z, may cancel
        np.testing.assert_allclose(model.sample(key, theta, quad3), b @ np.asarray(z), rtol=0, atol=atol)
        keys = jax.random.split(jax.random.key(4), DRAWS)
        samples = jax.jit(jax.vmap(lambda k: model.sample(k, theta, quad3)))(keys)
        _check_sample_moments(np.asarray(samples), C3)
        with pytest.raises(ValueError, match="^problem: "):
            model.sample(key, theta)


def test_models_are_pytrees_through_jit():
    with jax.enable_x64(True):
        params, key = _params(), jax.random.key(5)
        for name, model in _models().items():
            leaves, treedef = jax.tree_util.tree_flatten(model)
            rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
            assert type(rebuilt) is type(model) and rebuilt.finite_n == model.finite_n
            jitted = jax.jit(lambda m, k: m.sample(k, params))(model, key)
            # jitted vs eager B z: two programs; (k + 4)·eps·(|B||z|), as the sum may cancel
            b = np.asarray(model.matrix(params))
            z = np.asarray(jax.random.normal(key, model.noise_shape(params), jnp.float64)).ravel()
            atol = rounding_atol(np.abs(b) @ np.abs(z), b.shape[1] + 4)
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=atol), jitted, model.sample(key, params)
            )


def test_finite_n_factor():
    """(N − S)/(N − 1) with finite_n (sampling without replacement), 1 without; 0 at S = N."""
    assert noise.full(C3).variance_factor(8, 64) == 1.0
    for model in (noise.isotropic(1.0, finite_n=True), noise.full(C3, finite_n=True), noise.empirical(finite_n=True)):
        assert model.finite_n
        np.testing.assert_allclose(model.variance_factor(jnp.int32(8), 64), 56 / 63, rtol=1e-6)
        np.testing.assert_allclose(model.variance_factor(jnp.array([1, 64]), 64), [1.0, 0.0], atol=1e-7)
        assert float(model.variance_factor(1, 1)) == 0.0


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "build, pattern",
    [
        (lambda: noise.isotropic(-0.1), r"^sigma2: must be ≥ 0"),
        (lambda: noise.isotropic(float("nan")), r"^sigma2: "),
        (lambda: noise.isotropic([1.0, 2.0]), r"^sigma2: "),
        (lambda: noise.diagonal([1.0, -0.5, 2.0]), r"^variances: must be ≥ 0, got -0.5 at flat index 1"),
        (lambda: noise.diagonal([1.0, np.inf]), r"^variances: .*non-finite"),
        (lambda: noise.diagonal(np.ones((2, 2))), r"^variances: .*1-D"),
        (lambda: noise.diagonal({"w": jnp.array([1.0, -2.0])}), r"^variances: must be ≥ 0"),
        (lambda: noise.full([[1.0, 0.5], [0.4, 1.0]]), r"^cov: must be symmetric"),
        (lambda: noise.full([[1.0, 2.0], [2.0, 1.0]]), r"^cov: must be positive semi-definite, smallest eigenvalue -1\b"),
        (lambda: noise.full(np.ones((2, 3))), r"^cov: must be a non-empty square"),
        (lambda: noise.full([[np.nan]]), r"^cov: .*non-finite"),
        (lambda: noise.from_function(np.eye(3)), r"^b: must be a callable"),
        (lambda: noise.isotropic(1.0, finite_n="yes"), r"^finite_n: "),
    ],
)
def test_bad_construction(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


@pytest.mark.parametrize(
    "model, pattern",
    [
        (noise.full(np.eye(2)), r"^cov: is 2×2 but params have d = 3"),
        (noise.diagonal([1.0, 2.0]), r"^variances: has 2 entries but params have d = 3"),
        (noise.diagonal({"w": jnp.ones(3), "b": 1.0}), r"^variances: was given as a pytree"),
        (noise.from_function(lambda p: jnp.eye(2)), r"^b: must return a \(d, k\) matrix with d = 3"),
        (noise.from_function(lambda p: jnp.ones(3)), r"^b: must return a \(d, k\) matrix"),
        (noise.from_function(lambda p: p["missing"]), r"^b: evaluating b\(params\) failed"),
    ],
)
def test_check_shape_mismatch(model, pattern):
    with pytest.raises(ValueError, match=pattern):
        model.check(_params())


def test_check_rejects_integer_params():
    with pytest.raises(ValueError, match=r"^params: .*floating point"):
        noise.isotropic(1.0).check(jnp.arange(3))
