"""Shared pieces of :mod:`sgdsde.landscape`: the loss resolver, input checks, critical
points and the warning class."""

from __future__ import annotations

import math
import warnings
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..problem import Problem

LossFn = Callable[[jax.Array], jax.Array]

CLOCKS = ("steps", "sme")


class LandscapeWarning(RuntimeWarning):
    """A landscape computation produced a result that needs attention (starts that did not
    converge, degenerate minima, quadrature boxes that cut off mass, …)."""


def warn(message: str) -> None:
    warnings.warn(message, LandscapeWarning, stacklevel=3)


_LOG_MAX = math.log(np.finfo(np.float64).max)


def exp_or_limit(log_value: float, quantity: str, params: str) -> float:
    """e^{log_value}, or ``inf`` / 0.0 with a :class:`LandscapeWarning` naming the quantity and
    the parameters when it overflows / underflows float64 (never an OverflowError)."""
    if log_value > _LOG_MAX:
        warn(f"{quantity} overflows float64 (log = {log_value:.6g}) at {params}: returning inf")
        return math.inf
    value = math.exp(log_value)
    if value == 0.0 and log_value > -math.inf:
        warn(f"{quantity} underflows float64 (log = {log_value:.6g}) at {params}: returning 0")
    return value


class CriticalPoint(NamedTuple):
    """One critical point θ_c (∇L(θ_c) ≈ 0) with its curvature, in float64 NumPy.

    point (d,), loss L(θ_c), hessian (d, d), eigenvalues (d,) ascending,
    logabsdet log|det H|, index (number of negative eigenvalues), gradient_norm ‖∇L‖_∞.
    """

    point: np.ndarray
    loss: float
    hessian: np.ndarray
    eigenvalues: np.ndarray
    logabsdet: float
    index: int
    gradient_norm: float


def resolve_loss(loss) -> LossFn:
    """``loss`` as a callable θ (1-D array) -> scalar; a :class:`~sgdsde.Problem` gives its
    full-batch ``problem.loss``."""
    if isinstance(loss, Problem):
        return loss.loss
    if not callable(loss):
        raise TypeError(f"loss: must be a callable θ -> scalar or an sgdsde.Problem, got {type(loss).__name__}")
    return loss


def float_dtype(x) -> np.dtype:
    """The floating dtype computations on x run in: x's own if floating, else JAX's default."""
    dtype = np.asarray(x).dtype
    if np.issubdtype(dtype, np.floating) and np.finfo(dtype).bits >= 32:
        return jnp.dtype(jax.dtypes.canonicalize_dtype(dtype))  # float64 becomes float32 without x64
    return jnp.dtype(jnp.result_type(float))


def default_tol(dtype) -> float:
    """Default gradient tolerance ‖∇L‖_∞ at convergence: 1e-10 (float64), 1e-5 (float32)."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-5


def curvature_tol(tol: float, eigenvalues: np.ndarray) -> float:
    """Eigenvalues with |λ| below √tol · max(1, |λ|_max) count as zero (a singular Hessian).

    Rationale: at a degenerate (quartic) minimum a gradient tolerance tol is met where
    λ ~ tol^(2/3) ≪ √tol, while a genuine non-degenerate minimum has λ independent of tol.
    """
    scale = float(np.max(np.abs(eigenvalues))) if np.size(eigenvalues) else 1.0
    return math.sqrt(tol) * max(1.0, scale)


def check_positive(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def check_noise(noise_scale, sigma2, *, max_ndim: int | None = None) -> tuple[np.ndarray, float]:
    """(noise scales n = η/S > 0 as a float64 array, σ² > 0); ValueError naming the argument."""
    n = np.asarray(noise_scale, np.float64)
    if n.size == 0 or not np.all(np.isfinite(n)) or np.any(n <= 0) or (max_ndim is not None and n.ndim > max_ndim):
        shape = "a number" if max_ndim == 0 else ("a number or a 1-D array" if max_ndim == 1 else "numbers")
        raise ValueError(f"noise_scale: must be {shape} n = η/S > 0 (finite), got {noise_scale!r}")
    if isinstance(sigma2, (bool, np.bool_)) or np.ndim(sigma2) != 0 or not np.isfinite(sigma2) or sigma2 <= 0:
        raise ValueError(f"sigma2: must be a finite number > 0 (the isotropic gradient variance), got {sigma2!r}")
    return n, float(sigma2)


def positive_logdet(hessian: np.ndarray, where: str, name: str = "minima") -> float:
    """log det H of a symmetric positive definite Hessian; ValueError naming ``where`` when
    it is singular (to rounding) or not positive definite."""
    lam = np.linalg.eigvalsh(hessian)
    if abs(lam[0]) <= hessian.shape[0] * np.finfo(np.float64).eps * np.max(np.abs(lam)):
        raise ValueError(
            f"{name}: the Hessian at {where} is singular (eigenvalues {lam}): det H = 0, so the Laplace "
            "approximation is undefined there"
        )
    if lam[0] < 0:
        raise ValueError(
            f"{name}: the Hessian at {where} is not positive definite (smallest eigenvalue {lam[0]:.4g}); "
            "a minimum is expected"
        )
    return float(np.sum(np.log(lam)))


def check_clock(clock) -> str:
    if clock not in CLOCKS:
        raise ValueError(f"clock: must be one of {CLOCKS}, got {clock!r}")
    return clock


def check_loss_shape(loss: LossFn, point, name: str = "loss") -> None:
    """Raise if ``loss`` does not map a parameter vector like ``point`` to a scalar."""
    try:
        out = jax.eval_shape(loss, jax.ShapeDtypeStruct(np.shape(point), float_dtype(point)))
    except Exception as err:
        raise ValueError(
            f"{name}: evaluating it on a parameter vector of shape {np.shape(point)} failed "
            f"({type(err).__name__}: {err})"
        ) from err
    if out.shape != ():
        raise ValueError(f"{name}: must return a scalar, got shape {out.shape}")


def spectrum(hessian) -> tuple[np.ndarray, np.ndarray]:
    """(symmetrised float64 Hessian, ascending eigenvalues)."""
    h = np.asarray(hessian, dtype=np.float64)
    h = 0.5 * (h + np.swapaxes(h, -1, -2))
    return h, np.linalg.eigvalsh(h)


def format_point(point) -> str:
    """A short printable θ for messages."""
    return np.array2string(np.asarray(point, dtype=np.float64), precision=6, separator=", ")


def curvature_of(item) -> tuple[float, np.ndarray, np.ndarray | None]:
    """(loss, symmetric Hessian, point or None) of a CriticalPoint, a Mapping with keys
    "loss" and "hessian" (e.g. ``problems.double_well_2d(...).info["minima"][0]``) or any
    object with ``loss`` and ``hessian`` attributes."""
    if isinstance(item, Mapping):
        if "loss" not in item or "hessian" not in item:
            raise ValueError("critical point: a mapping needs the keys 'loss' and 'hessian'")
        value, hess, point = item["loss"], item["hessian"], item.get("point")
    elif hasattr(item, "loss") and hasattr(item, "hessian"):
        value, hess, point = item.loss, item.hessian, getattr(item, "point", None)
    else:
        raise TypeError(
            "critical point: expected a CriticalPoint (e.g. minima.at(i)), a mapping with 'loss' and "
            f"'hessian', or an object with those attributes, got {type(item).__name__}"
        )
    value = float(np.asarray(value))
    hess = np.atleast_2d(np.asarray(hess, dtype=np.float64))
    if hess.ndim != 2 or hess.shape[0] != hess.shape[1]:
        raise ValueError(f"critical point: hessian must be a square matrix, got shape {hess.shape}")
    if not np.isfinite(value) or not np.all(np.isfinite(hess)):
        raise ValueError("critical point: loss and hessian must be finite")
    return value, 0.5 * (hess + hess.T), None if point is None else np.asarray(point)


def check_starts(starts) -> jax.Array:
    arr = np.asarray(starts)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"starts: must be an array of shape (m, d) with m, d ≥ 1, got shape {np.shape(starts)}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError("starts: must be finite numbers")
    return jnp.asarray(arr, float_dtype(arr))


def check_tol(tol, dtype) -> float:
    if tol is None:
        return default_tol(dtype)
    if isinstance(tol, (bool, np.bool_)) or np.ndim(tol) != 0 or not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol: must be a finite number > 0 (gradient tolerance), got {tol!r}")
    return float(tol)


def check_dedup(dedup_tol) -> float:
    if isinstance(dedup_tol, (bool, np.bool_)) or np.ndim(dedup_tol) != 0 or not np.isfinite(dedup_tol) or dedup_tol <= 0:
        raise ValueError(f"dedup_tol: must be a finite distance > 0, got {dedup_tol!r}")
    return float(dedup_tol)
