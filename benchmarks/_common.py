"""Shared helpers for the sgdsde benchmarks.

- :func:`machine_info`: what the numbers were measured on (CPU model, cores, memory,
  load, Python / JAX / jaxlib / optax versions, JAX backend and device kinds, git commit).
- :class:`CompileMonitor`, :func:`time_call` and :func:`time_interleaved`: wall-clock
  timing with warm-up and repeats (interleaved in rounds when several implementations
  are compared, so that load drift on a shared machine hits them alike); the seconds JAX
  spends tracing, lowering and compiling inside each call are measured (through
  ``jax.monitoring``) and reported apart from execution time.
- :func:`write_json`: ``benchmarks/results/<name>.json`` with the machine info attached.
- :func:`format_table` / :func:`print_table`: a plain fixed-width text table, and
  :func:`markdown_table` for the docs; :func:`update_doc_section` rewrites one marked
  block of a Markdown file (so each benchmark owns its own block of
  ``docs/benchmarks.md``).

Timing statistic: every measurement is repeated; rates and ratios use the ``median`` of
interleaved repeats (a ratio of medians of rounds taken in turn); ``best`` (the minimum)
is reported alongside. The first call, compile included, is its own column
(:attr:`Timing.first_call`).
- :func:`doc_block` renders a benchmark's block of ``docs/benchmarks.md`` (how it was
  run, the machine and load, the lead line with the ratios, tables and notes) and
  :func:`finish` ends every script alike: JSON, machine and load lines, and the block
  (written to the docs on a full run, rendered and checked on a quick one, so that the
  smoke run covers it).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# SGDSDE_BENCH_RESULTS redirects every JSON (benchmarks/gpu.sh: a run on another machine, or
# the test suite's smoke run) and leaves docs/benchmarks.md untouched
RESULTS_DIR = Path(os.environ.get("SGDSDE_BENCH_RESULTS") or BENCH_DIR / "results")

__all__ = [
    "machine_info",
    "machine_summary",
    "CompileMonitor",
    "Timing",
    "time_call",
    "time_interleaved",
    "block",
    "write_json",
    "shown",
    "format_table",
    "print_table",
    "markdown_table",
    "update_doc_section",
    "doc_block",
    "finish",
    "fmt_rate",
    "fmt_seconds",
]


# ------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {}
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {}


def machine_info() -> dict:
    """A description of the machine and software the numbers come from."""
    devices = jax.devices()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "memory_gib": _memory_gib(),
        "load_average_1_5_15min": load,
        "os": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "optax": _version("optax"),
        "numpy": np.__version__,
        "sgdsde": _version("sgdsde"),
        "jax_backend": jax.default_backend(),
        "jax_devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "jax_device_count": len(devices),
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git": _git_commit(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def machine_summary(info: dict | None = None) -> str:
    """One line: CPU, cores, backend/device, versions."""
    info = info or machine_info()
    kinds = sorted(set(info["jax_devices"]))
    return (
        f"{info['cpu_model']}, {info['cpus_available'] or info['cpu_count']} CPU cores"
        f" ({info['memory_gib']} GiB); JAX {info['jax']} (jaxlib {info['jaxlib']}) on "
        f"{info['jax_backend']} [{', '.join(kinds)}]; optax {info['optax']}; Python {info['python']}"
    )


# ------------------------------------------------------------------ timing
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileMonitor:
    """Context manager: seconds JAX spent tracing, lowering and compiling inside the block
    (``by_event``: trace / lower / backend compile; ``by_function``: per jitted function).

    Caveat: JAX dispatches asynchronously, so a compile that happens while an earlier
    computation is still running overlaps it; "wall − compile" is then an underestimate
    of execution. Block on results before compiling the next thing when it matters.

    >>> with CompileMonitor() as cm:
    ...     f(x)
    >>> cm.seconds, cm.by_event
    """

    def __init__(self):
        self.by_event: dict[str, float] = {}
        self.by_function: dict[str, float] = {}
        self._active = False

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        if self._active and event in _COMPILE_EVENTS:
            key = event.rsplit("/", 1)[-1]
            self.by_event[key] = self.by_event.get(key, 0.0) + float(duration)
            fun = str(kwargs.get("fun_name", "?"))
            self.by_function[fun] = self.by_function.get(fun, 0.0) + float(duration)

    def __enter__(self) -> "CompileMonitor":
        self.by_event, self.by_function = {}, {}
        self._active = True
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc) -> None:
        self._active = False
        try:
            jax.monitoring.unregister_event_duration_listener(self._listener)
        except Exception:  # older JAX: the listener stays registered but inactive
            pass

    @property
    def seconds(self) -> float:
        return sum(self.by_event.values())


def block(tree: Any) -> Any:
    """Wait for every array in a pytree (NumPy leaves pass through)."""
    return jax.block_until_ready(tree)


@dataclasses.dataclass
class Timing:
    """Wall-clock seconds of the timed calls, with JAX compile time split off.

    wall: seconds per timed call; compile: trace+lower+compile seconds inside each timed
    call (0 for a warm jitted function; > 0 for functions that compile on every call);
    execute = wall − compile. warmup_wall / warmup_compile: the same for the warm-up calls
    (the first one carries the compile of a jitted function).
    """

    wall: list[float]
    compile: list[float]
    warmup_wall: list[float]
    warmup_compile: list[float]
    result: Any = dataclasses.field(default=None, repr=False)

    @property
    def execute(self) -> list[float]:
        return [max(w - c, 0.0) for w, c in zip(self.wall, self.compile)]

    @property
    def best(self) -> float:
        """Minimum execution time over the repeats (reported; ratios use the median)."""
        return min(self.execute)

    @property
    def first_call(self) -> float | None:
        """Wall seconds of the first call, compile included (None without a warm-up)."""
        return self.warmup_wall[0] if self.warmup_wall else None

    @property
    def median(self) -> float:
        """Median execution time over the repeats (used for rates and ratios)."""
        return float(np.median(self.execute))

    @property
    def compile_seconds(self) -> float:
        """Compile seconds of one compiling call: the first warm-up's, else the timed calls' median."""
        if self.warmup_compile and self.warmup_compile[0] > 0:
            return self.warmup_compile[0]
        return float(np.median(self.compile)) if self.compile else 0.0

    def as_dict(self, work: float | None = None) -> dict:
        """JSON-ready summary; with ``work`` (units per call, e.g. replica-steps) add rates."""
        out = {
            "wall_s": [round(x, 6) for x in self.wall],
            "compile_s_in_timed_calls": [round(x, 6) for x in self.compile],
            "execute_s": [round(x, 6) for x in self.execute],
            "execute_best_s": round(self.best, 6),
            "execute_median_s": round(self.median, 6),
            "warmup_wall_s": [round(x, 6) for x in self.warmup_wall],
            "first_call_s": None if self.first_call is None else round(self.first_call, 6),
            "compile_s": round(self.compile_seconds, 6),
        }
        if work is not None:
            out["rate_best"] = work / self.best if self.best > 0 else math.inf
            out["rate_median"] = work / self.median if self.median > 0 else math.inf
            out["rate_end_to_end_median"] = work / float(np.median(self.wall))
        return out


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, compile seconds, blocked result) of one call."""
    with CompileMonitor() as cm:
        start = time.perf_counter()
        result = block(fn())
        elapsed = time.perf_counter() - start
    return elapsed, cm.seconds, result


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 3) -> Timing:
    """Time ``fn()`` (its result is blocked on): ``warmup`` calls first (they compile),
    then ``repeats`` timed calls. JAX compile seconds inside every call are measured and
    split off (see :class:`Timing`). The last result is kept."""
    timing = Timing([], [], [], [])
    for i in range(warmup + repeats):
        wall, comp, timing.result = _timed(fn)
        (timing.warmup_wall if i < warmup else timing.wall).append(wall)
        (timing.warmup_compile if i < warmup else timing.compile).append(comp)
    return timing


def time_interleaved(fns: dict[str, Callable[[], Any]], *, warmup: int = 1, repeats: int = 3,
                     cold_first: bool = False) -> dict[str, Timing]:
    """Time several functions in rounds, A B C A B C …, so that a change of machine load
    during the measurement hits all of them alike (use this for the numbers a ratio is
    taken between). ``warmup`` rounds first (they compile), then ``repeats`` timed rounds.
    ``cold_first``: clear JAX's caches (``jax.clear_caches()``) before each function's first
    call, so that call compiles everything it runs, even programs that an earlier call (a
    calibration, another method) shares with it — as in a fresh process — and add one
    untimed round after the warm-up to compile them again. Returns ``{name: Timing}``."""
    timings = {name: Timing([], [], [], []) for name in fns}
    rewarm = 1 if cold_first and warmup else 0
    for i in range(warmup + rewarm + repeats):
        for name, fn in fns.items():
            t = timings[name]
            if cold_first and i == 0:
                jax.clear_caches()
            wall, comp, result = _timed(fn)
            if warmup <= i < warmup + rewarm:
                continue  # the untimed round after cold first calls
            t.result = result
            (t.warmup_wall if i < warmup else t.wall).append(wall)
            (t.warmup_compile if i < warmup else t.compile).append(comp)
    return timings


# ------------------------------------------------------------------ output
def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(name: str, payload: dict, *, machine: dict | None = None, directory: Path | None = None) -> Path:
    """Write ``{"benchmark": name, "machine": …, **payload}`` to ``benchmarks/results/<name>.json``."""
    directory = Path(directory) if directory is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    doc = {"benchmark": name, "machine": machine if machine is not None else machine_info(), **payload}
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return path


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (else absolute), for log lines."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _cells(rows: Iterable[Sequence[Any]]) -> list[list[str]]:
    return [["" if c is None else str(c) for c in row] for row in rows]


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> str:
    """Fixed-width text table; columns after the first are right-aligned."""
    body = _cells(rows)
    head = [str(h) for h in header]
    widths = [max([len(head[i])] + [len(r[i]) for r in body]) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = ([title] if title else []) + [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in body]
    return "\n".join(out)


def print_table(header, rows, *, title: str | None = None) -> None:
    print(format_table(header, rows, title=title), flush=True)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = _cells(rows)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(out)


def update_doc_section(path: Path, name: str, text: str) -> bool:
    """Replace the block between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in a
    Markdown file with ``text``. Returns False (and changes nothing) if the markers are
    missing, so hand-written parts of the page are never touched."""
    if os.environ.get("SGDSDE_BENCH_RESULTS"):  # a redirected run never rewrites the docs
        return False
    path = Path(path)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    if not path.exists():
        return False
    doc = path.read_text()
    i, j = doc.find(begin), doc.find(end)
    if i < 0 or j < i:
        return False
    path.write_text(doc[: i + len(begin)] + "\n" + text.rstrip() + "\n" + doc[j:])
    return True


def fmt_rate(rate: float) -> str:
    """Replica-steps per second, human-sized (e.g. 1.23e+06 → '1.23 M')."""
    if not math.isfinite(rate):
        return "inf"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.3g} {unit}"
    return f"{rate:.3g}"


def fmt_seconds(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def log(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def begin() -> tuple[float, dict]:
    """Start of a benchmark run: (start time, machine description), logged."""
    began = time.perf_counter()
    machine = machine_info()
    log(f"machine: {machine_summary(machine)}; load average {machine['load_average_1_5_15min']}")
    return began, machine


# ------------------------------------------------------------------ the docs block and the end of a run


def doc_block(name: str, command: str, results: dict, machine: dict, *, lead: str,
              sections: Sequence[Any], versions: str = "", gpu_note: str = "GPU: not measured in this session.") -> str:
    """The Markdown block of one benchmark in ``docs/benchmarks.md``: how and when it was
    run (command, git commit, seconds), the machine with its load average at the start
    and the end, the ``lead`` line (the ratio against the strongest anchor first), then
    ``sections`` — each a paragraph (str) or a table ((header, rows)) — and where the
    JSON is."""
    git = machine.get("git", {})
    load = f"{machine['load_average_1_5_15min']} at the start"
    if machine.get("load_average_1_5_15min_end") is not None:
        load += f", {machine['load_average_1_5_15min_end']} at the end"
    lines = [
        f"Measured {machine['date_utc']} with `{command}` (git {git.get('commit', '?')[:10]}"
        f"{', with uncommitted changes' if git.get('dirty') else ''}; {results['elapsed_s']:.0f} s in all). {gpu_note}",
        "",
        f"**Machine:** {machine_summary(machine)}{'; ' + versions if versions else ''}. "
        f"Load average (1/5/15 min) {load}.",
        "",
        lead,
    ]
    for section in sections:
        lines.append("")
        lines.append(section if isinstance(section, str) else markdown_table(*section))
    lines += ["", f"All numbers: `benchmarks/results/{name}.json`."]
    return "\n".join(lines)


def finish(name: str, results: dict, machine: dict, *, began: float, suffix: str, write_docs: bool,
           render: Callable[[], str], versions: str = "", doc: Path | None = None) -> Path:
    """The end of every benchmark: elapsed seconds and the load at the end into ``results``,
    the JSON (``<name><suffix>.json``), the machine and load lines, and the docs block:
    rendered by ``render()`` on every run (a quick or redirected run checks it and prints
    its size, so the smoke run covers the code) and written between the block's markers
    only when ``write_docs``."""
    results["elapsed_s"] = time.perf_counter() - began
    machine["load_average_1_5_15min_end"] = machine_info()["load_average_1_5_15min"]
    path = write_json(name + suffix, results, machine=machine)
    print(f"\nmachine: {machine_summary(machine)}{'; ' + versions if versions else ''}")
    print(f"load average (1/5/15 min) at start {machine['load_average_1_5_15min']}, "
          f"at end {machine['load_average_1_5_15min_end']}")
    print(f"wrote {shown(path)} ({results['elapsed_s']:.0f} s)")
    text = render()
    if "Load average" not in text or "| ---" not in text.replace("|---", "| ---"):
        raise RuntimeError(f"{name}: the docs block lacks its load line or a table")
    doc = Path(doc) if doc is not None else ROOT / "docs" / "benchmarks.md"
    if not write_docs:
        print(f"docs block rendered ({len(text.splitlines())} lines), not written (quick, tagged or --no-docs run)")
    elif update_doc_section(doc, name, text):
        print(f"updated {shown(doc)}")
    else:
        print(f"{shown(doc)}: no '<!-- BEGIN {name} -->' block (or a redirected run), left unchanged")
    return path
