"""A sweep's folder: its layout (manifest.json, structure.json, configs/), atomic
writes, the reading and checking of configuration files, and the encoding of result
pytrees as JSON structure + arrays (see :mod:`sgdsde.sweep`, "On disk")."""

from __future__ import annotations

import json
import os
from typing import Callable

import jax
import numpy as np

from ._fingerprint import _type_name
from ._plan import _sweep_id

_MANIFEST, _STRUCTURE, _CONFIGS = "manifest.json", "structure.json", "configs"


# ---------------------------------------------------------------------- files
def _check_out_dir(out_dir) -> str:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"out_dir: must be a path (str or os.PathLike), got {type(out_dir).__name__}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir: {out_dir!r} exists and is not a folder")
    return out_dir


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
    """Temporary files of a process that was killed while writing: all of them with one
    process; under ``jax.distributed`` only this process's (``.p<index>.`` in the name),
    since the other processes may be writing theirs right now."""
    mine = f".p{jax.process_index()}." if jax.process_count() > 1 else ""
    for folder in (out_dir, os.path.join(out_dir, _CONFIGS)):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(".tmp") and mine in name:
                    os.remove(os.path.join(folder, name))


def _write_atomic(path: str, write: Callable, sync_folder: bool = True) -> None:
    """write(file) into a temporary file next to ``path``, fsync, rename over ``path``, then
    fsync the folder (``sync_folder=False``: the caller does, once for many files)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    # named by process index and pid: processes on other hosts may share a pid
    temporary = os.path.join(folder, f".{os.path.basename(path)}.p{jax.process_index()}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    if sync_folder:
        _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make the renames into ``folder`` durable (fsync of the directory, where supported)."""
    try:
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
