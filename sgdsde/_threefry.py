"""Threefry-2x32 as plain elementwise ops: the same bits as ``jax.random``, faster on CPU.

JAX lowers its Threefry primitive on CPU as a *rolled* while loop (5 iterations of 4
rounds, to keep compile times short). XLA cannot fuse across that loop, so every
``jax.random.fold_in`` and every ``jax.random.normal`` in a scanned step becomes a
loop of small kernels over the replica axis, and for small models (d = 2) those loops
are most of a step. Written as ``jnp`` ops the same function is fused by XLA into the
step's one elementwise kernel.

:func:`uniform_below` draws a counter-based stream of bounded integers (one block per draw).

:func:`fold_in` and :func:`normal` return exactly what ``jax.random.fold_in`` and
``jax.random.normal`` return (bit for bit; ``tests/test_threefry.py``) for keys of the
default ``threefry2x32`` implementation with ``jax_threefry_partitionable`` on (the
default since JAX 0.5) and float32 draws; anything else falls back to ``jax.random``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["fold_in", "normal", "uniform_below"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, r: int):
    return lax.shift_left(x, jnp.uint32(r)) | lax.shift_right_logical(x, jnp.uint32(32 - r))


def _threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 block function (20 rounds), as in jax._src.prng."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotl(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _is_threefry(keys) -> bool:
    try:
        return str(jax.random.key_impl(keys)) == "threefry2x32"
    except Exception:  # raw uint32 keys or an unknown implementation
        return False


def fold_in(keys: jax.Array, data) -> jax.Array:
    """``jax.random.fold_in(key, data)`` for every key of a typed key array (any shape)."""
    if not _is_threefry(keys):
        flat = keys.reshape(-1)
        return jax.vmap(lambda key: jax.random.fold_in(key, data))(flat).reshape(keys.shape)
    raw = jax.random.key_data(keys)
    k0, k1 = raw[..., 0], raw[..., 1]
    x1 = jnp.broadcast_to(jnp.asarray(data).astype(jnp.uint32), k0.shape)
    y0, y1 = _threefry2x32(k0, k1, jnp.zeros_like(k0), x1)
    return jax.random.wrap_key_data(jnp.stack([y0, y1], -1), impl="threefry2x32")


def normal(key: jax.Array, shape, dtype) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)`` for one key (use under vmap for more)."""
    shape = tuple(int(s) for s in shape)
    if (
        jnp.dtype(dtype) != jnp.float32
        or np.shape(key) != ()
        or not _is_threefry(key)
        or not jax.config.jax_threefry_partitionable
    ):
        return jax.random.normal(key, shape, dtype)
    n = math.prod(shape)
    raw = jax.random.key_data(key)
    index = np.arange(n, dtype=np.uint64)  # partitionable layout: the counter is the flat index
    b0, b1 = _threefry2x32(raw[0], raw[1], jnp.asarray((index >> 32).astype(np.uint32)),
                           jnp.asarray((index & 0xFFFFFFFF).astype(np.uint32)))
    bits = b0 ^ b1
    # jax.random.uniform(minval=nextafter(-1, 0), maxval=1), then √2·erfinv (jax.random.normal)
    f32 = np.float32
    one = jnp.uint32(np.array(1.0, f32).view(np.uint32))
    floats = lax.bitcast_convert_type(lax.shift_right_logical(bits, jnp.uint32(32 - 23)) | one, jnp.float32) - f32(1)
    lo = np.nextafter(f32(-1), f32(0), dtype=f32)
    u = lax.max(lo, floats * (f32(1) - lo) + lo)
    return (f32(math.sqrt(2)) * lax.erf_inv(u)).reshape(shape)


def _mulhilo(a, b):
    """(high, low) 32-bit words of the 64-bit product of uint32 a and b (16-bit halves)."""
    mask, sh = jnp.uint32(0xFFFF), jnp.uint32(16)
    a0, a1, b0, b1 = a & mask, a >> sh, b & mask, b >> sh
    lo = a0 * b0
    mid1 = a1 * b0 + (lo >> sh)
    mid2 = a0 * b1 + (mid1 & mask)
    return a1 * b1 + (mid1 >> sh) + (mid2 >> sh), a * b


def uniform_below(key: jax.Array, counters, span) -> jax.Array:
    """int32 draws in [0, span) for one typed key, one per uint32 counter t: the 64 bits of
    one Threefry-2x32 block (x_hi, x_lo) = threefry(key, (0, t)) mapped to
    ⌊(x_hi·2³² + x_lo)·span / 2⁶⁴⌋ (bias ≤ span/2⁶⁴; span ≤ 2³¹). Element t depends only on
    (key, t), so a stream can be drawn in pieces. Non-Threefry keys fall back to
    ``jax.random.randint(fold_in(key, t), (), 0, span)``."""
    counters = jnp.asarray(counters, jnp.uint32)
    span = jnp.asarray(span).astype(jnp.uint32)
    if not _is_threefry(key):
        draw = lambda t: jax.random.randint(jax.random.fold_in(key, t), (), 0, span.astype(jnp.int32))
        return jax.vmap(draw)(counters.reshape(-1)).reshape(counters.shape).astype(jnp.int32)
    # the barrier keeps XLA from fusing the key's own computation (e.g. a fused fold_in)
    # into every draw, i.e. recomputing it per element (10x slower in sgdsde.run)
    raw = lax.optimization_barrier(jax.random.key_data(key))
    x_hi, x_lo = _threefry2x32(raw[0], raw[1], jnp.zeros_like(counters), counters)
    a_hi, a_lo = _mulhilo(x_hi, span)  # x·span = a·2³² + b, with a = x_hi·span, b = x_lo·span
    b_hi, _ = _mulhilo(x_lo, span)
    carry = (a_lo + b_hi < a_lo).astype(jnp.uint32)
    return (a_hi + carry).astype(jnp.int32)
