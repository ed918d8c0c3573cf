"""Landscape analysis: which minimum SGD ends in (docs/theory.md §4).

- :func:`find_minima` — minima from many starts (vmapped damped saddle-free Newton),
  deduplicated, with loss, Hessian, eigenvalues and log det H; :func:`minima_at` for
  known locations; :func:`critical_point` checks one point.
- :func:`find_saddles` — index-1 saddles between pairs of minima (string method,
  index-1 Newton refinement), with λ_s, log|det H_s| and the minima each joins.
- :func:`laplace_log_probabilities`, :func:`laplace_probabilities`,
  :func:`laplace_ratio` — p̃_A = det(H_A)^(−1/2) exp(−2L_A/(nσ²)), normalised in log space.
- :func:`critical_noise` — n* = 4(L_A − L_B)/(σ² ln(det H_B/det H_A)), the consistent
  crossover (the paper's eq. (4) is 4× smaller; see :mod:`sgdsde.landscape.laplace`).
- :func:`kramers_escape_time` — Eyring–Kramers mean escape time (SGD steps, or SME time).
- :func:`mean_first_passage_time_1d` — the exact 1-D mean first-passage time by quadrature.
- :func:`boltzmann_basin_masses`, :func:`boltzmann_density` — exact Boltzmann basin masses
  and density on a grid in 1–3 dimensions, with a grid-error estimate.
- :func:`laplace_log_evidence` — Bayesian evidence log p(y) ≈ −C(ω₀) − ½ log det(H/λ)
  (docs/theory.md §8); :func:`linear_regression_log_evidence` (exact),
  :func:`logistic_regression_log_evidence`; :func:`network_log_evidence` (a trained
  network, log det by stochastic Lanczos quadrature).

Noise model: isotropic gradient covariance σ² I (``problems.double_well_*``,
``multi_well``, ``isotropic_landscape`` have it exactly); n = η/S (use the finite-N
n_eff = (η/S)(N − S)/(N − 1) for ``subset`` sampling). Times are SGD steps unless
``clock="sme"``.
"""

from ._common import CriticalPoint, LandscapeWarning
from .minima import Minima, critical_point, find_minima, minima_at
from .saddles import Saddles, find_saddles
from .escape import PassageTime, kramers_escape_time, mean_first_passage_time_1d
from .laplace import (
    CriticalNoise,
    critical_noise,
    laplace_log_probabilities,
    laplace_log_weights,
    laplace_probabilities,
    laplace_ratio,
)
from .evidence import __all__ as _evidence_names
from .evidence import (
    Evidence,
    laplace_log_evidence,
    linear_regression_log_evidence,
    logistic_negative_log_likelihood,
    logistic_regression_log_evidence,
    network_log_evidence,
)
from .quadrature import BasinMasses, BoltzmannGrid, boltzmann_basin_masses, boltzmann_density, grid_centers

__all__ = [
    "CriticalPoint",
    "LandscapeWarning",
    "Minima",
    "Saddles",
    "find_minima",
    "find_saddles",
    "critical_point",
    "minima_at",
    "laplace_log_weights",
    "laplace_log_probabilities",
    "laplace_probabilities",
    "laplace_ratio",
    "CriticalNoise",
    "critical_noise",
    "kramers_escape_time",
    "mean_first_passage_time_1d",
    "PassageTime",
    "boltzmann_density",
    "boltzmann_basin_masses",
    "BoltzmannGrid",
    "BasinMasses",
    "grid_centers",
    *_evidence_names,
]
