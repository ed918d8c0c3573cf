"""What the Three Factors experiments (a)–(f) share (Jastrzębski et al. 2018, §4 and
appendix F): the 4-layer batch-norm ReLU MLP, the data, training an (η, S) grid to its
final parameters through a resumable sweep, and the measurements at a minimum — the
finite-difference Hessian norm of the paper, λ_max, accuracy, and the loss along the line
between two minima.

- :func:`make_model`, :func:`load_splits`, :func:`make_problem`: the network (``MLP`` of
  4 hidden layers, ``batch_norm=True``: frozen statistics, those of the training set at
  the initial parameters, kept fixed while training — :mod:`sgdsde.nn.models`) on the
  built-in digits or a local folder.
- :func:`train_grid`: :func:`sgdsde.sweep.run_sweep` over ``Hyper.grid(η, S)`` with
  ``keep_state=True``; returns the sweep result and the final params with leading axes
  (n_η, n_S, R). Re-running with the same arguments resumes.
- :func:`train_configs`: the same for a list of (η_i, S_i) (not an outer product).
- :func:`train_epochs`: a list of (η_i, S_i) for the same number of epochs (one sweep
  per batch size, steps ⌈epochs·N/S⌉), as the paper trains.
- :func:`flatten_configs` / :func:`take`: params with leading axes collapsed to one (G, …)
  axis / one configuration.
- :func:`evaluate`: loss and accuracy of every configuration on a data set (vmapped).
- :func:`hessian_norm`: the paper's sharpness, ‖H‖_F of the training loss by finite
  differences of gradients (§4.1: "the norm of its Hessian … using the finite difference
  method (Wu et al., 2017)"): ‖H‖_F² = E_v ‖Hv‖², v ~ N(0, I), Hv from a forward
  difference of gradients (:func:`sgdsde.curvature.finite_difference_hessian_norm`);
  also with exact HVPs on the same probes (:func:`hessian_norm_exact`) as a check of the
  finite-difference error.
- :func:`top_eigenvalue`: λ_max (:func:`sgdsde.curvature.top_eigenvalues`, Lanczos).
- :func:`line_metrics`: loss and accuracy at θ(α) = (1 − α) θ_A + α θ_B.
- :func:`end_curvature`: the second derivative of a sampled curve at a node by the
  three-point finite difference (error O(h²)); :func:`barrier`: the largest excess of a
  curve over the chord between its ends.

Curvatures are taken with respect to the trainable parameters only (the ``params``
collection): the frozen batch statistics are not parameters of the loss SGD minimises
(their gradient and noise are zero), so they are held at their values in each model.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import sgdsde as sd
from sgdsde import curvature
from sgdsde import nn as snn
from sgdsde.nn import metrics
from sgdsde.sweep import run_sweep

from ..sde_check import load_data
from ._verdict import Verdict

PyTree = Any

__all__ = ["HIDDEN", "SAMPLING", "PAPER", "make_model", "load_splits", "make_problem", "train_grid", "train_configs",
           "train_epochs",
           "flatten_configs", "take", "evaluate", "trainable_loss", "hessian_norm", "hessian_norm_exact",
           "top_eigenvalue", "line_metrics", "end_curvature", "barrier", "summary", "verdict_dict"]

PAPER = "Jastrzębski et al. 2018, Three Factors Influencing Minima in SGD"
HIDDEN = (32, 32, 32, 32)  # the paper's "4 layer Batch Normalized ReLU MLP" (widths ours: 8×8 digits)
SAMPLING = "subset"        # a fresh uniform S-subset each step (the papers' SGD)
FD_EPSILON = 1e-3          # finite-difference step length in parameter space (float32: ≳ 1e-3)


# ----------------------------------------------------------------------------- model and data
def make_model(num_classes: int, hidden: Sequence[int] = HIDDEN) -> snn.MLP:
    """The 4-layer batch-norm ReLU MLP: [Dense(w) → BatchNorm (frozen statistics) → ReLU]
    for w in ``hidden`` → Dense(num_classes)."""
    return snn.MLP(num_classes, hidden=tuple(int(w) for w in hidden), batch_norm=True)


def load_splits(data: str | os.PathLike | None, data_format: str | None, *, seed: int,
                train_examples: int | None = None, test_examples: int | None = None) -> snn.data.Splits:
    """Train and test sets (:func:`sgdsde.experiments.sde_check.load_data`): the built-in
    digits for ``data=None`` (1,258 / 359), else a local folder; the split's shuffle from
    ``seed``."""
    return load_data(data, data_format, key=jax.random.fold_in(jax.random.key(seed), 0),
                     train_examples=train_examples, test_examples=test_examples)


def make_problem(splits: snn.data.Splits, hidden: Sequence[int] = HIDDEN, weight_decay: float = 0.0) -> sd.Problem:
    """The cross-entropy of :func:`make_model` on the training set (no weight decay by
    default, as in the paper's §4.1 runs)."""
    return snn.classification_problem(make_model(splits.train.num_classes, hidden), splits.train, weight_decay)


# ----------------------------------------------------------------------------- training
def train_grid(folder: str | os.PathLike, key: jax.Array, problem: sd.Problem, learning_rates: Sequence[float],
               batch_sizes: Sequence[int], steps: int, *, replicas: int = 1, progress: bool = True,
               observers: Sequence | None = None, group_batch_sizes: bool | None = None,
               configs_per_chunk: int | None = None):
    """SGD (``sgd(SAMPLING)``, no momentum) for ``steps`` steps at every (η, S) of
    ``Hyper.grid(learning_rates, batch_sizes)`` × ``replicas``, through the resumable
    :func:`sgdsde.sweep.run_sweep` in ``folder`` with ``keep_state=True``. Replica r of
    every configuration starts from ``init_params(fold_in(key, r))`` and draws the same
    minibatch indices (common random numbers across the grid). Returns (sweep result,
    final params with leading axes (n_η, n_S, R))."""
    hyper = sd.Hyper.grid(np.asarray(learning_rates, float), np.asarray(batch_sizes, int))
    return _train(folder, key, problem, hyper, steps, replicas, progress, observers, group_batch_sizes,
                  configs_per_chunk)


def train_configs(folder: str | os.PathLike, key: jax.Array, problem: sd.Problem, learning_rates: Sequence[float],
                  batch_sizes: Sequence[int], steps: int, *, replicas: int = 1, progress: bool = True,
                  observers: Sequence | None = None, group_batch_sizes: bool | None = None,
                  configs_per_chunk: int | None = None):
    """:func:`train_grid` for a list of configurations (η_i, S_i) (paired lists, not
    their outer product); params with leading axes (n, R)."""
    eta, size = np.asarray(learning_rates, float), np.asarray(batch_sizes, int)
    if eta.shape != size.shape or eta.ndim != 1:
        raise ValueError("learning_rates and batch_sizes: must be 1-D lists of one length, "
                         f"got shapes {eta.shape} and {size.shape}")
    return _train(folder, key, problem, sd.Hyper(eta, size), steps, replicas, progress, observers,
                  group_batch_sizes, configs_per_chunk)


def train_epochs(out: str | os.PathLike, name: str, key: jax.Array, problem: sd.Problem,
                 configs: Sequence[tuple[float, int]], epochs: float, *, replicas: int = 1, progress: bool = True,
                 group_batch_sizes: bool | None = None):
    """Every (η_i, S_i) of ``configs`` for the same number of ``epochs`` (the paper's
    budget, §4.1: ⌈epochs·N/S⌉ SGD steps, so (βη, βS) covers the same SDE time
    η·steps = η·epochs·N/S as (η, S)): one resumable sweep per distinct batch size, in ``sweep_folder(out, name,
    f"S{S}")``. Same common random numbers as :func:`train_configs` (one ``key``).
    Returns (params with leading axes (n, R), diverged (n, R), steps (n,))."""
    from . import sweep_folder

    eta = np.asarray([c[0] for c in configs], float)
    size = np.asarray([c[1] for c in configs], int)
    n = problem.num_examples
    steps = np.asarray([int(np.ceil(epochs * n / s)) for s in size])
    params, diverged = [None] * len(configs), np.zeros((len(configs), int(replicas)), bool)
    for s in sorted(set(size.tolist())):
        members = np.flatnonzero(size == s)
        result, got = train_configs(sweep_folder(out, name, f"S{s}"), key, problem, eta[members], size[members],
                                    int(steps[members[0]]), replicas=replicas, progress=progress,
                                    group_batch_sizes=group_batch_sizes)
        for k, i in enumerate(members):
            params[i] = take(got, k)
            diverged[i] = np.asarray(result.diverged, bool).reshape(len(members), -1)[k]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params)
    return stacked, diverged, steps


def _train(folder, key, problem, hyper, steps, replicas, progress, observers, group_batch_sizes, configs_per_chunk):
    result = run_sweep(folder, key, sd.sgd(SAMPLING), problem, hyper, problem.info["init_params"], int(steps),
                       replicas=int(replicas), observers=observers, progress=progress, keep_state=True,
                       group_batch_sizes=group_batch_sizes, configs_per_chunk=configs_per_chunk)
    state = result.state
    params = state["params"] if isinstance(state, dict) else state.params
    return result, params


def flatten_configs(params: PyTree, leading: int) -> PyTree:
    """Collapse the first ``leading`` axes of every leaf into one (G, …) axis."""
    return jax.tree_util.tree_map(lambda x: jnp.reshape(x, (-1,) + tuple(np.shape(x)[leading:])), params)


def take(params: PyTree, index) -> PyTree:
    """One configuration: every leaf indexed by ``index`` (an int or a tuple)."""
    return jax.tree_util.tree_map(lambda x: x[index], params)


# ----------------------------------------------------------------------------- measurements
@functools.lru_cache(maxsize=16)
def _evaluator(apply):
    """jit(vmap) of (Σ loss, Σ correct) over a leading params axis, for one network
    function ``apply`` (cached: repeated calls with the same shapes reuse the program)."""
    def one(params, x, y):
        total, correct = metrics._sums(apply, params, x, y, None)
        return {"loss": total / y.shape[0], "accuracy": correct / y.shape[0]}
    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def evaluate(problem: sd.Problem, params: PyTree, dataset) -> dict:
    """{"loss", "accuracy"}: NumPy arrays (G,) for params with a leading (G, …) axis,
    on ``dataset`` (a :class:`~sgdsde.nn.data.Dataset`, or "train": the training set)."""
    if isinstance(dataset, str) and dataset == "train":
        x, y = problem.data["x"], problem.data["y"]
    else:
        x, y = jnp.asarray(dataset.x), jnp.asarray(dataset.y)
    out = _evaluator(problem.info["logits"])(params, x, y)
    return {name: np.asarray(out[name], np.float64) for name in ("loss", "accuracy")}


def _loss_of_trainable(problem, frozen, trainable):
    return problem.loss({**frozen, "params": trainable})


def trainable_loss(problem: sd.Problem, params: PyTree):
    """(loss as a function of the trainable ``params`` collection, that collection): the
    full training loss with the other collections (frozen batch statistics) held fixed;
    a ``jax.tree_util.Partial``, so that jitted curvature code reuses its compilation."""
    if isinstance(params, dict) and "params" in params:
        frozen = {k: v for k, v in params.items() if k != "params"}
        return Partial(_loss_of_trainable, problem, frozen), params["params"]
    return problem.loss, params


def _curvature_core(problem, params, keys, kind: str, num: int, epsilon: float, scheme: str):
    """vmap over a leading configs axis of one curvature measurement (the curvature
    functions' own jitted cores are batched, and reused across calls and ε)."""
    def one(p, k):
        fun, trainable = trainable_loss(problem, p)
        if kind == "fd":
            est = curvature.finite_difference_hessian_norm(fun, trainable, key=k, epsilon=epsilon,
                                                           num_samples=num, scheme=scheme)
            return est[0], est[2]
        if kind == "exact":
            est = curvature.hessian_frobenius_norm(fun, trainable, key=k, num_samples=num)
            return est[0], est[2]
        top = curvature.top_eigenvalues(fun, trainable, key=k, num_iterations=num)[0]
        return top, top
    return jax.vmap(one)(params, keys)


def _per_config(problem, params, key, kind, num, epsilon=1.0, scheme="forward"):
    count = jax.tree_util.tree_leaves(params)[0].shape[0]
    a, b = _curvature_core(problem, params, jax.random.split(key, count), kind, int(num), float(epsilon), scheme)
    return np.asarray(a, np.float64), np.asarray(b, np.float64)


def hessian_norm(problem: sd.Problem, params: PyTree, key: jax.Array, *, num_samples: int = 10,
                 epsilon: float = FD_EPSILON, scheme: str = "forward") -> tuple[np.ndarray, np.ndarray]:
    """The paper's sharpness (§4.1, after Wu, Zhu & E 2017): ‖H‖_F of the training loss
    with respect to the trainable parameters, ‖H‖_F² = E_v ‖Hv‖², v ~ N(0, I), Hv by a
    ``scheme`` difference of gradients with step length ``epsilon`` along v/‖v‖, averaged
    over ``num_samples`` probes. For params with a leading (G, …) axis: (‖H‖_F (G,), standard
    error of ‖H‖_F² (G,)). Bias O(ε) (forward), O(ε²) (central); none for a quadratic."""
    return _per_config(problem, params, key, "fd", num_samples, epsilon, scheme)


def hessian_norm_exact(problem: sd.Problem, params: PyTree, key: jax.Array, *,
                       num_samples: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hessian_norm` with exact HVPs on the same probes (same ``key``): the
    finite-difference error is the difference of the two."""
    return _per_config(problem, params, key, "exact", num_samples)


def top_eigenvalue(problem: sd.Problem, params: PyTree, key: jax.Array, *, num_iterations: int = 20) -> np.ndarray:
    """λ_max of the training-loss Hessian (trainable parameters) for params with a
    leading (G, …) axis (Lanczos, ``num_iterations`` HVPs; vmapped)."""
    return _per_config(problem, params, key, "top", num_iterations)[0]


def line_metrics(problem: sd.Problem, params_a: PyTree, params_b: PyTree, alphas: Sequence[float],
                 datasets: dict) -> dict:
    """Loss and accuracy at θ(α) = (1 − α) θ_A + α θ_B for every α (the trainable
    parameters interpolated; batch statistics too, linearly — they are parameters of the
    network function; runs from one initialisation share them, and the line keeps them). ``datasets``: {name: Dataset or "train"}. Returns {f"{name}_loss",
    f"{name}_accuracy": arrays (len(alphas),)}."""
    alphas = jnp.asarray(alphas, jnp.float32)
    points = jax.vmap(lambda a: jax.tree_util.tree_map(lambda x, y: (1 - a) * x + a * y, params_a, params_b))(alphas)
    out = {}
    for name, dataset in datasets.items():
        values = evaluate(problem, points, dataset)
        out[f"{name}_loss"], out[f"{name}_accuracy"] = values["loss"], values["accuracy"]
    return out


def end_curvature(alphas: Sequence[float], values: Sequence[float], at: float) -> float:
    """d²f/dα² at the node ``at`` of an evenly spaced grid ``alphas`` by the three-point
    difference [f(a − h) − 2 f(a) + f(a + h)] / h² (error h²/12 · f⁗, exact for cubics)."""
    alphas, values = np.asarray(alphas, float), np.asarray(values, float)
    h = float(np.mean(np.diff(alphas)))
    if not np.allclose(np.diff(alphas), h, rtol=1e-6, atol=1e-12):
        raise ValueError("alphas: must be evenly spaced")
    i = int(np.argmin(np.abs(alphas - at)))
    if not np.isclose(alphas[i], at, atol=1e-9 + 1e-6 * abs(h)) or i == 0 or i == alphas.size - 1:
        raise ValueError(f"at: must be an interior node of alphas, got {at}")
    return float((values[i - 1] - 2 * values[i] + values[i + 1]) / h**2)


def barrier(alphas: Sequence[float], values: Sequence[float]) -> float:
    """max over the nodes α ∈ [0, 1] of f(α) − [(1 − α) f(0) + α f(1)]: the height of the
    curve above the chord between its ends; ≥ 0 (the ends give 0), and 0 for a convex
    curve. α = 0 and 1 must be nodes of ``alphas``."""
    alphas, values = np.asarray(alphas, float), np.asarray(values, float)
    i0, i1 = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(alphas - 1)))
    if not (np.isclose(alphas[i0], 0, atol=1e-9) and np.isclose(alphas[i1], 1, atol=1e-9)):
        raise ValueError("alphas: must contain 0 and 1")
    inside = (alphas >= -1e-12) & (alphas <= 1 + 1e-12)
    chord = (1 - alphas) * values[i0] + alphas * values[i1]
    return float(np.max((values - chord)[inside]))


def verdict_dict(verdict) -> dict:
    """A verdict as a dict, whether a :class:`~._verdict.Verdict`, its dict, or its
    fields as a list (a Verdict written to JSON by itself)."""
    if hasattr(verdict, "_asdict"):
        return verdict._asdict()
    if isinstance(verdict, dict):
        return verdict
    return Verdict(*verdict)._asdict()


def summary(values) -> dict:
    """{"mean", "se", "n"} over the finite entries (se NaN for n < 2)."""
    x = np.asarray(values, float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    return {"mean": float(x.mean()) if n else float("nan"),
            "se": float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"), "n": n}
