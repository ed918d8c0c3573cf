"""The solvers of a generator in one namespace: time stepping (:mod:`~.stepping`:
:func:`evolve`), the stationary state (:mod:`~.equilibrium`: :func:`stationary`,
:func:`residual`), the spectral gap (:mod:`~.spectrum`: :func:`spectral_gap`), and the
checks, warnings and errors they share (:mod:`~.diagnostics`).

Clock: times are on the generator's clock (``gen.clock``: SGD steps for
``fp.generator(..., clock="steps")``, SME time for ``clock="sme"``).
"""

from .diagnostics import (
    DIRECT_MAX_ENTRIES,
    PECLET_LIMIT,
    SOLVERS,
    CoarseGridWarning,
    ConvergenceError,
    ConvergenceWarning,
    _check_solver,
    peclet_numbers,
)
from .equilibrium import residual, stationary
from .spectrum import spectral_gap
from .stepping import METHODS, Solution, evolve

__all__ = [
    "Solution",
    "evolve",
    "stationary",
    "spectral_gap",
    "residual",
    "CoarseGridWarning",
    "ConvergenceError",
    "ConvergenceWarning",
    "PECLET_LIMIT",
    "SOLVERS",
]
