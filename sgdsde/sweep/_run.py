"""Running a sweep chunk by chunk (:func:`run_sweep`, which resumes) and assembling its
files into a :class:`~sgdsde.sweep.SweepResult` (:func:`load`)."""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import jax
import numpy as np

from .. import runner
from .. import sharding as sharding_lib
from .._checks import typed_key
from .._progress import Progress, note
from ..hyper import _FIELDS, Hyper
from ..problem import Problem
from ..steppers import Stepper
from ._plan import (FORMAT, _batch_groups, _check_same_sweep, _chunking, _flat_values, _manifest,
                    _process_chunks, _sweep_id, _take)
from ._processes import local_devices, wait_for_others
from ._results import PyTree, SweepProgress, SweepResult, SweepWarning
from ._storage import (
    _MANIFEST,
    _check_or_write_structure,
    _check_out_dir,
    _config_path,
    _decode,
    _encode,
    _finished,
    _leaf_spec,
    _leaf_specs,
    _missing,
    _read_json,
    _read_structure,
    _remove_temporaries,
    _scan_configs,
    _sync_folder,
    _write_atomic,
)


def run_sweep(
    out_dir: str | os.PathLike,
    key: jax.Array,
    stepper: Stepper,
    problem: Problem,
    hyper: Hyper,
    init_params: PyTree | Callable[[jax.Array], PyTree],
    num_steps: int,
    *,
    replicas: int = 1,
    observers: Sequence | None = None,
    configs_per_chunk: int | None = None,
    progress: bool | Callable[[SweepProgress], None] = True,
    clock: str | None = None,
    devices=None,
    config_block: int | None = None,
    keep_state: bool = False,
    allow_code_changes: bool = False,
    group_batch_sizes: bool | None = None,
) -> SweepResult:
    """Run every configuration of the grid ``hyper`` like :func:`sgdsde.run` (same
    arguments, same numbers), ``configs_per_chunk`` configurations per compiled call,
    writing each finished configuration to ``out_dir`` and skipping those already there.

    configs_per_chunk: configurations per chunk (default: a twentieth of the grid,
      rounded up to a multiple of config_block × the device count, at most the largest
      batch-size group); rounded up to a multiple of ``config_block``.
    config_block: the width at which configurations are computed (see
      :func:`sgdsde.run`); the result equals ``sgdsde.run(..., config_block=...)`` over
      each batch size's configurations (over the whole grid with
      ``group_batch_sizes=False``) bit for bit, on any devices and processes. Default: the
      one the sweep in ``out_dir`` was started with, else ``configs_per_chunk`` / device
      count (one block per device and chunk).
    group_batch_sizes: True runs the configurations of each batch size S apart, each
      drawing minibatches of S (no masked work; one compilation per distinct S; a stacked
      batch-size schedule by its largest size, masked below it as in a run alone); False
      runs every chunk at the grid's largest S, masked (one compilation). Same random
      numbers either way; the numbers differ by float rounding only. Default None: the
      setting the sweep in ``out_dir`` was started with, else True.
    progress: True shows a progress line on stderr (:mod:`sgdsde._progress`); a callable receives a
      :class:`SweepProgress` after every chunk; False is silent.
    devices: as in :func:`sgdsde.run` (each chunk is split over the devices). Under
      ``jax.distributed`` every process calls ``run_sweep`` with the same arguments; each
      runs its own share of the chunks on its own devices among ``devices``, writes its
      files, waits for the others' and returns the whole result (:mod:`sgdsde.sweep`).
    keep_state: also store the final stepper states (params, velocity, …) per configuration.
    allow_code_changes: resume even if a function's fingerprint changed (see :mod:`sgdsde.sweep`).
    Returns :func:`load` ``(out_dir)``. A :class:`~sgdsde.DivergenceWarning` lists the
    diverged replicas of the whole grid (once, at the end).
    """
    out_dir = _check_out_dir(out_dir)
    hyper, num_steps, replicas, observers, clock = runner._check_run_arguments(
        stepper, problem, hyper, num_steps, replicas, observers, clock
    )
    key = typed_key(key)
    if not callable(init_params):
        problem.check_params(init_params)
    for value, name in ((keep_state, "keep_state"), (allow_code_changes, "allow_code_changes")):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: must be True or False, got {value!r}")
    if not (isinstance(progress, bool) or callable(progress)):
        raise ValueError(f"progress: must be True, False or a callable(SweepProgress), got {progress!r}")
    if group_batch_sizes is not None and not isinstance(group_batch_sizes, bool):
        raise ValueError(f"group_batch_sizes: must be True, False or None, got {group_batch_sizes!r}")
    grid_shape = hyper.grid_shape
    total = int(np.prod(grid_shape)) if grid_shape else 1
    devices = local_devices(devices)
    device_count = len(sharding_lib.resolve_devices(devices)) if devices is not None else 1
    existing = _read_json(os.path.join(out_dir, _MANIFEST))
    if config_block is None and existing is not None and isinstance(existing.get("config_block"), int):
        config_block = existing["config_block"]
    if group_batch_sizes is None:  # a sweep keeps its own setting (sweeps before grouping: masked)
        group_batch_sizes = bool(existing.get("group_batch_sizes", False)) if existing is not None else True
    values = _flat_values(hyper, grid_shape, total)
    groups = _batch_groups(values, total, group_batch_sizes)
    per_chunk, config_block = _chunking(configs_per_chunk, config_block, total, device_count,
                                        max(len(members) for _, members in groups))

    manifest = _manifest(key, stepper, problem, hyper, init_params, num_steps, replicas, observers, clock,
                         keep_state, config_block, group_batch_sizes)
    if existing is not None:
        _check_same_sweep(existing, manifest, out_dir, allow_code_changes)
    elif _finished(out_dir, total):
        raise ValueError(f"out_dir: {out_dir!r} holds configuration files but no {_MANIFEST}: not a sweep folder")
    _remove_temporaries(out_dir)
    sweep_id = _sweep_id(existing or manifest)
    process, processes = jax.process_index(), jax.process_count()
    share = {g for _, chunk in _process_chunks(groups, per_chunk, set(range(total)), process, processes)
             for g in chunk}
    finished = set()
    if existing is not None:
        good, damaged = _scan_configs(out_dir, existing, _read_structure(out_dir))
        finished = set(good) & share
        mine = {_config_path(out_dir, g, total) for g in share}
        for path, reason in damaged.items():
            if path in mine:  # a damaged file is recomputed (and announced) by the process it belongs to
                warnings.warn(f"out_dir: {path} {reason}; computing that configuration again", SweepWarning,
                              stacklevel=2)
    pending = share - finished
    chunks = _process_chunks(groups, per_chunk, pending, process, processes)
    structure_checked = False
    began = time.perf_counter()
    bar = Progress("sgdsde.sweep", len(pending), "configurations", enabled=progress is True)
    if progress is True and finished and chunks:
        note("sgdsde.sweep", f"{len(finished)} of {len(share)} configurations were finished earlier ({out_dir})")
    # files are written by one background thread while the next chunk computes (each file
    # is fsynced: ~1–10 ms of waiting per file, which would otherwise idle the devices);
    # an interrupted sweep still writes every chunk it finished before stopping
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sgdsde-sweep-writer")
    writes = []
    try:
        for number, (batch_size, chunk) in enumerate(chunks, start=1):
            padded = np.asarray(chunk + [chunk[-1]] * (per_chunk - len(chunk)))
            # a group of one batch size S draws at S: no masked work (S_max of the grid when not grouped)
            sub = Hyper(*(_take(v, padded) for v in values), max_batch_size=batch_size or hyper.max_batch_size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", runner.DivergenceWarning)  # reported once, at the end
                result = runner.run(key, stepper, problem, sub, init_params, num_steps, replicas=replicas,
                                    observers=observers, clock=clock, devices=devices, config_block=config_block)
            obs_struct, obs_leaves = _encode(result.observations)
            state_struct, state_leaves = _encode(result.state) if keep_state else (None, [])
            structure = {
                "observations": obs_struct,
                "state": state_struct,
                "leaves": {
                    "obs": [_leaf_spec(x) for x in obs_leaves],
                    "state": [_leaf_spec(x) for x in state_leaves],
                    "diverged": _leaf_spec(result.diverged),
                    "divergence_step": _leaf_spec(result.divergence_step),
                    "divergence_time": _leaf_spec(result.divergence_time),
                },
            }
            if not structure_checked:  # every process may write the manifest (same content, atomic)
                _check_or_write_structure(out_dir, structure, manifest, True)
                structure_checked = True
            files = []
            for j, g in enumerate(chunk):
                arrays = {f"obs_{i}": x[j] for i, x in enumerate(obs_leaves)}
                arrays.update({f"state_{i}": x[j] for i, x in enumerate(state_leaves)})
                arrays.update(
                    config_index=np.asarray(g),
                    sweep=np.asarray(sweep_id),
                    diverged=result.diverged[j],
                    divergence_step=result.divergence_step[j],
                    divergence_time=result.divergence_time[j],
                    **{f: np.asarray(v[g]) for f, v in zip(_FIELDS, values) if not callable(v)},
                )
                files.append((_config_path(out_dir, g, total), arrays))
            writes.append(writer.submit(_write_chunk, files))
            if progress:
                elapsed = time.perf_counter() - began
                done_now = sum(len(c) for _, c in chunks[:number])
                report = SweepProgress(
                    done=len(finished) + done_now, total=len(share), resumed=len(finished), chunk=number,
                    chunks=len(chunks), elapsed=elapsed,
                    remaining=elapsed / done_now * (len(pending) - done_now),
                )
                if callable(progress):
                    progress(report)
                else:
                    bar.update(done_now)
    finally:
        writer.shutdown(wait=True)
    for write in writes:
        write.result()  # a failed write raises here
    bar.close()
    if progress is True and not chunks:
        note("sgdsde.sweep", f"all {len(share)} configurations were finished earlier ({out_dir})")
    if processes > 1:  # the other processes' shares
        note("sgdsde.sweep", f"process {process}: waiting for the other {processes - 1} processes",
             enabled=progress is True)
        wait_for_others(out_dir, _read_json(os.path.join(out_dir, _MANIFEST)))

    result = load(out_dir)
    if result.any_diverged:
        warnings.warn(
            runner._divergence_text(result.diverged, result.divergence_step, result.grid_shape, replicas),
            runner.DivergenceWarning,
            stacklevel=2,
        )
    return result


def _write_chunk(files: list) -> None:
    """Write a chunk's configuration files (each atomic and fsynced), then fsync their
    folder once."""
    for path, arrays in files:
        _write_atomic(path, lambda f, a=arrays: np.savez(f, **a), sync_folder=False)
    for folder in {os.path.dirname(path) for path, _ in files}:
        _sync_folder(folder)


def load(out_dir: str | os.PathLike, *, allow_incomplete: bool = False) -> SweepResult:
    """The results of the sweep in ``out_dir``, assembled on its grid.

    A sweep with unfinished configurations raises ValueError unless
    ``allow_incomplete=True`` (then ``completed`` marks the finished ones and the others
    hold NaN, −1 or False). A configuration file that is unreadable, truncated, of
    another configuration or another sweep, or shaped unlike ``structure.json`` raises
    ValueError naming it, whatever ``allow_incomplete`` (see :mod:`sgdsde.sweep`)."""
    out_dir = _check_out_dir(out_dir)
    manifest = _read_json(os.path.join(out_dir, _MANIFEST))
    if manifest is None:
        raise ValueError(f"out_dir: {out_dir!r} holds no sweep ({_MANIFEST} is missing)")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"out_dir: {out_dir!r} holds a sweep of format {manifest.get('format')!r}, not {FORMAT!r}")
    structure = _read_structure(out_dir)
    grid_shape = tuple(manifest["grid_shape"])
    total, replicas = manifest["num_configs"], manifest["replicas"]
    good, damaged = _scan_configs(out_dir, manifest, structure)
    if damaged:
        listed = "; ".join(f"{path} {reason}" for path, reason in damaged.items())
        raise ValueError(
            f"out_dir: {len(damaged)} configuration file(s) of the sweep in {out_dir!r} cannot be used: {listed}. "
            "Delete them and run run_sweep again with the same arguments to recompute them (it also recomputes "
            "them without deleting, with a SweepWarning)"
        )
    if len(good) < total and not allow_incomplete:
        raise ValueError(
            f"out_dir: {total - len(good)} of {total} configurations of the sweep in {out_dir!r} are not "
            "finished (run run_sweep again to complete it, or load(..., allow_incomplete=True))"
        )
    specs = structure["leaves"]
    stacked = {n: _missing((total, *shape), dtype) for n, (shape, dtype) in _leaf_specs(structure).items()}
    for g, arrays in good.items():
        for n, value in arrays.items():
            stacked[n][g] = value
    finished = sorted(good)
    grid = lambda x: x.reshape(grid_shape + x.shape[1:])
    obs_leaves = [grid(stacked[f"obs_{i}"]) for i in range(len(specs["obs"]))]
    state = None
    if structure["state"] is not None:
        state = _decode(structure["state"], [grid(stacked[f"state_{i}"]) for i in range(len(specs["state"]))])
    completed = np.zeros(total, bool)
    completed[finished] = True
    hyper = {
        f: (v["schedule"] if "schedule" in v else np.asarray(v["values"], dtype=np.dtype(v["dtype"])).reshape(grid_shape))
        for f, v in manifest["hyper"].items()
    }
    return SweepResult(
        observations=_decode(structure["observations"], obs_leaves),
        diverged=grid(stacked["diverged"]),
        divergence_step=grid(stacked["divergence_step"]),
        divergence_time=grid(stacked["divergence_time"]),
        hyper=hyper,
        grid_shape=grid_shape,
        num_steps=manifest["num_steps"],
        replicas=replicas,
        clock=manifest["clock"],
        dt=manifest["dt"],
        completed=completed.reshape(grid_shape),
        out_dir=out_dir,
        config_block=manifest["config_block"],
        state=state,
    )
