"""Schedules of the SGD step k whose parameters are pytree leaves.

A plain callable ``f(k)`` (an optax schedule) is static in :class:`sgdsde.Hyper`: a grid
of such schedules cannot share one compiled program. The schedules here are registered
pytrees (frozen dataclasses with ``__call__(step)``): their parameters are traced, so
:func:`stack` of schedules — or of any schedules' values along a grid axis — is vmapped
like an array field of ``Hyper``, and a grid of schedules runs in one program.

Every schedule reads the SGD step k = 0, 1, … (not SME time) and reports its range over
all k ≥ 0, :attr:`Schedule.min` / :attr:`Schedule.max` (closed forms, per grid entry), so
``Hyper.validate`` checks it before anything compiles. Parameters may carry leading
*batch* axes (a grid of schedules); a schedule's value at a step then has that shape.

- :func:`constant` — v.
- :func:`piecewise_constant` — v_j for b_j ≤ k < b_{j+1} (step decay).
- :func:`cyclic` — between ``low`` and ``high`` with a period of P steps, ``"triangle"``
  (Smith 2015's triangular cyclic learning rate) or ``"square"`` (the Three Factors
  paper's "discrete" schedules, docs/schedules.md).
- :func:`linear_warmup`, :func:`cosine` — warm-up and cosine decay.
- :func:`stack` — many schedules as one, with a leading grid axis.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Schedule",
    "Constant",
    "PiecewiseConstant",
    "Cyclic",
    "LinearWarmup",
    "Cosine",
    "Choice",
    "constant",
    "piecewise_constant",
    "cyclic",
    "linear_warmup",
    "cosine",
    "stack",
]

SHAPES = ("triangle", "square")


def _register(cls):
    """A frozen dataclass registered as a pytree: ``_leaves`` are children, the rest static."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    data = [n for n in names if n in cls._leaves]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=[n for n in names if n not in data])


def _leaf(value, name: str, integer: bool = False):
    """A parameter as an array (a tracer passes through), checked for finite numbers."""
    if isinstance(value, jax.core.Tracer):
        return value
    arr = np.asarray(value)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite numbers, got {value!r}")
    if integer:
        if np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: must be integers (SGD steps), got {value!r}")
        arr = arr.astype(np.int64)
    return arr


def _concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


class Schedule:
    """Base of the pytree schedules: ``schedule(step)`` is the value at SGD step k.

    Subclasses list their parameters in ``_leaves`` as ``{name: event ndim}`` (the number
    of trailing axes that belong to one schedule; leading axes are grid axes).
    """

    _leaves: ClassVar[dict] = {}

    def __call__(self, step):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    # --------------------------------------------------------------- range
    @property
    def min(self):
        """Lower bound of the values over all steps k ≥ 0 (batch shape)."""
        return self._bounds()[0]

    @property
    def max(self):
        """Upper bound of the values over all steps k ≥ 0 (batch shape)."""
        return self._bounds()[1]

    def _bounds(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    # --------------------------------------------------------------- grid axes
    def _children(self) -> dict:
        return {name: getattr(self, name) for name in self._leaves}

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The grid axes of the parameters (() for one schedule)."""
        shapes = []
        for name, value in self._children().items():
            if isinstance(value, Schedule):
                shapes.append(value.batch_shape)
            elif isinstance(value, tuple):
                shapes.extend(v.batch_shape for v in value)
            else:
                shape = np.shape(value)
                shapes.append(shape[: len(shape) - self._leaves[name]])
        try:
            return tuple(np.broadcast_shapes(*shapes))
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: parameters' grid axes do not broadcast: {shapes}") from err

    def _map_batch(self, fn) -> "Schedule":
        """Apply ``fn(array, event_ndim)`` to every parameter (recursing into schedules)."""
        new = {}
        for name, value in self._children().items():
            if isinstance(value, Schedule):
                new[name] = value._map_batch(fn)
            elif isinstance(value, tuple):
                new[name] = tuple(v._map_batch(fn) for v in value)
            else:
                new[name] = fn(value, self._leaves[name])
        return dataclasses.replace(self, **new)

    def broadcast_batch(self, shape: Sequence[int]) -> "Schedule":
        """Every parameter broadcast to grid shape ``shape`` (+ its own event axes)."""
        shape = tuple(shape)

        def one(x, event):
            event_shape = np.shape(x)[np.ndim(x) - event:] if event else ()
            return jnp.broadcast_to(x, shape + event_shape)

        return self._map_batch(one)

    def reshape_batch(self, shape: Sequence[int]) -> "Schedule":
        """Grid axes (of every parameter, broadcast to :attr:`batch_shape` first) reshaped
        to ``shape``; event axes kept."""
        shape = tuple(shape)

        def one(x, event):
            event_shape = np.shape(x)[np.ndim(x) - event:] if event else ()
            return jnp.reshape(x, shape + event_shape)

        return self.broadcast_batch(self.batch_shape)._map_batch(one)


@_register
class Constant(Schedule):
    """η_k = value."""

    value: Any
    _leaves: ClassVar[dict] = {"value": 0}

    def __call__(self, step):
        return jnp.asarray(self.value)

    def _bounds(self):
        return self.value, self.value


@_register
class PiecewiseConstant(Schedule):
    """η_k = values[j] for boundaries[j−1] ≤ k < boundaries[j] (j = #{b ≤ k})."""

    boundaries: Any
    values: Any
    _leaves: ClassVar[dict] = {"boundaries": 1, "values": 1}

    def __call__(self, step):
        count = jnp.sum(jnp.asarray(step) >= jnp.asarray(self.boundaries), axis=-1)
        values = jnp.asarray(self.values)
        count = jnp.broadcast_to(count, values.shape[:-1])
        return jnp.take_along_axis(values, count[..., None], axis=-1)[..., 0]

    def _bounds(self):
        xp = np if _concrete(self.values) else jnp
        return xp.min(self.values, axis=-1), xp.max(self.values, axis=-1)


@_register
class Cyclic(Schedule):
    """Period P steps, phase r = (k + offset) mod P (integers, exact).

    triangle: low + (high − low)(1 − |2r − P|/P): low at r = 0, high at r = P/2.
    square: low for 2r < P, high for 2r ≥ P (half a period at each level).
    """

    low: Any
    high: Any
    period: Any
    offset: Any
    shape: str = "triangle"
    _leaves: ClassVar[dict] = {"low": 0, "high": 0, "period": 0, "offset": 0}

    def __call__(self, step):
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        period = jnp.asarray(self.period)
        r = jnp.mod(jnp.asarray(step).astype(period.dtype) + jnp.asarray(self.offset).astype(period.dtype), period)
        if self.shape == "square":
            return jnp.where(2 * r < period, low, high)
        dtype = jnp.result_type(low, high, float)
        fraction = jnp.abs(2 * r - period).astype(dtype) / period.astype(dtype)
        return low + (high - low) * (1 - fraction)

    def _bounds(self):
        return _between(self.low, self.high)


def _ramp(start, stop, steps, step):
    """(start, stop, min(step, steps)/steps) as arrays of one floating dtype: the
    progress of a schedule that moves from ``start`` to ``stop`` over ``steps`` steps."""
    start, stop = jnp.asarray(start), jnp.asarray(stop)
    dtype = jnp.result_type(start, stop, float)
    steps = jnp.asarray(steps).astype(dtype)
    return start, stop, jnp.minimum(jnp.asarray(step).astype(dtype), steps) / steps


def _between(a, b):
    """(min, max) of two bounds, in NumPy when both are concrete (checks before tracing)."""
    xp = np if _concrete(a, b) else jnp
    return xp.minimum(a, b), xp.maximum(a, b)


@_register
class LinearWarmup(Schedule):
    """η_k = init + (peak − init)·min(k, W)/W: linear over W steps, then peak."""

    init: Any
    peak: Any
    warmup_steps: Any
    _leaves: ClassVar[dict] = {"init": 0, "peak": 0, "warmup_steps": 0}

    def __call__(self, step):
        init, peak, fraction = _ramp(self.init, self.peak, self.warmup_steps, step)
        return init + (peak - init) * fraction

    def _bounds(self):
        return _between(self.init, self.peak)


@_register
class Cosine(Schedule):
    """η_k = end + (init − end)·½(1 + cos(π min(k, T)/T)): cosine decay over T steps, then end."""

    init: Any
    end: Any
    decay_steps: Any
    _leaves: ClassVar[dict] = {"init": 0, "end": 0, "decay_steps": 0}

    def __call__(self, step):
        init, end, fraction = _ramp(self.init, self.end, self.decay_steps, step)
        return end + (init - end) * 0.5 * (1 + jnp.cos(jnp.pi * fraction))

    def _bounds(self):
        return _between(self.init, self.end)


@_register
class Choice(Schedule):
    """options[index](k): schedules of different kinds along a grid axis (:func:`stack`).

    Every option is evaluated and the value of option ``index`` selected, exactly."""

    index: Any
    options: tuple
    _leaves: ClassVar[dict] = {"index": 0, "options": None}

    def _select(self, values):
        index = jnp.asarray(self.index)
        out = values[0]
        for i, value in enumerate(values[1:], start=1):
            out = jnp.where(index == i, value, out)
        return jnp.broadcast_to(out, jnp.broadcast_shapes(index.shape, *(jnp.shape(v) for v in values)))

    def __call__(self, step):
        values = [option(step) for option in self.options]
        dtype = jnp.result_type(*values)
        return self._select([jnp.asarray(v, dtype) for v in values])

    def _bounds(self):
        lows, highs = zip(*(option._bounds() for option in self.options))
        if _concrete(self.index, *lows, *highs):
            index = np.asarray(self.index)
            pick = lambda vals: np.choose(index, np.broadcast_arrays(*[np.asarray(v, np.float64) for v in vals]))
            return pick(lows), pick(highs)
        return self._select(list(lows)), self._select(list(highs))


# ------------------------------------------------------------------- factories
def constant(value) -> Constant:
    """The schedule η_k = ``value`` (an array gives a grid of constants)."""
    return Constant(_leaf(value, "value"))


def piecewise_constant(boundaries, values) -> PiecewiseConstant:
    """Step decay: ``values[j]`` from step ``boundaries[j−1]`` (inclusive) to ``boundaries[j]``.

    ``boundaries`` (…, B) non-decreasing SGD steps, ``values`` (…, B + 1)."""
    boundaries = _leaf(boundaries, "boundaries", integer=True)
    values = _leaf(values, "values")
    if np.ndim(boundaries) < 1 or np.ndim(values) < 1 or np.shape(values)[-1] != np.shape(boundaries)[-1] + 1:
        raise ValueError(
            f"values: needs one more entry than boundaries along the last axis, got shapes "
            f"{np.shape(values)} and {np.shape(boundaries)}"
        )
    if _concrete(boundaries) and np.any(np.diff(boundaries, axis=-1) < 0):
        raise ValueError(f"boundaries: must be non-decreasing steps, got {boundaries!r}")
    return PiecewiseConstant(boundaries, values)


def cyclic(low, high, period, shape: str = "triangle", *, offset=0) -> Cyclic:
    """A cycle between ``low`` and ``high`` of ``period`` SGD steps, starting at ``low``
    (``offset`` steps shift it: ``offset = period // 2`` starts at ``high``).

    shape ``"triangle"``: linear up for P/2 steps, down for P/2; ``"square"``: ``low`` for
    the first half of each period, ``high`` for the second. For a batch-size cycle Hyper
    rounds the value to the nearest integer."""
    if shape not in SHAPES:
        raise ValueError(f"shape: must be one of {SHAPES}, got {shape!r}")
    low, high = _leaf(low, "low"), _leaf(high, "high")
    period, offset = _leaf(period, "period", integer=True), _leaf(offset, "offset", integer=True)
    if _concrete(period) and np.any(period < 1):
        raise ValueError(f"period: must be ≥ 1 SGD step, got {period!r}")
    return Cyclic(low, high, period, offset, shape)


def linear_warmup(init, peak, warmup_steps) -> LinearWarmup:
    """From ``init`` at k = 0 linearly to ``peak`` at k = ``warmup_steps``, then ``peak``."""
    steps = _leaf(warmup_steps, "warmup_steps", integer=True)
    if _concrete(steps) and np.any(steps < 1):
        raise ValueError(f"warmup_steps: must be ≥ 1, got {warmup_steps!r}")
    return LinearWarmup(_leaf(init, "init"), _leaf(peak, "peak"), steps)


def cosine(init, end, decay_steps) -> Cosine:
    """Cosine decay from ``init`` at k = 0 to ``end`` at k = ``decay_steps``, then ``end``."""
    steps = _leaf(decay_steps, "decay_steps", integer=True)
    if _concrete(steps) and np.any(steps < 1):
        raise ValueError(f"decay_steps: must be ≥ 1, got {decay_steps!r}")
    return Cosine(_leaf(init, "init"), _leaf(end, "end"), steps)


def stack(schedules: Sequence[Schedule | float]) -> Schedule:
    """Schedules (or numbers: constants) as one schedule with a leading grid axis of
    length n, so ``Hyper`` vmaps over them in one program.

    Schedules of one kind and structure stack their parameters (``cyclic``s of different
    periods: one ``Cyclic`` with parameters of shape (n,)); different kinds become a
    :class:`Choice` that evaluates each and selects, exactly."""
    items = [s if isinstance(s, Schedule) else constant(s) for s in schedules]
    if not items:
        raise ValueError("schedules: need at least one schedule")
    for i, s in enumerate(items):
        if s.batch_shape != ():
            raise ValueError(f"schedules: item {i} already has grid axes {s.batch_shape}; stack single schedules")
    structures = {jax.tree_util.tree_structure(s) for s in items}
    event_shapes = {tuple(np.shape(x) for x in jax.tree_util.tree_leaves(s)) for s in items}
    if len(structures) == 1 and len(event_shapes) == 1:
        return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *items)
    return Choice(np.arange(len(items)), tuple(items))
