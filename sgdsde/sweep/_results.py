"""What a sweep hands back: :class:`SweepResult` (assembled by ``load``), the
:class:`SweepProgress` reports of ``run_sweep`` and the :class:`SweepWarning`."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

PyTree = Any


class SweepWarning(UserWarning):
    """A sweep resumed under different circumstances (JAX version, changed code), or with
    damaged configuration files (recomputed)."""


class SweepProgress(NamedTuple):
    """Given to a ``progress`` callable after every chunk (seconds of this call)."""

    done: int  # configurations finished, by this call and earlier ones
    total: int  # configurations in the grid
    resumed: int  # finished by earlier calls
    chunk: int  # chunks run by this call so far
    chunks: int  # chunks this call runs
    elapsed: float  # seconds since this call started its first chunk
    remaining: float  # estimate of the seconds left


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """A sweep's results, assembled from its files (see :func:`load`).

    Like :class:`sgdsde.RunResult`: ``observations`` ({name: result}, leading axes
    ``grid_shape``), ``diverged`` and ``divergence_step`` (*grid_shape, R; steps counted in
    stepper calls), ``divergence_time`` (on ``clock``, −1 if none); ``hyper``: {field: grid
    array, or the schedule's name}; ``completed``: which configurations have finished
    (all of them unless loaded with ``allow_incomplete=True``; missing entries hold NaN,
    −1 or False); ``state``: the final stepper states (``keep_state=True``) or None;
    ``config_block``: the results equal ``sgdsde.run(..., config_block=config_block)``.
    Containers are rebuilt as dicts, lists and tuples (a NamedTuple, such as the stepper
    state, comes back as a dict of its fields).
    """

    observations: dict
    diverged: np.ndarray
    divergence_step: np.ndarray
    divergence_time: np.ndarray
    hyper: dict
    grid_shape: tuple
    num_steps: int
    replicas: int
    clock: str
    dt: float
    completed: np.ndarray
    out_dir: str
    config_block: int
    state: PyTree | None = None

    def __getitem__(self, name: str):
        return self.observations[name]

    @property
    def complete(self) -> bool:
        return bool(np.all(self.completed))

    @property
    def any_diverged(self) -> bool:
        return bool(np.any(self.diverged))


# their public home (reprs, pickles, fingerprints of values that hold them)
for _cls in (SweepWarning, SweepProgress, SweepResult):
    _cls.__module__ = "sgdsde.sweep"
del _cls
