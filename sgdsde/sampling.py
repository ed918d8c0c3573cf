"""Minibatch index samplers (docs/theory.md §1).

Every sampler draws a batch at a static maximum size ``max_size`` and returns
weights 1/S on its first S entries and 0 on the rest, so a traced batch size S
works by masking. The first S indices of a draw at size ``max_size`` equal the
draw at size S, so a batch-size grid and separate runs see the same batches.

- ``iid``:    S independent uniform indices (with replacement); Cov(ĝ) = C/S.
- ``subset``: a fresh uniform S-subset each step (without replacement inside the
              batch); Cov(ĝ) = (C/S)(N−S)/(N−1).
- ``epoch``:  random reshuffling: a fresh permutation per epoch, cut into
              m = ⌊N/S⌋ consecutive batches (the last N − mS examples of an epoch
              are dropped); batch noises are anti-correlated, −C/(N−1).

Both samplers without replacement are exact (every ordered S-subset, resp. every
permutation of an epoch, equally likely; tests/test_sampling.py: every stream of a small
case enumerated for each deduplication method, χ² over all permutations of a small epoch).
On CPU both samplers without replacement run as native kernels (:mod:`sgdsde._native`, XLA
FFI custom calls compiled on first use) that compute the same values as the JAX code here,
which runs on other platforms and where no compiler is available.
The epoch sampler's Fisher–Yates partners come from :func:`sgdsde._threefry.uniform_below`
(before: ``jax.random.randint``) and its swaps are written into the stored order directly,
so its batches differ from earlier versions for the same key; the subset sampler's batches
are unchanged (only its deduplication is faster).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import _native
from ._threefry import _is_threefry, uniform_below

Sampling = Literal["iid", "subset", "epoch"]
SAMPLINGS = ("iid", "subset", "epoch")

__all__ = ["Sampler", "make_sampler", "SAMPLINGS", "batch_weights"]


class Sampler(NamedTuple):
    """init(N) -> sampler state; draw(key, state, N, S, max_size) -> (indices, state).

    Only the first S of the ``max_size`` indices are used (see :func:`batch_weights`)."""

    init: Callable[[int], Any]
    draw: Callable[..., tuple[Int[Array, " B"], Any]]


def batch_weights(batch_size: Array, max_size: int, dtype=jnp.float32) -> Float[Array, " B"]:
    """w_b = 1/S for b < S, else 0 (length max_size)."""
    mask = jnp.arange(max_size) < batch_size
    return mask.astype(dtype) / batch_size.astype(dtype)


def _iid_draw(key, state, num_examples, batch_size, max_size):
    indices = jax.random.randint(key, (max_size,), 0, num_examples)
    return indices, state


def _materialized(make: Callable[[], Array], batch_size) -> Array:
    """``make()``, computed once into a buffer. XLA's CPU fusion copies a producer made of
    cheap integer ops (a Threefry stream: ~100 per element) into every consumer, and the
    pairwise deduplication reads each element L times, so the stream was recomputed L
    times (measured: ``sd.run`` with subset sampling 15–20x slower than iid at S = 8). An
    ``optimization_barrier`` does not prevent that on CPU; a while loop does: this one runs
    once (0 < S), and its trip count depends on the traced S, so XLA keeps it."""
    shape = jax.eval_shape(make)
    size = jnp.asarray(batch_size, jnp.int32)
    initial = (jnp.int32(0), jnp.zeros(shape.shape, shape.dtype))
    return jax.lax.while_loop(lambda c: c[0] < size, lambda c: (size, make()), initial)[1]


# Deduplication methods, chosen by the static sizes (crossovers measured on CPU, R = 10⁴):
_PAIRWISE_MAX = 32  # L ≤ this: O(L²) fused compares and reductions (XLA's codegen falls off a cliff beyond)
_BLOCKED_MAX = 160  # else first occurrences by O(L²) compares in column blocks up to this L,
_BLOCK = 16  # (_BLOCK columns at a time, uint16 values when they fit),
_TABLE_RATIO = 12  # else by a direct-address table of N slots when N ≤ this·L,
_BLOCKED_LONG_MAX = 600  # else by blocked compares again up to this L, else by sorting


def _stream_length(num_examples: int, max_size: int) -> int:
    """Draws L of the first piece of the stream: the number needed for ``max_size`` distinct
    values is a sum of geometric variables (mean Σ_j N/(N−j), variance Σ_j jN/(N−j)²); L is
    the mean + 6 standard deviations + 2, so that a second piece is rarely needed."""
    j = np.arange(max_size, dtype=np.float64)
    n = float(num_examples)
    mean = np.sum(n / (n - j))
    sd = math.sqrt(np.sum(j * n / (n - j) ** 2))
    return max_size + int(math.ceil(mean - max_size + 6 * sd)) + 2


def _repeats(values: Int[Array, " L"], empty: int) -> Array:
    """bool[L]: values[t] = values[k] for some k < t, by comparing every pair, _BLOCK earlier
    positions k at a time (one fused kernel per block, reduced over the block), in uint16
    when every value (``empty`` included) fits: O(L²) compares but no gather, scatter or sort.
    Measured under ``vmap`` over 10⁴ replicas (CPU, L = 137): 1.2–1.8 µs a replica against
    3.5–4.1 µs for the sort and its scatter back; at L = 200 3.0 against 5.0 µs for the table."""
    length = values.shape[0]
    v = values.astype(jnp.uint16) if empty < 2**16 else values
    t = jnp.arange(length, dtype=jnp.int32)
    repeat = jnp.zeros((length,), bool)
    for start in range(0, length, _BLOCK):
        earlier, k = v[start:start + _BLOCK], t[start:start + _BLOCK]
        repeat = repeat | jnp.any((earlier[:, None] == v[None, :]) & (k[:, None] < t[None, :]), axis=0)
    return repeat


def _first_occurrences(values: Int[Array, " L"], empty: int) -> Array:
    """bool[L]: values[t] < empty occurs at no k < t. For L ≤ _BLOCKED_MAX by comparing
    every pair (:func:`_repeats`); else for N = ``empty`` ≤ _TABLE_RATIO·L a table of N
    slots holds the smallest position of each value (one scatter-min, one gather:
    O(N + L)); else for L ≤ _BLOCKED_LONG_MAX by comparing every pair again (in ``sd.run``
    at N = 10⁴, S = 512, L = 551: 21.5 against 25.2 µs a replica-step by sorting, but about
    1 s more to compile); otherwise one sort of the pairs (value, position), whose equal
    values are then in position order, O(L log L), scattered back to positions."""
    length = values.shape[0]
    t = jnp.arange(length, dtype=jnp.int32)
    table = empty <= _TABLE_RATIO * length
    if length <= _BLOCKED_MAX or (not table and length <= _BLOCKED_LONG_MAX):
        return (values < empty) & ~_repeats(values, empty)
    if table:
        owner = jnp.full((empty,), length, jnp.int32).at[values].min(t, mode="drop")
        return owner.at[values].get(mode="fill", fill_value=-1) == t
    if (empty + 1) * length <= 2**31:  # one single-key sort of value·L + position (XLA's fast path)
        packed = jnp.sort(values * length + t)
        sorted_values, position = packed // length, packed % length
    else:
        sorted_values, position = jax.lax.sort((values, t), num_keys=2)
    new = jnp.concatenate([jnp.ones((1,), bool), sorted_values[1:] != sorted_values[:-1]])
    return jnp.zeros((length,), bool).at[position].set(new & (sorted_values < empty), unique_indices=True)


def _prefix_count(flags: Array, block: int = 32) -> Int[Array, " L"]:
    """Inclusive prefix sum of 0/1 ``flags``: within blocks of ``block`` entries by a product
    with a triangular matrix of ones, then the block totals by another (float32 at the
    highest precision: every product is 0 or 1 and every sum ≤ L < 2²⁴, so the result is
    exact). ``jnp.cumsum`` lowers on CPU to a reduce-window of the whole length (O(L²));
    this is O(L·block) as one batched matrix product, 3–5x faster at L = 36–600 under
    ``vmap`` over 10⁴ replicas (measured on CPU)."""
    length = flags.shape[0]
    padded = -(-length // block) * block
    x = jnp.pad(flags.astype(jnp.float32), (0, padded - length)).reshape(padded // block, block)
    highest = jax.lax.Precision.HIGHEST
    within = jnp.matmul(x, jnp.asarray(np.triu(np.ones((block, block), np.float32))), precision=highest)
    earlier_blocks = jnp.asarray(np.tril(np.ones((padded // block,) * 2, np.float32), -1))
    offset = jnp.matmul(earlier_blocks, within[:, -1], precision=highest)
    return (within + offset[:, None]).reshape(padded)[:length].astype(jnp.int32)


def _first_distinct(values: Int[Array, " L"], empty: int, count: int) -> Int[Array, " count"]:
    """The first ``count`` distinct values of ``values`` in order of first occurrence (entries
    equal to ``empty`` are skipped), padded with ``empty``. O(L²) fused compares for
    L ≤ _PAIRWISE_MAX, else :func:`_first_occurrences` then a prefix sum (the rank of each
    first occurrence, :func:`_prefix_count`) and one scatter."""
    length = values.shape[0]
    t = jnp.arange(length, dtype=jnp.int32)
    if length <= _PAIRWISE_MAX:
        earlier = t[None, :] < t[:, None]  # [t, k]: k < t
        first = (values < empty) & ~jnp.any(earlier & (values[None, :] == values[:, None]), axis=1)
        rank = jnp.sum(earlier & first[None, :], axis=1, dtype=jnp.int32)  # first occurrences before t
        hit = first[None, :] & (rank[None, :] == jnp.arange(count, dtype=jnp.int32)[:, None])
        picked = jnp.sum(jnp.where(hit, values[None, :], 0), axis=1, dtype=jnp.int32)  # int32 under x64 too
        return jnp.where(jnp.any(hit, axis=1), picked, empty).astype(jnp.int32)
    first = _first_occurrences(values, empty)
    rank = _prefix_count(first) - 1
    slot = jnp.where(first & (rank < count), rank, count)
    return jnp.full((count,), empty, jnp.int32).at[slot].set(values.astype(jnp.int32), mode="drop")


def _subset_draw(key, state, num_examples: int, batch_size, max_size: int):
    """A fresh uniform S-subset (in random order) each step, by rejection: the first
    ``max_size`` distinct values of a stream of iid uniform indices c_0, c_1, … (c_t from
    Threefry block t of the step key, :func:`sgdsde._threefry.uniform_below`). Each new
    distinct value is uniform over the values not yet seen, so every prefix of length S is
    a uniform random S-sequence without repetition, whatever ``max_size``. The stream is
    read in pieces of L = :func:`_stream_length` draws (a further piece only while some
    replica has fewer than ``max_size`` distinct values); no state. On CPU a native kernel
    (:mod:`sgdsde._native`) computes the same values one replica at a time with a bitset."""
    if _native_applies(key) and num_examples <= _NATIVE_SUBSET_MAX_N:
        return jax.lax.platform_dependent(
            key, cpu=lambda k: _native_subset(k, num_examples, max_size),
            default=lambda k: _subset_stream(k, num_examples, batch_size, max_size)), state
    return _subset_stream(key, num_examples, batch_size, max_size), state


_NATIVE_SUBSET_MAX_N = 2**26  # the kernel's bitset is N bits a thread (8 MiB here); above, the JAX path


def _native_applies(key) -> bool:
    """The native CPU kernels (:mod:`sgdsde._native`) compute the Threefry draws of one typed
    Threefry key; other keys, or no compiled kernels, take the pure-JAX path."""
    return _is_threefry(key) and np.shape(key) == () and _native.available()


def _native_subset(key, num_examples: int, max_size: int) -> Int[Array, " max_size"]:
    """The subset draw by the native kernel: the same values as :func:`_subset_stream`."""
    result = jax.ShapeDtypeStruct((max_size,), jnp.int32)
    return jax.ffi.ffi_call(_native.SUBSET, result, vmap_method="broadcast_all")(
        jax.random.key_data(key), num_examples=np.int64(num_examples), max_size=np.int64(max_size))


def _subset_stream(key, num_examples: int, batch_size, max_size: int) -> Int[Array, " max_size"]:
    """The subset draw in JAX: deduplication of the stream in pieces (see :func:`_subset_draw`)."""
    length = _stream_length(num_examples, max_size)
    piece = lambda index: _materialized(lambda: uniform_below(
        key, index * length + jnp.arange(length, dtype=jnp.uint32), num_examples), batch_size)
    found = _first_distinct(piece(jnp.uint32(0)), num_examples, max_size)

    def more(carry):
        index, found = carry
        stream = jnp.concatenate([found, piece(index)])  # found: the first occurrences so far
        return index + 1, _first_distinct(stream, num_examples, max_size)

    short = lambda carry: jnp.any(carry[1] == num_examples)
    return jax.lax.while_loop(short, more, (jnp.uint32(1), found))[1]


class EpochState(NamedTuple):
    order: Array  # uint16[N] for N ≤ 2¹⁶, else int32[N]: the epoch's order, fixed up to ``position``
    position: Array  # int32: index of the next unused example of the epoch


_NEW_EPOCH = 2**30  # position sentinel: forces a new epoch at the first step


def _order_dtype(num_examples: int):
    """uint16 while every example index fits (N ≤ 2¹⁶), else int32. The order is R × N
    per ensemble (1 GB instead of 2 GB at N = 50,000, R = 10⁴) and every swap is a
    random access into it: the smaller type measured 13–35% faster on CPU."""
    return jnp.uint16 if num_examples <= 2**16 else jnp.int32


def _epoch_init(num_examples: int) -> EpochState:
    order = jnp.arange(num_examples, dtype=_order_dtype(num_examples))
    return EpochState(order, jnp.asarray(_NEW_EPOCH, jnp.int32))


def _epoch_draw(key, state: EpochState, num_examples, batch_size, max_size):
    """Random reshuffling, a batch at a time: the next S steps of a Fisher–Yates shuffle of
    the stored order, slot p = position … position+S−1 swapped with slot p + u_p, u_p uniform
    in [0, N − p) (:func:`sgdsde._threefry.uniform_below` at counter p − position, so the
    draws do not depend on ``max_size``; masked slots are not touched). From ANY starting
    arrangement the values moved into those slots are a uniform random sequence without
    repetition from the slots ≥ position, so an epoch's batches are consecutive pieces of a
    uniform random permutation. A new epoch starts when fewer than S examples are left
    (drop-last); the order carries over, which is fine for the same reason. The swaps write
    into the stored order in place (one scatter of two entries each, O(S) per step; the
    earlier version kept an O(S²) map of the touched slots). On CPU a native kernel
    (:mod:`sgdsde._native`) does the same swaps, in place, one replica at a time."""
    if _native_applies(key):
        return jax.lax.platform_dependent(
            key, state, cpu=lambda k, s: _native_epoch(k, s, num_examples, batch_size, max_size),
            default=lambda k, s: _epoch_swaps(k, s, num_examples, batch_size, max_size))
    return _epoch_swaps(key, state, num_examples, batch_size, max_size)


def _native_epoch(key, state: EpochState, num_examples: int, batch_size, max_size: int):
    """The epoch step by the native kernel: the same values as :func:`_epoch_swaps`."""
    results = (jax.ShapeDtypeStruct((max_size,), jnp.int32), jax.ShapeDtypeStruct(state.order.shape, state.order.dtype),
               jax.ShapeDtypeStruct((), jnp.int32))
    indices, order, position = jax.ffi.ffi_call(
        _native.EPOCH, results, vmap_method="broadcast_all", input_output_aliases={1: 1})(
        jax.random.key_data(key), state.order, state.position.astype(jnp.int32), jnp.asarray(batch_size, jnp.int32),
        num_examples=np.int64(num_examples), max_size=np.int64(max_size))
    return indices, EpochState(order, position)


def _epoch_swaps(key, state: EpochState, num_examples, batch_size, max_size):
    """The epoch step in JAX (see :func:`_epoch_draw`)."""
    position = jnp.where(state.position + batch_size > num_examples, 0, state.position)
    steps = jnp.arange(max_size, dtype=jnp.int32)
    slots = position + steps
    partners = slots + uniform_below(key, steps.astype(jnp.uint32), jnp.maximum(num_examples - slots, 1))

    def swap(i, order):
        a, b = slots[i], partners[i]
        target = jnp.where(i < batch_size, jnp.stack([a, b]), num_examples)  # masked: dropped
        return order.at[target].set(jnp.stack([order[b], order[a]]), mode="drop")

    order = jax.lax.fori_loop(0, max_size, swap, state.order)
    indices = order[jnp.minimum(slots, num_examples - 1)].astype(jnp.int32)
    return indices, EpochState(order, (position + batch_size).astype(jnp.int32))


def make_sampler(sampling: Sampling) -> Sampler:
    """The sampler for one of ``"iid"``, ``"subset"``, ``"epoch"``."""
    if sampling == "iid":
        return Sampler(lambda num_examples: (), _iid_draw)
    if sampling == "subset":
        return Sampler(lambda num_examples: (), _subset_draw)
    if sampling == "epoch":
        return Sampler(_epoch_init, _epoch_draw)
    raise ValueError(f"sampling: must be one of {SAMPLINGS}, got {sampling!r}")
