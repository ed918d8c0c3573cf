"""State-dependent noise models: :func:`empirical` (the problem's own C(θ)) and
:func:`from_function` (a user factor B(θ))."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from .._checks import eval_shape_cached
from ..problem import _float_dtype
from .base import NoiseModel, PyTree, _check_flag, _check_float_params, _flat, _noise_dataclass


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
        try:
            out = eval_shape_cached(Partial(self.b), params)  # once per b and shapes (each sd.run checks)
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
