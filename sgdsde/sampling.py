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
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._threefry import uniform_below

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


def _fisher_yates_prefix(key, order, start, num_examples, batch_size, max_size):
    """The next S steps of a Fisher–Yates shuffle: slot p = start … start+S−1 of the order
    is swapped with a uniform slot in [p, N). From ANY starting arrangement, the S values
    moved into those slots are a uniform random sequence without repetition from the
    slots ≥ start, so fresh randomness each step gives exact, independent draws.

    ``order`` is an int32[N] array, or None for the identity (then nothing is stored).
    The swaps are done on a small map of the ≤ 2·max_size touched slots (latest record
    wins), O(S²) work and no O(N) pass, then written back with one scatter. Only the first
    S of the ``max_size`` slots are touched (the uniforms are drawn at max_size and their
    prefix does not depend on it), so results do not depend on the static maximum size.
    Returns (new order or None, the max_size indices at those slots)."""
    slots = start + jnp.arange(max_size, dtype=jnp.int32)
    partners = jax.random.randint(
        key, (max_size,), jnp.minimum(slots, num_examples - 1), num_examples, dtype=jnp.int32
    )
    records = jnp.arange(2 * max_size, dtype=jnp.int32)
    base = (lambda x: x) if order is None else (lambda x: order[x])

    def lookup(pos, val, x):
        last = jnp.max(jnp.where(pos == x, records, -1))  # latest record for slot x
        return jnp.where(last >= 0, val[jnp.maximum(last, 0)], base(x))

    def swap(i, carry):
        pos, val = carry
        valid = i < batch_size  # masked slots stay untouched
        a, b = jnp.where(valid, slots[i], -1), jnp.where(valid, partners[i], -1)
        va, vb = lookup(pos, val, a), lookup(pos, val, b)
        # records 2i (a ← vb) then 2i+1 (b ← va): the later one wins when a == b
        pos = pos.at[2 * i].set(a).at[2 * i + 1].set(b)
        val = val.at[2 * i].set(vb).at[2 * i + 1].set(va)
        return pos, val

    empty = (jnp.full((2 * max_size,), -1, jnp.int32), jnp.zeros((2 * max_size,), jnp.int32))
    pos, val = jax.lax.fori_loop(0, max_size, swap, empty)
    read = jax.vmap(lambda x: lookup(pos, val, x))
    indices = read(jnp.minimum(slots, num_examples - 1))
    if order is None:
        return None, indices
    touched = jnp.where(pos >= 0, pos, num_examples)  # unused records are dropped
    return order.at[touched].set(read(jnp.maximum(pos, 0)), mode="drop"), indices


_PAIRWISE_MAX = 32  # streams up to this length are deduplicated by O(L²) fused compares, longer ones by sorting


def _stream_length(num_examples: int, max_size: int) -> int:
    """Draws L of the first piece of the stream: the number needed for ``max_size`` distinct
    values is a sum of geometric variables (mean Σ_j N/(N−j), variance Σ_j jN/(N−j)²); L is
    the mean + 6 standard deviations + 2, so that a second piece is rarely needed."""
    j = np.arange(max_size, dtype=np.float64)
    n = float(num_examples)
    mean = np.sum(n / (n - j))
    sd = math.sqrt(np.sum(j * n / (n - j) ** 2))
    return max_size + int(math.ceil(mean - max_size + 6 * sd)) + 2


def _sort_pairs(major: Array, minor: Array, major_bound: int, minor_bound: int) -> tuple[Array, Array]:
    """Sort int32 pairs lexicographically (0 ≤ major < major_bound, 0 ≤ minor < minor_bound):
    one single-key sort of major·minor_bound + minor when it fits in int32 (XLA's fast path),
    else a two-key sort."""
    if major_bound * minor_bound < 2**31:
        packed = jnp.sort(major * minor_bound + minor)
        return packed // minor_bound, packed % minor_bound
    return tuple(jax.lax.sort((major, minor), num_keys=2))


def _first_distinct(values: Int[Array, " L"], empty: int, count: int) -> Int[Array, " count"]:
    """The first ``count`` distinct values of ``values`` in order of first occurrence (entries
    equal to ``empty`` are skipped), padded with ``empty``. O(L²) fused compares for
    L ≤ _PAIRWISE_MAX, else two sorts, O(L log L)."""
    length = values.shape[0]
    t = jnp.arange(length, dtype=jnp.int32)
    if length <= _PAIRWISE_MAX:
        earlier = t[None, :] < t[:, None]  # [t, k]: k < t
        first = (values < empty) & ~jnp.any(earlier & (values[None, :] == values[:, None]), axis=1)
        rank = jnp.sum(earlier & first[None, :], axis=1, dtype=jnp.int32)  # first occurrences before t
        hit = first[None, :] & (rank[None, :] == jnp.arange(count, dtype=jnp.int32)[:, None])
        picked = jnp.sum(jnp.where(hit, values[None, :], 0), axis=1, dtype=jnp.int32)  # int32 under x64 too
        return jnp.where(jnp.any(hit, axis=1), picked, empty).astype(jnp.int32)
    sorted_values, position = _sort_pairs(values, t, empty + 1, length)  # equal values by position
    first = (sorted_values < empty) & jnp.concatenate(
        [jnp.ones((1,), bool), sorted_values[1:] != sorted_values[:-1]])
    position, value = _sort_pairs(jnp.where(first, position, length), sorted_values, length + 1, empty + 1)
    return jnp.where(position[:count] < length, value[:count], empty).astype(jnp.int32)


def _subset_draw(key, state, num_examples: int, batch_size, max_size: int):
    """A fresh uniform S-subset (in random order) each step, by rejection: the first
    ``max_size`` distinct values of a stream of iid uniform indices c_0, c_1, … (c_t from
    Threefry block t of the step key, :func:`sgdsde._threefry.uniform_below`). Each new
    distinct value is uniform over the values not yet seen, so every prefix of length S is
    a uniform random S-sequence without repetition, whatever ``max_size``. The stream is
    read in pieces of L = :func:`_stream_length` draws (a further piece only while some
    replica has fewer than ``max_size`` distinct values); no state."""
    length = _stream_length(num_examples, max_size)
    piece = lambda index: uniform_below(
        key, index * length + jnp.arange(length, dtype=jnp.uint32), num_examples)
    found = _first_distinct(piece(jnp.uint32(0)), num_examples, max_size)

    def more(carry):
        index, found = carry
        stream = jnp.concatenate([found, piece(index)])  # found: the first occurrences so far
        return index + 1, _first_distinct(stream, num_examples, max_size)

    short = lambda carry: jnp.any(carry[1] == num_examples)
    return jax.lax.while_loop(short, more, (jnp.uint32(1), found))[1], state


class EpochState(NamedTuple):
    order: Array  # int32[N]: the epoch's order, fixed up to ``position``
    position: Array  # int32: index of the next unused example of the epoch


_NEW_EPOCH = 2**30  # position sentinel: forces a new epoch at the first step


def _epoch_init(num_examples: int) -> EpochState:
    return EpochState(jnp.arange(num_examples, dtype=jnp.int32), jnp.asarray(_NEW_EPOCH, jnp.int32))


def _epoch_draw(key, state: EpochState, num_examples, batch_size, max_size):
    """Random reshuffling, a batch at a time: the epoch's order is fixed S slots at a
    time by Fisher–Yates (see :func:`_fisher_yates_prefix`), so an epoch's batches are
    consecutive pieces of a uniform random permutation. A new epoch starts when fewer
    than S examples are left (drop-last); the order carries over, which is fine since
    Fisher–Yates from any starting arrangement gives a uniform shuffle."""
    position = jnp.where(state.position + batch_size > num_examples, 0, state.position)
    order, indices = _fisher_yates_prefix(key, state.order, position, num_examples, batch_size, max_size)
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
