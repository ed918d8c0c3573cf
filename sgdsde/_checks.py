"""Argument checks and key handling shared by every module (imports nothing of sgdsde's).

Checks run in Python, before anything compiles, and name the argument they reject.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_int", "check_number", "typed_key", "is_traced", "eval_shape_cached", "memoize_abstract", "is_array_leaf"]


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum`` (bools and floats refused), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def check_number(value, name: str, minimum: float, *, strict: bool = False, unit: str = "") -> float:
    """``value`` as a concrete, finite Python float ≥ ``minimum`` (> with ``strict``), else
    ValueError naming it; bools, strings, arrays of more than one element and traced values
    are refused. ``unit`` is added to the message ("in SGD steps")."""
    bound = f"{'>' if strict else '≥'} {minimum:g}{' (' + unit + ')' if unit else ''}"
    if isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value) != 0:
        raise ValueError(f"{name}: must be a finite number {bound}, got {value!r}")
    try:
        number = float(value)
    except Exception as err:  # e.g. a traced value
        raise ValueError(f"{name}: must be a concrete number {bound}, got {value!r}") from err
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ValueError(f"{name}: must be a finite number {bound}, got {number!r}")
    return number


def typed_key(key) -> jax.Array:
    """A typed PRNG key from ``jax.random.key(seed)`` or a raw ``PRNGKey`` (uint32 (2,)),
    also when traced (under jit/vmap)."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, jax.core.Tracer):
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    else:
        arr = np.asarray(key)
        if arr.dtype == np.uint32 and arr.shape == (2,):
            return jax.random.wrap_key_data(jnp.asarray(arr))
    raise ValueError("key: must be a jax PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed))")


def is_traced(tree) -> bool:
    """Whether any leaf of ``tree`` is a tracer (inside jit, vmap or grad): values unknown."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def is_array_leaf(x) -> bool:
    """Whether a pytree leaf is an array or number (a jax or NumPy array, a NumPy scalar, a
    Python number): what is traced under ``jax.jit``, as opposed to a static object."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, int, complex))


def _abstract(leaf):
    """An array leaf (:func:`is_array_leaf`) as its ShapeDtypeStruct; anything else (a Flax
    module, a function) as itself, compared by its own equality."""
    if is_array_leaf(leaf):
        a = jax.typeof(leaf)
        return jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type)
    return leaf


def memoize_abstract(fn):
    """``fn(*trees)`` evaluated on abstract arguments (every array leaf a ShapeDtypeStruct, as
    under ``jax.jit``) and cached by what that depends on: the tree structures (functions in
    a ``Partial``'s or a Problem's treedef, and a Problem's ``info``, compare by identity),
    the leaves' shapes and dtypes, the other leaves, and whether x64 is on. For the checks that trace a user's
    function before a run: a repeated call with the same function and shapes does not
    trace it again (a warm one-step ``sd.run`` spent 5 of its 7 ms there). A failure is
    not cached; an unhashable argument is evaluated every time."""

    @functools.lru_cache(maxsize=256)
    def cached(x64, *signature):  # x64: default dtypes inside fn follow jax_enable_x64
        return fn(*(jax.tree_util.tree_unflatten(treedef, leaves) for treedef, leaves in signature))

    @functools.wraps(fn)
    def call(*trees):
        signature = [bool(jax.config.jax_enable_x64)]
        for tree in trees:
            leaves, treedef = jax.tree_util.tree_flatten(tree)
            signature.append((treedef, tuple(map(_abstract, leaves))))
        try:
            hash(tuple(signature))
        except TypeError:
            return cached.__wrapped__(*signature)
        return cached(*signature)

    return call


@memoize_abstract
def eval_shape_cached(fun, *args):
    """``jax.eval_shape(fun, *args)`` for a pytree callable (e.g. a ``jax.tree_util.Partial``),
    cached by :func:`memoize_abstract` (``fun``'s own arrays are abstract too)."""
    return jax.eval_shape(lambda f, *a: f(*a), fun, *args)
