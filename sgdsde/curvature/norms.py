"""The Hessian's Frobenius norm (finite differences of gradients, as in the Three Factors
paper, or exact HVPs) and the loss along the line between two parameter sets."""

from __future__ import annotations

from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_int as _check_int

from ._products import _as_partial, _check_params, _check_scalar_loss, _prepare
from ._results import Estimate, HessianNorm
from .trace import _PROBES, _check_batch_size, _probe_core

PyTree = Any


_SCHEMES = ("forward", "central")

# ----------------------------------------------------------------------------- Hessian norm
def _norm(est: Estimate) -> HessianNorm:
    return HessianNorm(jnp.sqrt(est.mean), est.mean, est.stderr, est.samples)


def finite_difference_hessian_norm(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    epsilon: float = 1e-3,
    num_samples: int = 10,
    scheme: Literal["forward", "central"] = "forward",
    batch_size: int | None = None,
) -> HessianNorm:
    """The Frobenius norm ‖H‖_F from gradient differences, without any HVP.

    The Three Factors paper measures sharpness as "the norm of the Hessian … using the
    finite difference method (Wu et al., 2017)": ‖H‖_F² = E_v ‖Hv‖², v ~ N(0, I_d),
    with Hv replaced by a difference of gradients,

        forward:  Hv ≈ ‖v‖ [∇L(θ + ε v̂) − ∇L(θ)] / ε,
        central:  Hv ≈ ‖v‖ [∇L(θ + ε v̂) − ∇L(θ − ε v̂)] / (2ε),     v̂ = v/‖v‖,

    i.e. the parameters move a distance ``epsilon`` (Wu et al. scale the Gaussian v
    itself by ε, a step of length ≈ ε√d). Bias: O(ε) forward, O(ε²) central (none for
    a quadratic loss); rounding: ~ machine-eps·‖∇L‖/ε — in float32 keep ε ≳ 1e-3.
    The same ``key`` gives the same probes as :func:`hessian_frobenius_norm`.
    """
    fun, d, key = _prepare(fun, params, key)
    num_samples = _check_int(num_samples, "num_samples", 2)
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme: must be one of {_SCHEMES}, got {scheme!r}")
    if isinstance(epsilon, bool) or not np.isscalar(epsilon) or not np.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon: must be a finite positive number (a step length in parameter space), got {epsilon!r}")
    batch_size = _check_batch_size(batch_size, num_samples)
    return _norm(_probe_core(fun, params, key, float(epsilon), _PROBES[scheme], num_samples, batch_size))


def hessian_frobenius_norm(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_samples: int = 10,
    batch_size: int | None = None,
) -> HessianNorm:
    """‖H‖_F from E_v ‖Hv‖² = ‖H‖_F² with exact HVPs, v ~ N(0, I_d) (the same probes as
    :func:`finite_difference_hessian_norm` for the same ``key``). Var(‖Hv‖²) = 2‖H²‖_F²."""
    fun, d, key = _prepare(fun, params, key)
    num_samples = _check_int(num_samples, "num_samples", 2)
    batch_size = _check_batch_size(batch_size, num_samples)
    return _norm(_probe_core(fun, params, key, 1.0, _PROBES["exact"], num_samples, batch_size))


# ----------------------------------------------------------------------------- line
@jax.jit
def _line_core(fun, params1, params2, alphas):
    def at(alpha):
        point = jax.tree_util.tree_map(lambda a, b: (1 - alpha) * a + alpha * b, params1, params2)
        return fun(point)

    return jax.vmap(at)(alphas)


def loss_along_line(
    fun: Callable[[PyTree], Array],
    params1: PyTree,
    params2: PyTree,
    alphas: Float[ArrayLike, " n"],
) -> Float[Array, " n"]:
    """L((1 − α) θ₁ + α θ₂) for every α in ``alphas`` (θ₁ at α = 0, θ₂ at α = 1; the
    Three Factors paper plots α ∈ [−1, 2] between minima found with different η/S)."""
    fun = _as_partial(fun)
    _check_params(params1, "params1")
    _check_params(params2, "params2")
    s1, s2 = jax.tree_util.tree_structure(params1), jax.tree_util.tree_structure(params2)
    if s1 != s2 or any(
        np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(params1), jax.tree_util.tree_leaves(params2))
    ):
        raise ValueError("params2: must have the structure and leaf shapes of params1")
    _check_scalar_loss(fun, params1)
    alphas_np = alphas if isinstance(alphas, jax.core.Tracer) else np.asarray(alphas)
    if np.ndim(alphas_np) != 1 or np.shape(alphas_np)[0] == 0:
        raise ValueError(f"alphas: must be a non-empty 1-D array, got shape {np.shape(alphas_np)}")
    if not isinstance(alphas_np, jax.core.Tracer) and not np.all(np.isfinite(alphas_np)):
        raise ValueError("alphas: must be finite")
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params1))
    return _line_core(fun, params1, params2, jnp.asarray(alphas, dtype))
