"""sgdsde.Problem: loss, gradients, per-example gradients, the gradient-noise covariance
C(θ) = (1/N) Σ_i (∇l_i − ḡ)(∇l_i − ḡ)ᵀ and its exact sampler (docs/theory.md §1), validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import sgdsde as sd

from _rounding import rounding_atol

# float64 exactness checks: the quantities below are a handful of float64 operations
# away from their closed forms, so relative errors are O(10 ε) ≈ 1e-15; 1e-12 leaves room
# for summation order without letting a wrong formula (errors O(1)) through.
RTOL64 = 1e-12
# Calls are eager on purpose: the primitives' compiled kernels are cached by shape and
# shared between tests (most problems below have N = 30, d = 3), which is cheaper than
# one jit compile per bound method.


# JAX vs a NumPy recomputation of a sum with cancellation (a gradient component near 0,
# a covariance entry): the bound scales with the size of the terms (tests/_rounding.py),
# computed below per quantity; RTOL64 stays for hand-computed values and positive sums.


# ------------------------------------------------------------------ helpers
def _linreg_abs_terms(problem, theta, weights=None):
    """Σ_i w_i |∇l_i| per coordinate (w_i = 1/N by default), with ∇l_i = (x_iᵀθ − y_i) x_i
    taken at the size of its terms, (|x_i|ᵀ|θ| + |y_i|)|x_i|: the Σ|terms| of a (weighted)
    average of linear-regression gradients."""
    x, y = np.abs(np.asarray(problem.data["x"], np.float64)), np.abs(np.asarray(problem.data["y"], np.float64))
    per = (x @ np.abs(np.asarray(theta)) + y)[:, None] * x
    return per.mean(axis=0) if weights is None else np.abs(weights) @ per


def _tiny_problem(tau=0.5):
    """l_i = ½(x_iᵀθ − y_i)², R = τ‖θ‖², three examples in 2-D (hand-checkable)."""
    data = {"x": jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), "y": jnp.array([1.0, 2.0, 0.0])}

    def loss(theta, ex):
        return 0.5 * (ex["x"] @ theta - ex["y"]) ** 2

    return sd.Problem(loss, data, regularizer=lambda theta: tau * jnp.sum(theta**2))


def _linreg_numpy_grads(problem, theta):
    """∇l_i = (x_iᵀθ − y_i) x_i, (N, d), in NumPy float64."""
    x, y = np.asarray(problem.data["x"], np.float64), np.asarray(problem.data["y"], np.float64)
    return (x @ np.asarray(theta) - y)[:, None] * x


def _logreg_numpy_grads(problem, theta):
    """l_i = log(1 + exp(−y_i x_iᵀθ))  ⇒  ∇l_i = −y_i σ(−y_i x_iᵀθ) x_i."""
    x, y = np.asarray(problem.data["x"], np.float64), np.asarray(problem.data["y"], np.float64)
    margin = y * (x @ np.asarray(theta))
    return (-y / (1.0 + np.exp(margin)))[:, None] * x


def _pytree_problem(key):
    """Params {"b": (), "m": (2, 2), "w": (2,)}; f(x) = b + xᵀ m x + wᵀx, l = ½(f − y)².

    ∇_b l = r, ∇_m l = r x xᵀ, ∇_w l = r x with r = f − y. ravel_pytree orders the
    leaves by sorted dict key (b, m row-major, w), which the flat covariance follows."""
    rng = np.random.default_rng(key)
    x = rng.standard_normal((17, 2))
    y = rng.standard_normal(17)

    def loss(p, ex):
        xi = ex["x"]
        return 0.5 * (p["b"] + xi @ p["m"] @ xi + p["w"] @ xi - ex["y"]) ** 2

    params = {"b": jnp.asarray(0.3), "m": jnp.asarray(rng.standard_normal((2, 2))), "w": jnp.asarray(rng.standard_normal(2))}
    return sd.Problem(loss, {"x": jnp.asarray(x), "y": jnp.asarray(y)}), params, x, y


def _pytree_numpy_grads(params, x, y):
    p = jax.tree_util.tree_map(np.asarray, params)
    r = p["b"] + np.einsum("ni,ij,nj->n", x, p["m"], x) + x @ p["w"] - y
    gm = r[:, None, None] * x[:, :, None] * x[:, None, :]
    return np.concatenate([r[:, None], gm.reshape(len(r), 4), r[:, None] * x], axis=1)  # (N, 7)


def _cov_numpy(grads):
    centred = grads - grads.mean(axis=0)
    return centred.T @ centred / grads.shape[0]


# ------------------------------------------------------------------ loss / grad
def test_loss_and_grad_hand_computed(x64):
    # θ = (1, −1): residuals r = (1−1, −2−2, 1−1−0) = (0, −4, 0), losses (0, 8, 0) → mean 8/3;
    # R = 0.5·(1 + 1) = 1  ⇒  L = 11/3.
    # g = (1/3) Σ r_i x_i + 2τθ = (1/3)(−4)(0, 2) + (1, −1) = (1, −11/3).
    problem = _tiny_problem(tau=0.5)
    theta = jnp.array([1.0, -1.0])
    np.testing.assert_allclose(problem.loss(theta), 11.0 / 3.0, rtol=RTOL64)
    np.testing.assert_allclose(problem.grad(theta), [1.0, -11.0 / 3.0], rtol=RTOL64)
    np.testing.assert_allclose(problem.per_example_losses(theta), [0.0, 8.0, 0.0], atol=1e-14)
    # the weighted loss carries no regulariser: Σ w_i l_i
    np.testing.assert_allclose(problem.weighted_loss(theta, jnp.array([1.0, 0.5, 2.0])), 4.0, rtol=RTOL64)
    assert problem.num_examples == 3


def test_loss_without_regulariser_is_plain_mean(x64):
    problem = sd.problems.linear_regression(30, 3, key=jax.random.key(1))
    theta = jnp.linspace(-1.0, 1.0, 3)
    x, y = np.asarray(problem.data["x"]), np.asarray(problem.data["y"])
    # mean of N squares of residuals x_iᵀθ − y_i (a d-term cancellation each): the square's
    # error is ≤ 2|r|·δr, so the terms count at ½(|x_i|ᵀ|θ| + |y_i|)², with 2(N + d + 8) operations
    n, d = x.shape
    loss_terms = np.mean(0.5 * (np.abs(x) @ np.abs(np.asarray(theta)) + np.abs(y)) ** 2)
    np.testing.assert_allclose(problem.loss(theta), np.mean(0.5 * (x @ np.asarray(theta) - y) ** 2), rtol=0,
                               atol=rounding_atol(loss_terms, 2 * (n + d + 8)))
    np.testing.assert_allclose(problem.grad(theta), _linreg_numpy_grads(problem, theta).mean(0), rtol=0,
                               atol=rounding_atol(_linreg_abs_terms(problem, theta), n + d + 8))


# ------------------------------------------------------------------ minibatch gradients
def test_minibatch_grad_weighted_average_with_masking(x64):
    problem = sd.problems.linear_regression(30, 3, key=jax.random.key(2), regularization=0.1)
    theta = jnp.array([0.5, -1.0, 2.0])
    grads = _linreg_numpy_grads(problem, theta)
    reg_grad = 2 * 0.1 * np.asarray(theta)
    # a padded batch of max size 7: repeats allowed, S = 4 used, last 3 masked (weight 0);
    # the masked slots point at arbitrary examples and must not contribute.
    indices = jnp.array([3, 0, 3, 29, 5, 11, 0])
    weights = jnp.array([0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0])
    expected = grads[[3, 0, 3, 29]].mean(axis=0) + reg_grad
    # weighted sum of 7 slots of d-term gradients, + ∇R: (7 + d + 8)·eps·Σ_b w_b|∇l_{i_b}| + |∇R|
    terms = _linreg_abs_terms(problem, theta, np.asarray(weights)[None] @ np.eye(30)[np.asarray(indices)])
    atol = rounding_atol(terms + np.abs(reg_grad), 7 + 3 + 8)
    np.testing.assert_allclose(problem.minibatch_grad(theta, indices, weights), expected, rtol=0, atol=atol)
    # general weights: Σ_b w_b ∇l_{i_b} + ∇R
    w = np.array([0.1, 0.7, 0.0, 0.2, 1.5, 0.0, 0.3])
    expected = (w[:, None] * grads[np.asarray(indices)]).sum(axis=0) + reg_grad
    terms = _linreg_abs_terms(problem, theta, w @ np.eye(30)[np.asarray(indices)])
    atol = rounding_atol(terms + np.abs(reg_grad), 7 + 3 + 8)
    np.testing.assert_allclose(problem.minibatch_grad(theta, indices, jnp.asarray(w)), expected, rtol=0, atol=atol)
    # the minibatch loss is the matching weighted sum plus R
    losses = 0.5 * (np.asarray(problem.data["x"]) @ np.asarray(theta) - np.asarray(problem.data["y"])) ** 2
    np.testing.assert_allclose(
        problem.minibatch_loss(theta, indices, jnp.asarray(w)),
        (w * losses[np.asarray(indices)]).sum() + 0.1 * np.sum(np.asarray(theta) ** 2),
        rtol=RTOL64,  # positive weights and terms (squares), no cancellation: (7 + 2d + 8)·eps ≪ 1e-12
    )


def test_minibatch_grad_full_batch_equals_grad(x64):
    problem = sd.problems.logistic_regression(30, 3, key=jax.random.key(3), regularization=0.05)
    theta = jnp.array([0.3, 0.1, -0.4])
    n = problem.num_examples
    full = problem.minibatch_grad(theta, jnp.arange(n), jnp.full(n, 1.0 / n))
    # two programs averaging ∇l_i = −y_i σ(·) x_i (|·| ≤ |x_i|) + 2τθ in different orders;
    # the logistic factor costs ~20 operations (exp, division)
    x = np.abs(np.asarray(problem.data["x"], np.float64))
    terms = x.mean(axis=0) + 2 * 0.05 * np.abs(np.asarray(theta))
    np.testing.assert_allclose(full, problem.grad(theta), rtol=0, atol=rounding_atol(terms, n + 3 + 20))


def test_per_example_grads_linear_regression(x64):
    problem = sd.problems.linear_regression(30, 3, key=jax.random.key(4))
    theta = jnp.array([1.0, 2.0, -0.5])
    got = problem.per_example_grads(theta)
    assert got.shape == (30, 3)
    # per example: one d-term residual times x_ik, (d + 4)·eps·(|x_i|ᵀ|θ| + |y_i|)|x_ik|
    x, y = np.abs(np.asarray(problem.data["x"])), np.abs(np.asarray(problem.data["y"]))
    atol = rounding_atol((x @ np.abs(np.asarray(theta)) + y)[:, None] * x, 3 + 4)
    np.testing.assert_allclose(got, _linreg_numpy_grads(problem, theta), rtol=0, atol=atol)


# ------------------------------------------------------------------ gradient covariance
@pytest.mark.parametrize("which", ["linear", "logistic"])
def test_gradient_covariance_matches_numpy(x64, which):
    if which == "linear":
        problem = sd.problems.linear_regression(30, 3, key=jax.random.key(5), regularization=0.2)
        theta = jnp.array([0.2, -0.3, 1.1])
        grads = _linreg_numpy_grads(problem, theta)
    else:
        problem = sd.problems.logistic_regression(30, 3, key=jax.random.key(6), regularization=0.2)
        theta = jnp.array([0.5, -1.0, 0.7])
        grads = _logreg_numpy_grads(problem, theta)
    # the regulariser is deterministic: it must not enter C
    expected = _cov_numpy(grads)
    scale = np.abs(expected).max()
    full = problem.gradient_covariance(theta)
    # C_jk = mean of products of centred gradients: rounding ≲ 2(N + d + 8)·eps·mean_i|g_i||g_i − ḡ|
    # ≤ 1e-13·max|C| while |ḡ| ≲ 10√C (true here); atol on max|C| covers the near-zero entries
    np.testing.assert_allclose(full, expected, rtol=RTOL64, atol=RTOL64 * scale)
    np.testing.assert_allclose(problem.gradient_covariance(theta, "full"), full, rtol=0, atol=0)  # same program
    # diagonal and trace: sums of squares (positive terms): relative rounding (N + d + 8)·eps ≪ 1e-12
    np.testing.assert_allclose(problem.gradient_covariance(theta, "diagonal"), np.diag(expected), rtol=RTOL64)
    np.testing.assert_allclose(problem.gradient_covariance(theta, "trace"), np.trace(expected), rtol=RTOL64)


def test_gradient_covariance_pytree_params(x64):
    problem, params, x, y = _pytree_problem(7)
    expected = _cov_numpy(_pytree_numpy_grads(params, x, y))
    got = problem.gradient_covariance(params)
    assert got.shape == (7, 7)
    np.testing.assert_allclose(got, expected, rtol=RTOL64, atol=RTOL64 * np.abs(expected).max())
    np.testing.assert_allclose(problem.gradient_covariance(params, "diagonal"), np.diag(expected), rtol=RTOL64)
    np.testing.assert_allclose(problem.gradient_covariance(params, "trace"), np.trace(expected), rtol=RTOL64)
    # per-example gradients keep the pytree structure with a leading axis N
    per = problem.per_example_grads(params)
    assert jax.tree_util.tree_structure(per) == jax.tree_util.tree_structure(params)
    assert per["m"].shape == (17, 2, 2) and per["b"].shape == (17,)


def test_gradient_covariance_unknown_kind():
    problem = _tiny_problem()
    with pytest.raises(ValueError, match="kind"):
        problem.gradient_covariance(jnp.zeros(2), kind="offdiagonal")


# ------------------------------------------------------------------ noise sample
def test_noise_sample_is_the_weighted_gradient_identity(x64):
    """Exact: ξ = (1/√N) Σ z_i (∇l_i − ḡ) with z the standard normals the code draws
    (jax.random.normal(key, (N,)) in the params' dtype), computed here in NumPy."""
    problem = sd.problems.logistic_regression(30, 3, key=jax.random.key(8), regularization=0.3)
    theta = jnp.array([0.4, 0.2, -0.6])
    grads = _logreg_numpy_grads(problem, theta)
    for seed in range(2):
        key = jax.random.key(100 + seed)
        z = np.asarray(jax.random.normal(key, (30,), dtype=jnp.float64))
        expected = (z[:, None] * (grads - grads.mean(axis=0))).sum(axis=0) / np.sqrt(30)
        got = problem.noise_sample(key, theta)
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13)


def test_noise_sample_pytree_structure(x64):
    problem, params, x, y = _pytree_problem(9)
    key = jax.random.key(11)
    xi = problem.noise_sample(key, params)
    assert jax.tree_util.tree_structure(xi) == jax.tree_util.tree_structure(params)
    grads = _pytree_numpy_grads(params, x, y)
    z = np.asarray(jax.random.normal(key, (17,), dtype=jnp.float64))
    expected = (z[:, None] * (grads - grads.mean(axis=0))).sum(axis=0) / np.sqrt(17)
    np.testing.assert_allclose(ravel_pytree(xi)[0], expected, rtol=1e-11, atol=1e-13)


def test_noise_sample_covariance_matches_C():
    """Monte Carlo (float32 is enough here): n draws ξ ~ N(0, C). The zero-mean estimator
    Ĉ_ij = (1/n) Σ ξ_i ξ_j has Var = (C_ii C_jj + C_ij²)/n for Gaussian ξ; the sample mean
    has Var = C_ii/n. Each entry must lie within 5 standard errors (2-sided 5σ: a false
    alarm has probability ≈ 6e-7 per entry; the seed is fixed anyway)."""
    problem = sd.problems.logistic_regression(30, 3, key=jax.random.key(12))
    theta = jnp.array([0.5, -0.5, 0.25])
    n = 20000
    keys = jax.random.split(jax.random.key(13), n)
    xi = np.asarray(jax.jit(jax.vmap(problem.noise_sample, in_axes=(0, None)))(keys, theta), np.float64)
    c = np.asarray(problem.gradient_covariance(theta), np.float64)
    c_hat = xi.T @ xi / n
    stderr = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / n)
    assert np.all(np.abs(c_hat - c) <= 5 * stderr), (c_hat, c, stderr)
    mean_stderr = np.sqrt(np.diag(c) / n)
    assert np.all(np.abs(xi.mean(axis=0)) <= 5 * mean_stderr)
    # the check has power: a sampler off by a factor 1.1 in variance would be ≥ 7 σ out
    # (diagonal stderr = C_ii √(2/n) = 0.01 C_ii at n = 20000)
    assert np.all(0.1 * np.diag(c) > 7 * np.diag(stderr))


# ------------------------------------------------------------------ validation
def test_data_leaves_with_mismatched_leading_axes():
    with pytest.raises(ValueError, match="data"):
        sd.Problem(lambda p, ex: p @ ex["x"], {"x": jnp.zeros((5, 2)), "y": jnp.zeros(4)})


@pytest.mark.parametrize("data", [{}, {"x": jnp.zeros((5, 2)), "s": jnp.asarray(1.0)}, jnp.zeros((0, 2))])
def test_bad_data(data):
    with pytest.raises(ValueError, match="data"):
        sd.Problem(lambda p, ex: jnp.sum(p * ex), data)


def test_bad_callables():
    with pytest.raises(ValueError, match="per_example_loss"):
        sd.Problem("not a function", jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="regularizer"):
        sd.Problem(lambda p, ex: jnp.sum(p * ex), jnp.zeros((3, 2)), regularizer=1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_params_non_finite(bad):
    calls = []

    def loss(p, ex):
        calls.append(1)  # counts traces: the finiteness check must come before any evaluation
        return jnp.sum(p * ex)

    problem = sd.Problem(loss, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="init_params.*non-finite"):
        problem.check_params(jnp.array([1.0, bad]))
    with pytest.raises(ValueError, match="my_params"):
        problem.check_params({"a": jnp.ones(2), "b": jnp.array([bad])}, name="my_params")
    assert calls == []


def test_check_params_that_do_not_fit():
    problem = _tiny_problem()
    problem.check_params(jnp.zeros(2))  # fits: no error
    with pytest.raises(ValueError, match="init_params.*does not fit"):
        problem.check_params(jnp.zeros(3))
    with pytest.raises(ValueError, match="init_params.*floating"):
        problem.check_params(jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="init_params.*empty"):
        problem.check_params({})


def test_check_params_traces_the_loss_once_per_signature():
    """The abstract check is cached by (problem, parameter shapes): a repeated check (every
    warm ``sd.run``) does not trace the user's loss again, while other shapes, other data
    shapes and a new problem are still checked."""
    traces = []

    def per_example_loss(theta, x):
        traces.append(None)  # runs only while JAX traces the function
        return jnp.sum(theta * x) ** 2

    problem = sd.Problem(per_example_loss, jnp.ones((5, 2)))
    problem.check_params(jnp.zeros(2))
    first = len(traces)
    assert first > 0
    problem.check_params(jnp.ones(2))  # same shapes, other values: cached
    sd.run(jax.random.key(0), sd.sgd("iid"), problem, sd.Hyper(0.1, 2), jnp.zeros(2), 1)
    assert len(traces) > first  # the run itself traces (and compiles) once
    after_run = len(traces)
    problem.check_params(jnp.zeros(2))
    assert len(traces) == after_run
    with pytest.raises(ValueError, match="does not fit"):  # other shapes: checked
        problem.check_params(jnp.zeros(3))
    with pytest.raises(ValueError, match="does not fit"):  # other data shapes: checked
        sd.Problem(per_example_loss, jnp.ones((5, 3))).check_params(jnp.zeros(2))
    with pytest.raises(ValueError, match="floating"):  # value checks are never cached
        problem.check_params(jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="non-finite"):
        problem.check_params(jnp.array([0.0, jnp.nan]))


def test_check_params_rejects_non_scalar_per_example_loss():
    problem = sd.Problem(lambda theta, x: theta * x, jnp.ones((5, 2)))  # returns shape (2,)
    with pytest.raises(ValueError, match="per_example_loss"):
        problem.check_params(jnp.ones(2))


def test_problem_is_a_pytree_and_jits(x64):
    problem = _tiny_problem()
    leaves, treedef = jax.tree_util.tree_flatten(problem)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    theta = jnp.array([1.0, -1.0])
    np.testing.assert_allclose(again.loss(theta), problem.loss(theta), rtol=0)
    # data are traced arguments, not constants: a jitted function sees new data
    f = jax.jit(lambda prob, th: prob.loss(th))
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, problem)
    np.testing.assert_allclose(f(problem, theta), 11.0 / 3.0, rtol=RTOL64)
    # doubled data: residuals (2−2, −4−4, 2−2−0) = (0, −8, 0) → mean loss 32/3, R = 1
    np.testing.assert_allclose(f(doubled, theta), 32.0 / 3.0 + 1.0, rtol=RTOL64)


@pytest.mark.parametrize(
    "which, kwargs",
    [
        ("per_example_loss", dict(per_example_loss=lambda t, x: t * x)),
        ("regularizer", dict(regularizer=lambda t: t**2)),
        ("full_loss", dict(full_loss=lambda t: jnp.stack([t @ t, t @ t]))),
        ("full_loss", dict(full_loss=lambda t: (t @ t, 0.0))),
        ("regularizer", dict(regularizer=lambda t: jnp.sum(t > 0))),  # integer "scalar"
    ],
)
def test_check_params_names_the_function_that_is_not_scalar(which, kwargs):
    """Each user function must give a floating scalar (per example); the error names it."""
    args = dict(per_example_loss=lambda t, x: jnp.sum((t - x) ** 2), data=jnp.ones((5, 2)))
    args.update(kwargs)
    problem = sd.Problem(**args)
    with pytest.raises(ValueError, match=f"^{which}: must return a floating-point scalar"):
        problem.check_params(jnp.ones(2))
    with pytest.raises(ValueError, match=f"^{which}: must return a floating-point scalar"):
        sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper(0.1, 2), jnp.ones(2), 3)


def test_direct_calls_name_the_function_that_is_not_scalar():
    """loss / grad called directly (no check_params) fail while tracing, naming the function."""
    problem = sd.Problem(lambda t, x: jnp.sum((t - x) ** 2), jnp.ones((5, 2)), regularizer=lambda t: t**2)
    with pytest.raises(ValueError, match="^regularizer: must return a floating-point scalar, got shape \\(2,\\)"):
        problem.loss(jnp.ones(2))
    with pytest.raises(ValueError, match="^regularizer"):
        jax.jit(problem.grad)(jnp.ones(2))
    vector = sd.Problem(lambda t, x: t * x, jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="^per_example_loss: .*shape \\(2,\\) per example"):
        vector.minibatch_grad(jnp.ones(2), jnp.arange(2), jnp.full(2, 0.5))
