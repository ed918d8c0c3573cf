"""Noise models: what replaces the minibatch gradient noise in an SDE model of SGD.

A noise model describes a per-example gradient-noise covariance C(θ) = B(θ) B(θ)ᵀ
(docs/theory.md §1) and draws ξ ~ N(0, C(θ)). It is **not** divided by the batch size:
the SDE steppers of :mod:`sgdsde.sde` apply the factor η/√S (and the finite-N factor,
below), so one noise model serves every (η, S) of a hyperparameter grid.

Models (all frozen; the ones holding arrays are pytrees):

- :func:`isotropic` ``(sigma2)``:  C = σ² I (any parameter pytree).
- :func:`diagonal` ``(variances)``: C = diag(variances), constant.
- :func:`full` ``(cov)``:           C = cov, constant d×d; sampled with a square root
  computed once, in NumPy float64, when the model is built (never per step).
- :func:`empirical` ``()``:         the problem's own C(θ) (state dependent), sampled
  exactly by the weighted-gradient identity of :meth:`sgdsde.Problem.noise_sample`
  without forming any d×d matrix (works for networks).
- :func:`from_function` ``(b)``:    a user B(θ), a d×k matrix; ξ = B(θ) z, z ~ N(0, I_k).

Matrices act on the flattened parameters, in the order of
``jax.flatten_util.ravel_pytree(params)``; d is the total number of parameters.

Interface of every model ``m``::

    m.sample(key, params, problem)     -> ξ, a pytree like params, ξ ~ N(0, C(θ))
    m.covariance(params, problem)      -> C(θ), (d, d) over the flattened params
    m.apply(params, z, problem)        -> B(θ) z (a pytree like params)
    m.noise_shape(params, problem)     -> the shape of z (static)
    m.matrix(params, problem)          -> B(θ), (d, k), materialised (used by the
                                          diffrax adapter; small problems only)
    m.check(params, problem=None)      -> None, or ValueError naming the argument
    m.variance_factor(S, N)            -> (N − S)/(N − 1) if finite_n else 1
    m.finite_n, m.state_dependent      (static flags)

``sample(key, …)`` equals ``apply(params, normal(key, noise_shape), …)`` with z drawn in
the parameters' float dtype, so two steppers given the same key see the same z.

**Finite-N factor.** With ``finite_n=True`` the noise models minibatches drawn without
replacement (``sgd(sampling="subset")``): Cov(ĝ_S) = (C/S)(N − S)/(N − 1). The factor
depends on the batch size S (a traced, possibly gridded or scheduled hyperparameter) and
on N (the problem's), which the *stepper* knows, so ``sample`` and ``covariance`` always
describe C itself and the stepper multiplies the noise amplitude by
√(variance_factor(S, N)). (N = 1 forces S = N, full-batch: the factor is 0.)

The package: :mod:`~sgdsde.noise.base` (the :class:`NoiseModel` base class and the helpers
the models share), :mod:`~sgdsde.noise.constant` (isotropic, diagonal, full),
:mod:`~sgdsde.noise.state_dependent` (empirical, from_function).
"""

from .base import NoiseModel, is_noise_model
from .constant import Diagonal, Full, Isotropic, diagonal, full, isotropic
from .state_dependent import Empirical, FromFunction, empirical, from_function

__all__ = [
    "NoiseModel",
    "Isotropic",
    "Diagonal",
    "Full",
    "Empirical",
    "FromFunction",
    "isotropic",
    "diagonal",
    "full",
    "empirical",
    "from_function",
    "is_noise_model",
]


# their public home (reprs, pickles, sweep fingerprints name the class by module)
for _cls in (NoiseModel, Isotropic, Diagonal, Full, Empirical, FromFunction):
    _cls.__module__ = "sgdsde.noise"
del _cls
