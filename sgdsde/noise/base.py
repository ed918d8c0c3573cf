"""The :class:`NoiseModel` base class (sampling, finite-N factor) and what the models share:
parameter counting and checks, flattening, the pytree-dataclass decorator, flag checks."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import _threefry
from ..problem import _float_dtype

PyTree = Any


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
    """Base class of the noise models (see :mod:`sgdsde.noise` for the interface)."""

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


def _check_flag(finite_n) -> bool:
    if not isinstance(finite_n, (bool, np.bool_)):
        raise ValueError(f"finite_n: must be True or False, got {finite_n!r}")
    return bool(finite_n)
