"""Noise scales of SGD (η/S and its finite-N forms), the step ↔ SME clock conversion, the
two-batch estimates of ‖g‖² and tr C (McCandlish et al. 2018) and the noise-to-signal
ratio of the linear scaling rule (Li, Malladi & Arora 2021); docs/theory.md §1, §8."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._validate import IntScalar, Scalar, check_batch, check_positive, is_concrete, scalars

__all__ = [
    "noise_scale",
    "effective_noise_scale",
    "smith_le_noise_scale",
    "step_to_sme_time",
    "sme_to_step_time",
    "TwoBatchEstimate",
    "two_batch_estimate",
    "noise_to_signal_ratio",
]


def noise_scale(learning_rate: Scalar, batch_size: IntScalar) -> Float[Array, ""]:
    """Jastrzębski et al. noise scale n = η / S (the N → ∞ limit)."""
    check_positive(learning_rate, "learning_rate")
    check_batch(batch_size)
    eta, s = scalars(learning_rate, batch_size)
    return eta / s


def effective_noise_scale(
    learning_rate: Scalar, batch_size: IntScalar, num_examples: IntScalar
) -> Float[Array, ""]:
    """Finite-N noise scale n_eff = (η/S)(N − S)/(N − 1) (``subset`` sampling)."""
    check_positive(learning_rate, "learning_rate")
    check_batch(batch_size, num_examples, required=True, what="effective_noise_scale")
    eta, s, n = scalars(learning_rate, batch_size, num_examples)
    return (eta / s) * (n - s) / (n - 1)


def smith_le_noise_scale(
    learning_rate: Scalar, batch_size: IntScalar, num_examples: IntScalar
) -> Float[Array, ""]:
    """Smith & Le noise scale g = η (N/S − 1) ≈ N · n_eff."""
    check_positive(learning_rate, "learning_rate")
    check_batch(batch_size, num_examples, required=True, what="smith_le_noise_scale")
    eta, s, n = scalars(learning_rate, batch_size, num_examples)
    return eta * (n / s - 1)


def step_to_sme_time(t_steps: Float[ArrayLike, "*shape"], learning_rate: Scalar) -> Float[Array, "*shape"]:
    """SGD-step time → SME time: t_sme = η t_steps."""
    check_positive(learning_rate, "learning_rate")
    t, eta = scalars(t_steps, learning_rate)
    return eta * t


def sme_to_step_time(t_sme: Float[ArrayLike, "*shape"], learning_rate: Scalar) -> Float[Array, "*shape"]:
    """SME time → SGD-step time: t_steps = t_sme / η."""
    check_positive(learning_rate, "learning_rate")
    t, eta = scalars(t_sme, learning_rate)
    return t / eta


class TwoBatchEstimate(NamedTuple):
    """Unbiased estimates of ‖g‖² (``grad_norm_sq``) and tr C (``trace_cov``) from one pair of
    minibatch gradients (or of gᵀMg and tr(MC) from M-weighted squared norms)."""

    grad_norm_sq: Array
    trace_cov: Array


def _check_batch_pair(small_batch, large_batch, num_examples) -> None:
    check_batch(small_batch, num_examples)
    check_batch(large_batch, num_examples)
    if is_concrete(small_batch, large_batch) and not np.asarray(small_batch) < np.asarray(large_batch):
        raise ValueError(
            f"small_batch: must be smaller than large_batch, got {np.asarray(small_batch)} and "
            f"{np.asarray(large_batch)}"
        )


def two_batch_estimate(
    small_sq_norm: Float[ArrayLike, "*shape"],
    large_sq_norm: Float[ArrayLike, "*shape"],
    small_batch: IntScalar,
    large_batch: IntScalar,
    num_examples: IntScalar | None = None,
) -> TwoBatchEstimate:
    """‖g‖² and tr C from y_b = ‖ĝ_b‖², y_B = ‖ĝ_B‖², minibatch means at sizes b < B.

    With E y_S = ‖g‖² + a_S tr C, solve the two equations:

        iid draws (num_examples=None), a_S = 1/S:
            ‖g‖² ≈ (B y_B − b y_b)/(B − b),   tr C ≈ (y_b − y_B)/(1/b − 1/B);
        uniform subsets of N examples, a_S = (N − S)/(S(N − 1)):
            tr C ≈ ((N − 1)/N)(y_b − y_B)/(1/b − 1/B),
            ‖g‖² ≈ (B y_B − b y_b)/(B − b) + (y_b − y_B)/(N(1/b − 1/B))

    (the iid estimates, corrected: tr C by (N − 1)/N, ‖g‖² by the iid tr C over N). Each is unbiased for any dependence
    between the two batches (e.g. the small one a prefix of the large one); the squared
    norms may be in any inner product M (y = ĝᵀMĝ estimates gᵀMg and tr(MC)). Unitless
    sizes; no clock.
    """
    _check_batch_pair(small_batch, large_batch, num_examples)
    y_b, y_B, b, B = scalars(small_sq_norm, large_sq_norm, small_batch, large_batch)
    trace_iid = (y_b - y_B) / (1 / b - 1 / B)
    norm_iid = (B * y_B - b * y_b) / (B - b)
    if num_examples is None:
        return TwoBatchEstimate(norm_iid, trace_iid)
    n = jnp.asarray(num_examples, trace_iid.dtype)
    return TwoBatchEstimate(norm_iid + trace_iid / n, trace_iid * (n - 1) / n)


def noise_to_signal_ratio(
    trace_cov: Float[ArrayLike, "*shape"],
    grad_norm_sq: Float[ArrayLike, "*shape"],
    batch_size: Float[ArrayLike, "*shape"],
    num_examples: IntScalar | None = None,
) -> Float[Array, "*shape"]:
    """Noise-to-signal ratio of one SGD step, NSR = f tr C/(S ‖g‖²) = f B_simple/S.

    f = 1 for iid draws (num_examples=None), f = (N − S)/(N − 1) for uniform subsets of N
    examples (the trace of the minibatch noise covariance over the squared gradient).
    The linear scaling rule (η, S) → (κη, κS) is predicted to hold while κ ≲ NSR (Li,
    Malladi & Arora 2021; docs/theory.md §8). +inf where g = 0; arrays broadcast.
    """
    if is_concrete(batch_size):
        s = np.asarray(batch_size)
        if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s < 1):
            raise ValueError(f"batch_size: must be numbers ≥ 1, got {batch_size!r}")
        if num_examples is not None and np.any(s > np.asarray(num_examples)):
            raise ValueError(f"num_examples: must be ≥ every batch_size, got {num_examples!r}")
    if num_examples is not None:
        check_batch(1, num_examples)
    trace, norm, s = scalars(trace_cov, grad_norm_sq, batch_size)
    factor = 1.0 if num_examples is None else (num_examples - s) / (num_examples - 1.0)
    signal = s * norm
    return jnp.where(signal != 0, factor * trace / jnp.where(signal != 0, signal, 1), jnp.inf)
