"""The empirical-risk problem: per-example loss, data, optional regulariser.

L(θ) = (1/N) Σ_i l_i(θ) + R(θ),  g = ∇L,  C(θ) = (1/N) Σ_i (∇l_i − ḡ)(∇l_i − ḡ)ᵀ
with ḡ = (1/N) Σ_i ∇l_i (the regulariser is deterministic and carries no noise).

``params`` may be any pytree; the data is a pytree whose leaves share a leading
axis of length N (the number of examples).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial
from jaxtyping import Array, Float, Int

from ._checks import eval_shape_cached

PyTree = Any

__all__ = ["Problem", "NotScalarError"]


def _num_examples(data: PyTree) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data: must contain at least one array with a leading example axis")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) > 0 else None for leaf in leaves}
    if None in sizes:
        raise ValueError("data: every leaf needs a leading example axis (found a scalar leaf)")
    if len(sizes) != 1:
        raise ValueError(
            f"data: all leaves must share the leading (example) axis length, got lengths {sorted(sizes)}"
        )
    (n,) = sizes
    if n < 1:
        raise ValueError("data: needs at least one example (leading axis has length 0)")
    return int(n)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """An empirical risk L(θ) = (1/N) Σ_i l(θ, x_i) + R(θ).

    Args:
      per_example_loss: ``l(params, example) -> scalar``; ``example`` is one slice of
        ``data`` along its leading axis.
      data: pytree of arrays with a common leading axis N.
      regularizer: optional ``R(params) -> scalar`` added to the loss (no noise).
      info: optional static metadata (exact minima, Hessians, noise covariance, …)
        documented by the ready-made problems in :mod:`sgdsde.problems`.
      full_loss: optional closed form of the data average (1/N) Σ_i l(θ, x_i) (without
        R). When given, ``loss`` and ``grad`` use it instead of a pass over the N
        examples — what makes SDE simulations of toy landscapes cheap. It must equal the
        average (the ready-made problems' tests check this to rounding).

    A Problem is a pytree (the data are its leaves), so it can be passed through
    ``jax.jit`` without being baked into the compiled program as constants.
    """

    per_example_loss: Callable[[PyTree, PyTree], Array]
    data: PyTree
    regularizer: Callable[[PyTree], Array] | None = None
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    full_loss: Callable[[PyTree], Array] | None = None

    def __post_init__(self):
        if not callable(self.per_example_loss):
            raise ValueError("per_example_loss: must be a callable l(params, example) -> scalar")
        if self.regularizer is not None and not callable(self.regularizer):
            raise ValueError("regularizer: must be None or a callable R(params) -> scalar")
        if self.full_loss is not None and not callable(self.full_loss):
            raise ValueError("full_loss: must be None or a callable L(params) -> scalar")
        _num_examples(self.data)

    # pytree protocol: data are children, functions and metadata are static.
    def tree_flatten(self):
        return (self.data,), (self.per_example_loss, self.regularizer, _Static(self.info), self.full_loss)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "per_example_loss", aux[0])
        object.__setattr__(obj, "data", children[0])
        object.__setattr__(obj, "regularizer", aux[1])
        object.__setattr__(obj, "info", aux[2].value)
        object.__setattr__(obj, "full_loss", aux[3])
        return obj

    # ------------------------------------------------------------------ sizes
    @property
    def num_examples(self) -> int:
        """N, the number of training examples (static)."""
        return _num_examples(self.data)

    # ------------------------------------------------------------------ losses
    def per_example_losses(self, params: PyTree) -> Float[Array, " N"]:
        """l_i(θ) for every example, shape (N,)."""
        return _scalar(jax.vmap(self.per_example_loss, in_axes=(None, 0))(params, self.data), "per_example_loss", True)

    def _regularization(self, params: PyTree) -> Array:
        if self.regularizer is None:
            return jnp.zeros((), dtype=_float_dtype(params))
        return _scalar(self.regularizer(params), "regularizer")

    def weighted_loss(self, params: PyTree, weights: Float[Array, " N"]) -> Array:
        """Σ_i w_i l_i(θ) over the whole data set (no regulariser)."""
        return jnp.sum(weights * self.per_example_losses(params))

    def data_loss(self, params: PyTree) -> Array:
        """(1/N) Σ_i l_i(θ), from ``full_loss`` when given."""
        if self.full_loss is not None:
            return _scalar(self.full_loss(params), "full_loss")
        return jnp.mean(self.per_example_losses(params))

    def loss(self, params: PyTree) -> Array:
        """L(θ) = (1/N) Σ_i l_i(θ) + R(θ)."""
        return self.data_loss(params) + self._regularization(params)

    def grad(self, params: PyTree) -> PyTree:
        """g(θ) = ∇L(θ), the full-batch gradient (including the regulariser)."""
        return jax.grad(self.loss)(params)

    def minibatch_loss(
        self, params: PyTree, indices: Int[Array, " B"], weights: Float[Array, " B"]
    ) -> Array:
        """Σ_b w_b l_{i_b}(θ) + R(θ) for a minibatch given by indices and weights."""
        batch = jax.tree_util.tree_map(lambda leaf: jnp.take(leaf, indices, axis=0), self.data)
        losses = _scalar(jax.vmap(self.per_example_loss, in_axes=(None, 0))(params, batch), "per_example_loss", True)
        return jnp.sum(weights * losses) + self._regularization(params)

    def minibatch_grad(
        self, params: PyTree, indices: Int[Array, " B"], weights: Float[Array, " B"]
    ) -> PyTree:
        """ĝ = Σ_b w_b ∇l_{i_b}(θ) + ∇R(θ).

        Weights 1/S on the first S of a batch drawn at a static maximum size and 0
        elsewhere give the size-S minibatch gradient, so a traced batch size works
        by masking (one backward pass over the padded batch).
        """
        return jax.grad(self.minibatch_loss)(params, indices, weights)

    # ---------------------------------------------------------------- noise
    def per_example_grads(self, params: PyTree) -> PyTree:
        """∇l_i(θ) for every example: a pytree like params with a leading axis N."""
        return jax.vmap(jax.grad(self.per_example_loss), in_axes=(None, 0))(params, self.data)

    def gradient_covariance(
        self, params: PyTree, kind: Literal["full", "diagonal", "trace"] = "full"
    ) -> Array:
        """C(θ) = (1/N) Σ_i (∇l_i − ḡ)(∇l_i − ḡ)ᵀ over the flattened parameters.

        kind="full" gives the d×d matrix, "diagonal" its diagonal (d,), "trace" tr C.
        Units: squared gradient units; the minibatch gradient covariance is C/S
        (with replacement) or (C/S)(N−S)/(N−1) (a random subset).
        """
        if kind not in ("full", "diagonal", "trace"):
            raise ValueError(f"kind: must be 'full', 'diagonal' or 'trace', got {kind!r}")
        grads = self.per_example_grads(params)
        flat = jax.vmap(lambda tree: ravel_pytree(tree)[0])(grads)  # (N, d)
        centred = flat - jnp.mean(flat, axis=0)
        n = flat.shape[0]
        if kind == "full":
            return centred.T @ centred / n
        diagonal = jnp.mean(centred**2, axis=0)
        return diagonal if kind == "diagonal" else jnp.sum(diagonal)

    def noise_sample(self, key: Array, params: PyTree) -> PyTree:
        """An exact draw ξ ~ N(0, C(θ)), as a pytree like params, without forming C.

        ξ = ∇_θ [(1/√N) Σ_i (z_i − z̄) l_i(θ)],  z_i ~ N(0, 1) i.i.d.
        which equals (1/√N) Σ_i z_i (∇l_i − ḡ): one weighted-gradient evaluation.
        """
        n = self.num_examples
        z = jax.random.normal(key, (n,), dtype=_float_dtype(params))
        weights = (z - jnp.mean(z)) / jnp.sqrt(jnp.asarray(n, z.dtype))
        return jax.grad(self.weighted_loss)(params, weights)

    # ------------------------------------------------------------ validation
    def check_params(self, params: PyTree, name: str = "init_params") -> None:
        """Raise ValueError if params are non-finite or do not fit the loss (no compile).

        The user functions are checked here, where params are first known (a Problem is
        built without them): ``per_example_loss``, ``regularizer`` and ``full_loss`` must
        each return a floating-point scalar (per example), else :class:`NotScalarError`
        (a ValueError) names the function. ``loss``, ``grad`` and the minibatch methods
        check the same while tracing, so a direct call fails just as clearly."""
        leaves = jax.tree_util.tree_leaves(params)
        if not leaves:
            raise ValueError(f"{name}: empty parameter pytree")
        for leaf in leaves:
            if isinstance(leaf, jax.core.Tracer):
                return
            arr = np.asarray(leaf)
            if not np.issubdtype(arr.dtype, np.inexact):
                raise ValueError(f"{name}: parameters must be floating point, got dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
        try:  # every user function runs here (abstractly), so shape errors surface now
            # cached by shapes: a warm sd.run does not trace the loss again
            eval_shape_cached(Partial(type(self).per_example_losses, self), params)
            eval_shape_cached(Partial(type(self).loss, self), params)
        except NotScalarError:
            raise
        except Exception as err:
            raise ValueError(
                f"{name}: does not fit the problem's per_example_loss/data "
                f"(evaluating the loss failed: {type(err).__name__}: {err})"
            ) from err


class NotScalarError(ValueError):
    """A user function (per_example_loss, regularizer, full_loss) does not return a
    floating-point scalar."""


def _scalar(value, what: str, per_example: bool = False) -> Array:
    """``value`` if it is a floating scalar — with ``per_example``, one per example: a (B,)
    vector of vmapped losses — else :class:`NotScalarError` naming ``what`` (a static check
    of the shape, free under jit). A Python number is taken as a scalar."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = jnp.asarray(value, dtype=jnp.result_type(float))
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    rank = 1 if per_example else 0
    if shape is None or len(shape) != rank or not jnp.issubdtype(dtype, jnp.inexact):
        if shape is None:
            shown = f"a {type(value).__name__}"
        elif per_example:
            shown = f"shape {shape[1:]} per example, dtype {dtype}"
        else:
            shown = f"shape {shape}, dtype {dtype}"
        raise NotScalarError(f"{what}: must return a floating-point scalar, got {shown}")
    return value


def _float_dtype(params: PyTree):
    for leaf in jax.tree_util.tree_leaves(params):
        dtype = jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.floating):
            return dtype
    return jnp.result_type(float)


class _Static:
    """Wraps static metadata so that it compares by identity in pytree aux data."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _Static) and other.value is self.value

    def __hash__(self):
        return id(self.value)
