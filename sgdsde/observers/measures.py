"""Observers that measure the loss landscape and the gradient noise of every replica
(Hessian–vector products, per-example gradients): sharpness, gradient noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import curvature
from ._base import Observer, _cached, _check_every_or_final, _measured, _per_replica

@_cached
def sharpness(
    every: int | None = None,
    k: int = 1,
    method: str = "lanczos",
    num_iterations: int = 100,
    trace_samples: int = 100,
    seed: int = 0,
) -> Observer:
    """Curvature of the full-data loss L (regulariser included) for every replica.

    The k largest Hessian eigenvalues (:func:`sgdsde.curvature.top_eigenvalues` with
    ``method`` "lanczos" or "power" and ``num_iterations``) and Hutchinson's trace
    estimate with its standard error (:func:`sgdsde.curvature.hutchinson_trace`,
    ``trace_samples`` Rademacher probes; 0 leaves the trace out).
    every=None: measured once, on the final parameters:
    ``{"eigenvalues": (R, k), "trace": (R,), "trace_stderr": (R,)}``;
    every=m: at steps 0, m, 2m, …: ``{"times": (T,), "values": {the same, (T, R, …)}}``.
    Random start vectors and probes come from ``jax.random.key(seed)`` folded with the
    replica's step count: the same for every replica and configuration (common random
    numbers, so differences between configurations are not probe noise). Cost per
    measurement and replica: num_iterations·k (power) or num_iterations (Lanczos) plus
    trace_samples Hessian–vector products.
    """
    every = _check_every_or_final(every)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: must be a positive integer, got {k!r}")
    if method not in ("lanczos", "power"):
        raise ValueError(f"method: must be 'lanczos' or 'power', got {method!r}")
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, (int, np.integer)) or num_iterations < k:
        raise ValueError(f"num_iterations: must be an integer ≥ k = {k}, got {num_iterations!r}")
    if isinstance(trace_samples, bool) or not isinstance(trace_samples, (int, np.integer)) or trace_samples == 1 or trace_samples < 0:
        raise ValueError(f"trace_samples: must be 0 (no trace) or an integer ≥ 2, got {trace_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: must be an integer, got {seed!r}")

    def measure(states, ctx):

        def one(params, step):
            key = jax.random.fold_in(jax.random.key(seed), step)
            out = {
                "eigenvalues": curvature.top_eigenvalues(
                    ctx.problem.loss, params, key=jax.random.fold_in(key, 0), k=k, method=method,
                    num_iterations=num_iterations,
                )
            }
            if trace_samples:
                trace = curvature.hutchinson_trace(
                    ctx.problem.loss, params, key=jax.random.fold_in(key, 1), num_samples=trace_samples
                )
                out["trace"], out["trace_stderr"] = trace.mean, trace.stderr
            return out

        return _per_replica(one, states)

    return _measured("sharpness", every, measure)


# -------------------------------------------------------------- gradient noise
@_cached
def gradient_noise(every: int | None = None, method: str = "exact", num_samples: int = 16, seed: int = 0) -> Observer:
    """Gradient-noise statistics of every replica: tr C, ‖g‖² and the simple noise scale.

    ``trace_cov``: tr C(θ), C the per-example gradient covariance (docs/theory.md §1; the
    minibatch gradient's covariance is C/S, or (C/S)(N−S)/(N−1) for subsets), either
    ``method="exact"`` (``problem.gradient_covariance(θ, "trace")``: all N per-example
    gradients, memory N·d per replica) or ``method="sample"``: the unbiased mean of ‖ξ‖²
    over ``num_samples`` exact draws ξ ~ N(0, C) (``problem.noise_sample``, one
    weighted gradient each; Var ‖ξ‖² = 2 tr C²), with ``trace_cov_stderr``.
    ``grad_norm_sq``: ‖g‖², g = ∇L the full-batch gradient (regulariser included).
    ``noise_scale``: the simple noise scale B = tr C / ‖g‖² (McCandlish et al. 2018), the
    batch size at which minibatch noise and signal are comparable; +inf where g = 0.
    Shapes: (R,) at the end (every=None), or ``{"times": (T,), "values": {… (T, R)}}``
    at steps 0, every, 2·every, … Draws use ``jax.random.key(seed)`` folded with the
    replica's step count (common to all replicas and configurations).
    """
    every = _check_every_or_final(every)
    if method not in ("exact", "sample"):
        raise ValueError(f"method: must be 'exact' or 'sample', got {method!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"num_samples: must be an integer ≥ 2, got {num_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: must be an integer, got {seed!r}")

    def measure(states, ctx):
        problem = ctx.problem

        def one(params, step):
            grad = ravel_pytree(problem.grad(params))[0]
            grad_norm_sq = jnp.vdot(grad, grad)
            out = {}
            if method == "exact":
                trace = problem.gradient_covariance(params, "trace")
            else:
                keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), step), num_samples)
                draws = jax.lax.map(
                    lambda key: jnp.sum(ravel_pytree(problem.noise_sample(key, params))[0] ** 2), keys
                )
                trace = jnp.mean(draws)
                out["trace_cov_stderr"] = jnp.std(draws, ddof=1) / jnp.sqrt(jnp.asarray(num_samples, draws.dtype))
            out["trace_cov"] = trace
            out["grad_norm_sq"] = grad_norm_sq
            out["noise_scale"] = jnp.where(grad_norm_sq > 0, trace / jnp.where(grad_norm_sq > 0, grad_norm_sq, 1), jnp.inf)
            return out

        return _per_replica(one, states)

    return _measured("gradient_noise", every, measure)
