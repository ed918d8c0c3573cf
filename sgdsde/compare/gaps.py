"""SGD against an SDE model: the gap of two :class:`Expectations`, its standard error and
order in η (:func:`gap`), and the whole comparison in one call (:func:`weak_error`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from .._checks import typed_key
from ..problem import Problem
from ..steppers import Stepper, sgd as _sgd
from .ensembles import Expectations, _check_stepper, _check_sweep, _expectations, _time_labels
from .observables import PyTree
from .order import _mean_covariance, fit_order
from .report import format_table

__all__ = ["WeakError", "gap", "weak_error"]


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
        return format_table(self, observable)


def _check_fit_options(min_z, confidence) -> None:
    if isinstance(min_z, bool) or not isinstance(min_z, (int, float, np.number)) or not np.isfinite(min_z) \
            or min_z < 0:
        raise ValueError(f"min_z: must be a finite number ≥ 0, got {min_z!r}")
    if not isinstance(confidence, (int, float, np.number)) or not 0 < confidence < 1:
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence!r}")


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
    base = typed_key(key)
    runs = [
        _expectations(jax.random.fold_in(base, index), problem, stepper, init_params, learning_rates, sizes,
                      momentum, observables, times, window, every, replicas, progress)
        for index, stepper in enumerate((sgd, sde))
    ]
    return gap(*runs, min_z=min_z, confidence=confidence)
