"""The seed papers' experiments, one function each, with the paper's claim and a verdict
(docs/reproductions.md).

    from sgdsde.experiments import reproduce
    reproduce.names()                                   # every experiment, in order
    results = reproduce.reproduce("he-liu-tao", quick=True, out="runs/hlt")
    results["verdicts"]                                 # claim, statistic, verdict

Command line: ``sgdsde reproduce --list``, ``sgdsde reproduce NAME [--quick] [--data
FOLDER] [--out DIR] [--seed K] [--quiet]``.

Each experiment is an :class:`Experiment`: a ``run`` function (returns a dict of every
number, with ``"verdicts"``: a list of :class:`~._verdict.Verdict` dicts), a ``table``
and a ``plot``. :func:`reproduce` runs one, writes ``<name>.json`` and ``<name>.png`` in
``out`` (:func:`sgdsde.experiments.output.save_outputs`) and prints the table with each
claim beside its measured statistic and verdict. Grid runs go through
:func:`sgdsde.sweep.run_sweep` under ``out/<name>-sweeps/``, so an interrupted
reproduction continues where it stopped when run again with the same arguments."""

from __future__ import annotations

import importlib
import importlib.util
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..output import check_out_dir, save_outputs
from ._verdict import CONFIRMED, CONTRADICTED, NOT_CONFIRMED, Verdict

__all__ = ["Experiment", "Verdict", "CONFIRMED", "NOT_CONFIRMED", "CONTRADICTED", "experiments", "names",
           "get", "reproduce", "format_verdicts", "format_list", "sweep_folder"]

# the modules that define the experiments (each has EXPERIMENTS: a tuple of Experiment), in
# the order of --list
_MODULES = (
    "three_factors_grid",           # (a)
    "three_factors_interpolation",  # (b), (c)
    "three_factors_cyclic",         # (d)
    "three_factors_memorisation",   # (e)
    "three_factors_breaking",       # (f)
    "smith_le_batch",               # (g), (h)
    "smith_le_evidence",            # (i)
    "he_liu_tao",                   # He, Liu & Tao
)


@dataclass(frozen=True)
class Experiment:
    """One reproducible claim of a paper.

    ``name``: the command-line name (``three-factors-sharpness``); ``label``: the issue's
    letter or a short tag ("a", …, "i", "hlt"); ``paper``: the paper and its figure or
    table; ``claim``: the claim in one sentence; ``run(*, data, data_format, quick, seed,
    out, progress) -> dict``: the experiment (``data``: a local folder or None for the
    built-in digits; ``out``: the output folder, for its sweeps); ``table(results) ->
    str`` and ``plot(results) -> Figure``; ``default_runtime``: the measured runtime of a
    default run on 2 CPU cores, as text."""

    name: str
    label: str
    paper: str
    claim: str
    run: Callable[..., dict]
    table: Callable[[dict], str]
    plot: Callable
    default_runtime: str = ""


def _present_modules() -> list[str]:
    """The modules of ``_MODULES`` that exist (a module not written yet is left out; one
    that exists is imported, and its errors are raised, never hidden)."""
    return [m for m in _MODULES if importlib.util.find_spec(f"{__name__}.{m}") is not None]


def experiments() -> dict[str, Experiment]:
    """Every experiment by name, in the order of ``--list`` (the modules of ``_MODULES``
    that exist; an error while importing one is raised)."""
    found: dict[str, Experiment] = {}
    for module in _present_modules():
        for experiment in importlib.import_module(f"{__name__}.{module}").EXPERIMENTS:
            if experiment.name in found:
                raise RuntimeError(f"two experiments named {experiment.name!r}")
            found[experiment.name] = experiment
    return found


def names() -> list[str]:
    """The experiments' names, in order."""
    return list(experiments())


def get(name: str) -> Experiment:
    """The experiment called ``name`` (or labelled ``name``, e.g. "a"); ValueError listing
    the names otherwise."""
    table = experiments()
    if name in table:
        return table[name]
    by_label = [e for e in table.values() if e.label == name]
    if len(by_label) == 1:
        return by_label[0]
    raise ValueError(f"name: no experiment {name!r}; the experiments are {', '.join(table)}")


def format_list(width: int = 100) -> str:
    """One entry per experiment (``sgdsde reproduce --list``): label, name, paper and
    claim, wrapped at ``width`` characters."""
    entries = []
    for e in experiments().values():
        text = f"{e.label:>3s}  {e.name}: {e.paper}. Claim: {e.claim}"
        entries.append(textwrap.fill(text, width=width, subsequent_indent=" " * 5, break_on_hyphens=False))
    return "\n".join(entries)


def sweep_folder(out: str | os.PathLike, name: str, part: str = "grid") -> Path:
    """Where an experiment keeps its resumable sweep ``part``: ``out/<name>-sweeps/<part>``."""
    return Path(out) / f"{name}-sweeps" / part


def format_verdicts(experiment: Experiment, results: dict) -> str:
    """The paper's claims beside the measured statistics and verdicts, one block each."""
    lines = [f"{experiment.paper}"]
    for verdict in results.get("verdicts", []):
        lines += [f"  claim:    {verdict['claim']}", f"  measured: {verdict['text']}",
                  f"  verdict:  {verdict['verdict'].upper()}"]
    return "\n".join(lines)


def reproduce(name: str, *, quick: bool = False, data: str | os.PathLike | None = None,
              data_format: str | None = None, out: str | os.PathLike = "sgdsde-output/reproduce", seed: int = 0,
              progress: bool = True) -> dict:
    """Run experiment ``name`` and write ``<stem>.json`` and ``<stem>.png`` in ``out``
    (stem: the name with ``_`` for ``-``); print its table and verdicts; return its
    results (with ``"experiment"``: name, label, paper, claim, quick; ``"runtime_s"``;
    ``"verdicts"``)."""
    experiment = get(name)
    stem = experiment.name.replace("-", "_")
    out = check_out_dir(out, files=(f"{stem}.json", f"{stem}.png"))
    start = time.perf_counter()
    try:
        results = experiment.run(data=data, data_format=data_format, quick=quick, seed=seed, out=out,
                                 progress=progress)
    except ValueError as err:
        if "started with different arguments" not in str(err):
            raise
        folder = Path(out) / f"{experiment.name}-sweeps"
        raise ValueError(f"out: {str(folder)!r} holds the sweeps of a run of {experiment.name} with other "
                         f"options (--quick, --seed or --data); give another output folder, or delete that "
                         f"folder to start afresh ({err})") from err
    if not results.get("verdicts"):
        raise RuntimeError(f"experiment {experiment.name!r} returned no verdicts")
    results["verdicts"] = [v.as_dict() if isinstance(v, Verdict) else dict(v) for v in results["verdicts"]]
    results["experiment"] = {"name": experiment.name, "label": experiment.label, "paper": experiment.paper,
                             "claim": experiment.claim, "quick": bool(quick), "seed": int(seed),
                             "data": None if data is None else str(data)}
    results["runtime_s"] = time.perf_counter() - start

    def table(res: dict) -> str:
        return f"{experiment.table(res)}\n\n{format_verdicts(experiment, res)}\nruntime {res['runtime_s']:.0f} s"

    return save_outputs(results, out, stem, plot=experiment.plot, table=table)
