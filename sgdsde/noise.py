"""Noise models: what replaces the minibatch gradient noise in an SDE model of SGD.

A noise model describes a per-example gradient-noise covariance C(θ) = B(θ) B(θ)ᵀ
(docs/theory.md §1) and draws ξ ~ N(0, C(θ)). It is **not** divided by the batch size:
the SDE steppers of :mod:`sgdsde.sde` apply the factor η/√S (and the finite-N factor,
below), so one noise model serves every (η, S) of a hyperparameter grid.

Models (all frozen; the ones holding arrays are pytrees):

- :func:`isotropic` ``(sigma2)``:  C = σ² I (any parameter pytree).
- :func:`diagonal` ``(variances)``: C = diag(variances), constant.
- :func:`full` ``(cov)``:           C = cov, constant d×d; sampled with a square root
  computed once, in NumPy float64, when the model is built (never per step).
- :func:`empirical` ``()``:         the problem's own C(θ) (state dependent), sampled
  exactly by the weighted-gradient identity of :meth:`sgdsde.Problem.noise_sample`
  without forming any d×d matrix (works for networks).
- :func:`from_function` ``(b)``:    a user B(θ), a d×k matrix; ξ = B(θ) z, z ~ N(0, I_k).

Matrices act on the flattened parameters, in the order of
``jax.flatten_util.ravel_pytree(params)``; d is the total number of parameters.

Interface of every model ``m``::

    m.sample(key, params, problem)     -> ξ, a pytree like params, ξ ~ N(0, C(θ))
    m.covariance(params, problem)      -> C(θ), (d, d) over the flattened params
    m.apply(params, z, problem)        -> B(θ) z (a pytree like params)
    m.noise_shape(params, problem)     -> the shape of z (static)
    m.matrix(params, problem)          -> B(θ), (d, k), materialised (used by the
                                          diffrax adapter; small problems only)
    m.check(params, problem=None)      -> None, or ValueError naming the argument
    m.variance_factor(S, N)            -> (N − S)/(N − 1) if finite_n else 1
    m.finite_n, m.state_dependent      (static flags)

``sample(key, …)`` equals ``apply(params, normal(key, noise_shape), …)`` with z drawn in
the parameters' float dtype, so two steppers given the same key see the same z.

**Finite-N factor.** With ``finite_n=True`` the noise models minibatches drawn without
replacement (``sgd(sampling="subset")``): Cov(ĝ_S) = (C/S)(N − S)/(N − 1). The factor
depends on the batch size S (a traced, possibly gridded or scheduled hyperparameter) and
on N (the problem's), which the *stepper* knows, so ``sample`` and ``covariance`` always
describe C itself and the stepper multiplies the noise amplitude by
√(variance_factor(S, N)). (N = 1 forces S = N, full-batch: the factor is 0.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _threefry
from .problem import _float_dtype

PyTree = Any

__all__ = [
    "NoiseModel",
    "Isotropic",
    "Diagonal",
    "Full",
    "Empirical",
    "FromFunction",
    "isotropic",
    "diagonal",
    "full",
    "empirical",
    "from_function",
    "is_noise_model",
]


# ----------------------------------------------------------------------------- helpers
def _num_params(params: PyTree) -> int:
    """d, the number of parameters (static; works on tracers and ShapeDtypeStructs)."""
    return int(sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params)))


def _check_float_params(params: PyTree, name: str = "params") -> int:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{name}: empty parameter pytree")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(f"{name}: parameters must be floating point, got dtype {jnp.result_type(leaf)}")
    return _num_params(params)


def _flat(params: PyTree):
    return ravel_pytree(params)


def _normal(key, shape, dtype):
    # jax.random.normal, bit for bit, by an unrolled Threefry that XLA fuses (see _threefry)
    return _threefry.normal(key, shape, dtype)


def _layout(tree: PyTree):
    """(treedef, leaf shapes): to check that a pytree-valued argument matches params."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple(tuple(np.shape(leaf)) for leaf in leaves)


def _check_layout(layout, params: PyTree, name: str) -> None:
    if layout is None:
        return
    treedef, shapes = layout
    got_def, got_shapes = _layout(params)
    if got_def != treedef or got_shapes != shapes:
        raise ValueError(
            f"{name}: was given as a pytree with structure {treedef} and leaf shapes {list(shapes)}, "
            f"but params have structure {got_def} and leaf shapes {list(got_shapes)}"
        )


# ------------------------------------------------------------------------------- base
class NoiseModel:
    """Base class of the noise models (see the module docstring for the interface)."""

    finite_n: bool
    state_dependent: bool = False  # C depends on θ (or on the problem)
    kind: str = "noise"

    # -- subclasses define noise_shape, apply, matrix, covariance, check
    def noise_shape(self, params: PyTree, problem=None) -> tuple[int, ...]:
        raise NotImplementedError

    def apply(self, params: PyTree, z: jax.Array, problem=None) -> PyTree:
        raise NotImplementedError

    def matrix(self, params: PyTree, problem=None) -> jax.Array:
        raise NotImplementedError

    def covariance(self, params: PyTree, problem=None) -> jax.Array:
        b = self.matrix(params, problem)
        return b @ b.T

    def check(self, params: PyTree, problem=None) -> None:
        _check_float_params(params)

    def sample(self, key: jax.Array, params: PyTree, problem=None) -> PyTree:
        """ξ ~ N(0, C(θ)) as a pytree like params (not divided by S; no finite-N factor)."""
        z = _normal(key, self.noise_shape(params, problem), _float_dtype(params))
        return self.apply(params, z, problem)

    def variance_factor(self, batch_size, num_examples: int):
        """(N − S)/(N − 1) if ``finite_n`` (0 when N = 1), else 1; multiplies C."""
        if not self.finite_n:
            return 1.0
        s = jnp.asarray(batch_size)
        n = int(num_examples)
        if n <= 1:
            return jnp.zeros_like(s, dtype=jnp.result_type(float))
        return (n - s) / (n - 1.0)


def is_noise_model(obj) -> bool:
    return isinstance(obj, NoiseModel)


def _noise_dataclass(data_fields, meta_fields):
    """Frozen dataclass registered as a pytree (arrays are leaves, flags are static)."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
        return jax.tree_util.register_dataclass(cls, data_fields=list(data_fields), meta_fields=list(meta_fields))

    return wrap


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

    finite_n: apply (N − S)/(N − 1) (minibatches without replacement); see the module docstring.
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


# -------------------------------------------------------------------------- empirical
@_noise_dataclass([], ["finite_n"])
class Empirical(NoiseModel):
    """The problem's own per-example gradient covariance C(θ). Build with :func:`empirical`."""

    finite_n: bool = False
    state_dependent = True
    kind = "empirical"

    def _need(self, problem):
        if problem is None:
            raise ValueError("problem: noise.empirical() needs the problem (its data) to sample C(θ)")

    def noise_shape(self, params, problem=None):
        self._need(problem)
        return (problem.num_examples,)

    def apply(self, params, z, problem=None):
        """B(θ) z = Σ_i z_i (∇l_i − ḡ)/√N, by one weighted-gradient evaluation."""
        self._need(problem)
        n = problem.num_examples
        z = z.astype(_float_dtype(params))
        weights = (z - jnp.mean(z)) / jnp.sqrt(jnp.asarray(n, z.dtype))
        return jax.grad(problem.weighted_loss)(params, weights)

    def sample(self, key, params, problem=None):
        self._need(problem)
        return problem.noise_sample(key, params)

    def matrix(self, params, problem=None):
        """B(θ) = (∇l_i − ḡ)ᵀ/√N, a d×N matrix (forms all per-example gradients)."""
        self._need(problem)
        grads = problem.per_example_grads(params)
        flat = jax.vmap(lambda tree: ravel_pytree(tree)[0])(grads)
        centred = flat - jnp.mean(flat, axis=0)
        return centred.T / jnp.sqrt(jnp.asarray(flat.shape[0], flat.dtype))

    def covariance(self, params, problem=None):
        self._need(problem)
        return problem.gradient_covariance(params, "full")

    def check(self, params, problem=None):
        _check_float_params(params)

    def __repr__(self):
        return f"empirical(finite_n={self.finite_n})"


def empirical(*, finite_n: bool = False) -> Empirical:
    """The problem's own C(θ) (state dependent), sampled exactly by the weighted-gradient
    identity (one backward pass, no d×d matrix). ``finite_n=True`` models
    ``sgd(sampling="subset")``; the default models ``sampling="iid"``."""
    return Empirical(_check_flag(finite_n))


# ---------------------------------------------------------------------- from_function
@_noise_dataclass([], ["b", "finite_n"])
class FromFunction(NoiseModel):
    """A user diffusion matrix B(θ), d×k; C = B Bᵀ. Build with :func:`from_function`."""

    b: Callable[[PyTree], jax.Array]
    finite_n: bool = False
    state_dependent = True
    kind = "from_function"

    def _shape(self, params):
        structs = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)), params)
        try:
            out = jax.eval_shape(self.b, structs)
        except Exception as err:
            raise ValueError(f"b: evaluating b(params) failed: {type(err).__name__}: {err}") from err
        if not isinstance(out, jax.ShapeDtypeStruct):
            raise ValueError(f"b: must return one (d, k) array, got {out}")
        return out.shape

    def check(self, params, problem=None):
        d = _check_float_params(params)
        shape = self._shape(params)
        if len(shape) != 2 or shape[0] != d or shape[1] < 1:
            raise ValueError(
                f"b: must return a (d, k) matrix with d = {d} (the number of parameters, flattened "
                f"in ravel_pytree order) and k ≥ 1, got shape {tuple(shape)}"
            )

    def noise_shape(self, params, problem=None):
        return (int(self._shape(params)[1]),)

    def apply(self, params, z, problem=None):
        flat, unravel = _flat(params)
        return unravel(self.matrix(params, problem) @ z.astype(flat.dtype))

    def matrix(self, params, problem=None):
        flat, _ = _flat(params)
        return jnp.asarray(self.b(params), flat.dtype)

    def __repr__(self):
        return f"from_function({getattr(self.b, '__name__', 'b')}, finite_n={self.finite_n})"


def from_function(b: Callable[[PyTree], jax.Array], *, finite_n: bool = False) -> FromFunction:
    """A user noise factor: ``b(params) -> (d, k)`` matrix B(θ) over the flattened params
    (ravel_pytree order); ξ = B(θ) z with z ~ N(0, I_k), so C(θ) = B Bᵀ. ``b`` is treated
    as state dependent (the diffrax adapter then allows only Itô solvers)."""
    if not callable(b):
        raise ValueError(f"b: must be a callable b(params) -> (d, k) matrix, got {type(b).__name__}")
    return FromFunction(b, _check_flag(finite_n))


def _check_flag(finite_n) -> bool:
    if not isinstance(finite_n, (bool, np.bool_)):
        raise ValueError(f"finite_n: must be True or False, got {finite_n!r}")
    return bool(finite_n)
