"""Hessian–vector products and the helpers every estimator shares: argument checks,
the flattened operator v ↦ Hv, probe vectors, orthogonalisation; the dense Hessian."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial
from jaxtyping import Array, Float

from .._checks import eval_shape_cached, is_array_leaf
from .._checks import typed_key as _typed_key


PyTree = Any


# ----------------------------------------------------------------------------- helpers
def _as_partial(fun) -> Partial:
    """``fun`` as a ``Partial`` (a pytree): a bound method of a pytree of arrays (e.g.
    ``problem.loss``) carries its object as a traced argument; other callables are static."""
    if isinstance(fun, Partial):
        return fun
    if not callable(fun):
        raise TypeError(f"fun: must be a callable params -> scalar loss, got {type(fun).__name__}")
    owner = getattr(fun, "__self__", None)
    if inspect.ismethod(fun) and owner is not None:
        leaves, treedef = jax.tree_util.tree_flatten(owner)
        if not jax.tree_util.treedef_is_leaf(treedef) and all(is_array_leaf(x) for x in leaves):
            return Partial(fun.__func__, owner)
    return Partial(fun)


def _check_params(params: PyTree, name: str = "params") -> int:
    """Number of parameters d; raises for empty, non-float or non-finite params."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{name}: empty parameter pytree")
    d = 0
    for leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"{name}: parameters must be floating point, got dtype {dtype}")
        d += int(np.prod(np.shape(leaf)))
        if not isinstance(leaf, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
    if d == 0:
        raise ValueError(f"{name}: has no entries")
    return d


def _check_scalar_loss(fun: Partial, params: PyTree) -> None:
    try:
        out = eval_shape_cached(fun, params)  # cached by shapes: repeated calls trace fun once
    except Exception as err:
        raise ValueError(
            f"fun: evaluating fun(params) failed ({type(err).__name__}: {err})"
        ) from err
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"fun: must return a floating-point scalar, got {out}")


def _prepare(fun, params, key=None) -> tuple[Partial, int, Any]:
    """Validation shared by the public functions: (fun as Partial, d, typed key)."""
    fun = _as_partial(fun)
    d = _check_params(params)
    _check_scalar_loss(fun, params)
    return fun, d, (None if key is None else _typed_key(key))


def _flat_operator(fun: Callable, params: PyTree):
    """(matvec, flat params, unravel): matvec(v) = H v on flat vectors. The gradient is
    linearised once at params, so each product costs one forward-mode pass over it."""
    flat, unravel = ravel_pytree(params)

    def flat_grad(x):
        return ravel_pytree(jax.grad(fun)(unravel(x)))[0]

    _, linear = jax.linearize(flat_grad, flat)
    return (lambda v: linear(v.astype(flat.dtype))), flat, unravel


def _signs(v: Array) -> Array:
    """±1 by the sign of each entry: Rademacher entries for a Gaussian v (one RNG draw for both)."""
    return jnp.where(v >= 0, 1, -1).astype(v.dtype)


def _normalize(v: Array) -> Array:
    norm = jnp.linalg.norm(v)
    return v / jnp.where(norm > 0, norm, 1)


def _orthogonalize(v: Array, basis: Array) -> Array:
    """Remove the span of basis's rows (orthonormal or zero) from v (a vector, or the rows of
    a block); twice ("twice is enough")."""
    v = v - (v @ basis.T) @ basis
    return v - (v @ basis.T) @ basis


# ----------------------------------------------------------------------------- HVP
def hvp(fun: Callable[[PyTree], Array], params: PyTree, tangent: PyTree) -> PyTree:
    """H v, with H = ∇²fun(params) and v = ``tangent`` (a pytree like params).

    Forward-over-reverse: the directional derivative of the gradient,
    d/dε ∇fun(params + ε v) at ε = 0, at about the cost of two gradients.
    """
    p_struct, t_struct = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(tangent)
    if p_struct != t_struct:
        raise ValueError(f"tangent: must have the structure of params ({p_struct}), got {t_struct}")
    for p, t in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(tangent)):
        if np.shape(p) != np.shape(t):
            raise ValueError(f"tangent: leaf shape {np.shape(t)} does not match params leaf shape {np.shape(p)}")
    tangent = jax.tree_util.tree_map(lambda p, t: jnp.asarray(t, jnp.result_type(p)), params, tangent)
    return jax.jvp(jax.grad(fun), (params,), (tangent,))[1]


@jax.jit
def _dense_hessian_core(fun, params):
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda x: fun(unravel(x)))(flat)


def dense_hessian(fun: Callable[[PyTree], Array], params: PyTree) -> Float[Array, "d d"]:
    """The full d × d Hessian ∇²fun(params) over the flattened params (d HVPs' worth of
    work and d² memory: small models only; the oracle the matrix-free methods are tested
    against, and the A of :mod:`sgdsde.pac_bayes`)."""
    fun, d, _ = _prepare(fun, params)
    return _dense_hessian_core(fun, params)


