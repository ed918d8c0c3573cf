"""Resumable sweeps: a long hyperparameter grid run chunk by chunk, each finished
configuration written to disk at once, restartable after an interruption.

    result = sweep.run_sweep("runs/grid", key, sd.sgd(), problem, sd.Hyper.grid(lrs, sizes),
                             init_params, num_steps, replicas=8, observers=[...])
    result = sweep.load("runs/grid")          # later, from any process

Chunks. The grid's configurations, flattened in C order (index g = ravel of the grid
index), are run ``configs_per_chunk`` at a time; each chunk is one call of
:func:`sgdsde.run` over an array-valued :class:`~sgdsde.Hyper` of that many
configurations (traced batch size), computed ``config_block`` configurations at a time.
The last chunk is padded with copies of its last configuration, so every chunk has the
same shapes and reuses one compiled program.

Same numbers as one run. Replica r of every configuration draws from fold_in(key, r)
(common random numbers; init_params(key) too), and minibatches are drawn at the whole
grid's largest batch size in every chunk, so a configuration's random numbers depend on
the key alone — not on its chunk, the other configurations of that chunk, the devices or
interruptions. Its floating-point rounding is fixed by ``config_block`` (XLA rounds a
vmapped computation differently at different widths), so the assembled result equals
``sgdsde.run(..., config_block=result.config_block)`` over the whole grid bit for bit,
on any devices (``tests/test_sweep.py``), and the default ``sgdsde.run`` (the whole grid
in one vmap) to float rounding.

On disk (``out_dir``):

- ``manifest.json``: the sweep's arguments (grid values, steps, replicas, clock, key,
  stepper and observer names, versions) and a SHA-256 fingerprint of each argument;
- ``structure.json``: the tree structure, shapes and dtypes of one configuration's results;
- ``configs/config_000017.npz``: one file per finished configuration (NumPy ``.npz``,
  loaded with ``allow_pickle=False``): the leaves of its observations (``obs_0``, …),
  ``diverged``, ``divergence_step``, ``divergence_time`` (replica axis R), the
  configuration's index (``config_index``), the sweep's fingerprint (``sweep``, a digest
  of the manifest's fingerprints), its hyperparameters and, with ``keep_state=True``, the
  final stepper states (``state_0``, …).

Every file is written under a temporary name in its folder, flushed to disk (fsync) and
renamed over its final name (atomic on POSIX file systems), so a killed process leaves
complete files and at most a temporary ``*.tmp`` file, which the next call deletes.

Checked files. Every configuration file is read back before it is used, by
:func:`run_sweep` when it resumes and by :func:`load`: it must be readable and complete,
hold its own index (a file renamed or copied to another index is caught), carry this
sweep's fingerprint (a file of another sweep is caught) and the shapes and dtypes of
``structure.json``. Resuming recomputes a file that fails, with a :class:`SweepWarning`
naming it; :func:`load` refuses with a ValueError naming it (delete it and resume).

Resuming. Called again with the same ``out_dir`` and arguments, :func:`run_sweep` skips
the configurations whose files exist (and pass the checks) and runs the rest. The arguments are first checked
against the manifest's fingerprints; a sweep with different arguments is refused with a
ValueError that names what differs. ``configs_per_chunk``, ``devices`` and ``progress``
may change between calls (they do not change the numbers); ``config_block``, which does
(by rounding), is taken from the manifest when not given. Functions (loss, stepper,
observers, schedules, an init function) are fingerprinted by module, name, bytecode,
constants, defaults and the values captured in their closures (arrays by content),
recursively (functions of JAX, NumPy, optax, Flax, … by name, defaults and closures,
not bytecode); global variables they read are not. ``allow_code_changes=True`` accepts a
changed function fingerprint (after a refactor that keeps the numbers; your
responsibility) — never changed data, grid, key, steps or replicas.

One process writes to one ``out_dir`` at a time (there is no lock). Under
``jax.distributed`` every process calls :func:`run_sweep` with the same arguments and
``out_dir`` on a file system they share; only process 0 writes (untested here: one
process only).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
import types
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import runner
from ._checks import check_int, typed_key
from . import sharding as sharding_lib
from .hyper import _FIELDS, Hyper
from .problem import Problem
from .steppers import Stepper

PyTree = Any

__all__ = ["run_sweep", "load", "SweepResult", "SweepProgress", "SweepWarning"]

FORMAT = "sgdsde.sweep/1"
_MANIFEST, _STRUCTURE, _CONFIGS = "manifest.json", "structure.json", "configs"
# fingerprint components that describe code, not data (allow_code_changes may accept them)
_CODE_COMPONENTS = ("problem_code", "init_params_code", "stepper", "observers", "schedules")


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


# ------------------------------------------------------------------ run_sweep
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
) -> SweepResult:
    """Run every configuration of the grid ``hyper`` like :func:`sgdsde.run` (same
    arguments, same numbers), ``configs_per_chunk`` configurations per compiled call,
    writing each finished configuration to ``out_dir`` and skipping those already there.

    configs_per_chunk: configurations per chunk (default: a twentieth of the grid,
      rounded up to a multiple of config_block × the device count); rounded up to a
      multiple of ``config_block``.
    config_block: the width at which configurations are computed (see
      :func:`sgdsde.run`); the result equals ``sgdsde.run(..., config_block=...)`` over the
      whole grid bit for bit, on any devices. Default: the one the sweep in ``out_dir``
      was started with, else ``configs_per_chunk`` / device count (one block per device
      and chunk).
    progress: True prints a line per chunk to stderr; a callable receives a
      :class:`SweepProgress` after every chunk; False is silent.
    devices: as in :func:`sgdsde.run` (each chunk is split over the devices).
    keep_state: also store the final stepper states (params, velocity, …) per configuration.
    allow_code_changes: resume even if a function's fingerprint changed (module docstring).
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
    grid_shape = hyper.grid_shape
    total = int(np.prod(grid_shape)) if grid_shape else 1
    device_count = len(sharding_lib.resolve_devices(devices)) if devices is not None else 1
    existing = _read_json(os.path.join(out_dir, _MANIFEST))
    if config_block is None and existing is not None and isinstance(existing.get("config_block"), int):
        config_block = existing["config_block"]
    per_chunk, config_block = _chunking(configs_per_chunk, config_block, total, device_count)

    manifest = _manifest(key, stepper, problem, hyper, init_params, num_steps, replicas, observers, clock,
                         keep_state, config_block)
    if existing is not None:
        _check_same_sweep(existing, manifest, out_dir, allow_code_changes)
    elif _finished(out_dir, total):
        raise ValueError(f"out_dir: {out_dir!r} holds configuration files but no {_MANIFEST}: not a sweep folder")
    writer = jax.process_index() == 0
    if writer:
        _remove_temporaries(out_dir)
    sweep_id = _sweep_id(existing or manifest)
    finished = set()
    if existing is not None:
        good, damaged = _scan_configs(out_dir, existing, _read_structure(out_dir))
        finished = set(good)
        for path, reason in damaged.items():
            warnings.warn(f"out_dir: {path} {reason}; computing that configuration again", SweepWarning,
                          stacklevel=2)
    pending = [g for g in range(total) if g not in finished]

    values = _flat_values(hyper, grid_shape, total)
    chunks = [pending[i : i + per_chunk] for i in range(0, len(pending), per_chunk)]
    structure_checked = False
    began = time.perf_counter()
    for number, chunk in enumerate(chunks, start=1):
        padded = np.asarray(chunk + [chunk[-1]] * (per_chunk - len(chunk)))
        sub = Hyper(*(v if callable(v) else v[padded] for v in values), max_batch_size=hyper.max_batch_size)
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
        if not structure_checked:
            _check_or_write_structure(out_dir, structure, manifest, writer)
            structure_checked = True
        if writer:
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
                _write_atomic(_config_path(out_dir, g, total), lambda f, a=arrays: np.savez(f, **a))
        if progress:
            elapsed = time.perf_counter() - began
            done_now = sum(len(c) for c in chunks[:number])
            report = SweepProgress(
                done=len(finished) + done_now, total=total, resumed=len(finished), chunk=number,
                chunks=len(chunks), elapsed=elapsed,
                remaining=elapsed / done_now * (len(pending) - done_now),
            )
            if callable(progress):
                progress(report)
            else:
                print(_progress_line(report), file=sys.stderr, flush=True)
    if progress is True and not chunks:
        print(f"sgdsde.sweep: all {total} configurations were finished earlier ({out_dir})", file=sys.stderr)

    result = load(out_dir)
    if result.any_diverged:
        warnings.warn(
            runner._divergence_text(result.diverged, result.divergence_step, result.grid_shape, replicas),
            runner.DivergenceWarning,
            stacklevel=2,
        )
    return result


def _progress_line(p: SweepProgress) -> str:
    earlier = f" ({p.resumed} from an earlier run)" if p.resumed else ""
    return (
        f"sgdsde.sweep: {p.done}/{p.total} configurations{earlier}, chunk {p.chunk}/{p.chunks}, "
        f"{p.elapsed:.1f} s elapsed, ~{p.remaining:.1f} s left"
    )


def _check_out_dir(out_dir) -> str:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"out_dir: must be a path (str or os.PathLike), got {type(out_dir).__name__}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir: {out_dir!r} exists and is not a folder")
    return out_dir


def _chunking(per_chunk, block, total: int, device_count: int) -> tuple[int, int]:
    """(configurations per chunk, config_block), see :func:`run_sweep`."""
    if per_chunk is not None:
        per_chunk = min(check_int(per_chunk, "configs_per_chunk", 1), total)
    if block is not None:
        block = check_int(block, "config_block", 1)
    if per_chunk is None:
        unit = (block or 1) * device_count
        per_chunk = -(-(-(-total // 20)) // unit) * unit
    if block is None:
        block = -(-per_chunk // device_count)
    return -(-per_chunk // block) * block, block


def _flat_values(hyper: Hyper, grid_shape: tuple, total: int) -> list:
    """Per field: the flattened grid values (total,) in their own dtype, or the schedule."""
    return [
        v if callable(v) else np.broadcast_to(np.asarray(v), grid_shape).reshape(total)
        for v in hyper._values()
    ]


# ---------------------------------------------------------------------- files
def _config_path(out_dir: str, index: int, total: int) -> str:
    width = max(6, len(str(total - 1)))
    return os.path.join(out_dir, _CONFIGS, f"config_{index:0{width}d}.npz")


def _finished(out_dir: str, total: int) -> set:
    """Indices g < total whose configuration file exists (unchecked)."""
    folder = os.path.join(out_dir, _CONFIGS)
    if not os.path.isdir(folder):
        return set()
    names = set(os.listdir(folder))
    return {g for g in range(total) if os.path.basename(_config_path(out_dir, g, total)) in names}


def _sweep_id(manifest: dict) -> str:
    """The digest of a sweep's fingerprints, stored in each of its configuration files."""
    return _digest(sorted(manifest["fingerprint"].items()))


def _leaf_specs(structure: dict) -> dict:
    """{array name in a configuration file: (shape, dtype)} from structure.json."""
    specs = structure["leaves"]
    return {
        **{f"obs_{i}": spec for i, spec in enumerate(specs["obs"])},
        **{f"state_{i}": spec for i, spec in enumerate(specs["state"])},
        **{n: specs[n] for n in ("diverged", "divergence_step", "divergence_time")},
    }


def _read_config(path: str, index: int, sweep_id: str, specs: dict) -> dict:
    """The arrays of configuration ``index``'s file, checked: complete and readable, holding
    configuration ``index`` of the sweep ``sweep_id``, with the shapes and dtypes of
    structure.json. Raises ValueError saying what is wrong (after the file's path)."""
    wanted = (*specs, "config_index", "sweep")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {n: data[n] for n in wanted if n in data.files}
    except Exception as err:  # zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError (not an .npz), …
        raise ValueError(f"is unreadable: truncated or damaged ({type(err).__name__}: {err})") from err
    missing = [n for n in wanted if n not in arrays]
    if missing:
        raise ValueError(f"lacks the arrays {missing} (not a file of this sweep, or of an older sgdsde)")
    stored = arrays.pop("config_index")
    if stored.shape != () or int(stored) != index:
        raise ValueError(f"holds configuration {stored.tolist()}, not {index} (a renamed or copied file)")
    if str(arrays.pop("sweep")) != sweep_id:
        raise ValueError("was written by a different sweep (its fingerprint is not this sweep's)")
    for name, (shape, dtype) in specs.items():
        if arrays[name].shape != tuple(shape) or arrays[name].dtype.str != dtype:
            raise ValueError(f"holds {name} of shape {arrays[name].shape} and dtype {arrays[name].dtype.str}, "
                             f"not {tuple(shape)} {dtype} as {_STRUCTURE} records")
    return arrays


def _scan_configs(out_dir: str, manifest: dict, structure: dict) -> tuple[dict, dict]:
    """({index: arrays} of the configuration files that pass :func:`_read_config`,
    {path: what is wrong} of the others)."""
    total, sweep_id, specs = manifest["num_configs"], _sweep_id(manifest), _leaf_specs(structure)
    good, damaged = {}, {}
    for g in sorted(_finished(out_dir, total)):
        path = _config_path(out_dir, g, total)
        try:
            good[g] = _read_config(path, g, sweep_id, specs)
        except ValueError as err:
            damaged[path] = str(err)
    return good, damaged


def _remove_temporaries(out_dir: str) -> None:
    """Temporary files of a process that was killed while writing."""
    for folder in (out_dir, os.path.join(out_dir, _CONFIGS)):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    os.remove(os.path.join(folder, name))


def _write_atomic(path: str, write: Callable) -> None:
    """write(file) into a temporary file next to ``path``, fsync, rename over ``path``."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    try:  # make the rename itself durable
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError:
        pass


def _write_json(path: str, value) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(value, indent=1).encode()))


def _read_json(path: str):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as err:
        raise ValueError(f"out_dir: cannot read {path!r} ({err})") from err


def _read_structure(out_dir: str) -> dict:
    """structure.json of a folder that has a manifest."""
    structure = _read_json(os.path.join(out_dir, _STRUCTURE))
    if structure is None:
        raise ValueError(f"out_dir: {out_dir!r} has a manifest but no {_STRUCTURE}: the folder is damaged")
    return structure


def _check_or_write_structure(out_dir: str, structure: dict, manifest: dict, writer: bool) -> None:
    """The first chunk of a fresh sweep writes structure.json, then manifest.json (so a
    run that fails before its first chunk leaves nothing behind); a resumed one checks."""
    path = os.path.join(out_dir, _STRUCTURE)
    existing = _read_json(os.path.join(out_dir, _MANIFEST)) and _read_json(path)
    if existing is not None:
        if existing != json.loads(json.dumps(structure)):
            raise ValueError(
                f"out_dir: the results of this run do not have the structure recorded in {path!r} "
                "(observers or JAX changed how results are shaped); use a new out_dir"
            )
        return
    if writer:
        os.makedirs(os.path.join(out_dir, _CONFIGS), exist_ok=True)
        _write_json(path, structure)
        _write_json(os.path.join(out_dir, _MANIFEST), manifest)


# ------------------------------------------------------------------ manifest
def _manifest(key, stepper, problem, hyper, init_params, num_steps, replicas, observers, clock, keep_state,
              config_block):
    grid_shape = hyper.grid_shape
    key_data = np.asarray(jax.random.key_data(key))
    grid = {}
    for field, value in zip(_FIELDS, hyper._values()):
        if callable(value):
            grid[field] = {"schedule": getattr(value, "__name__", "schedule")}
        else:
            arr = np.broadcast_to(np.asarray(value), grid_shape)
            grid[field] = {"values": arr.tolist(), "dtype": arr.dtype.str}
    schedules = [v for v in hyper._values() if callable(v)]
    fingerprint = {
        "key": _digest((str(jax.random.key_impl(key)), key_data)),
        "grid": _digest((grid, hyper.max_batch_size)),
        "run": _digest((num_steps, replicas, clock, keep_state, config_block)),
        "problem_data": _digest((problem.data, dict(problem.info))),
        "problem_code": _digest((problem.per_example_loss, problem.regularizer, problem.full_loss)),
        "stepper": _digest(stepper),
        "observers": _digest(tuple(observers)),
        "schedules": _digest(schedules),
        # the values a schedule takes are data (allow_code_changes does not cover them)
        "schedule_values": _digest([_schedule_values(f, max(num_steps, int(np.ceil(num_steps * stepper.dt))))
                                    for f in schedules]),
    }
    if callable(init_params):
        fingerprint["init_params_code"] = _digest(init_params)
    else:
        fingerprint["init_params"] = _digest(init_params)
    from . import __version__

    return {
        "format": FORMAT,
        "grid_shape": list(grid_shape),
        "num_configs": int(np.prod(grid_shape)) if grid_shape else 1,
        "hyper": grid,
        "max_batch_size": hyper.max_batch_size,
        "num_steps": num_steps,
        "replicas": replicas,
        "clock": clock,
        "dt": float(stepper.dt),
        "keep_state": keep_state,
        "config_block": config_block,
        "stepper": stepper.name,
        "observers": [o.name for o in observers],
        "key": key_data.tolist(),
        "num_examples": problem.num_examples,
        "versions": {"sgdsde": __version__, "jax": jax.__version__, "numpy": np.__version__},
        "fingerprint": fingerprint,
    }


def _schedule_values(schedule: Callable, count: int) -> np.ndarray:
    """schedule(k) for the SGD steps k = 0 … count−1 a run reads."""
    steps = np.arange(max(count, 1))
    try:
        return np.asarray(jax.vmap(schedule)(jnp.asarray(steps)))
    except Exception:  # a schedule that does not vmap
        return np.asarray([np.asarray(schedule(int(k))) for k in steps])


def _check_same_sweep(existing: dict, manifest: dict, out_dir: str, allow_code_changes: bool) -> None:
    if existing.get("format") != FORMAT:
        raise ValueError(f"out_dir: {out_dir!r} holds a sweep of format {existing.get('format')!r}, not {FORMAT!r}")
    old, new = existing.get("fingerprint", {}), manifest["fingerprint"]
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not differ:
        pass
    elif allow_code_changes and all(k in _CODE_COMPONENTS for k in differ):
        warnings.warn(
            f"out_dir: resuming {out_dir!r} although {', '.join(differ)} changed (allow_code_changes=True)",
            SweepWarning,
            stacklevel=3,
        )
    else:
        shown = []
        for k in differ:
            details = {
                "run": ("num_steps", "replicas", "clock", "keep_state", "config_block"),
                "grid": ("grid_shape", "max_batch_size"),
                "key": ("key",),
                "problem_data": ("num_examples",),
            }.get(k, ())
            changes = [f"{d} {existing.get(d)!r} → {manifest.get(d)!r}" for d in details
                       if existing.get(d) != manifest.get(d)]
            shown.append(k + (f" ({'; '.join(changes)})" if changes else ""))
        raise ValueError(
            f"out_dir: {out_dir!r} holds a sweep started with different arguments: "
            f"{', '.join(shown)} differ. Resume it with the arguments it was started with, or use a new "
            "out_dir" + (" (allow_code_changes=True accepts changed functions)"
                         if all(k in _CODE_COMPONENTS for k in differ) else "")
        )
    if existing.get("versions", {}).get("jax") != jax.__version__:
        warnings.warn(
            f"out_dir: the sweep in {out_dir!r} was started with JAX {existing.get('versions', {}).get('jax')}, "
            f"resumed with {jax.__version__}: random numbers and rounding may differ between its configurations",
            SweepWarning,
            stacklevel=3,
        )


# ------------------------------------------------------------- fingerprints
# functions of these packages are identified by module and name (not bytecode), with their
# defaults and closures
_LIBRARIES = ("jax", "jaxlib", "numpy", "optax", "flax", "equinox", "diffrax", "scipy", "builtins",
              "functools", "math", "operator")


def _digest(value) -> str:
    """SHA-256 of a value, stable across processes (module docstring: what it covers)."""
    h = hashlib.sha256()
    _feed(h, value, set(), 0)
    return h.hexdigest()


def _type_name(value) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _feed(h, value, active: set, depth: int) -> None:
    def add(*parts):
        h.update(("\x1f".join(map(str, parts)) + "\x1e").encode())

    feed = lambda v: _feed(h, v, active, depth + 1)
    if depth > 32:
        add("deep", _type_name(value))
        return
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        add(type(value).__name__, repr(value))
        return
    if isinstance(value, bytes):
        add("bytes", len(value))
        h.update(value)
        return
    if isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        add("key", str(jax.random.key_impl(value)))
        value = jax.random.key_data(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        arr = np.ascontiguousarray(np.asarray(value))
        add("array", arr.dtype.str, arr.shape)
        if arr.dtype.hasobject:  # the bytes would be addresses
            for item in arr.ravel().tolist():
                _feed(h, item, active, depth + 1)
        else:
            h.update(arr.tobytes())
        return
    if id(value) in active:
        add("cycle")
        return
    active.add(id(value))
    try:
        _feed_object(h, add, feed, value)
    finally:
        active.discard(id(value))


def _feed_object(h, add, feed, value) -> None:
    if isinstance(value, types.CodeType):
        add("code", value.co_name, value.co_names, value.co_varnames)
        h.update(value.co_code)
        for const in value.co_consts:
            feed(const)
    elif isinstance(value, types.FunctionType):
        module = value.__module__ or ""
        add("function", module, value.__qualname__)
        if module.split(".")[0] not in _LIBRARIES:  # library code: by name (its version is recorded)
            feed(value.__code__)
        feed(value.__defaults__)
        feed(value.__kwdefaults__)
        for cell in value.__closure__ or ():  # e.g. an optax schedule's values
            try:
                feed(cell.cell_contents)
            except ValueError:  # an empty cell
                add("empty cell")
    elif isinstance(value, types.MethodType):
        add("method")
        feed(value.__func__)
        feed(value.__self__)
    elif isinstance(value, functools.partial):
        add("partial")
        feed(value.func)
        feed(value.args)
        feed(value.keywords)
    elif isinstance(value, Hyper):
        add("Hyper")
        feed(value._values())
        feed(value.max_batch_size)
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        add("namedtuple", _type_name(value), value._fields)
        for item in value:
            feed(item)
    elif isinstance(value, (list, tuple)):
        add(type(value).__name__, len(value))
        for item in value:
            feed(item)
    elif isinstance(value, dict):
        add("dict", len(value))
        for k, v in value.items():
            feed(k)
            feed(v)
    elif isinstance(value, (set, frozenset)):
        add("set", len(value))
        for item in sorted(_digest(v) for v in value):
            add(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        add("dataclass", _type_name(value))
        for field in dataclasses.fields(value):
            add(field.name)
            feed(getattr(value, field.name, None))
    elif callable(value) and hasattr(value, "__wrapped__"):  # functools.lru_cache, wraps
        add("wrapped", _type_name(value))
        feed(value.__wrapped__)
    elif callable(value):  # builtins, jitted functions, ufuncs: by name
        add("callable", _type_name(value), getattr(value, "__module__", ""),
            getattr(value, "__qualname__", getattr(value, "__name__", "")))
    else:
        add("object", _type_name(value))


# ------------------------------------------------ results ⇄ arrays on disk
def _encode(tree) -> tuple[dict, list]:
    """A JSON description of a pytree's containers and its leaves (as NumPy arrays) in
    the order the description numbers them."""
    leaves: list = []

    def enc(node):
        if node is None:
            return {"none": None}
        if isinstance(node, dict):
            return {"dict": [[_json_key(k), enc(v)] for k, v in node.items()]}
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return {"namedtuple": type(node).__name__, "fields": [[f, enc(v)] for f, v in zip(node._fields, node)]}
        if isinstance(node, (list, tuple)):
            return {type(node).__name__: [enc(v) for v in node]}
        if isinstance(node, (np.ndarray, np.generic, jax.Array, int, float, bool, complex)):
            leaves.append(np.asarray(node))
            return {"leaf": len(leaves) - 1}
        children, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
        return {"node": _type_name(node),
                "children": [[jax.tree_util.keystr(path), enc(child)] for path, child in children]}

    return enc(tree), leaves


def _json_key(key):
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)


def _decode(description: dict, leaves: list):
    if "leaf" in description:
        return leaves[description["leaf"]]
    if "none" in description:
        return None
    if "dict" in description:
        return {k: _decode(v, leaves) for k, v in description["dict"]}
    if "namedtuple" in description:
        return {f: _decode(v, leaves) for f, v in description["fields"]}
    if "list" in description:
        return [_decode(v, leaves) for v in description["list"]]
    if "tuple" in description:
        return tuple(_decode(v, leaves) for v in description["tuple"])
    if "node" in description:
        return {k: _decode(v, leaves) for k, v in description["children"]}
    raise ValueError(f"structure: unknown entry {sorted(description)}")


def _leaf_spec(x) -> list:
    x = np.asarray(x)
    return [list(x.shape[1:]), x.dtype.str]


def _missing(shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    fill = np.nan if dtype.kind in "fc" else (False if dtype.kind == "b" else -1)
    return np.full(shape, fill, dtype)


# ----------------------------------------------------------------------- load
def load(out_dir: str | os.PathLike, *, allow_incomplete: bool = False) -> SweepResult:
    """The results of the sweep in ``out_dir``, assembled on its grid.

    A sweep with unfinished configurations raises ValueError unless
    ``allow_incomplete=True`` (then ``completed`` marks the finished ones and the others
    hold NaN, −1 or False). A configuration file that is unreadable, truncated, of
    another configuration or another sweep, or shaped unlike ``structure.json`` raises
    ValueError naming it, whatever ``allow_incomplete`` (module docstring)."""
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
