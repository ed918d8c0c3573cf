"""Constant noise models: :func:`isotropic` (σ² I), :func:`diagonal` (diag(variances)),
:func:`full` (a d×d covariance, sampled with a square root computed once)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import NoiseModel, _check_flag, _check_float_params, _check_layout, _flat, _layout, _noise_dataclass, _num_params


# -------------------------------------------------------------------------- isotropic
@_noise_dataclass(["sigma2"], ["finite_n"])
class Isotropic(NoiseModel):
    """C = σ² I. Build with :func:`isotropic`."""

    sigma2: Any
    finite_n: bool = False
    kind = "isotropic"

    def noise_shape(self, params, problem=None):
        return (_num_params(params),)

    def apply(self, params, z, problem=None):
        flat, unravel = _flat(params)
        scale = jnp.sqrt(jnp.asarray(self.sigma2, flat.dtype))
        return unravel(scale * z.astype(flat.dtype))

    def matrix(self, params, problem=None):
        flat, _ = _flat(params)
        return jnp.sqrt(jnp.asarray(self.sigma2, flat.dtype)) * jnp.eye(flat.shape[0], dtype=flat.dtype)

    def covariance(self, params, problem=None):
        flat, _ = _flat(params)
        return jnp.asarray(self.sigma2, flat.dtype) * jnp.eye(flat.shape[0], dtype=flat.dtype)

    def __repr__(self):
        return f"isotropic(sigma2={float(np.asarray(self.sigma2)):g}, finite_n={self.finite_n})"


def isotropic(sigma2: float, *, finite_n: bool = False) -> Isotropic:
    """Isotropic constant noise C = σ² I (σ² ≥ 0, finite).

    finite_n: apply (N − S)/(N − 1) (minibatches without replacement); see :mod:`sgdsde.noise`.
    """
    arr = np.asarray(sigma2)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr):
        raise ValueError(f"sigma2: must be a finite scalar ≥ 0, got {sigma2!r}")
    if arr < 0:
        raise ValueError(f"sigma2: must be ≥ 0 (a variance), got {float(arr):g}")
    return Isotropic(np.asarray(arr, np.float64), _check_flag(finite_n))


# --------------------------------------------------------------------------- diagonal
@_noise_dataclass(["variances"], ["finite_n", "layout"])
class Diagonal(NoiseModel):
    """C = diag(variances) over the flattened params. Build with :func:`diagonal`."""

    variances: Any  # (d,) float64
    finite_n: bool = False
    layout: Any = None  # (treedef, shapes) when given as a pytree
    kind = "diagonal"

    def check(self, params, problem=None):
        d = _check_float_params(params)
        _check_layout(self.layout, params, "variances")
        size = int(np.shape(self.variances)[0])
        if size != d:
            raise ValueError(
                f"variances: has {size} entries but params have d = {d} parameters "
                "(flattened in the order of jax.flatten_util.ravel_pytree)"
            )

    def noise_shape(self, params, problem=None):
        return (_num_params(params),)

    def _std(self, dtype):
        return jnp.sqrt(jnp.asarray(self.variances, dtype))

    def apply(self, params, z, problem=None):
        flat, unravel = _flat(params)
        return unravel(self._std(flat.dtype) * z.astype(flat.dtype))

    def matrix(self, params, problem=None):
        flat, _ = _flat(params)
        return jnp.diag(self._std(flat.dtype))

    def covariance(self, params, problem=None):
        flat, _ = _flat(params)
        return jnp.diag(jnp.asarray(self.variances, flat.dtype))

    def __repr__(self):
        return f"diagonal(d={int(np.shape(self.variances)[0])}, finite_n={self.finite_n})"


def diagonal(variances, *, finite_n: bool = False) -> Diagonal:
    """Constant diagonal noise C = diag(variances).

    variances: a 1-D array of length d (flattened-params order), or a pytree shaped like
    the params (checked against them by ``check``). All entries finite and ≥ 0.
    """
    single = isinstance(variances, (np.ndarray, jax.Array, int, float, np.number)) or (
        isinstance(variances, (list, tuple)) and all(np.ndim(v) == 0 for v in variances)
    )  # an array (or a list of numbers); anything else is a pytree shaped like the params
    leaves = [np.asarray(variances)] if single else jax.tree_util.tree_leaves(variances)
    if not leaves:
        raise ValueError("variances: empty")
    try:
        arrs = [np.asarray(leaf, dtype=np.float64) for leaf in leaves]
    except (TypeError, ValueError) as err:
        raise ValueError(f"variances: must be numbers, got {variances!r}") from err
    if single and arrs[0].ndim != 1:
        raise ValueError(
            f"variances: an array must be 1-D (length d, flattened params); got shape {arrs[0].shape} "
            "(pass a pytree shaped like the params for other shapes)"
        )
    flat = np.concatenate([a.ravel() for a in arrs])
    if flat.size == 0:
        raise ValueError("variances: empty")
    if not np.all(np.isfinite(flat)):
        raise ValueError("variances: contains non-finite entries (NaN or inf)")
    if np.any(flat < 0):
        i = int(np.argmin(flat))
        raise ValueError(f"variances: must be ≥ 0, got {flat[i]:g} at flat index {i}")
    layout = None if single else _layout(variances)
    return Diagonal(flat, _check_flag(finite_n), layout)


# ------------------------------------------------------------------------------- full
@_noise_dataclass(["cov", "root"], ["finite_n"])
class Full(NoiseModel):
    """Constant full covariance C = cov, ξ = R z with R the symmetric square root of C
    (R = V √Λ Vᵀ from C = V Λ Vᵀ, computed once in NumPy float64). Build with :func:`full`."""

    cov: Any  # (d, d) float64, symmetrised
    root: Any  # (d, d) float64, root @ root.T = cov
    finite_n: bool = False
    kind = "full"

    def check(self, params, problem=None):
        d = _check_float_params(params)
        size = int(np.shape(self.cov)[0])
        if size != d:
            raise ValueError(
                f"cov: is {size}×{size} but params have d = {d} parameters "
                "(flattened in the order of jax.flatten_util.ravel_pytree)"
            )

    def noise_shape(self, params, problem=None):
        return (_num_params(params),)

    def apply(self, params, z, problem=None):
        flat, unravel = _flat(params)
        return unravel(jnp.asarray(self.root, flat.dtype) @ z.astype(flat.dtype))

    def matrix(self, params, problem=None):
        flat, _ = _flat(params)
        return jnp.asarray(self.root, flat.dtype)

    def covariance(self, params, problem=None):
        flat, _ = _flat(params)
        return jnp.asarray(self.cov, flat.dtype)

    def __repr__(self):
        return f"full(d={int(np.shape(self.cov)[0])}, finite_n={self.finite_n})"


def full(cov, *, finite_n: bool = False) -> Full:
    """Constant full noise covariance C = cov (d×d, symmetric positive semi-definite,
    over the flattened params). The square root is computed once, here."""
    try:
        c = np.asarray(cov)
        dtype = c.dtype if np.issubdtype(c.dtype, np.floating) else np.dtype(np.float64)
        c = c.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cov: must be a square matrix of numbers, got {cov!r}") from err
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise ValueError(f"cov: must be a non-empty square (d, d) matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cov: contains non-finite entries (NaN or inf)")
    scale = max(float(np.abs(c).max()), np.finfo(np.float64).tiny)
    asym = float(np.abs(c - c.T).max())
    if asym > np.sqrt(np.finfo(dtype).eps) * scale:
        raise ValueError(f"cov: must be symmetric, max |cov − covᵀ| = {asym:.3g} (max |cov| = {scale:.3g})")
    c = 0.5 * (c + c.T)
    w, v = np.linalg.eigh(c)
    tol = 10 * c.shape[0] * np.finfo(dtype).eps * max(float(np.abs(w).max()), np.finfo(np.float64).tiny)
    if w.min() < -tol:
        raise ValueError(
            f"cov: must be positive semi-definite, smallest eigenvalue {w.min():.6g} "
            f"(largest {w.max():.6g})"
        )
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    return Full(c, root, _check_flag(finite_n))
