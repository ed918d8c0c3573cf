"""Classification metrics: plain functions and run observers.

Plain functions (pure, jit- and vmap-able over params):

- ``cross_entropy(model, params, x, y)`` = (1/n) Σ_i −log softmax(f_θ(x_i))_{y_i}
  (no regulariser);
- ``accuracy(model, params, x, y)`` = (1/n) Σ_i [argmax f_θ(x_i) = y_i] (ties: the
  lowest class index);
- ``evaluate(model, params, dataset)`` = both, as a dict.

``model`` is a flax module (batch-norm models in inference mode: frozen statistics) or
a problem from :func:`sgdsde.nn.classification_problem`. ``batch_size`` evaluates in
chunks of that many examples (same numbers, less memory).

Observers (record every replica's value at steps 0, every, 2·every, … of a run, like
:func:`sgdsde.observers.loss_curve`; result ``{"times": (T,), "values": (T, R)}``, times
on the run's clock): :func:`accuracy_curve`, :func:`loss_curve` (cross-entropy) and
:func:`evaluation_curve` (both from one forward pass: ``values`` is
``{"loss": (T, R), "accuracy": (T, R)}``). ``dataset`` is ``"train"`` — the run's own
training data, read from the problem (not copied into the program) — or a
:class:`~sgdsde.nn.data.Dataset` (e.g. ``splits.validation``), whose arrays become
constants of the compiled run.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..observers._base import Observer, _check_every, _every_recorder
from ..problem import Problem
from .data import Dataset, _check_dataset
from .problem import _check_nn_problem

PyTree = Any

__all__ = ["cross_entropy", "accuracy", "evaluate", "accuracy_curve", "loss_curve", "evaluation_curve"]


def _apply_fn(model):
    if isinstance(model, Problem):
        return _check_nn_problem(model)["logits"]
    if isinstance(model, linen.Module):
        return model.apply
    raise TypeError(f"model: must be a flax.linen Module or an sgdsde.nn problem, got {type(model).__name__}")


def _check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: must be None or a positive integer, got {batch_size!r}")
    return int(batch_size)


def _sums(apply, params, x, y, batch_size: int | None):
    """(Σ_i cross-entropy, Σ_i correct) over the examples, in chunks of batch_size."""

    def chunk(xs, ys, mask):
        logits = apply(params, xs)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, ys)
        correct = (jnp.argmax(logits, axis=-1) == ys).astype(losses.dtype)
        return jnp.sum(jnp.where(mask, losses, 0.0)), jnp.sum(jnp.where(mask, correct, 0.0))

    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return chunk(x, y, jnp.ones(n, bool))
    chunks = -(-n // batch_size)
    pad = chunks * batch_size - n
    xs = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]).reshape((chunks, batch_size) + x.shape[1:])
    ys = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]).reshape(chunks, batch_size)
    mask = (jnp.arange(chunks * batch_size) < n).reshape(chunks, batch_size)
    losses, correct = jax.lax.map(lambda args: chunk(*args), (xs, ys, mask))
    return jnp.sum(losses), jnp.sum(correct)


def _inputs(x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if y.ndim != 1 or x.shape[:1] != y.shape or y.shape[0] < 1:
        raise ValueError(f"x, y: need one label per example, got shapes {x.shape} and {y.shape}")
    return x, y


def cross_entropy(model, params: PyTree, x, y, *, batch_size: int | None = None) -> jax.Array:
    """Mean cross-entropy (1/n) Σ_i −log softmax(f_θ(x_i))_{y_i} (natural log, no
    regulariser)."""
    x, y = _inputs(x, y)
    total, _ = _sums(_apply_fn(model), params, x, y, _check_batch_size(batch_size))
    return total / y.shape[0]


def accuracy(model, params: PyTree, x, y, *, batch_size: int | None = None) -> jax.Array:
    """Fraction of examples whose largest logit is the label's."""
    x, y = _inputs(x, y)
    _, correct = _sums(_apply_fn(model), params, x, y, _check_batch_size(batch_size))
    return correct / y.shape[0]


def evaluate(model, params: PyTree, dataset: Dataset, *, batch_size: int | None = None) -> dict:
    """``{"loss": cross_entropy, "accuracy": accuracy}`` on a data set, one forward pass."""
    dataset = _check_dataset(dataset)
    x, y = _inputs(dataset.x, dataset.y)
    total, correct = _sums(_apply_fn(model), params, x, y, _check_batch_size(batch_size))
    return {"loss": total / y.shape[0], "accuracy": correct / y.shape[0]}


# ------------------------------------------------------------------ observers
def _measure(dataset, which: str, batch_size):
    """measure(states, ctx) for _every_recorder: per replica, the chosen metric(s)."""
    fixed = None if isinstance(dataset, str) else (jnp.asarray(dataset.x), jnp.asarray(dataset.y))

    def measure(states, ctx):
        apply = _check_nn_problem(ctx.problem)["logits"]
        x, y = (ctx.problem.data["x"], ctx.problem.data["y"]) if fixed is None else fixed

        def one(params):
            total, correct = _sums(apply, params, x, y, batch_size)
            values = {"loss": total / y.shape[0], "accuracy": correct / y.shape[0]}
            return values if which == "both" else values[which]

        return jax.vmap(one)(states.params)

    return measure


def _default_name(dataset, metric: str) -> str:
    if isinstance(dataset, str):
        return f"train_{metric}"
    return f"{dataset.split or 'eval'}_{metric}"


def _curve(dataset, every: int, which: str, name: str | None, batch_size) -> Observer:
    if isinstance(dataset, str):
        if dataset != "train":
            raise ValueError(f"dataset: must be 'train' (the run's training data) or a Dataset, got {dataset!r}")
    else:
        dataset = _check_dataset(dataset)
    every, batch_size = _check_every(every), _check_batch_size(batch_size)
    metric = {"both": "metrics", "loss": "loss", "accuracy": "accuracy"}[which]
    name = _default_name(dataset, metric) if name is None else name
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: must be a non-empty string, got {name!r}")
    if isinstance(dataset, str):
        return _cached_train_curve(every, which, name, batch_size)
    return _by_identity(dataset, every, which, name, batch_size)


@functools.lru_cache(maxsize=128, typed=True)
def _cached_train_curve(every, which, name, batch_size) -> Observer:
    return _every_recorder(name, every, _measure("train", which, batch_size))


# Observers on a fixed data set are cached by the identity of its arrays (NumPy arrays
# are not hashable), so runs written inline reuse their compiled programs. The cache
# holds the data set, so the ids stay valid; it keeps the last 32 entries.
_IDENTITY_CACHE: dict = {}


def _by_identity(dataset: Dataset, every, which, name, batch_size) -> Observer:
    key = (id(dataset.x), id(dataset.y), every, which, name, batch_size)
    hit = _IDENTITY_CACHE.get(key)
    if hit is not None and hit[0].x is dataset.x and hit[0].y is dataset.y:
        return hit[1]
    observer = _every_recorder(name, every, _measure(dataset, which, batch_size))
    if len(_IDENTITY_CACHE) >= 32:
        _IDENTITY_CACHE.pop(next(iter(_IDENTITY_CACHE)))
    _IDENTITY_CACHE[key] = (dataset, observer)
    return observer


def accuracy_curve(
    dataset: Dataset | str, every: int, *, name: str | None = None, batch_size: int | None = None
) -> Observer:
    """Accuracy of every replica on ``dataset`` ("train" or a Dataset) at steps 0, every,
    2·every, …: ``{"times": (T,), "values": (T, R)}``. Default name
    ``"<split>_accuracy"`` (e.g. ``"train_accuracy"``, ``"validation_accuracy"``)."""
    return _curve(dataset, every, "accuracy", name, batch_size)


def loss_curve(
    dataset: Dataset | str, every: int, *, name: str | None = None, batch_size: int | None = None
) -> Observer:
    """Mean cross-entropy (no regulariser) of every replica on ``dataset`` at steps 0,
    every, …: ``{"times", "values": (T, R)}``. Default name ``"<split>_loss"``."""
    return _curve(dataset, every, "loss", name, batch_size)


def evaluation_curve(
    dataset: Dataset | str, every: int, *, name: str | None = None, batch_size: int | None = None
) -> Observer:
    """Cross-entropy and accuracy of every replica from one forward pass, at steps 0,
    every, …: ``{"times": (T,), "values": {"loss": (T, R), "accuracy": (T, R)}}``.
    Default name ``"<split>_metrics"``."""
    return _curve(dataset, every, "both", name, batch_size)
