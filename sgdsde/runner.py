"""The runner: ``lax.scan`` over steps, ``vmap`` over replicas and hyperparameter grids.

Randomness is fixed by the key alone: replica r uses k_r = fold_in(key, r) and its
step k the key fold_in(k_r, k). Every configuration of a grid sees the same keys
(common random numbers), so a grid run equals the runs done one by one, and a run
split in chunks equals the unsplit run. Memory does not grow with ``num_steps``
(except for observers that record every k steps, by request).

Devices. ``run(..., devices=...)`` splits the grid (or the replicas of one configuration)
over devices with ``jax.sharding`` (:mod:`sgdsde.sharding`); ``config_block`` fixes the
width at which configurations are computed, which makes results bit-identical whatever
the grid size and device count (docs/sweeps.md). Long grids: :mod:`sgdsde.sweep`.

Clocks. The runner counts *steps of the run*: calls of the stepper's ``step`` (k). A
stepper advances SGD time by ``Stepper.dt`` SGD steps per call, so

- ``"calls"``: k, the runner's own count (``num_steps``, ``burn_in`` and ``every`` are
  always given in it);
- ``"steps"``: SGD steps, t = k·dt (= k for ``sgd`` and every stepper with dt = 1);
- ``"sme"``: SME time, t_sme = Σ η over the elapsed SGD time, i.e. Σ_{i<k} η(i)·dt with
  η(i) the learning rate the stepper uses in call i (= η·k·dt for a constant η, per grid
  configuration; with a schedule it is the cumulative sum). The momentum does not enter
  (t_sme counts η, not η/(1 − β)).

``run(..., clock=...)`` puts every time-valued output on one clock (see :class:`RunResult`);
``result.on_clock(clock)`` converts afterwards.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import observers as obs_lib
from . import sharding as sharding_lib
from ._checks import check_int, typed_key
from ._progress import Progress
from .hyper import Hyper
from .problem import Problem
from .schedules import Schedule
from .simulation import (
    DIVERGENCE,
    Simulation,
    _simulate,
    check_arguments,
    guarded_at_chunk_ends,
    host_flag,
    initial_params,
    initial_states,
    programs,
    replica_keys,
    to_grid,
)
from .steppers import Stepper, StepperState, all_finite

PyTree = Any

__all__ = ["run", "RunResult", "DivergenceWarning", "replica_keys", "CLOCKS"]

CLOCKS = ("steps", "sme", "calls")



class DivergenceWarning(RuntimeWarning):
    """Some replicas produced non-finite parameters during a run."""


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns.

    observations: ``{observer name: result}``, each with leading axes ``grid_shape``.
    diverged: bool (*grid_shape, R); divergence_step: int (*grid_shape, R), the step of
    the run k whose update first gave a non-finite value (−1 if none), always counted in
    calls of the stepper (it indexes steps, whatever the clock).
    divergence_time: (*grid_shape, R), when the parameters first became non-finite, on
    ``clock`` (the time after update ``divergence_step``; −1 if none).
    state: the final stepper states (*grid_shape, R, …), to continue a run.
    num_steps: calls of the stepper; dt: SGD steps per call (``Stepper.dt``).
    clock: the clock of every time in the result — ``"steps"`` (SGD steps, k·dt),
    ``"sme"`` (t_sme = Σ η over the elapsed SGD steps) or ``"calls"`` (calls of the
    stepper, k). Converted on that clock: ``snapshots`` and ``loss_curve`` ``times``;
    ``first_passage`` ``times`` (−1 = never stays −1), ``mean_time`` and
    ``mean_time_stderr`` (recomputed from the converted times); ``divergence_time``.
    Observers without ``retime`` (user observers) keep counts in calls. On ``"sme"`` the
    times get the grid's shape: each configuration has its own η. Not times, so never
    converted: ``num_steps``, ``divergence_step``, observer inputs (``burn_in``, ``every``).
    """

    observations: dict
    diverged: np.ndarray
    divergence_step: np.ndarray
    state: StepperState
    hyper: Hyper
    grid_shape: tuple
    num_steps: int
    replicas: int
    clock: str = "steps"
    dt: float = 1.0
    divergence_time: np.ndarray | None = None
    # the observations counted in calls, and the observers' retime functions (by name)
    _raw_observations: dict | None = dataclasses.field(default=None, repr=False, compare=False)
    _retimers: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, name: str):
        return self.observations[name]

    # a pytree: arrays (and the hyperparameters) are leaves; sizes, clock and retimers static
    def tree_flatten(self):
        children = (self.observations, self.diverged, self.divergence_step, self.state, self.hyper,
                    self.divergence_time, self._raw_observations)
        aux = (self.grid_shape, self.num_steps, self.replicas, self.clock, self.dt,
               tuple(sorted(self._retimers.items())))
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        observations, diverged, step, state, hyper, divergence_time, raw = children
        grid_shape, num_steps, replicas, clock, dt, retimers = aux
        return cls(observations, diverged, step, state, hyper, grid_shape, num_steps, replicas, clock, dt,
                   divergence_time, raw, dict(retimers))

    @property
    def any_diverged(self) -> bool:
        return bool(np.any(self.diverged))

    @property
    def duration(self) -> np.ndarray:
        """Length of the run on ``clock`` (an array of shape ``grid_shape``)."""
        return self.clock_times(self.num_steps)

    def clock_times(self, calls, clock: str | None = None) -> np.ndarray:
        """Times on ``clock`` (default: this result's) of the given counts of stepper
        calls (integers in [0, num_steps]); shape ``grid_shape + shape(calls)``."""
        clock = _check_clock(clock or self.clock, self.dt)
        calls = np.asarray(calls)
        if calls.dtype.kind not in "iu" or np.any(calls < 0) or np.any(calls > self.num_steps):
            raise ValueError(f"calls: must be integers in [0, num_steps = {self.num_steps}], got {calls!r}")
        full = np.broadcast_to(calls, self.grid_shape + calls.shape)
        convert = _clock_converter(self.hyper, self.grid_shape, self.dt, self.num_steps, clock)
        return np.asarray(full if convert is None else convert(full))

    def on_clock(self, clock: str) -> "RunResult":
        """The same result with every time-valued output on ``clock`` ("steps", "sme" or
        "calls"); see the class docstring for what is converted."""
        clock = _check_clock(clock, self.dt)
        raw = self._raw_observations if self._raw_observations is not None else self.observations
        convert = _clock_converter(self.hyper, self.grid_shape, self.dt, self.num_steps, clock)
        if convert is None:
            observations = dict(raw)
            divergence_time = np.where(self.divergence_step >= 0, self.divergence_step + 1, -1)
        else:
            observations = {
                name: (self._retimers[name](value, convert) if name in self._retimers else value)
                for name, value in raw.items()
            }
            step = np.asarray(self.divergence_step)
            divergence_time = np.where(step >= 0, convert(np.where(step >= 0, step + 1, 0)), -1)
        return dataclasses.replace(
            self, observations=observations, clock=clock, divergence_time=divergence_time,
            _raw_observations=raw,
        )


def _check_clock(clock, dt: float) -> str:
    if clock is None:
        return "steps"
    if not isinstance(clock, str) or clock not in CLOCKS:
        raise ValueError(f"clock: must be one of {CLOCKS} (or None: the default), got {clock!r}")
    return clock


def _clock_converter(hyper: Hyper, grid_shape: tuple, dt: float, num_steps: int, clock: str):
    """``convert(calls) -> times`` for arrays of call counts whose leading axes are the
    grid, or None where the clock is the runner's own count ("calls"; "steps" at dt = 1)."""
    if clock == "calls" or (clock == "steps" and dt == 1.0):
        return None
    if clock == "steps":
        return lambda calls: np.asarray(calls, dtype=np.float64) * dt
    rate = hyper.learning_rate
    if isinstance(rate, Schedule):  # pytree schedules, one per configuration: Σ η_g(i)·dt per g
        return _schedule_clock(rate, grid_shape, dt, num_steps)
    if callable(rate):  # one schedule for every configuration: cumulative Σ η(i)·dt
        from .sde import sgd_step_of

        calls = jnp.arange(max(num_steps, 1), dtype=jnp.int32)
        steps = np.asarray(sgd_step_of(calls, dt))
        try:
            rates = np.asarray(jax.vmap(rate)(jnp.asarray(steps)), dtype=np.float64)
        except Exception:  # a schedule that does not vmap: evaluate step by step
            rates = np.asarray([np.asarray(rate(int(k))) for k in steps], dtype=np.float64)
        rates = np.broadcast_to(rates, steps.shape)[:num_steps]
        elapsed = np.concatenate([[0.0], np.cumsum(rates * dt)])
        return lambda calls: elapsed[np.asarray(calls)]
    eta = np.broadcast_to(np.asarray(rate, dtype=np.float64), grid_shape)

    def convert(calls):
        calls = np.asarray(calls, dtype=np.float64)
        return calls * dt * eta.reshape(grid_shape + (1,) * (calls.ndim - len(grid_shape)))

    return convert


def _schedule_clock(rate: Schedule, grid_shape: tuple, dt: float, num_steps: int):
    """The "sme" converter of a :mod:`sgdsde.schedules` learning rate whose parameters may
    carry grid axes (a stacked schedule): t_g(k) = Σ_{i<k} η_g(i)·dt for each configuration
    g, η_g(i) the rate at the SGD step call i falls in, summed in float64 on the host."""
    from .sde import sgd_step_of

    size = int(np.prod(grid_shape)) if grid_shape else 1
    flat = rate.broadcast_batch(grid_shape).reshape_batch((size,))  # (G,) configurations
    steps = np.asarray(sgd_step_of(jnp.arange(max(num_steps, 1), dtype=jnp.int32), dt))
    rates = np.asarray(jax.vmap(flat)(jnp.asarray(steps)), dtype=np.float64)  # (K, G)
    rates = np.broadcast_to(rates.reshape(len(steps), -1), (len(steps), size))[:num_steps]
    elapsed = np.concatenate([np.zeros((1, size)), np.cumsum(rates * dt, axis=0)]).T  # (G, K + 1)

    def convert(calls):
        calls = np.asarray(calls)
        tail = calls.shape[len(grid_shape):]
        index = np.broadcast_to(calls, grid_shape + tail).reshape(size, -1)
        return np.take_along_axis(elapsed, index, axis=1).reshape(grid_shape + tail)

    return convert


def _check_run_arguments(stepper, problem, hyper, num_steps, replicas, observers, clock):
    """Checks of :func:`run`'s arguments, in Python (also used by :mod:`sgdsde.sweep`).
    Returns (hyper with max_batch_size set, num_steps, replicas, observer list, clock)."""
    hyper, num_steps, replicas, observers = check_arguments(stepper, problem, hyper, num_steps, replicas, observers)
    return hyper, num_steps, replicas, observers, _check_clock(clock, float(stepper.dt))




def run(
    key: jax.Array,
    stepper: Stepper,
    problem: Problem,
    hyper: Hyper,
    init_params: PyTree | Callable[[jax.Array], PyTree],
    num_steps: int,
    *,
    replicas: int = 1,
    observers: Sequence[obs_lib.Observer] | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    clock: str | None = None,
    devices=None,
    config_block: int | None = None,
) -> RunResult:
    """Run ``replicas`` independent copies of ``stepper`` for ``num_steps`` SGD steps,
    for every configuration of ``hyper`` (array fields form a grid), in one program.

    init_params: one params pytree shared by all replicas, or a function
      ``init_params(key) -> params`` drawn per replica.
    observers: what to record (default: ``[observers.endpoint()]``); divergence is
      always tracked and reported (a :class:`DivergenceWarning` names the replicas).
    chunk_size: run the scan in chunks of this many steps (same numbers as one chunk);
      ``progress=True`` shows a progress line on stderr (default 20 chunks; see
      :mod:`sgdsde._progress`).
    num_steps, and the observers' ``burn_in`` and ``every``, count calls of the stepper
    (SGD steps for ``sgd``; a stepper with ``dt`` advances dt SGD steps per call).
    clock: the clock of the times in the result (module docstring, :class:`RunResult`):
      ``"steps"`` (SGD steps, k·dt), ``"sme"`` (t_sme = Σ η over the elapsed SGD
      steps) or ``"calls"`` (k). Default None: SGD steps (``"steps"``), whatever dt.
    devices: where to run (:mod:`sgdsde.sharding`): None (default: JAX's default device),
      ``"all"`` (every device, of every process under ``jax.distributed``), an int n (the
      first n of ``jax.devices()``), a sequence of ``jax.Device`` or a
      ``jax.sharding.Mesh``. A grid is split along its flattened configuration axis
      (padded with copies of the last configuration when the device count does not
      divide it; the copies are dropped), a single configuration along its replicas.
      The random numbers do not depend on the devices: replica keys are fold_in(key, r)
      for every configuration.
    config_block: compute a grid this many configurations at a time (a ``lax.map`` over
      blocks, each vmapped; the grid is padded to whole blocks per device). Default None:
      the whole configuration axis (of each device) in one vmap, the fastest. XLA may
      round a vmapped computation differently at different widths (its kernels and
      threading depend on the shapes), so only with a fixed ``config_block`` are the
      results bit-identical whatever the grid size, the device count or the chunking of a
      sweep (:mod:`sgdsde.sweep`); without it they agree to float rounding.
    """
    # ---- validation, in Python, before anything compiles
    hyper, num_steps, replicas, observers, clock = _check_run_arguments(
        stepper, problem, hyper, num_steps, replicas, observers, clock
    )
    all_observers = tuple(observers) + (DIVERGENCE,)
    if chunk_size is None:
        chunk_size = _progress_chunk(num_steps) if progress else max(num_steps, 1)
    chunk_size = check_int(chunk_size, "chunk_size", 1)

    grid_shape = hyper.grid_shape
    configs = int(np.prod(grid_shape)) if grid_shape else 1
    if config_block is not None:
        config_block = check_int(config_block, "config_block", 1)
    block = config_block if configs > 1 else None
    layout = sharding_lib.plan(devices, configs, replicas, block or 1)
    key = typed_key(key)

    if layout is None and block is None and chunk_size >= num_steps:
        # the plain case: exactly sd.simulate (one compiled program, the same bits)
        sim = _simulate(key, stepper, problem, hyper, init_params, num_steps, replicas, all_observers)
        sim = jax.tree_util.tree_map(np.asarray, sim)
    else:
        sim = _run_in_pieces(key, stepper, problem, hyper, init_params, num_steps, replicas, all_observers,
                             chunk_size, progress, layout, block, configs, grid_shape)
    for o in observers:  # misuse only the values can show (e.g. a basin label out of range)
        if o.check is not None:
            o.check(sim.observations[o.name])
    result = RunResult(
        observations=sim.observations,
        diverged=sim.diverged,
        divergence_step=sim.divergence_step,
        state=sim.state,
        hyper=hyper,
        grid_shape=grid_shape,
        num_steps=num_steps,
        replicas=replicas,
        clock="calls",
        dt=float(stepper.dt),
        _retimers={o.name: o.retime for o in observers if o.retime is not None},
    ).on_clock(clock)
    if result.any_diverged:
        warnings.warn(_divergence_message(result), DivergenceWarning, stacklevel=2)
    return result


def _progress_chunk(num_steps: int) -> int:
    """Chunk size for progress lines: about 20 chunks, and of equal length where a size
    between n/40 and n/10 divides n — a shorter last chunk would compile the scan once more."""
    target = max(-(-num_steps // 20), 1)
    sizes = range(max(-(-num_steps // 40), 1), max(-(-num_steps // 10), 1) + 1)
    dividing = [size for size in sizes if num_steps % size == 0]
    return min(dividing, key=lambda size: (abs(size - target), size)) if dividing else target


def _run_in_pieces(key, stepper, problem, hyper, init_params, num_steps, replicas, all_observers,
                   chunk_size, progress, layout, block, configs, grid_shape) -> Simulation:
    """The run as jitted pieces (start, chunks of steps, finish): for progress lines,
    chunking, devices and fixed-width configuration blocks. Same numbers as
    :func:`sgdsde.simulate` to float rounding (bit for bit with ``config_block``)."""
    parts = layout.num_devices if layout is not None and layout.axis == "configs" else 1
    blocking = (parts, block) if block is not None else None
    keys = replica_keys(key, replicas)
    params = initial_params(init_params, keys, problem)
    flat_hyper = hyper.flatten_grid()
    if layout is None:
        padded = -(-configs // block) * block if block is not None else configs
        flat_hyper = sharding_lib.pad_configs(flat_hyper, configs, padded)
        states = _initial_states(stepper, problem, params, padded)
        gather = lambda tree: jax.tree_util.tree_map(lambda x: np.asarray(x)[:configs], tree)
    else:
        states = layout.place_states(jax.vmap(lambda p: stepper.init(p, problem))(params))
        flat_hyper = layout.place(layout.pad_configs(flat_hyper), layout.hyper_sharding)
        keys = layout.place(keys, layout.key_sharding)
        problem = layout.place(problem, layout.replicated)
        gather = layout.gather

    start, advance, finish, advance_unguarded = _compile(stepper, all_observers, (num_steps, replicas), blocking)
    observed = start(states, problem)
    unit = "steps" if float(stepper.dt) == 1.0 else "calls"  # a call advances dt SGD steps
    bar = Progress(f"sgdsde.run [{stepper.name}]", num_steps, unit, enabled=progress)
    unguarded = guarded_at_chunk_ends(stepper) and sum(x.nbytes for x in jax.tree_util.tree_leaves(states)) <= _CHECKPOINT_MAX_BYTES
    done = 0
    try:
        while done < num_steps:
            length = min(chunk_size, num_steps - done)
            args = (flat_hyper, problem, keys, jnp.int32(done), length)
            if unguarded:
                # the chunk without per-step guards, then one check: all parameters finite
                # (non-finite stays non-finite under θ' = θ + v', so none diverged inside);
                # else the chunk again from its start with the guarded step, and from then on
                (new_states, new_observed), finite = advance_unguarded(states, observed, *args)
                unguarded = host_flag(finite)
            if unguarded:
                states, observed = new_states, new_observed
            else:
                states, observed = advance(states, observed, *args)
            done += length
            if progress:
                jax.block_until_ready(states)
                bar.update(done)
    finally:
        bar.close()
    if layout is not None:
        states, observed = layout.before_finish((states, observed))
    results = finish(states, observed, problem)
    observations = {o.name: to_grid(gather(r), grid_shape) for o, r in zip(all_observers, results)}
    divergence = observations.pop("divergence")
    return Simulation(observations, divergence["diverged"], divergence["step"], to_grid(gather(states), grid_shape))


@functools.lru_cache(maxsize=64)
def _compile(stepper: Stepper, all_observers: tuple, ctx_static: tuple, blocking: tuple | None = None):
    """Jitted (start, advance, finish) for one stepper, observer set and run size; cached,
    so repeated runs with the same stepper and observer objects reuse the compiled code.
    blocking: None (the configuration axis vmapped at once) or (parts, width), see
    :func:`_blocked`."""
    start, advance, finish = programs(stepper, all_observers, ctx_static)

    def blocks_of(advance):
        def advance_blocks(states, observed, flat_hyper, problem, keys, first, length):
            run_block = lambda s, o, h, p, k, t: advance(s, o, h, p, k, t, length)
            return _blocked(run_block, blocking, 3)(states, observed, flat_hyper, problem, keys, first)

        return advance_blocks

    def advance_and_check(*args):
        states, observed = blocks_of(unguarded)(*args)
        return (states, observed), all_finite(states.params)

    unguarded = programs(stepper, all_observers, ctx_static, guard=False)[1] if guarded_at_chunk_ends(stepper) else None
    return (
        jax.jit(_blocked(start, blocking, 1)),
        jax.jit(blocks_of(advance), static_argnums=(6,), donate_argnums=(0, 1)),
        jax.jit(_blocked(finish, blocking, 2)),
        # not donated: its inputs are the checkpoint the chunk is replayed from
        jax.jit(advance_and_check, static_argnums=(6,)) if unguarded is not None else None,
    )


# Unguarded chunks keep their input states as the checkpoint a chunk is replayed from, so
# each chunk copies every state into fresh memory. Above this size (e.g. the epoch sampler's
# R × N orders: 1 GB at R = 10⁴, N = 50,000, where the copy cost 0.35 s a chunk against
# 0.33 s for the whole 100-step run in one program) the chunks run with per-step guards
# instead, donated and in place: the same numbers (the guards only flag and freeze).
_CHECKPOINT_MAX_BYTES = 256 * 2**20


@functools.partial(jax.jit, static_argnums=(0, 3))
def _initial_states(stepper: Stepper, problem: Problem, params: PyTree, configs: int):
    """:func:`initial_states` as one compiled program: eagerly, the per-replica states and
    their broadcast over configurations were each a copy of every state (the epoch
    sampler's orders: R·N entries)."""
    return initial_states(stepper, problem, params, configs)


def _blocked(fn: Callable, blocking: tuple | None, num_batched: int) -> Callable:
    """``fn(*batched, *shared)``, whose first ``num_batched`` arguments have a leading
    configuration axis, evaluated ``width`` configurations at a time: the axis (length
    parts·k·width) is split into ``parts`` (one per device along it, vmapped, so that each
    device holds its own), each a ``lax.map`` over k blocks of ``width`` configurations.
    Every block is the same computation at the same shapes, whatever k and parts, so XLA
    rounds alike and results do not depend on the grid size or the device count."""
    if blocking is None:
        return fn
    parts, width = blocking

    def blocked(*args):
        batched, shared = args[:num_batched], args[num_batched:]
        split = lambda x: x.reshape((parts, -1, width) + x.shape[1:])
        one_part = lambda *part: jax.lax.map(lambda block: fn(*block, *shared), part)
        out = jax.vmap(one_part)(*jax.tree_util.tree_map(split, batched))
        return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[3:]), out)

    return blocked


def _divergence_message(result: RunResult) -> str:
    return _divergence_text(result.diverged, result.divergence_step, result.grid_shape, result.replicas)


def _divergence_text(diverged, divergence_step, grid_shape: tuple, replicas: int) -> str:
    """The text of a :class:`DivergenceWarning`: how many replicas diverged, and which
    (replica@step) per configuration (``diverged``, ``divergence_step``: (*grid_shape, R))."""
    diverged = np.asarray(diverged)
    steps = np.asarray(divergence_step)
    total = diverged.size
    lines = [f"{int(diverged.sum())} of {total} replicas diverged (non-finite parameters); "
             "they are left out of every statistic."]
    flat_d = diverged.reshape(-1, replicas)
    flat_s = steps.reshape(-1, replicas)
    grid_index = list(np.ndindex(*grid_shape)) if grid_shape else [()]
    for g, (d, s) in enumerate(zip(flat_d, flat_s)):
        if d.any():
            which = np.flatnonzero(d)
            shown = ", ".join(f"{r}@{s[r]}" for r in which[:8]) + (" …" if len(which) > 8 else "")
            where = f"config {grid_index[g]}" if grid_shape else "run"
            lines.append(f"  {where}: {len(which)}/{replicas} replicas (replica@step: {shown})")
    return "\n".join(lines)
