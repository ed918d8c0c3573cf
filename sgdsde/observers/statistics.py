"""Observers that accumulate statistics over time and replicas without storing
trajectories: moments (Welford), basin occupancy, histograms, first-passage times."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._base import (
    Observer,
    PyTree,
    _cached,
    _check_burn_in,
    _check_burn_in_fits,
    _check_every,
    _flat_params,
    _mean_and_stderr,
    _sampled,
)

# --------------------------------------------------------------------- moments
class _Welford(NamedTuple):
    count: jax.Array  # samples per replica (the same for all replicas)
    mean: jax.Array  # (R, d)
    m2: jax.Array  # (R, d, d), (R, d) or () for covariance "full", "diagonal", "none"


@_cached
def moments(burn_in: int = 0, every: int = 1, covariance: str = "full") -> Observer:
    """Running mean and covariance of the flattened parameters over time and replicas.

    Samples θ_t for t ≥ burn_in with (t − burn_in) divisible by ``every`` (use every = m
    to sample at epoch boundaries). Per-replica Welford accumulators (numerically
    stable); the result pools them and gives standard errors from the spread between
    independent replicas, which accounts for time correlation:

        mean (d,), cov (d, d) or var (d,), mean_stderr, cov_stderr / var_stderr,
        count (samples per replica), replicas_used (non-diverged replicas).
    """
    burn_in, every = _check_burn_in(burn_in), _check_every(every)
    if covariance not in ("full", "diagonal", "none"):
        raise ValueError(f"covariance: must be 'full', 'diagonal' or 'none', got {covariance!r}")

    def add(acc: _Welford, x, take):
        count = acc.count + take.astype(acc.count.dtype)
        delta = x - acc.mean
        mean = acc.mean + jnp.where(take, delta / jnp.maximum(count, 1), 0.0)
        after = x - mean
        if covariance == "full":
            m2 = acc.m2 + jnp.where(take, delta[:, :, None] * after[:, None, :], 0.0)
        elif covariance == "diagonal":
            m2 = acc.m2 + jnp.where(take, delta * after, 0.0)
        else:
            m2 = acc.m2
        return _Welford(count, mean, m2)

    def init(states, ctx):
        _check_burn_in_fits(burn_in, ctx)
        x = _flat_params(states)
        replicas, d = x.shape
        m2 = {
            "full": jnp.zeros((replicas, d, d), x.dtype),
            "diagonal": jnp.zeros((replicas, d), x.dtype),
            "none": jnp.zeros((), x.dtype),
        }[covariance]
        acc = _Welford(jnp.zeros((), x.dtype), jnp.zeros_like(x), m2)
        return add(acc, x, _sampled(0, burn_in, every))

    def update(acc, states, t, ctx):
        return add(acc, _flat_params(states), _sampled(t, burn_in, every))

    def finalize(acc, states, ctx):
        ok = ~states.diverged
        used = jnp.sum(ok)
        weight = ok.astype(acc.mean.dtype) / jnp.maximum(used, 1)
        # diverged replicas may hold inf/NaN sums: zero them (0 · inf would be NaN)
        drop = lambda x: jnp.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0.0)
        acc = _Welford(acc.count, drop(acc.mean), drop(acc.m2) if acc.m2.ndim else acc.m2)
        mean = weight @ acc.mean
        centred = drop(acc.mean - mean)
        mean_var = weight @ (centred**2)
        some, several = used > 0, used > 1  # a mean needs one replica, a spread two
        out = {
            "mean": jnp.where(some, mean, jnp.nan),
            "mean_stderr": jnp.where(several, jnp.sqrt(mean_var / jnp.maximum(used - 1, 1)), jnp.nan),
            "count": acc.count,
            "replicas_used": used,
        }
        n = acc.count
        if covariance == "full":
            per_replica = acc.m2 / n + centred[:, :, None] * centred[:, None, :]
        elif covariance == "diagonal":
            per_replica = acc.m2 / n + centred**2
        else:
            return out
        # pooled estimate about the pooled mean, with the 1/(nR − 1) correction
        total = n * used
        pooled = jnp.tensordot(weight, per_replica, axes=1) * total / jnp.maximum(total - 1, 1)
        spread = jnp.tensordot(weight, drop((per_replica - jnp.tensordot(weight, per_replica, axes=1)) ** 2), axes=1)
        stderr = jnp.sqrt(spread / jnp.maximum(used - 1, 1))
        key = "cov" if covariance == "full" else "var"
        out[key] = jnp.where(total > 1, pooled, jnp.nan)
        out[key + "_stderr"] = jnp.where(several, stderr, jnp.nan)
        return out

    return Observer("moments", init, update, finalize)


# ---------------------------------------------------------------------- basins
@_cached
def basins(classify: Callable[[PyTree], jax.Array], num_basins: int, burn_in: int = 0, every: int = 1) -> Observer:
    """Occupancy of basins labelled by ``classify(params) -> int in [0, num_basins)``.

    Time-averaged over t ≥ burn_in (every ``every`` steps) and pooled over the
    non-diverged replicas: ``fractions`` (K,), ``stderr`` (K,) from the spread between
    replicas, ``final`` labels (R,) at the end, ``counts`` (R, K), ``replicas_used``.
    No replica left: fractions NaN; fewer than two: stderr NaN. A label outside
    [0, num_basins) is an error (raised by the run, naming how many samples had one).
    """
    burn_in, every = _check_burn_in(burn_in), _check_every(every)
    if not isinstance(num_basins, (int, np.integer)) or num_basins < 1:
        raise ValueError(f"num_basins: must be a positive integer, got {num_basins!r}")

    def labels(states):
        return jax.vmap(classify)(states.params).astype(jnp.int32)

    def add(counts, states, t):
        # column K counts labels outside [0, K): reported as an error after the run
        take = _sampled(t, burn_in, every) & ~states.diverged
        label = labels(states)
        label = jnp.where((label >= 0) & (label < num_basins), label, num_basins)
        hits = jax.nn.one_hot(label, num_basins + 1, dtype=jnp.int32)
        return counts + hits * take[:, None].astype(jnp.int32)

    def init(states, ctx):
        _check_burn_in_fits(burn_in, ctx)
        return add(jnp.zeros((ctx.replicas, num_basins + 1), jnp.int32), states, 0)

    def update(counts, states, t, ctx):
        return add(counts, states, t)

    def finalize(counts, states, ctx):
        counts, invalid = counts[:, :num_basins], jnp.sum(counts[:, num_basins])
        ok = ~states.diverged
        used = jnp.sum(ok)
        totals = jnp.sum(counts, axis=1, keepdims=True)
        per_replica = counts / jnp.maximum(totals, 1)
        weight = ok / jnp.maximum(used, 1)
        samples = jnp.sum(totals[:, 0] * ok)
        fractions = jnp.sum(counts * ok[:, None], axis=0) / jnp.maximum(samples, 1)
        spread = weight @ (per_replica - weight @ per_replica) ** 2
        return {
            "fractions": jnp.where(samples > 0, fractions, jnp.nan),
            "stderr": jnp.where(used > 1, jnp.sqrt(spread / jnp.maximum(used - 1, 1)), jnp.nan),
            "final": labels(states),
            "counts": counts,
            "replicas_used": used,
            "invalid_labels": invalid,
        }

    def check(result):
        invalid = np.asarray(result["invalid_labels"])
        if invalid.any():
            final = np.asarray(result["final"])
            bad = np.unique(final[(final < 0) | (final >= num_basins)])
            shown = f" (final labels outside the range: {bad[:8].tolist()})" if bad.size else ""
            raise ValueError(
                f"basins: classify returned a label outside [0, num_basins = {num_basins}) for "
                f"{int(invalid.sum())} sampled states{shown}; fix classify or raise num_basins"
            )

    return Observer("basins", init, update, finalize, check=check)


# ------------------------------------------------------------------- histogram
def histogram(
    edges: Sequence[float] | Sequence[Sequence[float]],
    coordinates: Callable[[PyTree], jax.Array] | None = None,
    burn_in: int = 0,
    every: int = 1,
) -> Observer:
    """Histogram of ``coordinates(params)`` (default: the flattened params) on a grid.

    ``edges`` is one increasing array (1-D) or one per coordinate. Counts are pooled
    over time (t ≥ burn_in, every ``every`` steps) and non-diverged replicas; samples
    outside the box are counted in ``outside``. Bins are half-open [e_i, e_{i+1}), the last
    one too: a sample exactly on the last edge counts as outside (np.histogram
    would put it in the last bin). ``density`` = counts / (total · cell
    volume), comparable bin by bin with a Fokker–Planck density on the same edges
    (NaN where no sample was taken: every replica diverged).
    """
    burn_in, every = _check_burn_in(burn_in), _check_every(every)
    edge_list = _edge_list(edges)
    # one Observer per edge values (arrays and lists are keyed by their numbers), so that a
    # run written inline reuses its compiled program
    edge_key = tuple(tuple(float(x) for x in e) for e in edge_list)
    return _histogram(edge_key, coordinates, burn_in, every)


@_cached
def _histogram(edge_key: tuple, coordinates, burn_in: int, every: int) -> Observer:
    edge_list = [np.asarray(e) for e in edge_key]
    shape = tuple(len(e) - 1 for e in edge_list)
    edge_arrays = [jnp.asarray(e) for e in edge_list]
    coords = coordinates or (lambda p: ravel_pytree(p)[0])

    def bins(states):
        x = jax.vmap(coords)(states.params).reshape(states.diverged.shape[0], -1)
        if x.shape[1] != len(edge_arrays):
            raise ValueError(f"edges: {len(edge_arrays)} axes given but coordinates have {x.shape[1]} entries")
        index = jnp.zeros(x.shape[0], jnp.int32)
        inside = jnp.ones(x.shape[0], bool)
        for axis, e in enumerate(edge_arrays):
            i = jnp.searchsorted(e, x[:, axis], side="right") - 1
            inside &= (i >= 0) & (i < e.shape[0] - 1)
            index = index * (e.shape[0] - 1) + jnp.clip(i, 0, e.shape[0] - 2)
        return index, inside

    def add(acc, states, t):
        counts, outside = acc
        take = _sampled(t, burn_in, every) & ~states.diverged
        index, inside = bins(states)
        counts = counts.at[index].add((take & inside).astype(jnp.int32))
        return counts, outside + jnp.sum(take & ~inside).astype(jnp.int32)

    def init(states, ctx):
        _check_burn_in_fits(burn_in, ctx)
        samples = ctx.replicas * (max(ctx.num_steps - burn_in, 0) // every + 1)
        if samples >= 2**31:
            raise ValueError(
                f"histogram: {samples} samples would overflow int32 counts; raise every or lower replicas"
            )
        return add((jnp.zeros(int(np.prod(shape)), jnp.int32), jnp.zeros((), jnp.int32)), states, 0)

    def update(acc, states, t, ctx):
        return add(acc, states, t)

    def finalize(acc, states, ctx):
        counts, outside = acc
        total = jnp.sum(counts) + outside
        widths = [jnp.diff(e) for e in edge_arrays]
        volume = widths[0]
        for w in widths[1:]:
            volume = volume[..., None] * w
        counts = counts.reshape(shape)
        return {
            "counts": counts,
            "outside": outside,
            "density": jnp.where(total > 0, counts / (jnp.maximum(total, 1) * volume), jnp.nan),
            "edges": tuple(edge_arrays) if len(edge_arrays) > 1 else edge_arrays[0],
        }

    return Observer("histogram", init, update, finalize)


def _edge_list(edges) -> list[np.ndarray]:
    if len(edges) and np.ndim(edges[0]) == 0:
        edges = [edges]
    out = []
    for axis, e in enumerate(edges):
        e = np.asarray(e, dtype=float)
        if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
            raise ValueError(f"edges: axis {axis} must be a strictly increasing 1-D array of at least 2 edges")
        out.append(e)
    return out


# --------------------------------------------------------------- first passage
@_cached
def first_passage(region: Callable[[PyTree], jax.Array]) -> Observer:
    """First step t at which ``region(params)`` is true, per replica (−1 if never;
    0 if the start is inside). Result: ``times`` (R,), ``hit_fraction``, ``hit_count``
    (replicas that arrived), ``mean_time`` over them (NaN if none arrived) and
    ``mean_time_stderr`` (NaN if fewer than two arrived)."""

    def add(times, states, t):
        inside = jax.vmap(region)(states.params).astype(bool) & ~states.diverged
        return jnp.where((times < 0) & inside, t, times)

    def init(states, ctx):
        return add(jnp.full((ctx.replicas,), -1, jnp.int32), states, 0)

    def update(times, states, t, ctx):
        return add(times, states, t)

    def finalize(times, states, ctx):
        hit = times >= 0
        mean, stderr, count = _mean_and_stderr(times, hit, jnp)
        return {
            "times": times,
            "hit_fraction": jnp.mean(hit),
            "hit_count": count,
            "mean_time": mean,
            "mean_time_stderr": stderr,
        }

    return Observer("first_passage", init, update, finalize, _retime_first_passage)


def _retime_first_passage(result, convert):
    """Passage times on another clock (−1 kept for "never"); the mean and its standard
    error are recomputed from the converted times (the clock may be nonlinear in steps,
    e.g. SME time under a learning-rate schedule)."""
    steps = np.asarray(result["times"])
    hit = steps >= 0
    times = np.where(hit, convert(np.maximum(steps, 0)), -1.0)
    mean, stderr, _ = _mean_and_stderr(times, hit, np)
    return {**result, "times": times, "mean_time": mean, "mean_time_stderr": stderr}


