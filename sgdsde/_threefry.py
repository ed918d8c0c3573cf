"""Threefry-2x32 as plain elementwise ops: the same bits as ``jax.random``, faster on CPU.

JAX lowers its Threefry primitive on CPU as a *rolled* while loop (5 iterations of 4
rounds, to keep compile times short). XLA cannot fuse across that loop, so every
``jax.random.fold_in`` and every ``jax.random.normal`` in a scanned step becomes a
loop of small kernels over the replica axis, and for small models (d = 2) those loops
are most of a step. Written as ``jnp`` ops the same function is fused by XLA into the
step's one elementwise kernel.

:func:`uniform_below` draws a counter-based stream of bounded integers (one block per draw).

:func:`fold_in`, :func:`normal`, :func:`rademacher` and :func:`split_key` return exactly
what ``jax.random.fold_in``, ``jax.random.normal``, ``jax.random.rademacher`` and one key
of ``jax.random.split`` return (bit for bit; ``tests/test_threefry.py``) for keys of the
default ``threefry2x32`` implementation with ``jax_threefry_partitionable`` on (the
default since JAX 0.5) and float32 draws; anything else falls back to ``jax.random``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["fold_in", "normal", "rademacher", "split_key", "uniform_below"]

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


def _single_partitionable(key) -> bool:
    """One typed Threefry key with ``jax_threefry_partitionable`` on: the layout below."""
    return np.shape(key) == () and _is_threefry(key) and bool(jax.config.jax_threefry_partitionable)


def _bits32(key: jax.Array, n: int, barrier: bool = False) -> jax.Array:
    """``jax.random.bits(key, (n,), uint32)`` (partitionable layout: the counter is the flat index).
    ``barrier``: keep XLA from fusing the key's own computation (e.g. the ``fold_in`` of
    :func:`split_key`) into every element's Threefry block. For one key and many elements
    (a Hutchinson probe, :func:`rademacher`) that fused kernel recomputed the key per
    element and took LLVM 0.44–0.70 s to compile for 94,218 signs, against 0.22–0.26 s with
    the barrier; the probe of a 94k-parameter MLP compiled in 0.61–0.66 s instead of
    0.65–0.83 s (medians of 5, CPU). Not used for the per-path noise of the SDE steppers
    (:func:`normal` under ``vmap``, a few elements per key), whose fused kernels are timed
    against the RNG floor in benchmarks/sde_ensemble.py."""
    raw = jax.random.key_data(key)
    if barrier:
        raw = lax.optimization_barrier(raw)
    index = np.arange(n, dtype=np.uint64)
    b0, b1 = _threefry2x32(raw[0], raw[1], jnp.asarray((index >> 32).astype(np.uint32)),
                           jnp.asarray((index & 0xFFFFFFFF).astype(np.uint32)))
    return b0 ^ b1


def split_key(key: jax.Array, num: int, index) -> jax.Array:
    """``jax.random.split(key, num)[index]`` for one key, computing that key only: with the
    partitionable layout, key i of a split is the Threefry block of (0, i), which is
    ``fold_in(key, i)``."""
    if not _single_partitionable(key):
        return jax.random.split(key, num)[index]
    return fold_in(key, jnp.asarray(index).astype(jnp.uint32))


def rademacher(key: jax.Array, shape, dtype) -> jax.Array:
    """``jax.random.rademacher(key, shape, dtype)`` for one key: +1 where the top bit of the
    key's 32-bit stream is 0, else −1 (``bernoulli(key, ½)`` compares a float32 uniform,
    whose mantissa is the top 23 bits, with ½). With x64 on the uniform is float64 (64-bit
    draws): then, as for other keys, ``jax.random`` itself."""
    shape = tuple(int(s) for s in shape)
    if not _single_partitionable(key) or jnp.result_type(float) != jnp.float32:
        return jax.random.rademacher(key, shape, dtype)
    top = lax.shift_right_logical(_bits32(key, math.prod(shape), barrier=True), jnp.uint32(31))
    return jnp.where(top == 0, 1, -1).astype(dtype).reshape(shape)


def normal(key: jax.Array, shape, dtype) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)`` for one key (use under vmap for more)."""
    shape = tuple(int(s) for s in shape)
    if jnp.dtype(dtype) != jnp.float32 or not _single_partitionable(key):
        return jax.random.normal(key, shape, dtype)
    bits = _bits32(key, math.prod(shape))
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
