"""Noise scales of SGD (η/S and its finite-N forms) and the step ↔ SME clock conversion."""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Float

from ._validate import IntScalar, Scalar, check_batch, check_positive, scalars

__all__ = [
    "noise_scale",
    "effective_noise_scale",
    "smith_le_noise_scale",
    "step_to_sme_time",
    "sme_to_step_time",
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
