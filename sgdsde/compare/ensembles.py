"""E[φ] under one stepper: the sweep's checks, its time grid in SME time, the ensemble run
and the per-replica statistics (:func:`expectations`, :class:`Expectations`)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from .._checks import typed_key
from .._progress import note
from ..hyper import Hyper
from ..problem import Problem
from ..runner import DivergenceWarning, run
from ..steppers import Stepper
from .observables import PyTree, _observer

__all__ = ["Expectations", "expectations"]


# ------------------------------------------------------------------------------ results
def _time_labels(times, window) -> list:
    if window is not None:
        return [f"avg t_sme∈[{window[0]:g},{window[1]:g}]"]
    return [f"t_sme={t:g}" for t in times]


@dataclasses.dataclass(frozen=True)
class Expectations:
    """What :func:`expectations` returns: E[φ] under one stepper. Axes: G learning rates
    × T times (T = 1 for a window average); times are SME time.

    ``mean[name]``, ``stderr[name]`` (from the spread between independent replicas) and
    ``replicas_used[name]`` (G, T); ``result[name]`` gives the three as a dict.
    ``diverged`` (G, T): the fraction of replicas left out at that time because their
    parameters (or an observable) became non-finite by then. ``samples[name]``
    (G, T, R): the per-replica values (NaN where left out). ``calls`` (G, T, 2): the
    stepper calls behind each time (the two neighbours interpolated between, or the
    first and last call of the window).
    """

    learning_rates: np.ndarray
    batch_sizes: np.ndarray
    times: np.ndarray
    window: tuple | None
    observables: tuple
    mean: dict
    stderr: dict
    replicas_used: dict
    diverged: np.ndarray
    samples: dict
    calls: np.ndarray
    stepper: str
    dt: float
    replicas: int
    num_steps: int
    clock: str = "sme"

    def __getitem__(self, name: str) -> dict:
        return {"mean": self.mean[name], "stderr": self.stderr[name], "replicas_used": self.replicas_used[name]}

    @property
    def time_labels(self) -> list:
        return _time_labels(self.times, self.window)

    def as_dict(self, samples: bool = False) -> dict:
        """Plain dicts and arrays (for JSON); the per-replica samples only on request."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "samples"}
        if samples:
            out["samples"] = self.samples
        out["time_labels"] = self.time_labels
        return out


# -------------------------------------------------------------------------- validation
def _check_sequence(values, name: str, *, positive: bool = True) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: must be a sequence of numbers, got {values!r}") from err
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)) or np.any(arr < 0):
        raise ValueError(f"{name}: must be finite and {'> 0' if positive else '≥ 0'}, got {arr.tolist()}")
    return arr


def _batch_sizes(learning_rates, batch_size, noise_scale, num_examples: int) -> np.ndarray:
    if (batch_size is None) == (noise_scale is None):
        raise ValueError("batch_size, noise_scale: give exactly one (fixed S, or fixed η/S with S = η/noise_scale)")
    if noise_scale is not None:
        if isinstance(noise_scale, bool) or np.ndim(noise_scale) != 0 or not np.isfinite(noise_scale) \
                or noise_scale <= 0:
            raise ValueError(f"noise_scale: must be a finite number > 0 (η/S), got {noise_scale!r}")
        sizes = learning_rates / float(noise_scale)
        rounded = np.round(sizes)
        bad = np.abs(sizes - rounded) > 1e-6 * np.maximum(sizes, 1)
        if np.any(bad):
            raise ValueError(
                f"noise_scale: η/noise_scale must be an integer batch size for every η; got "
                f"{dict(zip(learning_rates[bad].tolist(), sizes[bad].tolist()))} (η: S)"
            )
        sizes = rounded
    else:
        sizes = np.broadcast_to(np.asarray(batch_size), learning_rates.shape).astype(np.float64) \
            if np.ndim(batch_size) == 0 else _check_sequence(batch_size, "batch_size")
        if sizes.shape != learning_rates.shape:
            raise ValueError(f"batch_size: needs one value per learning rate ({learning_rates.size}), "
                             f"got {sizes.size}")
    if np.any(sizes != np.round(sizes)) or np.any(sizes < 1) or np.any(sizes > num_examples):
        raise ValueError(f"batch_size: must be integers in [1, N = {num_examples}], got {sizes.tolist()}")
    return sizes.astype(np.int64)


def _check_observables(observables) -> dict:
    if not isinstance(observables, Mapping) or not observables:
        raise ValueError("observables: must be a non-empty dict {name: 'loss' or callable phi(params) -> scalar}")
    out = {}
    for name, phi in observables.items():
        if not isinstance(name, str):
            raise ValueError(f"observables: names must be strings, got {name!r}")
        if not (phi == "loss" if isinstance(phi, str) else callable(phi)):
            raise ValueError(f"observables: {name!r} must be 'loss' or a callable phi(params) -> scalar, got {phi!r}")
        out[name] = phi
    return out


# ------------------------------------------------------------------------- time grids
def _point_calls(times: np.ndarray, per_call: np.ndarray):
    """Calls (lo, hi) and weight w for each (config, time): t = (lo + w)·per_call."""
    u = times[None, :] / per_call[:, None]
    nearest = np.round(u)
    exact = np.abs(u - nearest) <= 1e-9 * np.maximum(u, 1.0)
    lo = np.where(exact, nearest, np.floor(u)).astype(np.int64)
    hi = np.where(exact, lo, lo + 1)
    return lo, hi, np.where(exact, 0.0, u - lo)


def _window_calls(window, per_call: np.ndarray, every: int):
    """First and last call with t_sme in [t0, t1], per config, and the number of calls
    in between that are multiples of ``every`` (the ones averaged)."""
    t0, t1 = window
    first = np.ceil(t0 / per_call - 1e-9).astype(np.int64)
    last = np.floor(t1 / per_call + 1e-9).astype(np.int64)
    count = last // every - (first + every - 1) // every + 1
    if np.any(count < 1):
        raise ValueError(f"window: [{t0:g}, {t1:g}] contains no sampled step (every = {every}) for "
                         f"η·dt = {per_call[count < 1].tolist()}")
    return first, last, count


# ---------------------------------------------------------------------- the ensembles
def _replica_values(stepper: Stepper, key, problem, hyper, init_params, observables, times, window, every,
                    learning_rates, replicas, progress):
    """Per-replica values (n_obs, G, T, R), NaN where left out; the fraction left out
    (G, T); the calls (G, T, 2); the run's length."""
    per_call = learning_rates * float(stepper.dt)
    if window is None:
        lo, hi, weight = _point_calls(times, per_call)
        record = np.unique(np.concatenate([lo.ravel(), hi.ravel()]))
        observer, last = _observer(observables, record, None), hi
        num_steps = int(hi.max())
    else:
        first, final, count = _window_calls(window, per_call, every)
        edges = np.unique(np.concatenate([first, final + 1]))
        observer, last = _observer(observables, None, edges, every), final[:, None]
        num_steps = int(final.max())
    note("sgdsde.compare", f"{stepper.name}: {len(learning_rates)} learning rates × {replicas} replicas, "
         f"{num_steps} steps", enabled=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # reported per configuration and time instead
        result = run(key, stepper, problem, hyper, init_params, num_steps, replicas=replicas,
                     observers=[observer], progress=progress)
    data = np.asarray(result["weak_error"], dtype=np.float64)  # (G, records or segments, R, n_obs)
    data = np.where(np.isfinite(data), data, np.nan)  # e.g. a loss that overflows before the params do
    if window is None:
        lo_i, hi_i = np.searchsorted(record, lo), np.searchsorted(record, hi)
        g = np.arange(len(learning_rates))[:, None]
        values = np.where(
            (weight == 0)[..., None, None], data[g, lo_i],
            (1 - weight)[..., None, None] * data[g, lo_i] + weight[..., None, None] * data[g, hi_i],
        )
        calls = np.stack([lo, hi], axis=-1)
    else:
        values = np.empty((len(learning_rates), 1) + data.shape[2:])
        for g in range(len(learning_rates)):
            inside = (edges[:-1] >= first[g]) & (edges[:-1] <= final[g])
            values[g, 0] = data[g, inside].sum(axis=0) / count[g]
        calls = np.stack([first, final], axis=-1)[:, None, :]
    # a replica's value at a time is kept iff its parameters were finite up to the last call
    # used and every observable is finite
    step = np.asarray(result.divergence_step)  # (G, R)
    bad = (step[:, None, :] >= 0) & (step[:, None, :] < last[..., None])  # (G, T, R)
    bad |= ~np.all(np.isfinite(values), axis=-1)
    values = np.where(bad[..., None], np.nan, values)
    return np.moveaxis(values, -1, 0), bad.mean(axis=-1), calls, num_steps


def _stats(values):
    """Mean, standard error, count over replicas (last axis), NaN-aware."""
    ok = np.isfinite(values)
    n = ok.sum(axis=-1)
    mean = np.where(n > 0, np.nansum(values, axis=-1) / np.maximum(n, 1), np.nan)
    dev = np.where(ok, values - mean[..., None], 0.0)
    var = (dev**2).sum(axis=-1) / np.maximum(n - 1, 1)
    return mean, np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan), n


# -------------------------------------------------------------------------- harness
def _check_sweep(problem, learning_rates, batch_size, noise_scale, observables, times, window, every, replicas):
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: must be an sgdsde.Problem, got {type(problem).__name__}")
    learning_rates = _check_sequence(learning_rates, "learning_rates")
    if len(np.unique(learning_rates)) != learning_rates.size:
        raise ValueError(f"learning_rates: must be distinct, got {learning_rates.tolist()}")
    sizes = _batch_sizes(learning_rates, batch_size, noise_scale, problem.num_examples)
    observables = _check_observables({"loss": "loss"} if observables is None else observables)
    if (times is None) == (window is None):
        raise ValueError("times, window: give exactly one (SME times to compare at, or an SME-time window to average)")
    if times is not None:
        times = _check_sequence(times, "times", positive=False)
    else:
        w = _check_sequence(window, "window", positive=False)
        if w.size != 2 or not w[0] < w[1]:
            raise ValueError(f"window: must be (t0, t1) with 0 ≤ t0 < t1, got {tuple(w.tolist())}")
        window = (float(w[0]), float(w[1]))
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every: must be a positive integer, got {every!r}")
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) or replicas < 2:
        raise ValueError(f"replicas: must be an integer ≥ 2 (error bars need independent replicas), got {replicas!r}")
    return learning_rates, sizes, observables, times, window, int(every), int(replicas)


def _check_stepper(stepper, name: str) -> Stepper:
    if not isinstance(stepper, Stepper):
        raise ValueError(f"{name}: must be an sgdsde Stepper (e.g. sgdsde.sgd(), sgdsde.euler_maruyama(...)), "
                         f"got {type(stepper).__name__}")
    return stepper


def expectations(
    key: jax.Array,
    problem: Problem,
    stepper: Stepper,
    init_params: PyTree | Callable[[jax.Array], PyTree],
    *,
    learning_rates: Sequence[float],
    batch_size: int | Sequence[int] | None = None,
    noise_scale: float | None = None,
    momentum: float = 0.0,
    observables: Mapping[str, Any] | None = None,
    times: Sequence[float] | None = None,
    window: tuple[float, float] | None = None,
    every: int = 1,
    replicas: int = 1000,
    progress: bool = False,
) -> Expectations:
    """E[φ] under one stepper for a sweep of learning rates, at equal SME times.

    One grid run over the η_g (one compiled program); the arguments are those of
    :func:`weak_error` (which calls this once per stepper). ``key`` is used as given.
    """
    learning_rates, sizes, observables, times, window, every, replicas = _check_sweep(
        problem, learning_rates, batch_size, noise_scale, observables, times, window, every, replicas
    )
    stepper = _check_stepper(stepper, "stepper")
    return _expectations(typed_key(key), problem, stepper, init_params, learning_rates, sizes, momentum,
                         observables, times, window, every, replicas, progress)


def _expectations(key, problem, stepper, init_params, learning_rates, sizes, momentum, observables, times,
                  window, every, replicas, progress) -> Expectations:
    hyper = Hyper(learning_rates, sizes, momentum)
    values, diverged, calls, num_steps = _replica_values(
        stepper, key, problem, hyper, init_params, observables, times, window, every, learning_rates, replicas,
        progress,
    )
    names = tuple(observables)
    mean, stderr, used, samples = {}, {}, {}, {}
    for o, name in enumerate(names):
        mean[name], stderr[name], used[name] = _stats(values[o])
        samples[name] = values[o]
    return Expectations(
        learning_rates=learning_rates,
        batch_sizes=sizes,
        times=np.array([np.nan]) if window is not None else times,
        window=window,
        observables=names,
        mean=mean,
        stderr=stderr,
        replicas_used=used,
        diverged=diverged,
        samples=samples,
        calls=calls,
        stepper=stepper.name,
        dt=float(stepper.dt),
        replicas=replicas,
        num_steps=num_steps,
    )
