"""Float64 by default, scoped: the solver's entry points compute under ``jax.enable_x64``.

The Fokker–Planck solver needs float64 (discrete equilibria to 1e-12, masses spanning
many decades). It never touches the global configuration: each public entry point runs
inside a ``with jax.enable_x64(True):`` block and returns float64 arrays. When called
inside a user's trace (``jax.grad``, ``jax.jit``; any argument is a tracer) the
computation follows the caller's dtype instead (float32 unless the caller enabled x64),
because a trace cannot change precision half way. Concrete results that are
distributions (masses, marginals, …) are returned as float64 NumPy arrays
(:func:`to_host`), so that user arithmetic on them stays float64 too.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np

__all__ = ["float64_entry", "is_traced", "to_host"]


def is_traced(*values: Any) -> bool:
    """True when any leaf of ``values`` is a JAX tracer (we are inside a user's transform)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(values))


def float64_entry(fn: Callable) -> Callable:
    """Run ``fn`` under a scoped ``jax.enable_x64(True)`` unless an argument is traced."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if is_traced(args, kwargs) or jax.config.jax_enable_x64:
            return fn(*args, **kwargs)
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper


def to_host(value):
    """A concrete result as float64 NumPy (keeps float64 outside the x64 scope, where JAX
    would silently compute in float32); traced values pass through unchanged."""
    if is_traced(value):
        return value
    return np.asarray(value)
