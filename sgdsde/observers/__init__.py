"""Observers: what a run records, accumulated step by step without storing trajectories.

An observer is ``Observer(name, init, update, finalize, retime=None)`` acting on the states of all
replicas of one hyperparameter configuration (leading axis R):

    init(states, ctx) -> obs            (sees the initial states, t = 0)
    update(obs, states, t, ctx) -> obs  (t = number of steps of the run done, an unbatched int)
    finalize(obs, states, ctx) -> result pytree
    retime(result, convert) -> result   (optional: puts time-valued outputs on a clock)
    check(result) -> None               (optional: raises on a misuse the run revealed)

Times are counted in steps of the run (calls of the stepper's ``step``: SGD steps for
``sgd`` and any stepper with dt = 1). ``sgdsde.run(..., clock=...)`` and
``RunResult.on_clock`` convert the time-valued outputs of the observers that define
``retime`` (``snapshots``, ``loss_curve``, ``first_passage``); ``convert`` maps an
array of step counts (leading axes: the hyperparameter grid) to times on the clock.
Inputs (``burn_in``, ``every``) are always in steps of the run.

Replicas flagged as diverged are left out of every statistic from the step they
diverged (and, for ``moments``, entirely); the run reports them. A statistic with no
data is NaN, never 0, and comes with its count (``replicas_used``, ``hit_count``):
a mean over no replicas, a standard error from fewer than two.
"""


from ._base import Observer, RunContext
from .measures import gradient_noise, sharpness
from .noise_scales import noise_scales, scaling_rule_check
from .statistics import basins, first_passage, histogram, moments
from .trajectory import divergence, endpoint, loss_curve, snapshots

__all__ = [
    "Observer",
    "RunContext",
    "endpoint",
    "snapshots",
    "moments",
    "loss_curve",
    "basins",
    "histogram",
    "first_passage",
    "divergence",
    "sharpness",
    "gradient_noise",
    "noise_scales", "scaling_rule_check",
]
