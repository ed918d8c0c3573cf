"""The plan of a sweep: the grid flattened into configurations, grouped by batch size,
cut into chunks and shared between processes, and the manifest that records the
sweep's arguments (with their fingerprints) so that a resumed call can be checked
against the call that started it."""

from __future__ import annotations

import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from ..hyper import _FIELDS, Hyper, _is_static
from ..schedules import Schedule
from ._fingerprint import _digest
from ._results import SweepWarning

FORMAT = "sgdsde.sweep/1"
# fingerprint components that describe code, not data (allow_code_changes may accept them)
_CODE_COMPONENTS = ("problem_code", "init_params_code", "stepper", "observers", "schedules")


def _chunking(per_chunk, block, total: int, device_count: int, largest_group: int) -> tuple[int, int]:
    """(configurations per chunk, config_block), see :func:`~sgdsde.sweep.run_sweep`: a
    chunk holds at most the largest group (a chunk never spans two batch sizes)."""
    if per_chunk is not None:
        per_chunk = min(check_int(per_chunk, "configs_per_chunk", 1), largest_group)
    if block is not None:
        block = check_int(block, "config_block", 1)
    if per_chunk is None:
        unit = (block or 1) * device_count
        per_chunk = min(-(-(-(-total // 20)) // unit), -(-largest_group // unit)) * unit
    if block is None:
        block = -(-per_chunk // device_count)
    return -(-per_chunk // block) * block, block


def _batch_groups(values: list, total: int, grouped: bool) -> list[tuple[int | None, list[int]]]:
    """The configurations g = 0 … total−1 by the size their minibatches are drawn at, in
    order of first appearance: ``[(S, [g, …]), …]``. For an array batch size that is S; for
    a :mod:`sgdsde.schedules` batch size it is the largest S the configuration's schedule
    takes (its rounded ``max``), the size ``sgdsde.run`` draws at for that configuration
    alone (masked below it at the steps where S_k is smaller). One group ``(None, all)``
    (drawn at the grid's ``max_batch_size``, masked) when not ``grouped`` or when the batch
    size is a plain callable (static: one schedule for the whole grid)."""
    sizes = values[_FIELDS.index("batch_size")]
    if not grouped or _is_static(sizes):
        return [(None, list(range(total)))]
    if isinstance(sizes, Schedule):
        sizes = np.round(np.asarray(sizes.max, dtype=np.float64))
    groups: dict[int, list[int]] = {}
    for g, size in enumerate(np.asarray(sizes).tolist()):
        groups.setdefault(int(size), []).append(g)
    return list(groups.items())


def _process_chunks(groups: list, per_chunk: int, pending: set, process: int, processes: int) -> list:
    """This process's chunks ``[(S, [g, …]), …]``: every group is cut into chunks of
    ``per_chunk`` configurations, chunk c (counted over the whole grid) belongs to process
    c mod P; its configurations still ``pending`` are cut again into chunks within their
    group. The share depends on the grid alone, not on which files exist, so P processes
    agree on it without communicating (P = 1: every pending configuration)."""
    chunks, count = [], 0
    for size, members in groups:
        mine = []
        for i in range(0, len(members), per_chunk):
            if count % processes == process:
                mine += [g for g in members[i : i + per_chunk] if g in pending]
            count += 1
        chunks += [(size, mine[i : i + per_chunk]) for i in range(0, len(mine), per_chunk)]
    return chunks


def _flat_values(hyper: Hyper, grid_shape: tuple, total: int) -> list:
    """Per field: the flattened grid values (total,) in their own dtype; a
    :mod:`sgdsde.schedules` pytree with its grid axes broadcast and flattened to (total,)
    (every leaf then has the configuration axis first: :func:`_take` indexes it); a plain
    callable as it is (static: the same schedule for every configuration)."""
    values = []
    for v in hyper._values():
        if _is_static(v):
            values.append(v)
        elif isinstance(v, Schedule):
            flat = v.broadcast_batch(grid_shape).reshape_batch((total,))
            values.append(jax.tree_util.tree_map(np.asarray, flat))
        else:
            values.append(np.broadcast_to(np.asarray(v), grid_shape).reshape(total))
    return values


def _take(value, index: np.ndarray):
    """The configurations ``index`` of one field of :func:`_flat_values`."""
    if _is_static(value):
        return value
    if isinstance(value, Schedule):
        return jax.tree_util.tree_map(lambda x: x[index], value)
    return value[index]


def _schedule_record(value: Schedule, grid_shape: tuple, total: int) -> dict:
    """A stacked schedule in the manifest: its kind, and each parameter (leaf) by value per
    configuration, on the grid (``"leaves"``: path → nested list)."""
    flat = jax.tree_util.tree_map(np.asarray, value.broadcast_batch(grid_shape).reshape_batch((total,)))
    leaves = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(flat):
        leaves[jax.tree_util.keystr(path)] = leaf.reshape(grid_shape + leaf.shape[1:]).tolist()
    return {"schedule": _schedule_name(value), "structure": str(jax.tree_util.tree_structure(value)),
            "leaves": leaves}


def _schedule_code(value: Schedule) -> list:
    """The code of a pytree schedule (its ``__call__`` and those of the schedules in it)."""
    code = [type(value).__call__]
    for child in value._children().values():
        for item in (child if isinstance(child, tuple) else (child,)):
            if isinstance(item, Schedule):
                code += _schedule_code(item)
    return code


def _schedule_name(value) -> str:
    if isinstance(value, Schedule):
        return f"{type(value).__name__}{getattr(value, 'shape', '') and '(' + value.shape + ')'}"
    return getattr(value, "__name__", "schedule")


def _manifest(key, stepper, problem, hyper, init_params, num_steps, replicas, observers, clock, keep_state,
              config_block, grouped):
    grid_shape = hyper.grid_shape
    key_data = np.asarray(jax.random.key_data(key))
    grid = {}
    total = int(np.prod(grid_shape)) if grid_shape else 1
    for field, value in zip(_FIELDS, hyper._values()):
        if isinstance(value, Schedule):  # parameters by value, per configuration
            grid[field] = _schedule_record(value, grid_shape, total)
        elif callable(value):
            grid[field] = {"schedule": _schedule_name(value)}
        else:
            arr = np.broadcast_to(np.asarray(value), grid_shape)
            grid[field] = {"values": arr.tolist(), "dtype": arr.dtype.str}
    # plain callables (static) by code and values; pytree schedules by their kind (code)
    # here and their parameters in "grid" (data)
    schedules = [v for v in hyper._values() if _is_static(v)]
    schedules += [_schedule_code(v) for v in hyper._values() if isinstance(v, Schedule)]
    fingerprint = {
        "key": _digest((str(jax.random.key_impl(key)), key_data)),
        "grid": _digest((grid, hyper.max_batch_size)),
        # grouping changes the rounding (sums over S, not masked over S_max); a masked sweep
        # keeps the digest of the sweeps written before grouping existed (they resume)
        "run": _digest((num_steps, replicas, clock, keep_state, config_block) + ((True,) if grouped else ())),
        "problem_data": _digest((problem.data, dict(problem.info))),
        "problem_code": _digest((problem.per_example_loss, problem.regularizer, problem.full_loss)),
        "stepper": _digest(stepper),
        "observers": _digest(tuple(observers)),
        "schedules": _digest(schedules),
        # the values a schedule takes are data (allow_code_changes does not cover them)
        "schedule_values": _digest([_schedule_values(f, max(num_steps, int(np.ceil(num_steps * stepper.dt))))
                                    for f in hyper._values() if callable(f)]),
    }
    if callable(init_params):
        fingerprint["init_params_code"] = _digest(init_params)
    else:
        fingerprint["init_params"] = _digest(init_params)
    from .. import __version__

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
        "group_batch_sizes": grouped,
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
                "run": ("num_steps", "replicas", "clock", "keep_state", "config_block", "group_batch_sizes"),
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


def _sweep_id(manifest: dict) -> str:
    """The digest of a sweep's fingerprints, stored in each of its configuration files."""
    return _digest(sorted(manifest["fingerprint"].items()))
