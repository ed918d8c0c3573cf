"""Experiment outputs: a PNG figure beside a JSON of the numbers, and the one figure style
of every command and example (:data:`STYLE` font sizes, constrained layout, :data:`DPI`).

A plotting function draws inside :func:`style` (or is decorated with :func:`styled`),
makes its figure with :func:`figure`, and is saved by :func:`save_figure`."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["STYLE", "DPI", "style", "styled", "figure", "plain_log_ticks", "number", "to_jsonable",
           "write_json", "save_figure"]

#: Font sizes and the like for every figure (matplotlib rcParams): text ≥ 8 pt at
#: :data:`DPI`, legends without frames' clutter, light grids.
STYLE: dict[str, Any] = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.85,
    "figure.titlesize": 11.5,
    "lines.markersize": 5,
    "errorbar.capsize": 2,
    "axes.grid": False,
}
#: Resolution of saved figures (dots per inch).
DPI = 150


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Draw in the house style (:data:`STYLE`, the Agg backend); restores the settings after."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(STYLE):
        yield


def styled(plot: Callable) -> Callable:
    """A plotting function run inside :func:`style`."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with style():
            return plot(*args, **kwargs)

    return wrapper


def figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (5.0, 4.0), **subplots_kwargs):
    """``(fig, axes)`` with constrained layout, each panel ``panel`` inches (width, height)."""
    import matplotlib.pyplot as plt

    size = (panel[0] * ncols, panel[1] * nrows)
    return plt.subplots(nrows, ncols, figsize=size, layout="constrained", **subplots_kwargs)


def number(value: float, decimals: int = 2) -> str:
    """``value`` rounded to ``decimals`` places for a label, trailing zeros dropped and
    without NumPy's ``-0.00`` (``number(-1e-9) == "0"``, ``number(8.0) == "8"``,
    ``number(0.30) == "0.3"``)."""
    text = f"{float(value):.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def plain_log_ticks(axis) -> None:
    """Readable ticks on a log axis, written as plain numbers (0.003, 0.01, 20), no crowded
    minor labels: 1, 2, 3, 5 × 10^k over at most 1.3 decades, 1, 2, 5 × 10^k up to 2.5,
    10^k beyond (the span is the axis' data limits when called: call it after plotting)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = sorted(abs(v) for v in axis.get_view_interval())
    decades = np.log10(high / low) if low > 0 and np.isfinite(high / low) else np.inf
    subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.3 else (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def to_jsonable(value: Any) -> Any:
    """Arrays → lists, NumPy/JAX scalars → Python numbers, recursively (NaN → None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        if arr.ndim == 0:
            return to_jsonable(arr.item())
        return [to_jsonable(v) for v in arr.tolist()]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return to_jsonable(float(value))
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2))
    os.replace(tmp, path)
    return path


def save_figure(fig, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Save a matplotlib figure as PNG (creating the folder) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
