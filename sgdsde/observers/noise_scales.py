"""Noise scales along a run (McCandlish et al. 2018): the simple noise scale
B_simple = tr C/‖g‖², the Hessian-weighted B_noise = tr(HC)/(gᵀHg), their ingredients,
and the noise-to-signal ratio of the linear scaling rule (Li, Malladi & Arora 2021),
computed after the run from these records and the grid's batch sizes (docs/theory.md §8)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._checks import check_int
from ..curvature._products import _flat_operator
from ..problem import _float_dtype
from ..sampling import batch_weights, make_sampler
from ..theory.noise_scales import noise_to_signal_ratio, two_batch_estimate
from ._base import Observer, _cached, _check_every_or_final, _mean_and_stderr, _measured, _per_replica

__all__ = ["noise_scales", "scaling_rule_check"]

_METHODS = ("exact", "subsample", "two_batch")
_STATISTICS = ("grad_norm_sq", "trace_cov", "g_hg", "trace_hc", "b_simple", "b_noise")


def _ratio(num, den):
    """num/den, +inf where den = 0 (a vanishing gradient: the noise scale is unbounded)."""
    return jnp.where(den != 0, num / jnp.where(den != 0, den, 1), jnp.inf)


def _mean_se(samples, correction=1.0):
    """Mean of samples (last axis) and its standard error s/√n · √correction."""
    n = samples.shape[-1]
    se = jnp.std(samples, axis=-1, ddof=1) * jnp.sqrt(correction / n)
    return jnp.mean(samples, axis=-1), se


def _ratio_se(num_samples, den_samples, correction=1.0):
    """mean(num)/mean(den) and its delta-method standard error from paired samples:
    se² = (se_num² − 2 r cov + r² se_den²)/mean(den)², r the ratio."""
    n = num_samples.shape[-1]
    num, den = jnp.mean(num_samples), jnp.mean(den_samples)
    r = _ratio(num, den)
    cov = jnp.cov(jnp.stack([num_samples, den_samples]), ddof=1) * correction / n
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / den**2
    return r, jnp.sqrt(jnp.maximum(var, 0))


@_cached
def noise_scales(
    every: int | None = None,
    method: str = "exact",
    num_examples: int = 32,
    batch_sizes: tuple = (8, 64),
    num_pairs: int = 16,
    sampling: str = "iid",
    chunk_size: int | None = None,
    seed: int = 0,
) -> Observer:
    """B_simple = tr C/‖g‖² and B_noise = tr(HC)/(gᵀHg) of every replica, in examples.

    C the per-example gradient covariance, g = ∇L and H = ∇²L of the full-data loss
    (regulariser included; it carries no noise), u_i = ∇l_i − ḡ the centred per-example
    gradients. H is applied by Hessian–vector products only (the gradient linearised
    once per measurement): gᵀHg is one, tr(HC) = (1/N) Σ_i u_iᵀHu_i takes one per example.

    ``method``:
      "exact": all N per-example gradients (memory N·d per replica), N + 1 HVPs, run
        ``chunk_size`` at a time under vmap (None: one at a time).
      "subsample": ḡ from one full gradient, u_i for ``num_examples`` = m examples drawn
        without replacement; tr C and tr(HC) are the unbiased sample means of ‖u_i‖² and
        u_iᵀHu_i, with standard errors s/√m · √(1 − m/N) (finite population); ‖g‖², gᵀHg exact.
      "two_batch": ``num_pairs`` pairs of minibatch gradients at ``batch_sizes`` = (b, B),
        b < B, the small batch the first b examples of the large one, drawn ``sampling``
        "iid" or "subset" (without replacement); every pair gives unbiased ‖g‖², tr C from
        ‖ĝ_b‖², ‖ĝ_B‖² and gᵀHg, tr(HC) from ĝ_bᵀHĝ_b, ĝ_BᵀHĝ_B
        (:func:`sgdsde.theory.two_batch_estimate`); means over pairs with standard errors.
        No per-example gradients: what a data-parallel run measures.
    The noise scales are ratios of the estimates (+inf where the denominator is 0; B_noise
    is meaningful only where gᵀHg > 0), with delta-method standard errors in the sampled
    modes. B_noise is McCandlish et al.'s B_noise (their critical batch size B_crit ≈ B_noise).

    Result, every=None (measured on the final parameters): per replica (R,) arrays
    ``grad_norm_sq``, ``trace_cov``, ``g_hg``, ``trace_hc``, ``b_simple``, ``b_noise`` (and
    ``<name>_stderr`` for the sampled ones), plus ``mean`` and ``mean_stderr`` (dicts of the
    same names: the mean over the replicas not diverged at that time and its standard error
    from their spread; NaN with no replica, or for the stderr fewer than two) and
    ``replicas_used``. every=m: ``{"times": (T,), "values": {the same, (T, …)}}`` at
    steps 0, m, 2m, … of the run. Draws use ``jax.random.key(seed)`` folded with the
    replica's step count (common random numbers across replicas and configurations).
    Unitless (examples); no clock beyond the record times.
    """
    every = _check_every_or_final(every)
    if method not in _METHODS:
        raise ValueError(f"method: must be one of {_METHODS}, got {method!r}")
    subsample = check_int(num_examples, "num_examples", 2)
    if (not isinstance(batch_sizes, tuple) or len(batch_sizes) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in batch_sizes)
            or not 1 <= batch_sizes[0] < batch_sizes[1]):
        raise ValueError(f"batch_sizes: must be a tuple of two integers 1 ≤ b < B, got {batch_sizes!r}")
    small, large = (int(s) for s in batch_sizes)
    pairs = check_int(num_pairs, "num_pairs", 2)
    if sampling not in ("iid", "subset"):
        raise ValueError(f"sampling: must be 'iid' or 'subset', got {sampling!r}")
    chunk = None if chunk_size is None else check_int(chunk_size, "chunk_size", 1)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: must be an integer, got {seed!r}")

    def measure(states, ctx):
        problem = ctx.problem
        n = problem.num_examples
        if method == "subsample" and subsample > n:
            raise ValueError(f"num_examples: {subsample} exceeds the problem's N = {n}")
        if method == "two_batch" and large > n:
            raise ValueError(f"batch_sizes: the large batch {large} exceeds the problem's N = {n}")

        def one(params, step):
            key = jax.random.fold_in(jax.random.key(seed), step)
            matvec, flat, unravel = _flat_operator(problem.loss, params)
            h_norm = lambda v: jnp.vdot(v, matvec(v))
            if method == "two_batch":
                return _two_batch(problem, params, key, h_norm, n)
            g = ravel_pytree(problem.grad(params))[0]
            out = {"grad_norm_sq": jnp.vdot(g, g), "g_hg": h_norm(g)}
            if method == "exact":
                grads = problem.per_example_grads(params)
                correction = 0.0
            else:
                indices, _ = make_sampler("subset").draw(key, (), n, jnp.int32(subsample), subsample)
                batch = jax.tree_util.tree_map(lambda leaf: jnp.take(leaf, indices, axis=0), problem.data)
                grads = jax.vmap(jax.grad(problem.per_example_loss), in_axes=(None, 0))(params, batch)
                correction = 1.0 - subsample / n
            per_example = jax.vmap(lambda tree: ravel_pytree(tree)[0])(grads)
            mean_grad = (jnp.mean(per_example, axis=0) if method == "exact"
                         else ravel_pytree(jax.grad(problem.data_loss)(params))[0])
            centred = per_example - mean_grad
            squares = jnp.sum(centred**2, axis=1)
            forms = jax.lax.map(h_norm, centred, batch_size=chunk)
            if method == "exact":
                out["trace_cov"], out["trace_hc"] = jnp.mean(squares), jnp.mean(forms)
            else:
                out["trace_cov"], out["trace_cov_stderr"] = _mean_se(squares, correction)
                out["trace_hc"], out["trace_hc_stderr"] = _mean_se(forms, correction)
                out["b_simple_stderr"] = out["trace_cov_stderr"] / out["grad_norm_sq"]
                out["b_noise_stderr"] = out["trace_hc_stderr"] / jnp.abs(out["g_hg"])
            out["b_simple"] = _ratio(out["trace_cov"], out["grad_norm_sq"])
            out["b_noise"] = _ratio(out["trace_hc"], out["g_hg"])
            return out

        values = _per_replica(one, states)
        present = ~states.diverged
        stats = {k: _mean_and_stderr(values[k], present, jnp) for k in _STATISTICS}
        return {
            **values,
            "mean": {k: s[0] for k, s in stats.items()},
            "mean_stderr": {k: s[1] for k, s in stats.items()},
            "replicas_used": jnp.sum(present),
        }

    def _two_batch(problem, params, key, h_norm, n):
        population = n if sampling == "subset" else None
        draw = make_sampler(sampling).draw
        small_weights = batch_weights(jnp.int32(small), large, _float_dtype(params))
        large_weights = batch_weights(jnp.int32(large), large, _float_dtype(params))

        def pair(k):
            indices, _ = draw(k, (), n, jnp.int32(large), large)
            g_small = ravel_pytree(problem.minibatch_grad(params, indices, small_weights))[0]
            g_large = ravel_pytree(problem.minibatch_grad(params, indices, large_weights))[0]
            plain = two_batch_estimate(jnp.vdot(g_small, g_small), jnp.vdot(g_large, g_large),
                                       small, large, population)
            weighted = two_batch_estimate(h_norm(g_small), h_norm(g_large), small, large, population)
            return plain.grad_norm_sq, plain.trace_cov, weighted.grad_norm_sq, weighted.trace_cov

        norm, trace, g_hg, trace_hc = jax.lax.map(pair, jax.random.split(key, pairs))
        out = {}
        for name, samples in (("grad_norm_sq", norm), ("trace_cov", trace), ("g_hg", g_hg), ("trace_hc", trace_hc)):
            out[name], out[name + "_stderr"] = _mean_se(samples)
        out["b_simple"], out["b_simple_stderr"] = _ratio_se(trace, norm)
        out["b_noise"], out["b_noise_stderr"] = _ratio_se(trace_hc, g_hg)
        return out

    return _measured("noise_scales", every, measure)


def scaling_rule_check(result: Any, name: str = "noise_scales", num_examples: int | None = None) -> dict:
    """The noise-to-signal ratio NSR = f·B_simple/S of every configuration of a run, from
    the records of a :func:`noise_scales` observer called ``name`` and the grid's batch
    sizes S (observers do not see the hyperparameters, so this runs on the host after
    :func:`sgdsde.run`). f = (N − S)/(N − 1) with ``num_examples`` = N (``subset`` or
    ``epoch`` sampling), 1 without (``iid``).

    Li, Malladi & Arora (2021): the linear scaling rule (η, S) → (κη, κS) keeps SGD close to
    its SDE only while κ ≲ NSR, so κ* ≈ NSR is the predicted breaking scale (an order of
    magnitude, not a bound). Result: ``nsr`` per replica (grid, [T,] R) with its replica
    ``nsr_mean``, ``nsr_stderr`` (grid, [T]) and ``kappa_star`` (grid): the smallest
    ``nsr_mean`` over the records, the most restrictive point of the run; ``batch_size``
    (grid, [T]) and, for a recorder, ``times`` (steps of the run). Batch-size schedules are
    evaluated at each record's step (the result's times in SGD steps).
    """
    if not isinstance(name, str) or name not in getattr(result, "observations", {}):
        raise ValueError(f"name: the result has no observer called {name!r}")
    if num_examples is not None:
        check_int(num_examples, "num_examples", 2)
    record = result.observations[name]
    recorded = "times" in record
    values = record["values"] if recorded else record
    if "b_simple" not in values:
        raise ValueError(f"name: {name!r} is not a noise_scales observer (it has no b_simple)")
    grid_shape = tuple(result.grid_shape)
    hyper = result.hyper
    if callable(hyper.batch_size):
        if not recorded:
            steps = np.asarray(result.num_steps * result.dt)
        else:
            steps = np.asarray(result.on_clock("steps").observations[name]["times"])
            steps = steps.reshape(-1, steps.shape[-1])[0]  # the same steps for every configuration
        batch = np.asarray(jax.vmap(hyper.batch_size)(jnp.asarray(steps)), np.float64)
        batch = np.broadcast_to(batch, grid_shape + batch.shape)
    else:
        batch = np.broadcast_to(np.asarray(hyper.batch_size, np.float64), grid_shape)
        if recorded:
            batch = np.broadcast_to(batch[..., None], grid_shape + np.shape(record["times"])[-1:])
    def nsr(b_simple, s):  # on the host in float64, whatever the run's precision
        with jax.enable_x64(True):
            return np.asarray(noise_to_signal_ratio(np.asarray(b_simple, np.float64), 1.0, s, num_examples))

    mean = nsr(values["mean"]["b_simple"], batch)
    out = {
        "batch_size": batch,
        "nsr": nsr(values["b_simple"], batch[..., None]),
        "nsr_mean": mean,
        "nsr_stderr": nsr(values["mean_stderr"]["b_simple"], batch),
        "kappa_star": np.fmin.reduce(mean, axis=-1) if recorded else mean,  # NaN records skipped
    }
    if recorded:
        out["times"] = np.asarray(record["times"])
    return out
