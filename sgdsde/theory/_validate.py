"""Argument types and checks shared by the :mod:`sgdsde.theory` modules.

Checks raise ``ValueError`` naming the argument; value checks (positivity, ranges) run
only where the inputs are concrete, so they never break ``jax.jit``.
"""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

Scalar = Union[float, Float[ArrayLike, ""]]
IntScalar = Union[int, ArrayLike]


def is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def float_dtype(*xs):
    """Floating dtype the result should have: that of the inputs, at least float32."""
    dt = jnp.result_type(*(jnp.asarray(x) if isinstance(x, (list, tuple)) else x for x in xs))
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(dt, 1.0)
    if not jnp.issubdtype(dt, jnp.floating) or jnp.finfo(dt).bits < 32:
        dt = jnp.dtype(jnp.float32)
    return dt


def check_square(x, name: str) -> None:
    if np.ndim(x) != 2 or np.shape(x)[0] != np.shape(x)[1]:
        raise ValueError(f"{name}: must be a square matrix, got shape {np.shape(x)}")


def check_pair(hessian, noise_cov) -> None:
    check_square(hessian, "hessian")
    check_square(noise_cov, "noise_cov")
    if np.shape(noise_cov) != np.shape(hessian):
        raise ValueError(
            f"noise_cov: shape {np.shape(noise_cov)} does not match hessian shape {np.shape(hessian)}"
        )


def check_scalar(x, name: str) -> None:
    if np.ndim(x) != 0:
        raise ValueError(f"{name}: must be a scalar, got shape {np.shape(x)}")


def check_positive(x, name: str) -> None:
    check_scalar(x, name)
    if is_concrete(x):
        v = np.asarray(x)
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: must be a finite positive number, got {v}")


def check_batch(batch_size, num_examples=None, *, required: bool = False, what: str = "") -> None:
    check_positive(batch_size, "batch_size")
    if num_examples is None:
        if required:
            raise ValueError(f"num_examples: required for {what}")
        return
    check_scalar(num_examples, "num_examples")
    if is_concrete(num_examples):
        n = np.asarray(num_examples)
        if n < 2:
            raise ValueError(f"num_examples: needs at least 2 examples, got {n}")
        if is_concrete(batch_size) and np.asarray(batch_size) > n:
            raise ValueError(
                f"num_examples: must be >= batch_size, got num_examples={n}, batch_size={np.asarray(batch_size)}"
            )


def check_momentum(momentum) -> None:
    check_scalar(momentum, "momentum")
    if is_concrete(momentum):
        b = np.asarray(momentum)
        if not (0.0 <= b < 1.0):
            raise ValueError(f"momentum: must lie in [0, 1), got {b}")


def scalars(*xs):
    dt = float_dtype(*xs)
    return [jnp.asarray(x, dt) for x in xs]
