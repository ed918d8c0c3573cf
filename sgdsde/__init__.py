"""sgdsde: stochastic gradient descent as a stochastic differential equation, in JAX.

A problem, a stepper, a runner: discrete SGD and its SDE models are steppers with one
signature, driven by one runner over one problem. Every result says which clock its
times are on: ``"steps"`` (SGD steps, the default for SGD), ``"sme"`` (t_sme = Σ η over
the SGD steps, η·t_steps for a constant η) or ``"calls"`` (stepper calls; SGD steps =
calls · dt), see ``sgdsde.run(..., clock=...)`` and ``RunResult.on_clock``.
"""

from . import compare, landscape, noise, observers, problems, sampling, schedules, sde, theory
from .hyper import Hyper, HyperValues
from .problem import Problem
from .runner import DivergenceWarning, RunResult, run
from .simulation import Simulation, simulate
from .sde import diffrax_stepper, euler_maruyama, underdamped
from .steppers import Stepper, StepperState, sgd
from .svag import svag
from .sme import sme2

__version__ = "0.1.0"

# modules with heavier imports (flax, SciPy sparse) load on first use: sgdsde.nn, ...
_LAZY = {"nn", "fokker_planck", "curvature", "pac_bayes", "sweep", "sharding"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sgdsde' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Module attributes plus the lazily loaded modules, so tab completion lists them."""
    return sorted(set(globals()) | _LAZY)

__all__ = [
    "Problem",
    "Hyper",
    "HyperValues",
    "Stepper",
    "StepperState",
    "sgd",
    "euler_maruyama",
    "underdamped",
    "diffrax_stepper",
    "svag",
    "sme2",
    "noise",
    "sde",
    "compare",
    "run",
    "RunResult",
    "simulate",
    "Simulation",
    "DivergenceWarning",
    "observers",
    "problems",
    "sampling",
    "schedules",
    "theory",
    "landscape",
    "fokker_planck",
    "curvature",
    "pac_bayes",
    "nn",
    "sweep",
]
