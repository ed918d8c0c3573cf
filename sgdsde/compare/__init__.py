"""Weak-error harness: SGD against an SDE model of it, on the same clock.

:func:`weak_error` runs two steppers — by default ``sgd("subset")`` and an SDE stepper
(``euler_maruyama``, ``underdamped``, ``diffrax_stepper``) — on the same problem,
hyperparameters and initial condition, over a sweep of learning rates η (at a fixed
noise scale η/S, or at a fixed batch size S), and reports for each observable φ

- E_SGD[φ] and E_SDE[φ] with Monte-Carlo standard errors from independent replicas,
- the gap Δ(η) = E_SGD[φ] − E_SDE[φ] with its standard error,
- the fitted order p of the gap in η, Δ ∝ η^p, with a confidence interval.

:func:`expectations` does the first part for one stepper and :func:`gap` compares two
results (so a third stepper, e.g. Gaussian SGD, costs one more run, not two);
:func:`fit_order` is the fit on its own.

Clock. Times are **SME time** t_sme = η·(SGD steps) (docs/theory.md §2), the only clock on
which runs with different η describe the same continuous time: at t_sme the SGD run
has done t_sme/η steps and an SDE stepper with step dt (in SGD steps) t_sme/(η·dt)
calls. Where that is not an integer, E[φ] is interpolated linearly between the two
neighbouring steps, replica by replica (an O(η²) error in a smooth mean, below the
O(η) gap). ``window=(t0, t1)`` averages φ over every step with t_sme in [t0, t1]
instead (for stationary quantities).

Statistics. Each configuration (η) is one member of a grid run per stepper (one compiled
program); the runner gives every configuration the same random keys, so estimates at
different η are correlated. Those correlations are measured from the replicas (replica
r of every configuration shares its keys) and used in the fit: a generalised
least-squares fit of log|Δ| against log η, with the covariance of log|Δ| propagated from
the Monte-Carlo covariance of the gaps (delta method: Cov(Δ_g, Δ_h)/(Δ_g Δ_h)). The two
steppers run with independent keys (fold_in(key, 0) and fold_in(key, 1)). Points where
the gap is not resolved (|Δ| < min_z · stderr) or where a replica diverged are left out
of the fit and flagged. When the points scatter more than their error bars
(χ²/dof > 1: the power law is not exact, e.g. an O(η²) term) the slope's standard error
is inflated by √(χ²/dof) (both are reported).

Diverged replicas (non-finite parameters, e.g. SGD past η λ_max ≈ 2, or an observable
that overflows) are reported as a fraction per configuration and time and left out of
the means — never averaged as NaN. A replica on its way to divergence (huge but still
finite at the time) is kept; where ``diverged > 0`` the mean is best not read.

The modules: :mod:`~sgdsde.compare.observables` (φ helpers and the recording observer),
:mod:`~sgdsde.compare.ensembles` (E[φ] under one stepper), :mod:`~sgdsde.compare.order`
(the GLS fit of the order), :mod:`~sgdsde.compare.gaps` (the gap and :func:`weak_error`),
:mod:`~sgdsde.compare.report` (the printed table).
"""

from .ensembles import Expectations, expectations
from .gaps import WeakError, gap, weak_error
from .observables import basin_indicator, coordinate, squared_distance
from .order import OrderFit, fit_order

__all__ = [
    "weak_error",
    "expectations",
    "gap",
    "WeakError",
    "Expectations",
    "OrderFit",
    "fit_order",
    "squared_distance",
    "basin_indicator",
    "coordinate",
]
