"""sgdsde: stochastic gradient descent as a stochastic differential equation, in JAX.

A problem, a stepper, a runner: discrete SGD and its SDE models are steppers with one
signature, driven by one runner over one problem. Times are SGD steps unless a result
says ``clock == "sme"`` (t_sme = η · t_steps).
"""

from . import observers, problems, sampling
from .hyper import Hyper, HyperValues
from .problem import Problem
from .runner import DivergenceWarning, RunResult, run
from .steppers import Stepper, StepperState, sgd

try:  # theory is written alongside; keep the package importable while it lands
    from . import theory
except ImportError:  # pragma: no cover
    pass

__version__ = "0.1.0"

__all__ = [
    "Problem",
    "Hyper",
    "HyperValues",
    "Stepper",
    "StepperState",
    "sgd",
    "run",
    "RunResult",
    "DivergenceWarning",
    "observers",
    "problems",
    "sampling",
    "theory",
]
