"""Hyperparameters: learning rate η, batch size S, momentum β.

Each may be a scalar, an array (a grid: the runner vmaps over it, all array
fields broadcast to one grid shape) or a schedule of the SGD step k: a plain callable
(optax schedules work; static, one per program) or a :mod:`sgdsde.schedules` pytree
(its parameters are traced leaves whose grid axes join the grid, so a grid of schedules
compiles once; a batch-size schedule's value is rounded to the nearest integer). The
batch size is traced: minibatches are drawn at a static maximum size and masked, so a
grid over S or a cyclic batch-size schedule compiles once.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import is_traced
from .schedules import Schedule

Value = Union[float, int, np.ndarray, jax.Array, Callable[[Any], Any]]

__all__ = ["Hyper", "HyperValues"]

_FIELDS = ("learning_rate", "batch_size", "momentum")
_VALID = {"learning_rate": 1.0, "batch_size": 1, "momentum": 0.0}  # in range, for traced fields


class HyperValues(NamedTuple):
    """Hyperparameters resolved at one step (scalars, possibly traced)."""

    learning_rate: jax.Array
    batch_size: jax.Array
    momentum: jax.Array
    max_batch_size: int  # static: the size minibatches are drawn at


@jax.tree_util.register_pytree_node_class
class Hyper:
    """Hyper(learning_rate, batch_size, momentum=0.0).

    Scalars, arrays (a grid of configurations, broadcast together) or schedules
    ``f(step) -> value`` with ``step`` the SGD step k = 0, 1, … . Use
    :meth:`Hyper.grid` for the outer product of value lists.
    """

    def __init__(
        self,
        learning_rate: Value,
        batch_size: Value,
        momentum: Value = 0.0,
        *,
        max_batch_size: int | None = None,
    ):
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.momentum = momentum
        self.max_batch_size = max_batch_size

    # -------------------------------------------------------------- pytree
    def _values(self):
        return tuple(getattr(self, f) for f in _FIELDS)

    def tree_flatten(self):
        children, static = [], []
        for value in self._values():
            if _is_static(value):
                static.append(value)
                children.append(None)
            else:
                static.append(None)
                children.append(value)
        return tuple(children), (tuple(static), self.max_batch_size)

    @classmethod
    def tree_unflatten(cls, aux, children):
        static, max_batch = aux
        values = [s if s is not None else c for s, c in zip(static, children)]
        return cls(*values, max_batch_size=max_batch)

    def __repr__(self):
        inner = ", ".join(f"{f}={_short(v)}" for f, v in zip(_FIELDS, self._values()))
        return f"Hyper({inner})"

    # -------------------------------------------------------------- grids
    @classmethod
    def grid(cls, learning_rate: Value, batch_size: Value, momentum: Value = 0.0) -> "Hyper":
        """Outer product of the given value lists, axes in the order (η, S, β).

        ``Hyper.grid([0.1, 0.2], [8, 32])`` has grid shape (2, 2) with
        ``learning_rate[i, j] = [0.1, 0.2][i]`` and ``batch_size[i, j] = [8, 32][j]``.
        Scalars add no axis; plain callables stay schedules (not part of the grid); a
        :func:`sgdsde.schedules.stack` of n schedules is an axis of length n like a list.
        """
        given = (learning_rate, batch_size, momentum)
        gridded = [i for i, v in enumerate(given) if _grid_ndim(v) > 0]
        for i in gridded:
            if isinstance(given[i], Schedule) and _grid_ndim(given[i]) != 1:
                raise ValueError(f"{_FIELDS[i]}: a schedule in Hyper.grid needs one grid axis (sgdsde.schedules.stack), "
                                 f"got grid axes {given[i].batch_shape}")
        lengths = [_grid_length(given[i]) for i in gridded]
        mesh = np.meshgrid(*(np.arange(n) for n in lengths), indexing="ij")
        values = list(given)
        for axis, (i, index) in enumerate(zip(gridded, mesh)):
            if isinstance(given[i], Schedule):
                shape = [1] * len(lengths)
                shape[axis] = lengths[axis]
                values[i] = given[i].reshape_batch(shape).broadcast_batch(index.shape)
            else:
                values[i] = np.asarray(given[i]).ravel()[index]
        return cls(*values)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Broadcast shape of the array-valued fields (() for a single configuration)."""
        shapes = [v.batch_shape if isinstance(v, Schedule) else np.shape(v)
                  for v in self._values() if not _is_static(v)]
        try:
            return tuple(np.broadcast_shapes(*shapes))
        except ValueError as err:
            raise ValueError(
                "hyper: array-valued learning_rate, batch_size and momentum must broadcast "
                f"to one grid shape, got shapes {shapes}"
            ) from err

    def flatten_grid(self) -> "Hyper":
        """Broadcast array fields to the grid shape and flatten it to one axis of G configs."""
        shape = self.grid_shape
        size = int(np.prod(shape)) if shape else 1
        values = []
        for field, value in zip(_FIELDS, self._values()):
            if _is_static(value):
                values.append(value)
            elif isinstance(value, Schedule):
                values.append(value.broadcast_batch(shape).reshape_batch((size,)))
            elif isinstance(value, jax.core.Tracer):  # inside jit/vmap/grad: stay traced
                dtype = jnp.int32 if field == "batch_size" else None
                values.append(jnp.broadcast_to(jnp.asarray(value, dtype=dtype), shape).reshape(size))
            else:
                dtype = np.int32 if field == "batch_size" else None
                arr = np.broadcast_to(np.asarray(value, dtype=dtype), shape).reshape(size)
                values.append(jnp.asarray(arr))
        return Hyper(*values, max_batch_size=self.max_batch_size)

    # ------------------------------------------------------------ resolve
    def at(self, step) -> HyperValues:
        """The values at SGD step ``step`` (schedules evaluated, arrays passed through)."""
        lr, batch, mom = (v(step) if callable(v) else v for v in self._values())
        if isinstance(self.batch_size, Schedule):
            batch = jnp.round(batch)  # S_k = round(s(k)), half to even
        max_batch = self.max_batch_size
        if max_batch is not None and not callable(self.batch_size):
            try:
                if int(np.max(np.asarray(batch))) > max_batch:
                    raise ValueError(f"batch_size: exceeds max_batch_size = {max_batch}")
            except (TypeError, jax.errors.ConcretizationTypeError):
                pass  # traced: checked by validate() before the run
        if max_batch is None:
            try:
                max_batch = int(np.max(np.asarray(batch)))
            except (TypeError, jax.errors.ConcretizationTypeError) as err:
                raise ValueError(
                    "batch_size: traced or scheduled batch sizes need Hyper(max_batch_size=...); "
                    "sgdsde.run sets it for you"
                ) from err
        return HyperValues(
            learning_rate=jnp.asarray(lr),
            batch_size=jnp.asarray(batch, dtype=jnp.int32),
            momentum=jnp.asarray(mom),
            max_batch_size=max_batch,
        )

    def validate(self, num_examples: int | None, num_steps: int | None = None) -> "Hyper":
        """Check ranges in Python, before any compile, and return a copy with max_batch_size set.

        η > 0 and finite, S an integer in [1, N], β in [0, 1). Plain callables are
        evaluated at every step 0 … num_steps−1 (vectorised) to check them and to find
        max S; a :mod:`sgdsde.schedules` pytree is checked by its range [min, max] over
        all steps k ≥ 0 (rounded for the batch size), per grid entry, and max S is its max.
        A traced field (inside ``jax.jit``, ``vmap`` or ``grad``, e.g. d/dη through
        :func:`sgdsde.simulate`) has no values to check: only its dtype is checked, and a
        traced batch size needs ``max_batch_size``.
        """
        self.grid_shape  # raises on shapes that do not broadcast
        values = self._values()
        steps = np.arange(max(int(num_steps or 1), 1)) if any(map(_is_static, values)) else None
        checked = {}
        for field, value in zip(_FIELDS, self._values()):
            traced_schedule = isinstance(value, Schedule) and is_traced(value)
            if traced_schedule or isinstance(value, jax.core.Tracer):
                if not traced_schedule and not jnp.issubdtype(value.dtype, jnp.number):
                    raise ValueError(f"{field}: must be numbers, got dtype {value.dtype}")
                if field == "batch_size" and self.max_batch_size is None:
                    what = "a schedule with traced parameters" if traced_schedule else "a traced batch size"
                    raise ValueError(
                        f"batch_size: {what} needs Hyper(..., max_batch_size=S_max), the static size "
                        "minibatches are drawn at"
                    )
                checked[field] = np.asarray([_VALID[field]])  # placeholder: no value to check
                continue
            if isinstance(value, Schedule):
                bounds = [np.asarray(value.min, np.float64).ravel(), np.asarray(value.max, np.float64).ravel()]
                arr = np.concatenate(bounds)
                arr = np.round(arr) if field == "batch_size" else arr
                where = "schedule range"
            elif callable(value):
                try:
                    arr = np.asarray(jax.vmap(value)(jnp.asarray(steps)))
                except Exception:  # schedule not vmappable: evaluate step by step
                    arr = np.asarray([np.asarray(value(int(k))) for k in steps])
                where = "schedule values"
            else:
                arr = np.asarray(value)
                where = "values"
            if arr.size == 0:
                raise ValueError(f"{field}: empty array")
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise ValueError(f"{field}: {where} must be finite numbers, got {_short(value)}")
            checked[field] = arr
        lr, batch, mom = checked["learning_rate"], checked["batch_size"], checked["momentum"]
        if np.any(lr <= 0):
            raise ValueError(f"learning_rate: must be > 0, got min {lr.min():g}")
        if np.any(batch != np.round(batch)):
            raise ValueError("batch_size: must be integers")
        if np.any(batch < 1) or (num_examples is not None and np.any(batch > num_examples)):
            raise ValueError(
                f"batch_size: must lie in [1, N] = [1, {num_examples}], "
                f"got values in [{batch.min():g}, {batch.max():g}]"
            )
        if np.any(mom < 0) or np.any(mom >= 1):
            raise ValueError(f"momentum: must lie in [0, 1), got values in [{mom.min():g}, {mom.max():g}]")
        needed = int(batch.max()) if not isinstance(self.batch_size, jax.core.Tracer) else self.max_batch_size
        if self.max_batch_size is not None and self.max_batch_size < needed:
            raise ValueError(
                f"max_batch_size: {self.max_batch_size} is smaller than the largest batch size {needed}"
            )
        return Hyper(*self._values(), max_batch_size=self.max_batch_size or needed)


def _is_static(value) -> bool:
    """A plain callable schedule: static in the pytree (a :mod:`~sgdsde.schedules` pytree is not)."""
    return callable(value) and not isinstance(value, Schedule)


def _grid_ndim(value) -> int:
    if isinstance(value, Schedule):
        return len(value.batch_shape)
    return 0 if callable(value) else np.ndim(value)


def _grid_length(value) -> int:
    return value.batch_shape[0] if isinstance(value, Schedule) else np.asarray(value).size


def _short(value) -> str:
    if isinstance(value, Schedule):
        return f"{type(value).__name__}{value.batch_shape}"
    if callable(value):
        return getattr(value, "__name__", "schedule")
    arr = np.asarray(value)
    if arr.ndim == 0:
        item = arr.item()
        return f"{item:g}" if isinstance(item, (int, float)) else repr(item)
    return f"array{arr.shape}"

