"""The exact Gaussian transition law of the OU (SDE) limit: θ_t given θ_0."""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import expm
from jaxtyping import Array, ArrayLike, Float

from ._validate import IntScalar, Scalar, check_pair, check_scalar, float_dtype, is_concrete
from .covariance import ou_stationary_cov

__all__ = ["OUTransition", "ou_transition"]

Clock = Literal["steps", "sme"]
_CLOCKS = ("steps", "sme")


class OUTransition(NamedTuple):
    """Gaussian law of θ_t given θ_0 for the OU process: N(mean, cov)."""

    mean: Float[Array, " d"]
    cov: Float[Array, "d d"]


@jax.jit
def _transition(a, sigma, theta0, tau):
    e = expm(-tau * a)
    cov = sigma - e @ sigma @ e.T
    return e @ theta0, 0.5 * (cov + cov.T)


def ou_transition(
    hessian: Float[ArrayLike, "d d"],
    noise_cov: Float[ArrayLike, "d d"],
    learning_rate: Scalar,
    batch_size: IntScalar,
    theta0: Float[ArrayLike, " d"],
    t: Scalar,
    *,
    clock: Clock = "steps",
) -> OUTransition:
    """Exact law of θ_t for dθ = −ηAθ dt + (η/√S) B dW, BBᵀ = C (step time).

    mean = e^{−ηAt} θ0, cov = Σ − e^{−ηAt} Σ e^{−ηAᵀt}, Σ = ``ou_stationary_cov``.
    ``clock="steps"``: t counts SGD steps; ``clock="sme"``: t is SME time t_sme = η t_steps
    (then the exponent is −A t_sme). t is a scalar; vmap over t for a path.
    """
    check_pair(hessian, noise_cov)
    if clock not in _CLOCKS:
        raise ValueError(f"clock: must be one of {_CLOCKS}, got {clock!r}")
    d = np.shape(hessian)[0]
    if np.shape(theta0) != (d,):
        raise ValueError(f"theta0: must have shape ({d},), got {np.shape(theta0)}")
    check_scalar(t, "t")
    if is_concrete(t) and not np.asarray(t) >= 0:
        raise ValueError(f"t: must be non-negative, got {np.asarray(t)}")
    sigma = ou_stationary_cov(hessian, noise_cov, learning_rate, batch_size)
    dt = float_dtype(hessian, noise_cov, learning_rate, theta0, t)
    a = jnp.asarray(hessian, dt)
    eta = jnp.asarray(learning_rate, dt)
    tau = jnp.asarray(t, dt) * (eta if clock == "steps" else 1.0)  # SME time
    mean, cov = _transition(a, sigma.astype(dt), jnp.asarray(theta0, dt), tau)
    return OUTransition(mean=mean, cov=cov)
