"""Bayesian evidence by the Laplace approximation (docs/theory.md §8; MacKay 1992, Smith & Le 2017).

Prior p(ω) = N(0, λ⁻¹I) on d parameters, likelihood p(y | ω), cost
C(ω) = −log p(y | ω) + (λ/2)‖ω‖², minimised at ω₀ with Hessian H = ∇²C(ω₀). Since
p(y | ω) p(ω) = (λ/2π)^{d/2} e^{−C(ω)}, expanding C to second order about ω₀ gives

    log p(y) ≈ −C(ω₀) − ½ log det(H/λ)

(the (2π)^{d/2} of the Gaussian integral cancels the prior's normaliser). It is exact
when C is quadratic (a Gaussian likelihood linear in ω, :func:`linear_regression_log_evidence`)
and its error is O(1/N) otherwise. −log p(y | ω) must carry the likelihood's constants
(e.g. (N/2) log 2πσ² for Gaussian noise) for the value to be a log probability.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._common import default_tol, warn
from ._newton import FAST_COMPILE, _minimise_one

PyTree = Any

__all__ = [
    "Evidence",
    "laplace_log_evidence",
    "linear_regression_log_evidence",
    "logistic_regression_log_evidence",
    "logistic_negative_log_likelihood",
    "network_log_evidence",
]

LOG_DETS = ("dense", "slq")
CURVATURES = ("hessian", "gauss_newton")


class Evidence(NamedTuple):
    """The Laplace evidence and its parts (float64 NumPy).

    log_evidence: log p(y) ≈ −C(ω₀) − ½ log det(H/λ). log_evidence_stderr: ½ the SLQ
    standard error of the log det (0.0 for the dense log det). minimum: ω₀ (the params'
    pytree structure). cost: C(ω₀). log_det: log det(H/λ). gradient_norm: ‖∇C(ω₀)‖_∞.
    newton_steps: Newton steps taken (0 without minimising).
    """

    log_evidence: float
    log_evidence_stderr: float
    minimum: PyTree
    cost: float
    log_det: float
    gradient_norm: float
    newton_steps: int


def _positive(value, name: str) -> float:
    try:
        number = float(value) if np.ndim(value) == 0 and not isinstance(value, (str, bool)) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return number


def _cost(nll, lam, w, data):
    return nll(w, data) + 0.5 * lam * jnp.sum(w * w)


@partial(jax.jit, static_argnames=("nll",), compiler_options=FAST_COMPILE)
def _newton(nll, w0, data, lam, tol, max_steps):
    """Damped Newton on C (the shared landscape kernel); returns (ω₀, C, ∇C, ∇²C, steps)."""
    return _minimise_one(lambda w: _cost(nll, lam, w, data), w0, tol, max_steps)


@partial(jax.jit, static_argnames=("nll",))
def _derivatives(nll, w, data, lam):
    cost = lambda v: _cost(nll, lam, v, data)
    value, grad = jax.value_and_grad(cost)(w)
    return value, grad, jax.hessian(cost)(w)


def _dense_log_det(hessian: np.ndarray, lam: float) -> float:
    h = 0.5 * (hessian + hessian.T)
    try:
        chol = np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        raise ValueError(
            "params: the Hessian of the cost is not positive definite there, so the Laplace evidence is "
            "undefined (not a strict minimum)"
        ) from None
    return float(2 * np.sum(np.log(np.diag(chol))) - h.shape[0] * np.log(lam))


def _evidence(nll, w0, data, lam, unravel, *, minimize, tol, max_steps, log_det, key, num_probes, num_steps):
    """The shared body: ``nll(w, data)`` on a flat w (d,)."""
    if log_det not in LOG_DETS:
        raise ValueError(f"log_det: must be one of {LOG_DETS}, got {log_det!r}")
    if log_det == "slq" and key is None:
        raise ValueError("key: log_det='slq' needs a PRNG key for its probes")
    dtype = w0.dtype
    tol = default_tol(dtype) if tol is None else float(tol)
    if minimize:
        w, cost, grad, hess, steps = _newton(nll, w0, data, jnp.asarray(lam, dtype), jnp.asarray(tol, dtype),
                                             jnp.asarray(max_steps, jnp.int32))
    else:
        w, steps = w0, 0
        cost, grad, hess = (None, None, None) if log_det == "slq" else _derivatives(nll, w, data, jnp.asarray(lam, dtype))
    if cost is None:  # slq without minimising: no d × d Hessian
        cost, grad = jax.value_and_grad(lambda v: _cost(nll, lam, v, data))(w)
    gradient_norm = float(jnp.max(jnp.abs(grad)))
    if not gradient_norm <= tol:
        warn(f"laplace_log_evidence: ‖∇C‖_∞ = {gradient_norm:.3g} > tol = {tol:.3g} at ω₀ after {int(steps)} "
             "Newton steps: not a minimum, the Laplace evidence is not meaningful there")
    if log_det == "dense":
        logdet, stderr = _dense_log_det(np.asarray(hess, np.float64), lam), 0.0
    else:
        from ..curvature.trace import log_determinant

        cost_fn = jax.tree_util.Partial(_CostOf(nll), jnp.asarray(lam, dtype), data)  # one compile per nll
        est = log_determinant(cost_fn, w, key=key, num_probes=num_probes, num_steps=num_steps)
        logdet = float(est.mean) - w.shape[0] * np.log(lam)
        stderr = 0.5 * float(est.stderr)
    cost = float(cost)
    return Evidence(-cost - 0.5 * logdet, stderr, unravel(w), cost, logdet, gradient_norm, int(steps))


def laplace_log_evidence(
    negative_log_likelihood: Callable[[PyTree], jax.Array],
    params: PyTree,
    prior_precision: float,
    *,
    minimize: bool = True,
    tol: float | None = None,
    max_steps: int = 100,
    log_det: str = "dense",
    key: jax.Array | None = None,
    num_probes: int = 10,
    num_steps: int = 50,
) -> Evidence:
    """log p(y) ≈ −C(ω₀) − ½ log det(∇²C(ω₀)/λ), C(ω) = −log p(y | ω) + (λ/2)‖ω‖².

    negative_log_likelihood: ω (a pytree like ``params``) → −log p(y | ω), constants
    included. params: the start of Newton's method, or ω₀ itself with ``minimize=False``.
    prior_precision: λ of the prior N(0, λ⁻¹I). minimize: find ω₀ by damped Newton
    (dense Hessian: small d; convex for linear and logistic regression) until
    ‖∇C‖_∞ ≤ ``tol`` (default 1e-10 in float64); a LandscapeWarning says when ω₀ is not
    a minimum. log_det: ``"dense"`` (Cholesky of the d × d Hessian) or ``"slq"``
    (:func:`sgdsde.curvature.log_determinant` with ``key``, ``num_probes``, ``num_steps``;
    for networks, with ``minimize=False`` at a trained ω₀), whose standard error gives
    ``log_evidence_stderr``. Runs in the dtype of ``params`` (float64 needs ``jax.enable_x64``).
    """
    lam = _positive(prior_precision, "prior_precision")
    flat, unravel = ravel_pytree(params)
    if flat.size == 0:
        raise ValueError("params: need at least one parameter")
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        flat = flat.astype(jnp.result_type(float))
    nll = _Unraveled(negative_log_likelihood, unravel, params)
    return _evidence(nll, flat, (), lam, unravel, minimize=minimize, tol=tol, max_steps=max_steps, log_det=log_det,
                     key=key, num_probes=num_probes, num_steps=num_steps)


class _CostOf:
    """(λ, data, w) → C(w) for one nll; equal for equal nll, so SLQ reuses its compiled program."""

    def __init__(self, nll):
        self.nll = nll

    def __hash__(self):
        return hash(self.nll)

    def __eq__(self, other):
        return isinstance(other, _CostOf) and self.nll == other.nll

    def __call__(self, lam, data, w):
        return _cost(self.nll, lam, w, data)


class _Unraveled:
    """w (flat), data → nll(unravel(w)); equal for one function and params structure, so a
    second call with the same function reuses the compiled Newton program."""

    def __init__(self, fun, unravel, params):
        if not callable(fun):
            raise ValueError(f"negative_log_likelihood: must be callable, got {type(fun).__name__}")
        leaves, treedef = jax.tree_util.tree_flatten(params)
        self.fun, self.unravel = fun, unravel
        self._key = (fun, treedef, tuple((np.shape(x), jnp.result_type(x)) for x in leaves))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Unraveled) and self._key == other._key

    def __call__(self, w, data):
        return self.fun(self.unravel(w))


def logistic_negative_log_likelihood(w: jax.Array, data: tuple) -> jax.Array:
    """−log p(y | w) = Σ_i log(1 + exp(−(2y_i − 1) x_iᵀw)) for labels y_i ∈ {0, 1}."""
    x, y = data
    return jnp.sum(jnp.logaddexp(0.0, -(2.0 * y - 1.0) * (x @ w)))


def _design(x, y, binary: bool):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"x: must be a finite (N, d) design matrix, got shape {x.shape}")
    if y.shape != (x.shape[0],) or not np.all(np.isfinite(y)):
        raise ValueError(f"y: must be finite with shape ({x.shape[0]},), got shape {y.shape}")
    if binary and not np.all((y == 0) | (y == 1)):
        raise ValueError("y: labels must be 0 or 1")
    return x, y


def logistic_regression_log_evidence(x, y, prior_precision: float, *, tol: float | None = None,
                                     max_steps: int = 100) -> Evidence:
    """Laplace evidence of logistic regression p(y_i = 1 | w) = σ(x_iᵀw), prior N(0, λ⁻¹I)
    (add a column of ones to ``x`` for an intercept). ω₀ by Newton; H = Xᵀ diag(p(1−p)) X + λI.
    The data are arguments of one compiled program per shape (new labels do not recompile).
    Float64 needs ``jax.enable_x64``."""
    lam = _positive(prior_precision, "prior_precision")
    x, y = _design(x, y, binary=True)
    dtype = jnp.result_type(float)
    data = (jnp.asarray(x, dtype), jnp.asarray(y, dtype))
    w0 = jnp.zeros(x.shape[1], dtype)
    return _evidence(logistic_negative_log_likelihood, w0, data, lam, lambda w: w, minimize=True, tol=tol,
                     max_steps=max_steps, log_det="dense", key=None, num_probes=0, num_steps=0)


def linear_regression_log_evidence(x, y, noise_var: float, prior_precision: float) -> float:
    """The exact evidence of Bayesian linear regression y = Xω + ε, ε ~ N(0, σ²I), ω ~ N(0, λ⁻¹I):

        log p(y) = log N(y; 0, Σ),  Σ = σ²I + λ⁻¹XXᵀ,

    = −½ yᵀΣ⁻¹y − ½ log det Σ − (N/2) log 2π, by a Cholesky factor of the N × N matrix Σ
    (float64 NumPy)."""
    lam = _positive(prior_precision, "prior_precision")
    var = _positive(noise_var, "noise_var")
    x, y = _design(x, y, binary=False)
    x, y = x.astype(np.float64), y.astype(np.float64)
    cov = var * np.eye(x.shape[0]) + (x @ x.T) / lam
    chol = np.linalg.cholesky(cov)
    white = np.linalg.solve(chol, y)  # L⁻¹y: yᵀΣ⁻¹y = ‖L⁻¹y‖²
    return float(-0.5 * white @ white - np.sum(np.log(np.diag(chol))) - 0.5 * x.shape[0] * np.log(2 * np.pi))


# ------------------------------------------------------------------ networks
def _squared_norm(tree) -> jax.Array:
    return sum(jnp.sum(leaf * leaf) for leaf in jax.tree_util.tree_leaves(tree))


def _network_cost(problem, lam, w):
    """C(ω) = N · (mean per-example loss) + (λ/2)‖ω‖²: −log p(y | ω) for a per-example
    loss that is −log p(y_i | ω) (the problem's regulariser is left out: the prior is λ)."""
    return problem.num_examples * problem.data_loss(w) + 0.5 * lam * _squared_norm(w)


def _gauss_newton_cost(problem, lam, anchor, w):
    """The cost of the network linearised at ``anchor`` (logits z₀ + J(ω − ω₀)): its
    Hessian at ω₀ is the generalised Gauss–Newton matrix Jᵀ ∇²_z ℓ J + λI (positive
    definite: the softmax cross-entropy is convex in the logits)."""
    import optax

    logits = problem.info["logits"]
    x, y = problem.data["x"], problem.data["y"]
    delta = jax.tree_util.tree_map(lambda a, b: a - b, w, anchor)
    z0, dz = jax.jvp(lambda p: logits(p, x), (anchor,), (delta,))
    nll = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(z0 + dz, y))
    return nll + 0.5 * lam * _squared_norm(w)


def network_log_evidence(
    problem,
    params: PyTree,
    prior_precision: float,
    *,
    key: jax.Array,
    curvature: str = "hessian",
    num_probes: int = 10,
    num_steps: int = 50,
    batch_size: int | None = None,
) -> Evidence:
    """The Laplace evidence of a trained network, its log det by stochastic Lanczos
    quadrature (no d × d matrix): log p(y) ≈ −C(ω₀) − ½ log det(H/λ) at ω₀ = ``params``.

    problem: a :class:`sgdsde.Problem` whose per-example loss is −log p(y_i | ω) (the
    cross-entropy of :func:`sgdsde.nn.classification_problem`), so that
    C(ω) = N·L(ω) + (λ/2)‖ω‖² with L the mean per-example loss (the problem's own
    regulariser is not used: the prior N(0, λ⁻¹I) over every entry of ``params`` takes
    its place; weight decay τ in L + τ‖ω‖² is the prior λ = 2Nτ). params: ω₀, e.g. the
    end of an SGD run (not refined: SGD's end point is not an exact minimum, and
    ``gradient_norm`` = ‖∇C(ω₀)‖_∞ says how far it is; the Laplace value assumes ∇C ≈ 0).
    curvature: ``"hessian"`` (H = ∇²C(ω₀); it must be positive definite, else a
    ValueError: a network's Hessian often has small negative eigenvalues off a minimum)
    or ``"gauss_newton"`` (H = G + λI with G = Σ_i J_iᵀ ∇²ℓ_i J_i the generalised
    Gauss–Newton matrix of the logits, positive semi-definite by construction, equal to
    the Hessian where the residual term vanishes; needs ``problem.info["logits"]``, an
    :mod:`sgdsde.nn` problem). key, num_probes, num_steps, batch_size: the SLQ of
    :func:`sgdsde.curvature.log_determinant`; its standard error over the probes, halved,
    is ``log_evidence_stderr``. The data are arguments of the compiled program, so new
    labels of the same shape reuse it. Batch-norm models are refused (their frozen
    statistics are not parameters)."""
    from ..curvature.trace import log_determinant

    lam = _positive(prior_precision, "prior_precision")
    if curvature not in CURVATURES:
        raise ValueError(f"curvature: must be one of {CURVATURES}, got {curvature!r}")
    info = getattr(problem, "info", None)
    if info is None or not callable(getattr(problem, "data_loss", None)):
        raise ValueError(f"problem: must be an sgdsde.Problem, got {type(problem).__name__}")
    if info.get("batch_norm"):
        raise ValueError("problem: batch-norm models are not supported (their statistics are not parameters)")
    if curvature == "gauss_newton" and not callable(info.get("logits")):
        raise ValueError("curvature: 'gauss_newton' needs a network problem (problem.info['logits'], sgdsde.nn)")
    if key is None:
        raise ValueError("key: the SLQ log det needs a PRNG key for its probes")
    flat, unravel = ravel_pytree(params)
    dtype = flat.dtype if jnp.issubdtype(flat.dtype, jnp.floating) else jnp.result_type(float)
    lam_arr = jnp.asarray(lam, dtype)
    cost_fn = jax.tree_util.Partial(_network_cost, problem, lam_arr)
    cost, grad = jax.value_and_grad(cost_fn)(params)
    if curvature == "hessian":
        curvature_fn = cost_fn
    else:
        curvature_fn = jax.tree_util.Partial(_gauss_newton_cost, problem, lam_arr, params)
    est = log_determinant(curvature_fn, params, key=key, num_probes=num_probes, num_steps=num_steps,
                          batch_size=batch_size)
    logdet = float(est.mean) - flat.shape[0] * np.log(lam)
    cost = float(cost)
    gradient_norm = float(jnp.max(jnp.abs(ravel_pytree(grad)[0])))
    return Evidence(-cost - 0.5 * logdet, 0.5 * float(est.stderr), params, cost, logdet, gradient_norm, 0)
