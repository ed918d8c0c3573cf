"""Weak-error harness: SGD against an SDE model of it, on the same clock.

:func:`weak_error` runs two steppers — by default ``sgd("subset")`` and an SDE stepper
(``euler_maruyama``, ``underdamped``, ``diffrax_stepper``) — on the same problem,
hyperparameters and initial condition, over a sweep of learning rates η (at a fixed
noise scale η/S, or at a fixed batch size S), and reports for each observable φ

- E_SGD[φ] and E_SDE[φ] with Monte-Carlo standard errors from independent replicas,
- the gap Δ(η) = E_SGD[φ] − E_SDE[φ] with its standard error,
- the fitted order p of the gap in η, Δ ∝ η^p, with a confidence interval.

:func:`expectations` does the first part for one stepper and :func:`gap` compares two
results (so a third stepper, e.g. Gaussian SGD, costs one more run, not two);
:func:`fit_order` is the fit on its own.

Clock. Times are **SME time** t_sme = η·(SGD steps) (docs/theory.md §2), the only clock on
which runs with different η describe the same continuous time: at t_sme the SGD run
has done t_sme/η steps and an SDE stepper with step dt (in SGD steps) t_sme/(η·dt)
calls. Where that is not an integer, E[φ] is interpolated linearly between the two
neighbouring steps, replica by replica (an O(η²) error in a smooth mean, below the
O(η) gap). ``window=(t0, t1)`` averages φ over every step with t_sme in [t0, t1]
instead (for stationary quantities).

Statistics. Each configuration (η) is one member of a grid run per stepper (one compiled
program); the runner gives every configuration the same random keys, so estimates at
different η are correlated. Those correlations are measured from the replicas (replica
r of every configuration shares its keys) and used in the fit: a generalised
least-squares fit of log|Δ| against log η, with the covariance of log|Δ| propagated from
the Monte-Carlo covariance of the gaps (delta method: Cov(Δ_g, Δ_h)/(Δ_g Δ_h)). The two
steppers run with independent keys (fold_in(key, 0) and fold_in(key, 1)). Points where
the gap is not resolved (|Δ| < min_z · stderr) or where a replica diverged are left out
of the fit and flagged. When the points scatter more than their error bars
(χ²/dof > 1: the power law is not exact, e.g. an O(η²) term) the slope's standard error
is inflated by √(χ²/dof) (both are reported).

Diverged replicas (non-finite parameters, e.g. SGD past η λ_max ≈ 2, or an observable
that overflows) are reported as a fraction per configuration and time and left out of
the means — never averaged as NaN. A replica on its way to divergence (huge but still
finite at the time) is kept; where ``diverged > 0`` the mean is best not read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import warnings
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree

from . import observers as obs_lib
from .hyper import Hyper
from .problem import Problem
from ._checks import typed_key as _typed_key
from .runner import DivergenceWarning, run
from .steppers import Stepper, sgd as _sgd

PyTree = Any

__all__ = [
    "weak_error",
    "expectations",
    "gap",
    "WeakError",
    "Expectations",
    "OrderFit",
    "fit_order",
    "squared_distance",
    "basin_indicator",
    "coordinate",
]


# ------------------------------------------------------------------------ observables
def squared_distance(point) -> Callable[[PyTree], jax.Array]:
    """φ(θ) = ‖θ − point‖² over the flattened params (``point`` flattened the same way)."""
    flat_point = np.asarray(ravel_pytree(point)[0], dtype=np.float64)

    def phi(params):
        flat = ravel_pytree(params)[0]
        return jnp.sum((flat - jnp.asarray(flat_point, flat.dtype)) ** 2)

    return phi


def basin_indicator(classify: Callable[[PyTree], jax.Array], basin: int) -> Callable[[PyTree], jax.Array]:
    """φ(θ) = 1 if ``classify(θ) == basin`` else 0: E[φ] is the occupancy of the basin."""
    if not callable(classify):
        raise ValueError(f"classify: must be a callable classify(params) -> int, got {type(classify).__name__}")
    return lambda params: (classify(params) == basin).astype(jnp.float32)


def coordinate(index: int, power: int = 1) -> Callable[[PyTree], jax.Array]:
    """φ(θ) = θ_index^power over the flattened params (e.g. ``coordinate(0, 2)``: θ₀²)."""
    return lambda params: ravel_pytree(params)[0][index] ** power


# ------------------------------------------------------------------------------ results
@dataclasses.dataclass(frozen=True)
class OrderFit:
    """Fit of log|Δ| = a + p log η over the resolved points.

    slope p with ``stderr`` (inflated by √(χ²/dof) when that exceeds 1; ``stderr_mc`` is
    the Monte-Carlo-only value) and the ``ci`` at ``confidence`` (normal quantile);
    ``used``: which η entered; ``chi2``, ``dof``; ``note`` says why a fit is missing or
    doubtful (NaN slope when fewer than two points are resolved).
    """

    slope: float
    stderr: float
    stderr_mc: float
    ci: tuple
    confidence: float
    intercept: float
    used: np.ndarray
    chi2: float
    dof: int
    note: str = ""

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the confidence interval."""
        return bool(self.ci[0] <= value <= self.ci[1])

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


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


@dataclasses.dataclass(frozen=True)
class WeakError:
    """What :func:`weak_error` (and :func:`gap`) return. Axes: G learning rates × T times.

    ``sgd`` and ``sde``: the two :class:`Expectations` (``result.sgd[name]["mean"]`` …);
    ``gap[name]``: ``value`` = E_SGD − E_SDE, ``stderr``, ``z`` = value/stderr,
    ``resolved`` (|z| ≥ min_z and no divergence), all (G, T), and ``covariance``
    (T, G, G), the Monte-Carlo covariance of the gaps across η (what the fit uses);
    ``order[name]``: one :class:`OrderFit` per time. ``diverged`` and ``calls``:
    {"sgd", "sde"} → the two steppers' fields. Times are SME time (``clock == "sme"``).
    """

    learning_rates: np.ndarray
    batch_sizes: np.ndarray
    times: np.ndarray
    window: tuple | None
    observables: tuple
    sgd: Expectations
    sde: Expectations
    gap: dict
    order: dict
    min_z: float
    clock: str = "sme"

    @property
    def noise_scales(self) -> np.ndarray:
        """η/S per configuration."""
        return self.learning_rates / self.batch_sizes

    @property
    def diverged(self) -> dict:
        return {"sgd": self.sgd.diverged, "sde": self.sde.diverged}

    @property
    def calls(self) -> dict:
        return {"sgd": self.sgd.calls, "sde": self.sde.calls}

    @property
    def steppers(self) -> dict:
        return {"sgd": self.sgd.stepper, "sde": self.sde.stepper}

    @property
    def time_labels(self) -> list:
        return _time_labels(self.times, self.window)

    def as_dict(self) -> dict:
        """Plain nested dicts and arrays (for JSON; no per-replica samples)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["sgd"], out["sde"] = self.sgd.as_dict(), self.sde.as_dict()
        out["order"] = {k: [fit.as_dict() for fit in fits] for k, fits in self.order.items()}
        out["noise_scales"] = self.noise_scales
        out["time_labels"] = self.time_labels
        return out

    def table(self, observable: str | None = None) -> str:
        """A printable table per observable: means ± stderr, the gap, its z, and the fit."""
        names = [observable] if observable is not None else list(self.observables)
        lines = []
        for name in names:
            lines.append(f"observable {name!r} (clock: SME time; gap = E_SGD − E_SDE; "
                         f"SGD: {self.steppers['sgd']}, SDE: {self.steppers['sde']})")
            head = (f"  {'time':>22} {'eta':>8} {'S':>5} {'E_SGD':>11} {'± se':>9} {'E_SDE':>11} {'± se':>9} "
                    f"{'gap':>11} {'± se':>9} {'z':>6}  note")
            lines += [head, "  " + "-" * (len(head) - 2)]
            for j, label in enumerate(self.time_labels):
                for g, eta in enumerate(self.learning_rates):
                    a, b, d = self.sgd[name], self.sde[name], self.gap[name]
                    notes = []
                    if self.diverged["sgd"][g, j] > 0:
                        notes.append(f"SGD diverged {100 * self.diverged['sgd'][g, j]:.1f}%")
                    if self.diverged["sde"][g, j] > 0:
                        notes.append(f"SDE diverged {100 * self.diverged['sde'][g, j]:.1f}%")
                    if not d["resolved"][g, j] and not notes:
                        notes.append("not resolved")
                    lines.append(
                        f"  {label:>22} {eta:8.4g} {int(self.batch_sizes[g]):5d} {a['mean'][g, j]:11.5g} "
                        f"{a['stderr'][g, j]:9.2g} {b['mean'][g, j]:11.5g} {b['stderr'][g, j]:9.2g} "
                        f"{d['value'][g, j]:11.4g} {d['stderr'][g, j]:9.2g} {d['z'][g, j]:6.1f}  {', '.join(notes)}"
                    )
                fit = self.order[name][j]
                lines.append(
                    f"  {'':>22} order of the gap in η: {fit.slope:.3f} ± {fit.stderr:.3f} "
                    f"({100 * fit.confidence:.0f}% CI [{fit.ci[0]:.3f}, {fit.ci[1]:.3f}]), "
                    f"{int(np.sum(fit.used))} points, χ²/dof = {fit.chi2:.2f}/{fit.dof}"
                    + (f"  [{fit.note}]" if fit.note else "")
                )
            lines.append("")
        return "\n".join(lines)


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


def _observer(observables: dict, record_calls, edges, every: int = 1) -> obs_lib.Observer:
    """The harness's observer; the same observables, calls and edges give the same
    object, so that repeated comparisons reuse the runner's compiled program."""
    key = (
        tuple(observables.items()),
        None if record_calls is None else tuple(int(k) for k in record_calls),
        None if edges is None else tuple(int(k) for k in edges),
        int(every),
    )
    try:
        return _cached_observer(*key)
    except TypeError:  # an unhashable observable: build it afresh
        return _make_observer(observables, record_calls, edges, every)


@functools.lru_cache(maxsize=32)
def _cached_observer(items, record_calls, edges, every):
    return _make_observer(dict(items), record_calls, edges, every)


def _make_observer(observables: dict, record_calls, edges, every: int = 1) -> obs_lib.Observer:
    """Records the stacked observables at the calls ``record_calls`` (sorted), or sums
    them per replica over the calls t ≡ 0 (mod every) of each segment [edges[s],
    edges[s+1]) (``edges`` sorted)."""
    names = list(observables)

    def measure(states, ctx):
        def one(params):
            values = [
                ctx.problem.loss(params) if observables[n] == "loss" else observables[n](params) for n in names
            ]
            return jnp.stack([jnp.asarray(v).astype(jnp.result_type(float)).reshape(()) for v in values])

        return jax.vmap(one)(states.params)  # (R, n_obs)

    if record_calls is not None:
        rec = jnp.asarray(record_calls, jnp.int32)

        def init(states, ctx):
            first = measure(states, ctx)
            buf = jnp.zeros((rec.shape[0],) + first.shape, first.dtype)
            return jnp.where((rec == 0)[:, None, None], first[None], buf)

        def update(buf, states, t, ctx):
            index = jnp.clip(jnp.searchsorted(rec, t), 0, rec.shape[0] - 1)
            store = lambda b: b.at[index].set(measure(states, ctx).astype(b.dtype))
            return jax.lax.cond(rec[index] == t, store, lambda b: b, buf)

    else:
        edge = jnp.asarray(edges, jnp.int32)
        segments = edge.shape[0] - 1

        def add(sums, states, t, ctx):
            s = jnp.searchsorted(edge, t, side="right") - 1
            inside = (s >= 0) & (s < segments) & (t % every == 0)
            put = lambda acc: acc.at[jnp.clip(s, 0, segments - 1)].add(measure(states, ctx).astype(acc.dtype))
            return jax.lax.cond(inside, put, lambda acc: acc, sums)

        def init(states, ctx):
            first = measure(states, ctx)
            return add(jnp.zeros((segments,) + first.shape, first.dtype), states, 0, ctx)

        def update(sums, states, t, ctx):
            return add(sums, states, t, ctx)

    return obs_lib.Observer("weak_error", init, update, lambda obs, states, ctx: obs)


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
    if progress:
        print(f"sgdsde.compare: {stepper.name}: {len(learning_rates)} learning rates × {replicas} replicas, "
              f"{num_steps} steps", file=sys.stderr, flush=True)
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


def _mean_covariance(values) -> np.ndarray:
    """Covariance of the means of the rows of ``values`` (G, R), from replicas paired by index."""
    ok = np.isfinite(values)
    n = ok.sum(axis=-1).astype(np.float64)
    mean = np.nansum(values, axis=-1) / np.maximum(n, 1)
    dev = np.where(ok, values - mean[:, None], 0.0)
    joint = ok.astype(np.float64) @ ok.T.astype(np.float64)
    cross = dev @ dev.T
    return cross / np.maximum(joint - 1, 1) * joint / np.maximum(np.outer(n, n), 1)


# ---------------------------------------------------------------------------- fitting
def fit_order(learning_rates, gaps, covariance, *, use=None, confidence: float = 0.95) -> OrderFit:
    """Generalised least squares of log|Δ| = a + p log η.

    covariance: (G, G) covariance of the gaps Δ (or a vector of their variances);
    propagated to log|Δ| by the delta method, Cov(Δ_g, Δ_h)/(Δ_g Δ_h). use: boolean mask
    of the points to fit (default: all with Δ ≠ 0). Returns an :class:`OrderFit`.
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence!r}")
    eta = np.asarray(learning_rates, dtype=np.float64)
    gaps = np.asarray(gaps, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    cov = np.diag(cov) if cov.ndim == 1 else cov
    use = np.isfinite(gaps) & (gaps != 0) if use is None else np.asarray(use, bool) & np.isfinite(gaps) & (gaps != 0)
    nan = float("nan")
    if use.sum() < 2:
        return OrderFit(nan, nan, nan, (nan, nan), confidence, nan, use, nan, 0,
                        f"{int(use.sum())} resolved point(s): no fit")
    x, y, d = np.log(eta[use]), np.log(np.abs(gaps[use])), gaps[use]
    v = cov[np.ix_(use, use)] / np.outer(d, d)
    design = np.stack([np.ones_like(x), x], axis=1)
    try:  # whiten by V = LLᵀ, then ordinary least squares: no explicit V⁻¹ or normal equations
        chol = np.linalg.cholesky(v)
    except np.linalg.LinAlgError:  # singular V: weights from the variances alone
        chol = np.diag(np.sqrt(np.diag(v)))
    white_design = scipy.linalg.solve_triangular(chol, design, lower=True)
    white_y = scipy.linalg.solve_triangular(chol, y, lower=True)
    beta, _, _, _ = np.linalg.lstsq(white_design, white_y, rcond=None)
    r_factor = np.linalg.qr(white_design, mode="r")  # Cov(β) = (XᵀV⁻¹X)⁻¹ = R⁻¹R⁻ᵀ
    r_inv = scipy.linalg.solve_triangular(r_factor, np.eye(2))
    beta_cov = r_inv @ r_inv.T
    resid = white_y - white_design @ beta
    chi2 = float(resid @ resid)
    dof = int(use.sum()) - 2
    stderr_mc = float(np.sqrt(beta_cov[1, 1]))
    inflate = math.sqrt(chi2 / dof) if dof > 0 and chi2 > dof else 1.0
    stderr = stderr_mc * inflate
    q = float(stats.norm.ppf(0.5 + confidence / 2))
    notes = []
    if len(set(np.sign(d))) > 1:
        notes.append("the gap changes sign across η")
    if inflate > 1:
        notes.append(f"stderr inflated ×{inflate:.2f} for χ²/dof > 1")
    if int(use.sum()) < use.size:
        notes.append(f"{use.size - int(use.sum())} point(s) left out")
    slope = float(beta[1])
    return OrderFit(slope, stderr, stderr_mc, (slope - q * stderr, slope + q * stderr), confidence,
                    float(beta[0]), use, chi2, dof, "; ".join(notes))


# ---------------------------------------------------------------------------- harness
_base_key = _typed_key


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


def _check_fit_options(min_z, confidence) -> None:
    if isinstance(min_z, bool) or not isinstance(min_z, (int, float, np.number)) or not np.isfinite(min_z) \
            or min_z < 0:
        raise ValueError(f"min_z: must be a finite number ≥ 0, got {min_z!r}")
    if not isinstance(confidence, (int, float, np.number)) or not 0 < confidence < 1:
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence!r}")


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
    return _expectations(_base_key(key), problem, stepper, init_params, learning_rates, sizes, momentum,
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


def gap(reference: Expectations, model: Expectations, *, min_z: float = 3.0, confidence: float = 0.95) -> WeakError:
    """The gap E_reference[φ] − E_model[φ] of two :class:`Expectations` over the same sweep
    (same η, S, times or window, observables; independent keys), its standard error and
    its fitted order in η (:func:`fit_order`, with the covariance across η measured from
    the replicas)."""
    _check_fit_options(min_z, confidence)
    for name, a, b in (
        ("learning_rates", reference.learning_rates, model.learning_rates),
        ("batch_sizes", reference.batch_sizes, model.batch_sizes),
        ("times", reference.times, model.times),
    ):
        if np.shape(a) != np.shape(b) or not np.allclose(a, b, equal_nan=True):
            raise ValueError(f"reference, model: differ in {name}: {np.asarray(a).tolist()} vs {np.asarray(b).tolist()}")
    if reference.window != model.window or reference.observables != model.observables:
        raise ValueError("reference, model: must share the window and the observables")
    gaps, order = {}, {}
    clean = (reference.diverged == 0) & (model.diverged == 0)
    for name in reference.observables:
        value = reference.mean[name] - model.mean[name]
        stderr = np.sqrt(reference.stderr[name] ** 2 + model.stderr[name] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = value / stderr
        resolved = clean & np.isfinite(z) & (np.abs(z) >= min_z)
        covariance = np.stack([
            _mean_covariance(reference.samples[name][:, j]) + _mean_covariance(model.samples[name][:, j])
            for j in range(value.shape[1])
        ])
        gaps[name] = {"value": value, "stderr": stderr, "z": z, "resolved": resolved, "covariance": covariance}
        order[name] = [
            fit_order(reference.learning_rates, value[:, j], covariance[j], use=resolved[:, j], confidence=confidence)
            for j in range(value.shape[1])
        ]
    return WeakError(
        learning_rates=reference.learning_rates,
        batch_sizes=reference.batch_sizes,
        times=reference.times,
        window=reference.window,
        observables=reference.observables,
        sgd=reference,
        sde=model,
        gap=gaps,
        order=order,
        min_z=float(min_z),
    )


def weak_error(
    key: jax.Array,
    problem: Problem,
    sde: Stepper,
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
    sgd: Stepper | None = None,
    replicas: int = 1000,
    min_z: float = 3.0,
    confidence: float = 0.95,
    progress: bool = False,
) -> WeakError:
    """E[φ] under SGD and under an SDE model of it, their gap, and the gap's order in η.

    key: one PRNG key (SGD uses fold_in(key, 0), the SDE fold_in(key, 1): independent).
    sde: the model stepper (any stepper works; ``sgd`` is the reference, default
      ``sgdsde.sgd("subset")`` — pair it with a ``finite_n=True`` noise model).
    init_params: one params pytree, or ``init_params(key)`` per replica (as in ``run``).
    learning_rates: the sweep η_1 … η_G, one grid run per stepper.
    batch_size | noise_scale: exactly one — a fixed S (or one S per η), or a fixed
      n = η/S with S = η/n (must be an integer for every η).
    momentum: β, the same for all (Hyper.momentum).
    observables: ``{name: "loss" | phi(params) -> scalar}`` (default ``{"loss": "loss"}``);
      helpers: :func:`squared_distance`, :func:`basin_indicator`, :func:`coordinate`.
    times: SME times t_sme = η·(SGD steps) at which to compare (point values), or
    window: (t0, t1) in SME time to compare time averages over (exactly one of the two);
      the average takes every call k of the stepper with t_sme in [t0, t1] and k a
      multiple of ``every`` (raise it where φ is costly, e.g. the full-data loss).
    replicas: independent replicas per configuration and stepper (the error bars).
    min_z: gaps with |Δ| < min_z·stderr are "not resolved" and left out of the fit.
    confidence: of the slope's interval (normal quantile).
    """
    learning_rates, sizes, observables, times, window, every, replicas = _check_sweep(
        problem, learning_rates, batch_size, noise_scale, observables, times, window, every, replicas
    )
    sde = _check_stepper(sde, "sde")
    sgd = _sgd("subset") if sgd is None else _check_stepper(sgd, "sgd")
    _check_fit_options(min_z, confidence)
    base = _base_key(key)
    runs = [
        _expectations(jax.random.fold_in(base, index), problem, stepper, init_params, learning_rates, sizes,
                      momentum, observables, times, window, every, replicas, progress)
        for index, stepper in enumerate((sgd, sde))
    ]
    return gap(*runs, min_z=min_z, confidence=confidence)
