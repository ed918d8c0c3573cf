"""Curvature of a loss at given parameters, through Hessian–vector products.

Every function takes ``fun: params -> scalar`` (e.g. ``problem.loss``) and a ``params``
pytree of any structure (a vector for a toy landscape, a Flax parameter tree for a
network). H = ∇²fun(params) is never formed: each method applies it to vectors, one
Hessian–vector product (HVP, forward-over-reverse) at a time, at the cost of about two
gradient evaluations. d is the total number of parameters; vectors are flattened in
the order of ``jax.flatten_util.ravel_pytree(params)``.

- :func:`hvp`: H v for a tangent pytree v; :func:`dense_hessian`: H itself (small d).
- :func:`power_iteration` and :func:`top_eigenvalues` (``method="power"``, ``"lanczos"`` or
  ``"block"``); :func:`block_lanczos` is the building block (blocks of p vectors, H applied
  to a block by ``jax.vmap`` of the HVP, full reorthogonalisation, Rayleigh–Ritz with
  residual bounds) and :func:`lanczos` its p = 1 case.
- :func:`hutchinson_trace`: tr H ≈ mean of zᵀHz over Rademacher probes z, with its
  standard error; zᵀHz = d²/dε² fun(params + εz) by forward over forward mode.
- :func:`gauss_newton_trace` and :func:`gauss_newton_split_trace` (classifiers made of dense
  layers): tr G of the Gauss–Newton part exactly by per-example norms, and tr H = tr G +
  Hutchinson on the residual part R = H − G, whose probes vary far less near a minimum.
- :func:`spectral_density` and :func:`log_determinant`: stochastic Lanczos quadrature
  (SLQ): for a probe u = z/√d, uᵀ f(H) u ≈ Σ_j τ_j² f(θ_j), with θ_j the eigenvalues
  of the Lanczos tridiagonal T and τ_j the first components of its eigenvectors (exact
  for polynomials f of degree ≤ 2m − 1); averaged over probes it estimates
  (1/d) tr f(H).
- :func:`finite_difference_hessian_norm`: the Frobenius norm by finite differences of
  gradients, as in the Three Factors paper (its ref. Wu, Zhu & E 2017);
  :func:`hessian_frobenius_norm` is the same estimator with exact HVPs.
- :func:`loss_along_line`: L((1 − α) θ₁ + α θ₂) for a set of α.

All are pure and jittable (iteration counts are static Python ints) and take explicit
PRNG keys. The public functions validate their input in Python, then call a jitted
core; a bound method of a pytree (``problem.loss``) and a ``jax.tree_util.Partial``
are passed to it as arguments, so a Problem's data are not baked into the compiled
program and repeated calls reuse it. Nothing here has a clock: curvatures are in loss
units per squared parameter unit.
"""

from ._products import dense_hessian, hvp
from ._results import (
    BlockLanczos,
    Estimate,
    HessianNorm,
    HutchppEstimate,
    Lanczos,
    LogDetEstimate,
    PowerIteration,
    SpectralDensity,
    TraceEstimate,
)
from .gauss_newton import GaussNewtonSplitEstimate, gauss_newton_split_trace, gauss_newton_trace
from .eigen import block_lanczos, lanczos, power_iteration, top_eigenvalues
from .norms import finite_difference_hessian_norm, hessian_frobenius_norm, loss_along_line
from .trace import hutchinson_trace, hutchpp_trace, log_determinant, spectral_density

__all__ = [
    "hvp",
    "dense_hessian",
    "PowerIteration",
    "power_iteration",
    "Lanczos",
    "lanczos",
    "BlockLanczos",
    "block_lanczos",
    "top_eigenvalues",
    "Estimate",
    "TraceEstimate",
    "hutchinson_trace",
    "HutchppEstimate",
    "hutchpp_trace",
    "GaussNewtonSplitEstimate",
    "gauss_newton_trace",
    "gauss_newton_split_trace",
    "SpectralDensity",
    "spectral_density",
    "LogDetEstimate",
    "log_determinant",
    "HessianNorm",
    "finite_difference_hessian_norm",
    "hessian_frobenius_norm",
    "loss_along_line",
]
