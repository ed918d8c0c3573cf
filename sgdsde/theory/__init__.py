"""Closed forms for SGD on a quadratic and its Ornstein–Uhlenbeck (SDE) limit.

Model (docs/theory.md §1, §2, §5): L(θ) = ½ θᵀ A θ, per-example gradient covariance C,
learning rate η, batch size S, N examples. SGD is θ' = (I − ηA) θ − η ξ with
Cov(ξ) = C/S (``iid``) or (C/S)(N−S)/(N−1) (``subset``); ``epoch`` noise is
correlated inside an epoch (Cov(ξ_j, ξ_k) = −C/(N−1), j ≠ k).

Clocks. Times are SGD steps (t = k) unless a function says otherwise; the SME clock
is t_sme = η · t_steps. Covariances are in parameter units and carry no clock.

Every function can be jitted, differentiated and vmapped (all pure ``jax.numpy`` except
the matrix-equation solves, which are host callbacks with JAX derivative rules), and its
result has the floating dtype of its inputs (float32 or float64). Bad input raises
``ValueError`` naming the argument; value checks (positivity, stability) run only where
the inputs are concrete, so they never break ``jax.jit``.

The modules:

- :mod:`~sgdsde.theory.covariance` — stationary covariances (OU; exact SGD for ``iid``,
  ``subset``, ``epoch`` and heavy ball), their 1-D closed forms, the trace identity;
- :mod:`~sgdsde.theory.transition` — the OU transition law θ_t | θ_0;
- :mod:`~sgdsde.theory.noise_scales` — noise scales η/S, n_eff, Smith–Le, clocks, two-batch
  estimates of ‖g‖² and tr C, the noise-to-signal ratio;
- :mod:`~sgdsde.theory.solvers` — the O(d³) Lyapunov / Stein solvers behind them.
"""

from .covariance import (
    lyapunov_trace,
    ou_stationary_cov,
    ou_stationary_variance_1d,
    sgd_momentum_variance_1d,
    sgd_stationary_cov,
    sgd_stationary_variance_1d,
)
from .noise_scales import effective_noise_scale, noise_scale, sme_to_step_time, smith_le_noise_scale, step_to_sme_time
from .noise_scales import TwoBatchEstimate, noise_to_signal_ratio, two_batch_estimate
from .solvers import continuous_lyapunov, discrete_lyapunov
from .transition import OUTransition, ou_transition

__all__ = [
    "OUTransition",
    "continuous_lyapunov",
    "discrete_lyapunov",
    "ou_stationary_cov",
    "sgd_stationary_cov",
    "ou_stationary_variance_1d",
    "sgd_stationary_variance_1d",
    "sgd_momentum_variance_1d",
    "ou_transition",
    "noise_scale",
    "effective_noise_scale",
    "smith_le_noise_scale",
    "step_to_sme_time",
    "sme_to_step_time",
    "lyapunov_trace",
    "TwoBatchEstimate", "two_batch_estimate", "noise_to_signal_ratio",
]
