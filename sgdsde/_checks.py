"""Argument checks and key handling shared by every module (imports nothing of sgdsde's).

Checks run in Python, before anything compiles, and name the argument they reject.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_int", "typed_key", "is_traced"]


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum`` (bools and floats refused), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


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
