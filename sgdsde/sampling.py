"""Minibatch index samplers (THEORY.md §1).

Every sampler draws a batch at a static maximum size ``max_size`` and returns
weights 1/S on its first S entries and 0 on the rest, so a traced batch size S
works by masking. The first S indices of a draw at size ``max_size`` equal the
draw at size S, so a batch-size grid and separate runs see the same batches.

- ``iid``:    S independent uniform indices (with replacement); Cov(ĝ) = C/S.
- ``subset``: a uniform S-subset (without replacement); Cov(ĝ) = (C/S)(N−S)/(N−1).
- ``epoch``:  random reshuffling: a fresh permutation per epoch, cut into
              m = ⌊N/S⌋ consecutive batches (the last N − mS examples of an epoch
              are dropped); batch noises are anti-correlated, −C/(N−1).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

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


def _random_subset(key, num_examples: int, size: int) -> Int[Array, " B"]:
    """The ``size`` indices with the largest of N uniform draws: a uniform random
    subset in uniformly random order; prefixes of it are uniform subsets too."""
    scores = jax.random.uniform(key, (num_examples,))
    return jax.lax.top_k(scores, size)[1]


def _subset_draw(key, state, num_examples, batch_size, max_size):
    return _random_subset(key, num_examples, max_size), state


class EpochState(NamedTuple):
    order: Array  # int32[N]: the epoch's order, fixed up to ``position``
    position: Array  # int32: index of the next unused example of the epoch


_NEW_EPOCH = 2**30  # position sentinel: forces a new epoch at the first step


def _epoch_init(num_examples: int) -> EpochState:
    return EpochState(jnp.arange(num_examples, dtype=jnp.int32), jnp.asarray(_NEW_EPOCH, jnp.int32))


def _epoch_draw(key, state: EpochState, num_examples, batch_size, max_size):
    """Fisher–Yates, a batch at a time: positions p … p+S−1 of the order are each
    swapped with a uniform position in [p_i, N). The drawn prefix of an epoch is then a
    uniform random sequence without repetition (exact random reshuffling) at O(S) cost
    per step, with no sort. Only the first S slots are swapped, so the order (and every
    later batch) does not depend on the static maximum size. A new epoch starts when
    fewer than S examples are left; the order carries over (any starting arrangement
    gives a uniform shuffle)."""
    position = jnp.where(state.position + batch_size > num_examples, 0, state.position)
    slots = position + jnp.arange(max_size, dtype=jnp.int32)
    room = (num_examples - slots).astype(jnp.float32)
    partners = slots + jnp.floor(jax.random.uniform(key, (max_size,)) * room).astype(jnp.int32)
    partners = jnp.minimum(partners, num_examples - 1)

    def swap(i, order):
        a, b = slots[i], partners[i]
        valid = a < position + batch_size  # masked slots stay untouched
        a, b = jnp.where(valid, a, 0), jnp.where(valid, b, 0)
        va, vb = order[a], order[b]
        return order.at[a].set(vb).at[b].set(va)

    order = jax.lax.fori_loop(0, max_size, swap, state.order)
    indices = order[jnp.minimum(slots, num_examples - 1)]
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
