#!/usr/bin/env python
"""The benchmarks at a glance: one row per comparison, against the strongest anchor.

Reads the results JSON of every benchmark (``benchmarks/results/<name>.json``, written by
the scripts beside this one) and writes the ``summary`` block at the top of
``docs/benchmarks.md``: what was compared, the strongest anchor a careful user would
write, the ratio of medians (> 1: sgdsde faster, or ≤ the floor multiple where the anchor
is a floor), the first-call ratio (compile included) where the benchmark takes one, the
target of the issue that asked for it, whether it is met, and when and at which load the
numbers were taken. Nothing is measured here: run the benchmarks first.

Usage:
    python benchmarks/summary.py [--no-docs]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

RESULTS = C.ROOT / "benchmarks" / "results"
DOC = C.ROOT / "docs" / "benchmarks.md"
HEADER = ["comparison", "strongest anchor", "ratio (median)", "first call", "target", "", "measured (load)"]


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _when(results: dict) -> str:
    machine = results["machine"]
    load = machine.get("load_average_1_5_15min") or ["?"]
    return f"{machine['date_utc'][:10]} ({load[0]})"


def _row(what: str, anchor: str, ratio: float | None, first: float | None, target: str, results: dict) -> list:
    """``target`` is "≥ x" (ratio anchor/sgdsde) or "≤ x" (sgdsde time / floor)."""
    sign, bound = target.split()
    met = None if ratio is None else (ratio >= float(bound) if sign == "≥" else ratio <= float(bound))
    fmt = lambda v: "—" if v is None else f"{v:.2f}×"  # noqa: E731
    return [what, anchor, fmt(ratio), fmt(first), target, {None: "", True: "met", False: "NOT MET"}[met], _when(results)]


def fokker_planck_rows(results: dict) -> list:
    rows = []
    for r in results.get("anchor_transient", []):
        if "scipy_over_sgdsde" not in r:
            continue
        best = r["fastest_sgdsde"]
        first = r["scipy splu once"]["first_call_s"] / r[best]["first_call_s"]
        cells = "×".join(str(n) for n in r["cells"])
        solver = "" if best == "sgdsde auto" else f", `solver=\"{best.removeprefix('sgdsde ')}\"`"
        rows.append(_row(f"Fokker–Planck {r['dims']}-D evolve, {cells} cells, {r['steps']} TR-BDF2 steps{solver}",
                         "SciPy TR-BDF2, `splu` factored once", r["scipy_over_sgdsde"], first, "≥ 1", results))
        if "repeated_evolves" in r:  # the default "auto" over a loop of calls from cold caches
            e = r["repeated_evolves"]
            rows.append(_row(f"Fokker–Planck {r['dims']}-D evolve, {cells} cells, {r['steps']} TR-BDF2 steps, "
                             f"{e['calls']} repeated calls from cold caches (default `\"auto\"`, total time)",
                             "SciPy TR-BDF2, `splu` factored once (in its first call)",
                             e["scipy_over_sgdsde_total"], None, "≥ 1", results))
    return rows


def sde_rows(results: dict) -> list:
    main = results["main"]
    rows = [_row(f"Euler–Maruyama ensemble, {results['config']['paths']} paths × {results['config']['steps']} steps",
                 "diffrax, batched state (P, 2)", results["ratios"]["sgdsde_over_diffrax_batched"],
                 main["diffrax_batched"]["first_call_s"] / main["sgdsde"]["first_call_s"], "≥ 1", results)]
    for s in results.get("scaling", []):
        if "sgdsde_time_over_floor_unrolled" in s:
            rows.append(_row(f"Euler–Maruyama ensemble, {s['paths']} paths × {s['steps']} steps (time ÷ floor)",
                             "(c′) the same Gaussian draws alone, unrolled Threefry", s["sgdsde_time_over_floor_unrolled"],
                             None, "≤ 1.3", results))
    return rows


def curvature_rows(results: dict) -> list:
    ratios = results["ratios"]
    rows = [_row("Hessian top-5 eigenvalues, 94k-parameter MLP, equal accuracy", "PyHessian `eigenvalues`",
                 ratios["top_k_pyhessian_over_sgdsde"], ratios.get("first_call_top_k_pyhessian_over_sgdsde"),
                 "≥ 3", results),
            _row("Hessian trace, Hutchinson, 100 probes (same estimator)", "PyHessian `trace`",
                 ratios["trace_pyhessian_over_sgdsde"], ratios.get("first_call_trace_pyhessian_over_sgdsde"),
                 "≥ 3", results)]
    if "trace_pyhessian_over_sgdsde_hutchpp" in ratios:
        rows.append(_row("Hessian trace, Hutch++ at PyHessian's standard error", "PyHessian `trace`",
                         ratios["trace_pyhessian_over_sgdsde_hutchpp"],
                         ratios.get("first_call_trace_pyhessian_over_sgdsde_hutchpp"), "≥ 3", results))
    if "trace_pyhessian_over_sgdsde_gn_split" in ratios:
        rows.append(_row("Hessian trace, Gauss–Newton split at PyHessian's standard error", "PyHessian `trace`",
                         ratios["trace_pyhessian_over_sgdsde_gn_split"],
                         ratios.get("first_call_trace_pyhessian_over_sgdsde_gn_split"), "≥ 3", results))
    return rows


def sweep_rows(results: dict) -> list:
    ratios, grid = results["ratios"], results["config"]["configs"]
    return [_row(f"{grid}-configuration (η, S) sweep, `run_sweep` grouped by S", "Flax + optax, jitted step, Python loop",
                 ratios["loop_over_sweep_grouped"], None, "≥ 2", results),
            _row(f"{grid}-configuration (η, S) sweep, `run_sweep` grouped by S", "one jitted `lax.scan` per configuration",
                 ratios["scans_over_sweep_grouped"], None, "≥ 1.2", results)]


def sampler_rows(results: dict) -> list:
    rows = []
    for sampling in ("subset", "epoch"):
        ratios = [p[f"cost_ratio_{sampling}_over_iid"] for p in results["points"]]
        if ratios:
            rows.append(_row(f"`sampling=\"{sampling}\"`, worst over the N × S grid (time ÷ iid)",
                             "`sampling=\"iid\"` (the same run, with replacement)", max(ratios), None, "≤ 2", results))
    return rows


SOURCES = (("fokker_planck", fokker_planck_rows), ("sde_ensemble", sde_rows), ("curvature", curvature_rows),
           ("sweep", sweep_rows), ("sgd_ensemble_samplers", sampler_rows))


def summary_rows() -> list:
    rows = []
    for name, make in SOURCES:
        results = _load(name)
        if results is not None:
            rows.extend(make(results))
    return rows


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-docs", action="store_true", help="print the table only; leave docs/benchmarks.md alone")
    a = p.parse_args(argv)
    rows = summary_rows()
    C.print_table(HEADER, rows, title="sgdsde against the strongest anchor of each comparison")
    if not a.no_docs:
        text = ("Ratios of median times (anchor ÷ sgdsde: > 1 means sgdsde is faster; for a floor, sgdsde ÷ floor), "
                "first calls with compilation included, from the latest full run of each script (details in its "
                "section below). Regenerate with `python benchmarks/summary.py` after running the benchmarks.\n\n"
                + C.markdown_table(HEADER, rows))
        C.update_doc_section(DOC, "summary", text)
    return rows


if __name__ == "__main__":
    main()
