"""Observers: what a run records, accumulated step by step without storing trajectories.

An observer is ``Observer(name, init, update, finalize, retime=None)`` acting on the states of all
replicas of one hyperparameter configuration (leading axis R):

    init(states, ctx) -> obs            (sees the initial states, t = 0)
    update(obs, states, t, ctx) -> obs  (t = number of steps of the run done, an unbatched int)
    finalize(obs, states, ctx) -> result pytree
    retime(result, convert) -> result   (optional: puts time-valued outputs on a clock)
    check(result) -> None               (optional: raises on a misuse the run revealed)

Times are counted in steps of the run (calls of the stepper's ``step``: SGD steps for
``sgd`` and any stepper with dt = 1). ``sgdsde.run(..., clock=...)`` and
``RunResult.on_clock`` convert the time-valued outputs of the observers that define
``retime`` (``snapshots``, ``loss_curve``, ``first_passage``); ``convert`` maps an
array of step counts (leading axes: the hyperparameter grid) to times on the clock.
Inputs (``burn_in``, ``every``) are always in steps of the run.

Replicas flagged as diverged are left out of every statistic from the step they
diverged (and, for ``moments``, entirely); the run reports them. A statistic with no
data is NaN, never 0, and comes with its count (``replicas_used``, ``hit_count``):
a mean over no replicas, a standard error from fewer than two.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .problem import Problem

PyTree = Any

__all__ = [
    "Observer",
    "RunContext",
    "endpoint",
    "snapshots",
    "moments",
    "loss_curve",
    "basins",
    "histogram",
    "first_passage",
    "divergence",
    "sharpness",
    "gradient_noise",
]


class RunContext(NamedTuple):
    problem: Problem
    num_steps: int  # total steps of the run (static)
    replicas: int  # static


class Observer(NamedTuple):
    name: str
    init: Callable[..., Any]
    update: Callable[..., Any]
    finalize: Callable[..., Any]
    # retime(result, convert) -> result with its time-valued entries on another clock;
    # None: the result holds no times (or is left in steps of the run)
    retime: Callable[..., Any] | None = None
    # check(result) on the host after the run (NumPy leaves, leading axes: the grid):
    # raises ValueError when the result shows the observer was misused (None: no check)
    check: Callable[[Any], None] | None = None


def _flat_params(states) -> jax.Array:
    """(R, d) matrix of flattened parameters."""
    return jax.vmap(lambda p: ravel_pytree(p)[0])(states.params)


# Observer factories with hashable arguments return one object per argument set (typed:
# True and 1 differ), so a run written inline reuses its compiled program.
_cached = functools.lru_cache(maxsize=256, typed=True)


def _check_every(every: int, name: str = "every") -> int:
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"{name}: must be a positive integer, got {every!r}")
    return int(every)


def _check_burn_in(burn_in: int) -> int:
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise ValueError(f"burn_in: must be a non-negative integer, got {burn_in!r}")
    return int(burn_in)


def _check_burn_in_fits(burn_in: int, ctx) -> None:
    """Raised while the run is traced (before XLA compiles), when num_steps is known."""
    if burn_in > ctx.num_steps:
        raise ValueError(f"burn_in: {burn_in} is past the end of the run (num_steps = {ctx.num_steps})")


def _sampled(t, burn_in: int, every: int):
    """Whether the state after t steps enters time-averaged statistics."""
    t = jnp.asarray(t)
    return (t >= burn_in) & ((t - burn_in) % every == 0)


def _num_records(num_steps: int, every: int) -> int:
    return num_steps // every + 1


def _record_times(num_steps: int, every: int) -> np.ndarray:
    return every * np.arange(_num_records(num_steps, every))


# --------------------------------------------------------------------- endpoint
@_cached
def endpoint() -> Observer:
    """Final parameters of every replica, shape (R, …) per leaf."""
    return Observer(
        "endpoint",
        lambda states, ctx: (),
        lambda obs, states, t, ctx: obs,
        lambda obs, states, ctx: states.params,
    )


# ------------------------------------------------------------------- snapshots
def _every_recorder(name: str, every: int, measure: Callable) -> Observer:
    """Stores measure(states, ctx) at t = 0, every, 2·every, … (shared by snapshots and
    loss_curve). Result: {"times": steps, "values": stacked values (T, R, …)}."""
    every = _check_every(every)

    def init(states, ctx):
        first = measure(states, ctx)
        count = _num_records(ctx.num_steps, every)
        buffer = jax.tree_util.tree_map(
            lambda x: jnp.zeros((count,) + x.shape, x.dtype).at[0].set(x), first
        )
        return buffer

    def update(buffer, states, t, ctx):
        def store(buf):
            value = measure(states, ctx)
            return jax.tree_util.tree_map(lambda b, x: b.at[t // every].set(x), buf, value)

        return jax.lax.cond(t % every == 0, store, lambda buf: buf, buffer)

    def finalize(buffer, states, ctx):
        return {"times": jnp.asarray(_record_times(ctx.num_steps, every)), "values": buffer}

    return Observer(name, init, update, finalize, _retime_record_times)


def _retime_record_times(result, convert):
    return {**result, "times": convert(np.asarray(result["times"]))}


@_cached
def snapshots(every: int) -> Observer:
    """Parameters of every replica at steps 0, every, 2·every, …:
    ``{"times": (T,), "values": pytree of (T, R, …)}``."""
    return _every_recorder("snapshots", every, lambda states, ctx: states.params)


@_cached
def loss_curve(every: int) -> Observer:
    """Full-data loss L(θ) of every replica at steps 0, every, 2·every, …:
    ``{"times": (T,), "values": (T, R)}`` (diverged replicas: last finite value)."""
    return _every_recorder("loss_curve", every, lambda states, ctx: jax.vmap(ctx.problem.loss)(states.params))


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


def _mean_and_stderr(values, present, xp):
    """Mean of ``values`` where ``present`` (last axis), its standard error s/√n and the
    count n; NaN where there is no data (n = 0; the standard error needs n ≥ 2).
    ``xp``: jax.numpy (inside a run) or numpy (on the host)."""
    count = xp.sum(present, axis=-1)
    n = xp.maximum(count, 1)
    mean = xp.sum(xp.where(present, values, 0), axis=-1) / n
    var = xp.sum(xp.where(present, (values - mean[..., None]) ** 2, 0), axis=-1) / xp.maximum(n - 1, 1)
    mean = xp.where(count > 0, mean, xp.nan)
    stderr = xp.where(count > 1, xp.sqrt(var / n), xp.nan)
    return mean, stderr, count


def _retime_first_passage(result, convert):
    """Passage times on another clock (−1 kept for "never"); the mean and its standard
    error are recomputed from the converted times (the clock may be nonlinear in steps,
    e.g. SME time under a learning-rate schedule)."""
    steps = np.asarray(result["times"])
    hit = steps >= 0
    times = np.where(hit, convert(np.maximum(steps, 0)), -1.0)
    mean, stderr, _ = _mean_and_stderr(times, hit, np)
    return {**result, "times": times, "mean_time": mean, "mean_time_stderr": stderr}


# ------------------------------------------------------------------ divergence
def divergence() -> Observer:
    """Built into every run: per replica, the step k whose update θ_k → θ_{k+1} first
    produced a non-finite value (−1 if none)."""

    def init(states, ctx):
        return jnp.where(states.diverged, 0, -1).astype(jnp.int32)

    def update(first, states, t, ctx):
        return jnp.where((first < 0) & states.diverged, t - 1, first)

    def finalize(first, states, ctx):
        return {"diverged": states.diverged, "step": first}

    return Observer("divergence", init, update, finalize)


# ------------------------------------------------------------------- sharpness
def _check_every_or_final(every) -> int | None:
    return None if every is None else _check_every(every)


def _per_replica(measure_one: Callable, states) -> Any:
    """measure_one(params, step) for each replica in turn (lax.map: the memory of one)."""
    return jax.lax.map(lambda args: measure_one(*args), (states.params, states.step))


def _measured(name: str, every: int | None, measure: Callable) -> Observer:
    """At the end of the run only (every=None): ``measure(states, ctx)``; else at steps
    0, every, 2·every, …: ``{"times": (T,), "values": measure(...) stacked (T, R, …)}``."""
    if every is not None:
        return _every_recorder(name, every, measure)
    return Observer(
        name,
        lambda states, ctx: (),
        lambda obs, states, t, ctx: obs,
        lambda obs, states, ctx: measure(states, ctx),
    )


@_cached
def sharpness(
    every: int | None = None,
    k: int = 1,
    method: str = "lanczos",
    num_iterations: int = 100,
    trace_samples: int = 100,
    seed: int = 0,
) -> Observer:
    """Curvature of the full-data loss L (regulariser included) for every replica.

    The k largest Hessian eigenvalues (:func:`sgdsde.curvature.top_eigenvalues` with
    ``method`` "lanczos" or "power" and ``num_iterations``) and Hutchinson's trace
    estimate with its standard error (:func:`sgdsde.curvature.hutchinson_trace`,
    ``trace_samples`` Rademacher probes; 0 leaves the trace out).
    every=None: measured once, on the final parameters:
    ``{"eigenvalues": (R, k), "trace": (R,), "trace_stderr": (R,)}``;
    every=m: at steps 0, m, 2m, …: ``{"times": (T,), "values": {the same, (T, R, …)}}``.
    Random start vectors and probes come from ``jax.random.key(seed)`` folded with the
    replica's step count: the same for every replica and configuration (common random
    numbers, so differences between configurations are not probe noise). Cost per
    measurement and replica: num_iterations·k (power) or num_iterations (Lanczos) plus
    trace_samples Hessian–vector products.
    """
    every = _check_every_or_final(every)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: must be a positive integer, got {k!r}")
    if method not in ("lanczos", "power"):
        raise ValueError(f"method: must be 'lanczos' or 'power', got {method!r}")
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, (int, np.integer)) or num_iterations < k:
        raise ValueError(f"num_iterations: must be an integer ≥ k = {k}, got {num_iterations!r}")
    if isinstance(trace_samples, bool) or not isinstance(trace_samples, (int, np.integer)) or trace_samples == 1 or trace_samples < 0:
        raise ValueError(f"trace_samples: must be 0 (no trace) or an integer ≥ 2, got {trace_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: must be an integer, got {seed!r}")

    def measure(states, ctx):
        from . import curvature  # curvature imports the runner, which imports this module

        def one(params, step):
            key = jax.random.fold_in(jax.random.key(seed), step)
            out = {
                "eigenvalues": curvature.top_eigenvalues(
                    ctx.problem.loss, params, key=jax.random.fold_in(key, 0), k=k, method=method,
                    num_iterations=num_iterations,
                )
            }
            if trace_samples:
                trace = curvature.hutchinson_trace(
                    ctx.problem.loss, params, key=jax.random.fold_in(key, 1), num_samples=trace_samples
                )
                out["trace"], out["trace_stderr"] = trace.mean, trace.stderr
            return out

        return _per_replica(one, states)

    return _measured("sharpness", every, measure)


# -------------------------------------------------------------- gradient noise
@_cached
def gradient_noise(every: int | None = None, method: str = "exact", num_samples: int = 16, seed: int = 0) -> Observer:
    """Gradient-noise statistics of every replica: tr C, ‖g‖² and the simple noise scale.

    ``trace_cov``: tr C(θ), C the per-example gradient covariance (docs/theory.md §1; the
    minibatch gradient's covariance is C/S, or (C/S)(N−S)/(N−1) for subsets), either
    ``method="exact"`` (``problem.gradient_covariance(θ, "trace")``: all N per-example
    gradients, memory N·d per replica) or ``method="sample"``: the unbiased mean of ‖ξ‖²
    over ``num_samples`` exact draws ξ ~ N(0, C) (``problem.noise_sample``, one
    weighted gradient each; Var ‖ξ‖² = 2 tr C²), with ``trace_cov_stderr``.
    ``grad_norm_sq``: ‖g‖², g = ∇L the full-batch gradient (regulariser included).
    ``noise_scale``: the simple noise scale B = tr C / ‖g‖² (McCandlish et al. 2018), the
    batch size at which minibatch noise and signal are comparable; +inf where g = 0.
    Shapes: (R,) at the end (every=None), or ``{"times": (T,), "values": {… (T, R)}}``
    at steps 0, every, 2·every, … Draws use ``jax.random.key(seed)`` folded with the
    replica's step count (common to all replicas and configurations).
    """
    every = _check_every_or_final(every)
    if method not in ("exact", "sample"):
        raise ValueError(f"method: must be 'exact' or 'sample', got {method!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"num_samples: must be an integer ≥ 2, got {num_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: must be an integer, got {seed!r}")

    def measure(states, ctx):
        problem = ctx.problem

        def one(params, step):
            grad = ravel_pytree(problem.grad(params))[0]
            grad_norm_sq = jnp.vdot(grad, grad)
            out = {}
            if method == "exact":
                trace = problem.gradient_covariance(params, "trace")
            else:
                keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), step), num_samples)
                draws = jax.lax.map(
                    lambda key: jnp.sum(ravel_pytree(problem.noise_sample(key, params))[0] ** 2), keys
                )
                trace = jnp.mean(draws)
                out["trace_cov_stderr"] = jnp.std(draws, ddof=1) / jnp.sqrt(jnp.asarray(num_samples, draws.dtype))
            out["trace_cov"] = trace
            out["grad_norm_sq"] = grad_norm_sq
            out["noise_scale"] = jnp.where(grad_norm_sq > 0, trace / jnp.where(grad_norm_sq > 0, grad_norm_sq, 1), jnp.inf)
            return out

        return _per_replica(one, states)

    return _measured("gradient_noise", every, measure)
