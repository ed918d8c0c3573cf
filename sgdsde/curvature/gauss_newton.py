"""The Hessian trace of a classifier by the Gauss–Newton split: tr H = tr G (exact) + tr R
(Hutchinson), for networks whose parameters are all in dense layers.

For the mean cross-entropy L(θ) = (1/N) Σ_n ℓ(f_n(θ), y_n) of logits f_n = f(θ, x_n),

    H = G + R,   G = (1/N) Σ_n J_nᵀ M_n J_n,   R = (1/N) Σ_n Σ_c r_nc ∇²f_nc,

with J_n = ∂f_n/∂θ (C × d), M_n = ∇²_f ℓ = diag(p_n) − p_n p_nᵀ (p_n = softmax f_n) and
r_n = ∇_f ℓ = p_n − e_{y_n}. A regulariser τ‖θ‖² adds 2τ to every diagonal entry (2τd to
the trace).

- tr G exactly. M_n = L_n L_nᵀ with columns L_n e_k = √p_nk (e_k − p_n), so
  tr G = (1/N) Σ_n Σ_k ‖J_nᵀ L_n e_k‖², a sum of squared per-example gradient norms. For
  a dense layer z = a W + b applied to one example's features a_n, the gradient of
  u·f_n is the outer product a_n δ_nᵀ (δ_n: the gradient with respect to z_n), whose
  squared norm is ‖a_n‖²‖δ_n‖² (plus ‖δ_n‖² for the bias). So tr G costs the C backward
  passes of the δ's through the layers' activations (batched over the C directions),
  no per-example gradient is formed ("ghost norms").
- tr R by Hutchinson: zᵀRz = d²/dε² (1/N) Σ_n r_n·f_n(θ + εz) with r held fixed (the
  same forward-over-forward probe as :func:`~sgdsde.curvature.hutchinson_trace`).

Near a minimum the residuals r_n are small, so R's probes vary far less than H's and far
fewer of them give the same standard error (docs/curvature.md). Needs a classification
problem of :func:`sgdsde.nn.classification_problem` whose model's parameters all sit in
``flax.linen.Dense`` layers, each applied once to (examples, features) inputs (e.g.
:class:`sgdsde.nn.models.MLP` without batch norm); anything else raises.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen
from jax.tree_util import Partial
from jaxtyping import Array, Float

from .._checks import check_int as _check_int
from .._checks import memoize_abstract
from ..problem import Problem
from ._products import _check_params
from .trace import hutchinson_trace

PyTree = Any

__all__ = ["GaussNewtonSplitEstimate", "gauss_newton_split_trace", "gauss_newton_trace"]


class GaussNewtonSplitEstimate(NamedTuple):
    """tr H ≈ ``mean`` = ``gauss_newton`` + the mean of ``samples``: ``gauss_newton`` = tr G
    exactly (with the regulariser's 2τd); ``samples``: the residual probes zᵀRz; ``stderr``:
    their sample standard deviation / √n (the only random error)."""

    mean: Float[Array, ""]
    stderr: Float[Array, ""]
    samples: Float[Array, " n"]
    gauss_newton: Float[Array, ""]


def _is_dense_call(context) -> bool:
    return isinstance(context.module, linen.Dense) and context.method_name == "__call__"


class _DenseCall(NamedTuple):
    input_shape: tuple
    output: jax.ShapeDtypeStruct
    use_bias: bool
    path: tuple


@memoize_abstract
def _dense_layout(model: linen.Module, variables: PyTree, x: Array) -> tuple[_DenseCall, ...]:
    """Every ``linen.Dense`` call of ``model.apply(variables, x)``, in order (shapes only;
    traced once per model and shapes)."""
    layout = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if _is_dense_call(context):
            layout.append(_DenseCall(tuple(args[0].shape), jax.ShapeDtypeStruct(out.shape, out.dtype),
                                     bool(context.module.use_bias), tuple(context.module.scope.path)))
        return out

    def run(v, inputs):
        with linen.intercept_methods(interceptor):
            return model.apply(v, inputs)

    jax.eval_shape(run, variables, x)
    return tuple(layout)


def _dense_pass(model: linen.Module, variables: PyTree, x: Array, shifts: list):
    """(logits, inputs): ``model``'s logits with ``shifts[l]`` added to the output of its
    l-th Dense call, and every Dense call's input."""
    inputs = []

    def interceptor(next_fun, args, kwargs, context):
        if not _is_dense_call(context):
            return next_fun(*args, **kwargs)
        inputs.append(args[0])
        return next_fun(*args, **kwargs) + shifts[len(inputs) - 1]

    with linen.intercept_methods(interceptor):
        logits = model.apply(variables, x)
    return logits, inputs


def _check_dense_model(model: linen.Module, variables: PyTree, x: Array) -> None:
    """Raises unless every trainable parameter is in a Dense layer applied once to 2-D
    (examples, features) inputs: what the per-example norms ‖a_n‖²‖δ_n‖² need."""
    layout = _dense_layout(model, variables, x)
    paths = [call.path for call in layout]
    if len(set(paths)) != len(paths):
        raise ValueError("model: a Dense layer is applied more than once (shared weights); the Gauss–Newton "
                         "split needs each dense layer applied once")
    for call in layout:
        if len(call.input_shape) != 2:
            raise ValueError(f"model: the Dense layer {'/'.join(call.path)} is applied to inputs of shape "
                             f"{call.input_shape}; the Gauss–Newton split needs (examples, features) inputs")
    count = lambda tree: sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(tree))
    covered = 0
    for call in layout:
        node = variables["params"]
        for name in call.path:
            node = node[name]
        covered += count(node)
    total = count(variables["params"])
    extra = [k for k in variables if k != "params"]
    if covered != total or extra:
        raise ValueError(
            f"model: {total - covered} of its {total} parameters are outside Dense layers"
            + (f" (and it has variables {extra})" if extra else "")
            + "; the Gauss–Newton split needs a network of dense layers (e.g. sgdsde.nn.models.MLP "
            "without batch norm)")


@functools.partial(jax.jit, static_argnums=0)
def _gauss_newton_core(model: linen.Module, variables: PyTree, x: Array) -> tuple[Array, Array]:
    """(tr G, p): tr G = (1/N) Σ_k Σ_layers Σ_n ‖δ_lkn‖² (‖a_ln‖² + [bias]) for the cotangents
    u_nk = √p_nk (e_k − p_n) of the logits (the columns of M_n's factor), and the
    probabilities p_n = softmax f_n (for the residuals of the split, without another pass)."""
    layout = _dense_layout(model, variables, x)
    zero = [jnp.zeros(call.output.shape, call.output.dtype) for call in layout]
    logits, vjp, inputs = jax.vjp(lambda s: _dense_pass(model, variables, x, s), zero, has_aux=True)
    p = jax.nn.softmax(logits, axis=-1)
    eye = jnp.eye(p.shape[-1], dtype=p.dtype)
    cotangents = jnp.sqrt(p).T[:, :, None] * (eye[:, None, :] - p[None])  # [k, n, c]
    deltas = jax.vmap(lambda u: vjp(u)[0])(cotangents)  # per layer: [k, n, width]
    total = jnp.zeros((), p.dtype)
    for delta, a, call in zip(deltas, inputs, layout):
        a = a.astype(delta.dtype)  # float32 data with float64 params: the norms in float64
        norms = jnp.sum(a * a, axis=-1) + (1.0 if call.use_bias else 0.0)  # ‖a_n‖² (+1: bias), [n]
        total = total + jnp.sum(jnp.sum(delta * delta, axis=-1) * norms[None, :])
    return total / x.shape[0], p


def _classifier(problem: Problem):
    info = problem.info if isinstance(problem, Problem) else {}
    if "model" not in info or "logits" not in info:
        raise ValueError("problem: must come from sgdsde.nn.classification_problem (it needs the model "
                         "and its logits)")
    if info.get("batch_norm"):
        raise ValueError("problem: a batch-norm model has parameters outside dense layers; the Gauss–Newton "
                         "split needs a network of dense layers")
    return info["model"], problem.data["x"], problem.data["y"], float(info.get("weight_decay", 0.0))


def gauss_newton_trace(problem: Problem, params: PyTree) -> Float[Array, ""]:
    """tr G of the mean cross-entropy, exactly (to rounding), plus the regulariser's 2τd:
    the Gauss–Newton (here also Fisher) part of tr H, by per-example norms of dense layers
    (module docstring). ``problem`` from :func:`sgdsde.nn.classification_problem` with a
    network of dense layers; costs about C backward passes of the activations."""
    return _gauss_newton_and_probabilities(problem, params)[0]


def _gauss_newton_and_probabilities(problem: Problem, params: PyTree) -> tuple[Array, Array]:
    """(tr G + 2τd, softmax of the logits) after the checks of :func:`gauss_newton_trace`."""
    model, x, _, weight_decay = _classifier(problem)
    d = _check_params(params)
    _check_dense_model(model, params, x)  # the layout at x's shapes: the core's, cached once
    trace, p = _gauss_newton_core(model, params, x)
    return trace + 2.0 * weight_decay * d, p


@functools.lru_cache(maxsize=None)
def _residual_term(apply):
    """(r, x, params) ↦ (1/N) Σ_n r_n·f(params, x_n): its Hessian is R when r is held fixed."""

    def term(r, x, params):
        return jnp.sum(r * apply(params, x)) / x.shape[0]

    return term


def gauss_newton_split_trace(
    problem: Problem,
    params: PyTree,
    *,
    key: Array,
    num_samples: int = 10,
) -> GaussNewtonSplitEstimate:
    """tr H = tr G + tr R: tr G exactly (:func:`gauss_newton_trace`), tr R by ``num_samples``
    Rademacher probes zᵀRz (forward over forward; unbiased, Var = 2Σ_{i≠j} R_ij²). The
    standard error is that of the residual probes alone; near a minimum (small residuals
    p_n − e_{y_n}) it is far below Hutchinson's on H with as many probes."""
    _, x, y, _ = _classifier(problem)
    num_samples = _check_int(num_samples, "num_samples", 2)
    exact, p = _gauss_newton_and_probabilities(problem, params)
    apply = problem.info["logits"]
    residual = p - jax.nn.one_hot(y, p.shape[-1], dtype=p.dtype)
    rest = hutchinson_trace(Partial(_residual_term(apply), residual, x), params, key=key, num_samples=num_samples)
    return GaussNewtonSplitEstimate(exact + rest.mean, rest.stderr, rest.samples, exact)
