"""A Flax classifier on a data set as an :class:`sgdsde.Problem`.

    l_i(θ) = −log softmax(f_θ(x_i))_{y_i}   (cross-entropy, natural log),
    L(θ) = (1/N) Σ_i l_i(θ) + τ‖θ‖²,   τ = ``weight_decay``

so ∇R = 2τθ (docs/theory.md's convention). optax's ``add_decayed_weights(wd)`` adds wd·θ to
the gradient, i.e. τ = wd/2. The regulariser covers every trainable parameter
(weights, biases, norm scales and offsets), not the frozen batch statistics.

params are the model's Flax variables dict, ``{"params": …}`` (plus ``"batch_stats"``
for models with batch norm; see :mod:`sgdsde.nn.models` for how per-example losses are
defined with it). Draw initial params with ``problem.info["init_params"](key)`` (or
:func:`init_params`), a pure, jitted function of the key that ``sgdsde.run`` can call
per replica: ``sd.run(key, sd.sgd(), problem, hyper, problem.info["init_params"], …)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..problem import Problem
from .data import Dataset, _check_dataset, make_dataset
from .models import num_parameters

PyTree = Any

__all__ = ["classification_problem", "init_params", "recompute_batch_stats"]

_COLLECTIONS = ("params", "batch_stats")


def classification_problem(
    model: linen.Module,
    dataset: Dataset,
    weight_decay: float = 0.0,
    *,
    batch_stats_examples: int | None = None,
) -> Problem:
    """The empirical risk of ``model`` on ``dataset`` (per-example cross-entropy), with
    regulariser R(θ) = weight_decay·‖θ‖² over the trainable parameters.

    Args:
      model: a ``flax.linen`` module mapping (B, …) inputs to (B, K) logits, K =
        ``dataset.num_classes`` (e.g. :class:`~sgdsde.nn.models.MLP`). Its variables
        may hold ``"params"`` and ``"batch_stats"`` (frozen batch-norm statistics; the
        module must then accept ``use_batch_statistics=True``) and nothing else.
      dataset: the training :class:`~sgdsde.nn.data.Dataset` (e.g. ``splits.train``).
      weight_decay: τ ≥ 0 in R(θ) = τ‖θ‖².
      batch_stats_examples: batch-norm models only: the initial statistics are those of
        the first this-many training examples (default: all N, in one forward pass).

    ``info``: ``init_params(key) -> params``, ``logits(params, x)`` (batched, inference
    mode), ``model``, ``num_classes``, ``weight_decay``, ``dataset`` (its name),
    ``input_shape``, ``batch_norm`` (whether params carry batch statistics) and
    ``num_parameters`` (trainable).
    """
    if not isinstance(model, linen.Module):
        raise TypeError(f"model: must be a flax.linen Module, got {type(model).__name__}")
    dataset = _check_dataset(dataset)
    # re-check the fields (a Dataset built directly, not by make_dataset, is unchecked)
    dataset = make_dataset(
        dataset.x, dataset.y, dataset.num_classes, name=dataset.name, split=dataset.split,
        corrupted=dataset.corrupted, original_y=dataset.original_y,
    )
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float, np.number)) or not (
        np.isfinite(weight_decay) and weight_decay >= 0
    ):
        raise ValueError(f"weight_decay: must be a finite number ≥ 0, got {weight_decay!r}")
    weight_decay = float(weight_decay)
    num_classes, n = dataset.num_classes, dataset.num_examples
    if batch_stats_examples is None:
        batch_stats_examples = n
    if isinstance(batch_stats_examples, bool) or not isinstance(batch_stats_examples, (int, np.integer)) or not (
        1 <= batch_stats_examples <= n
    ):
        raise ValueError(f"batch_stats_examples: must be an integer in [1, N] = [1, {n}], got {batch_stats_examples!r}")

    x, y = jnp.asarray(dataset.x), jnp.asarray(dataset.y)
    probe = x[:1]
    variables = _check_model(model, probe, num_classes, dataset)
    batch_norm = "batch_stats" in variables
    stats_x = x[:batch_stats_examples]

    def apply(params: PyTree, inputs: jax.Array) -> jax.Array:
        """Logits (B, K) for inputs (B, …): inference mode, batch statistics frozen."""
        if batch_norm:
            params = {**params, "batch_stats": jax.lax.stop_gradient(params["batch_stats"])}
        return model.apply(params, inputs)

    def per_example_loss(params: PyTree, example) -> jax.Array:
        logits = apply(params, example["x"][None])[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, example["y"])

    def regularizer(params: PyTree) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(params["params"])
        return weight_decay * sum(jnp.sum(leaf**2) for leaf in leaves)

    @jax.jit
    def _init(key, stats_inputs):
        params = model.init(key, probe)
        if batch_norm:
            params = _with_statistics(model, params, stats_inputs)
        return params

    def init(key: jax.Array) -> PyTree:
        """Initial params from ``key`` (Flax's initialisers; batch statistics of the
        training data at these params)."""
        return _init(key, stats_x)

    info = {
        "init_params": init,
        "logits": apply,
        "model": model,
        "num_classes": num_classes,
        "weight_decay": weight_decay,
        "dataset": dataset.name,
        "input_shape": dataset.input_shape,
        "batch_norm": batch_norm,
        "num_parameters": num_parameters(variables),
    }
    return Problem(
        per_example_loss, {"x": x, "y": y}, regularizer if weight_decay else None, info=info
    )


def _check_model(model: linen.Module, probe: jax.Array, num_classes: int, dataset: Dataset):
    """Variables' shapes (no compute); raises on inputs the model rejects, unsupported
    collections, or an output that is not (1, num_classes)."""
    try:
        variables = jax.eval_shape(model.init, jax.random.key(0), probe)
    except Exception as err:
        raise ValueError(
            f"model: cannot be applied to the inputs of {dataset.name or 'the data set'} "
            f"(one example has shape {tuple(probe.shape[1:])}): {type(err).__name__}: {err}"
        ) from err
    unknown = sorted(set(variables) - set(_COLLECTIONS))
    if "params" not in variables or unknown:
        raise ValueError(
            f"model: its variables must be 'params' (and optionally 'batch_stats'), got collections "
            f"{sorted(variables)}; dropout and other stateful layers are not supported (per-example "
            "losses must be deterministic functions of (params, example))"
        )
    out = jax.eval_shape(model.apply, variables, probe)
    if out.shape != (1, num_classes):
        width = out.shape[-1] if len(out.shape) == 2 else out.shape[1:]
        raise ValueError(
            f"model: outputs {width} logits per example but the data set has num_classes = {num_classes} "
            f"(output shape {out.shape} for a batch of 1; set the model's num_classes to {num_classes})"
        )
    if "batch_stats" in variables:
        try:
            jax.eval_shape(lambda v: _with_statistics(model, v, probe), variables)
        except TypeError as err:
            raise ValueError(
                "model: has batch statistics, so it must accept the keyword use_batch_statistics=True "
                f"(normalise with this batch's statistics and store them): {err}"
            ) from err
    return variables


def _with_statistics(model: linen.Module, params: PyTree, inputs: jax.Array) -> PyTree:
    """params with ``batch_stats`` set to the statistics of ``inputs`` (one forward pass
    normalising with the batch's own statistics; momentum-0 norms store exactly them)."""
    _, updated = model.apply(params, inputs, use_batch_statistics=True, mutable=["batch_stats"])
    return {**params, "batch_stats": updated["batch_stats"]}


def _check_nn_problem(problem: Problem) -> Mapping:
    if not isinstance(problem, Problem) or "logits" not in problem.info or "model" not in problem.info:
        raise ValueError("problem: must come from sgdsde.nn.classification_problem")
    return problem.info


def init_params(problem: Problem, key: jax.Array) -> PyTree:
    """Initial params of a :func:`classification_problem` from ``key``
    (= ``problem.info["init_params"](key)``)."""
    return _check_nn_problem(problem)["init_params"](key)


def recompute_batch_stats(problem: Problem, params: PyTree, num_examples: int | None = None) -> PyTree:
    """params with the batch statistics recomputed on the problem's training data (the
    first ``num_examples``, default all) at the current weights — to refresh the frozen
    statistics between runs. Params without batch statistics are returned unchanged."""
    info = _check_nn_problem(problem)
    if not info["batch_norm"]:
        return params
    n = problem.num_examples
    m = n if num_examples is None else num_examples
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= n:
        raise ValueError(f"num_examples: must be an integer in [1, N] = [1, {n}], got {num_examples!r}")
    return _with_statistics(info["model"], params, problem.data["x"][:m])
