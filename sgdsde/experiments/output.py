"""Where an experiment's outputs go: the output folder checked before any work, and the
numbers kept whatever fails after the work (the JSON first, then the table and figure)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..plotting import save_figure, to_jsonable, write_json

__all__ = ["OutputError", "check_out_dir", "save_outputs"]


class OutputError(RuntimeError):
    """A finished run's outputs could not all be written; the message says where the
    numbers are."""


def check_out_dir(out: str | os.PathLike, option: str = "out", files: tuple[str, ...] = ()) -> Path:
    """``out`` as an output folder, checked without creating it: an existing folder, or
    one whose nearest existing ancestor is a folder, and a file can be created there;
    ``files`` (names inside ``out``) must not be folders. ValueError names ``option``."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option}: {str(path)!r} exists and is not a folder")
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{option}: cannot create {str(path)!r}: {str(ancestor)!r} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        raise ValueError(f"{option}: cannot write in {str(ancestor)!r} ({err.strerror or err})") from err
    for name in files:
        if (path / name).is_dir():
            raise ValueError(f"{option}: {str(path / name)!r} is a folder; the output file would go there")
    return path


def _fallback_json(results: dict, stem: str) -> str:
    """Write the numbers to a file in the temporary folder, else print them; say where."""
    name = f"sgdsde-{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    try:
        return f"in {write_json(Path(tempfile.gettempdir()) / name, results)}"
    except Exception:  # noqa: BLE001 — last resort: the numbers on stdout
        print(json.dumps(to_jsonable(results), indent=2, default=repr))
        return "printed on stdout above"


def save_outputs(results: dict, out: str | os.PathLike, stem: str, plot: Callable, table: Callable) -> dict:
    """Write ``<stem>.json`` in ``out`` first, then print ``table(results)`` and write
    ``<stem>.png`` (``plot(results)``); return the results. If any step fails, the others
    still run, and an :class:`OutputError` says what failed and where the numbers are (a
    JSON that cannot go to ``out`` goes to the temporary folder, or stdout)."""
    out = Path(out)
    failures, json_path = [], out / f"{stem}.json"
    try:
        where = f"in {write_json(json_path, results)}"
    except Exception as err:  # noqa: BLE001 — keep the numbers whatever went wrong
        where = _fallback_json(results, stem)
        failures.append(f"could not write {json_path} ({type(err).__name__}: {err})")
    try:
        print(table(results))
    except Exception as err:  # noqa: BLE001
        failures.append(f"could not format the table ({type(err).__name__}: {err})")
    png_path = out / f"{stem}.png"
    try:
        save_figure(plot(results), png_path)
    except Exception as err:  # noqa: BLE001
        failures.append(f"could not draw or write {png_path} ({type(err).__name__}: {err})")
    if failures:
        raise OutputError(f"{'; '.join(failures)}; the numbers are {where}")
    print(f"wrote {png_path} and {json_path}")
    return results
