"""A sweep over several processes (``jax.distributed``): each process runs its own share
of the chunks (:func:`~sgdsde.sweep._plan._process_chunks`) on its own devices and
writes its files to the shared ``out_dir``; no arrays cross processes. At the end every
process waits until the folder holds every configuration, checked, then loads it."""

from __future__ import annotations

import os
import time

import jax

from .. import sharding as sharding_lib
from ._plan import _sweep_id
from ._storage import _STRUCTURE, _config_path, _finished, _leaf_specs, _read_config, _read_structure


def local_devices(devices):
    """The devices of this process among ``devices`` (as in :func:`sgdsde.run`; ``"all"``
    is every process's devices, of which this process uses its own); ``devices`` itself
    with one process. None stays None (JAX's default device of this process)."""
    if devices is None or jax.process_count() == 1:
        return devices
    mine = [d for d in sharding_lib.resolve_devices(devices) if d.process_index == jax.process_index()]
    if not mine:
        raise ValueError(
            f"devices: none of the devices given belongs to process {jax.process_index()} (under "
            "jax.distributed each process runs its share of a sweep on its own devices; use 'all')"
        )
    return mine


def wait_for_others(out_dir: str, manifest: dict, poll_seconds: float = 0.2) -> None:
    """Block until every configuration of the sweep has a file in ``out_dir`` that passes
    the checks of :func:`~sgdsde.sweep._storage._read_config` (files written by the other
    processes; each file is read once it is good). A process that dies takes the others
    down through ``jax.distributed``'s heartbeat, so this does not wait for ever."""
    total, sweep_id = manifest["num_configs"], _sweep_id(manifest)
    specs, good = None, set()
    while len(good) < total:
        if specs is None and os.path.exists(os.path.join(out_dir, _STRUCTURE)):
            specs = _leaf_specs(_read_structure(out_dir))
        if specs is not None:
            for g in sorted(_finished(out_dir, total) - good):
                try:
                    _read_config(_config_path(out_dir, g, total), g, sweep_id, specs)
                    good.add(g)
                except ValueError:  # damaged: its owner recomputes it
                    pass
        if len(good) < total:
            time.sleep(poll_seconds)
