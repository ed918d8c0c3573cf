"""The Gauss–Newton split of the Hessian trace (sgdsde/curvature/gauss_newton.py) against
dense matrices: tr G by per-example norms of dense layers equals tr(Jᵀ M J)/N + 2τd formed
from the full Jacobian, the residual term's Hessian is H − G, and the split estimate
agrees with tr H within its standard error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen
from jax.flatten_util import ravel_pytree

import sgdsde as sd
from sgdsde import curvature as cv
from sgdsde.curvature import gauss_newton as gn

from _rounding import rounding_atol

TAU = 0.01  # weight decay τ: R(θ) = τ‖θ‖² adds 2τd to tr H


def _problem(hidden=(5, 4), classes=3, n=40, features=3, seed=0, model=None, weight_decay=TAU):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = rng.integers(0, classes, n)
    model = model or sd.nn.models.MLP(num_classes=classes, hidden=hidden, activation=linen.tanh)
    problem = sd.nn.classification_problem(model, sd.nn.data.make_dataset(x, y, classes), weight_decay=weight_decay)
    params = sd.nn.init_params(problem, jax.random.key(seed))
    return problem, params


def _dense_parts(problem, params):
    """H (dense), G = (1/N) Σ_n J_nᵀ M_n J_n + 2τI from the full Jacobian, d, and the size of
    G's terms: (1/N) Σ_n |J_n|ᵀ|M_n||J_n| + 2τI entrywise (Σ|t| of the sums forming G)."""
    flat, unravel = ravel_pytree(params)
    x = jnp.asarray(problem.data["x"], flat.dtype)
    logits = lambda f: problem.info["logits"](unravel(f), x)
    jac = jax.jacfwd(logits)(flat)  # [n, c, d]
    p = jax.nn.softmax(logits(flat))
    m = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)
    eye = 2 * TAU * jnp.eye(flat.size)
    g = jnp.einsum("ncd,nck,nke->de", jac, m, jac) / x.shape[0] + eye
    g_abs = jnp.einsum("ncd,nck,nke->de", jnp.abs(jac), jnp.abs(m), jnp.abs(jac)) / x.shape[0] + eye
    return cv.dense_hessian(problem.loss, params), g, flat.size, g_abs


def _terms(problem, params, d):
    """Operations per entry of G, H or R: the N·C² products of the sums over examples and
    class pairs, plus a d-term contraction (inside a Hessian–vector product)."""
    n, c = problem.data["x"].shape[0], problem.info["num_classes"]
    return n * c * c + d


def _trace_terms(problem, d):
    """Operations of tr G: d diagonal entries of N·C² products each, and their d-term sum."""
    n, c = problem.data["x"].shape[0], problem.info["num_classes"]
    return d * n * c * c + d


def test_gauss_newton_trace_equals_the_dense_gauss_newton_matrix(x64):
    """tr G by ghost norms (C backward passes of the δ's, ‖a_n‖²‖δ_n‖² per layer) equals the
    trace of Jᵀ M J/N + 2τI formed from the full Jacobian (jax.jacfwd), to the rounding of
    the two orders of summation: d·N·C² + d operations on terms whose absolute values sum
    to tr((1/N) Σ_n |J_n|ᵀ|M_n||J_n|) + 2τd (float64)."""
    problem, params = _problem()
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    _, g, d, g_abs = _dense_parts(problem, params)
    got = float(cv.gauss_newton_trace(problem, params))
    want = float(jnp.trace(g))
    atol = rounding_atol(float(jnp.trace(g_abs)), _trace_terms(problem, d))
    assert abs(got - want) <= atol, (got, want, atol)


def test_residual_term_has_the_hessian_h_minus_g(x64):
    """The function whose Hessian the residual probes see, (1/N) Σ_n r_n·f_n(θ) with
    r_n = p_n − e_{y_n} held fixed, has Hessian H − G exactly (H = G + R for the
    cross-entropy): entrywise to the rounding of the three matrices' sums, (N·C² + d)
    operations on terms of size |G|'s entries (|J|ᵀ|M||J|/N) plus |H| and |R|."""
    problem, params = _problem(hidden=(4,), n=25)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    h, g, d, g_abs = _dense_parts(problem, params)
    x = jnp.asarray(problem.data["x"])
    logits = problem.info["logits"](params, x)
    r = jax.nn.softmax(logits) - jax.nn.one_hot(problem.data["y"], logits.shape[-1], dtype=logits.dtype)
    term = gn._residual_term(problem.info["logits"])
    residual = cv.dense_hessian(lambda p: term(r, x, p), params)
    size = np.asarray(g_abs + jnp.abs(h) + jnp.abs(residual))
    atol = _terms(problem, params, d) * np.finfo(np.float64).eps * size
    np.testing.assert_array_less(np.abs(np.asarray(residual) - np.asarray(h - g)), atol + 1e-300)


def test_split_estimate_agrees_with_the_exact_trace(x64):
    """tr G + the mean of 400 residual probes against tr H (dense): within 4 reported
    standard errors; and at a point where the residuals are small (after training) the
    residual probes' spread is below Hutchinson's on H at the same probes' count
    (2Σ_{i≠j} R_ij² < 2Σ_{i≠j} H_ij², exact from the dense matrices)."""
    problem, params = _problem()
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    step = jax.jit(lambda p: jax.tree_util.tree_map(lambda w, gr: w - 0.5 * gr, p, problem.grad(p)))
    for _ in range(300):
        params = step(params)
    h, g, d, g_abs = _dense_parts(problem, params)
    est = cv.gauss_newton_split_trace(problem, params, key=jax.random.key(4), num_samples=400)
    assert abs(float(est.mean) - float(jnp.trace(h))) < 4 * float(est.stderr), (est.mean, jnp.trace(h), est.stderr)
    off = lambda a: float(2 * (jnp.sum(a**2) - jnp.sum(jnp.diag(a) ** 2)))
    assert off(h - g) < off(h)
    atol = rounding_atol(float(jnp.trace(g_abs)), _trace_terms(problem, d))  # as in the first test
    assert abs(float(est.gauss_newton) - float(jnp.trace(g))) <= atol


def test_other_models_and_problems_are_refused():
    """A convolutional network (parameters outside dense layers), batch norm, or a problem
    not built by sgdsde.nn.classification_problem: a clear ValueError, before any compile."""
    problem, params = _problem()
    plain = sd.Problem(lambda p, ex: jnp.sum(p**2), {"x": jnp.ones((4, 2))})
    with pytest.raises(ValueError, match="classification_problem"):
        cv.gauss_newton_trace(plain, jnp.ones(2))
    with pytest.raises(ValueError, match="classification_problem"):
        cv.gauss_newton_trace(lambda p: jnp.sum(p**2), jnp.ones(2))
    bn, bn_params = _problem(model=sd.nn.models.MLP(num_classes=3, hidden=(4,), batch_norm=True))
    with pytest.raises(ValueError, match="batch-norm"):
        cv.gauss_newton_trace(bn, bn_params)
    rng = np.random.default_rng(0)
    images = sd.nn.data.make_dataset(rng.normal(size=(6, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 6), 3)
    cnn = sd.nn.classification_problem(sd.nn.models.CNN(3, channels=(2,), dense=(4,)), images)
    with pytest.raises(ValueError, match="outside Dense layers"):
        cv.gauss_newton_trace(cnn, sd.nn.init_params(cnn, jax.random.key(0)))
    with pytest.raises(ValueError, match="num_samples"):
        cv.gauss_newton_split_trace(problem, params, key=jax.random.key(0), num_samples=1)
