"""The table and the figure of the minima job (:mod:`sgdsde.experiments.minima`), from the
dict that :func:`~sgdsde.experiments.minima.minima_selection` returns."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from ..plotting import figure, number, plain_log_ticks, styled
from .minima_landscapes import build_problem

__all__ = ["format_table", "plot"]

WIDTH = 100  # console lines at most this wide


def _fmt(value, width: int = 8, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return f"{'—':>{width}}"
    return f"{value:{width}.{digits}f}"


def _fmt_time(value, width: int = 9) -> str:
    if value is None or not np.isfinite(value):
        return f"{'—':>{width}}"
    return f"{value:{width}.4g}"


def format_table(results: dict) -> str:
    names = results["basin_names"]
    a = 0  # probabilities are reported for basin 0 (the first well of the landscape)
    p = results["probabilities"]
    lines = textwrap.wrap(
        f"Landscape: {results['landscape'].get('description', '')}; σ² = {results['landscape']['sigma2']}, "
        f"N = {results['landscape']['num_examples']}, η = {results['learning_rate']} "
        f"(η·λmax = {results['lr_times_lambda_max']:.3f}), subset sampling; n = (η/S)(N−S)/(N−1).", WIDTH)
    lines += textwrap.wrap(
        f"P({names[a]}) by method (SGD and EM: {results['replicas']} replicas, burn-in {results['burn_in_steps']} "
        f"steps = {results['burn_in_relaxations']:.1f} relaxation times, {results['total_steps']} steps in all; "
        f"EM dt = {results['em_dt']} steps):", WIDTH)
    # two tables of ≤ 100 characters: the five methods' probabilities, then SGD and EM against the quadrature
    head = (f"{'S':>3} {'n':>9} {'T':>7} {'SGD':>8} {'±se':>6} {'EM':>8} {'±se':>6} {'FP':>8} {'quadr.':>8} "
            f"{'Laplace':>8}")
    gaps = f"{'S':>3} {'SGD−q':>8} {'z':>5} {'EM−q':>8} {'z':>5} {'relax':>7}"
    first, second = [head, "-" * len(head)], ["", gaps, "-" * len(gaps)]
    for i, size in enumerate(results["batch_sizes"]):
        q = p["quadrature"]["value"][i][a]
        sgd, em = p["sgd"], p["euler_maruyama"]
        first.append(
            f"{size:3d} {results['noise_scale_effective'][i]:9.3e} {results['temperature'][i]:7.4f} "
            f"{_fmt(sgd['value'][i][a])} {sgd['stderr'][i][a]:6.4f} "
            f"{_fmt(em['value'][i][a])} {em['stderr'][i][a]:6.4f} "
            f"{_fmt(p['fokker_planck']['value'][i][a])} {_fmt(q)} {_fmt(p['laplace']['value'][i][a])}"
        )
        second.append(
            f"{size:3d} {sgd['value'][i][a] - q:+8.4f} {(sgd['value'][i][a] - q) / sgd['stderr'][i][a]:+5.1f} "
            f"{em['value'][i][a] - q:+8.4f} {(em['value'][i][a] - q) / em['stderr'][i][a]:+5.1f} "
            f"{results['relaxation_steps'][i]:7.0f}"
        )
    lines += first + second
    lines += textwrap.wrap(
        "SGD−q, EM−q: difference from the exact quadrature (the SDE's law), z: in replica standard errors; "
        "relax: two-state relaxation time 1/(1/τ_AB + 1/τ_BA) from the grid escape times (SGD steps).", WIDTH)
    lines.append(f"Crossover noise n* (P({names[0]}) = P({names[1]})):")
    for name, c in results["crossover"].items():
        value = c["noise_scale"]
        text = "no crossover in range" if value is None else f"{value:.4e}"
        if c.get("stderr"):
            text += f" ± {c['stderr']:.1e}"
        lines.append(f"  {name:>15}: {text}")
    if results.get("critical_noise_paper_eq4"):
        lines.append(f"  (the paper's eq. 4 would give {results['critical_noise_paper_eq4']:.4e}: 4× too small, "
                     "see docs/minima.md)")
    esc = results["escape"]
    lines += textwrap.wrap(f"Mean escape times (SGD steps) into {esc['target']}; simulated with {esc['replicas']} "
                           "replicas:", WIDTH)
    head = f"{'S':>3} {'direction':>28} {'grid':>9} {'Kramers':>9} {'SGD':>9} {'±se':>7} {'EM':>9} {'±se':>7}"
    lines += [head, "-" * len(head)]
    for i, size in enumerate(results["batch_sizes"]):
        for j, direction in enumerate(esc["directions"]):
            s, e = esc["sgd"][i][j], esc["euler_maruyama"][i][j]
            lines.append(
                f"{size:3d} {direction:>28} {_fmt_time(esc['grid'][i][j])} {_fmt_time(esc['kramers'][i][j])} "
                f"{_fmt_time(s[0])} {_fmt_time(s[1], 7)} {_fmt_time(e[0])} {_fmt_time(e[1], 7)}"
            )
    lines.append(f"total time {results['seconds']['total']:.1f} s")
    return "\n".join(lines)


@styled
def plot(results: dict):
    """Left: P(basin 0) against n for the five methods (quadrature and Laplace as curves),
    crossovers marked. Middle: escape times against 1/T. Right: the landscape."""
    from matplotlib.lines import Line2D

    names = results["basin_names"]
    p = results["probabilities"]
    n = np.asarray(results["noise_scale_effective"])
    fig, (left, middle, right) = figure(1, 3, panel=(5.4, 4.4))

    dense = results["dense"]
    left.plot(dense["noise_scale"], np.asarray(dense["quadrature"])[:, 0], "k-", lw=1.5, label="exact (quadrature)")
    left.plot(dense["noise_scale"], np.asarray(dense["laplace"])[:, 0], "k--", lw=1.2, label="Laplace")
    left.errorbar(n * 0.985, np.asarray(p["sgd"]["value"])[:, 0], yerr=2 * np.asarray(p["sgd"]["stderr"])[:, 0],
                  fmt="o", label="SGD ensemble")
    left.errorbar(n * 1.015, np.asarray(p["euler_maruyama"]["value"])[:, 0],
                  yerr=2 * np.asarray(p["euler_maruyama"]["stderr"])[:, 0], fmt="s", ms=4,
                  label=f"Euler–Maruyama (dt = {results['em_dt']})")
    left.plot(n, np.asarray(p["fokker_planck"]["value"])[:, 0], "x", ms=8, mew=2, label="Fokker–Planck")
    left.axhline(0.5, color="0.8", lw=0.8)
    for name, label, line in (("quadrature", "exact", ":"), ("laplace", "Laplace", "-.")):
        value = results["crossover"][name]["noise_scale"]
        if value:
            left.axvline(value, color="0.45", ls=line, lw=1, label=f"n* {label} = {value:.3g}")
    left.set_xscale("log")
    plain_log_ticks(left.xaxis)
    left.set_xlabel("noise n = (η/S)(N−S)/(N−1)")
    left.set_ylabel(f"P({names[0]})")
    left.set_title("Which minimum: five views (error bars ±2 se)")
    left.legend(loc="upper right")

    esc = results["escape"]
    inv_t = 1 / np.asarray(results["temperature"])
    colours = ("C0", "C3")
    for j, (marker, colour) in enumerate(zip(("o", "s"), colours)):
        middle.plot(inv_t, np.asarray(esc["grid"])[:, j], "-", color=colour, lw=1.5)
        middle.plot(inv_t, np.asarray(esc["kramers"])[:, j], "--", color=colour, lw=1)
        sim = np.asarray(esc["sgd"], dtype=float)[:, j]
        middle.errorbar(inv_t, sim[:, 0], yerr=2 * sim[:, 1], fmt=marker, color=colour, ms=4)
        em = np.asarray(esc["euler_maruyama"], dtype=float)[:, j]
        middle.errorbar(inv_t * 1.01, em[:, 0], yerr=2 * em[:, 1], fmt=marker, mfc="none", color=colour, ms=4)
    # one entry per direction (colour) and per method (line or marker), none repeated
    handles = [Line2D([], [], color=c, lw=6, alpha=0.8, label=d) for c, d in zip(colours, esc["directions"])]
    handles += [Line2D([], [], color="0.2", ls="-", label="grid (exact)"),
                Line2D([], [], color="0.2", ls="--", label="Eyring–Kramers"),
                Line2D([], [], color="0.2", marker="o", ls="none", label="SGD (simulated, ±2 se)"),
                Line2D([], [], color="0.2", marker="o", mfc="none", ls="none", label="EM (simulated, ±2 se)")]
    middle.set_yscale("log")
    middle.set_xlabel("1/T = 2/(nσ²)")
    middle.set_ylabel("mean escape time (SGD steps)")
    middle.set_title("Escape times")
    middle.legend(handles=handles, loc="upper left")

    spec = results["landscape"]
    problem = build_problem(spec)
    x = np.linspace(spec["lower"][0], spec["upper"][0], 200)
    y = np.linspace(spec["lower"][1], spec["upper"][1], 160)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    values = np.asarray(jax.vmap(problem.info["loss"])(jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1),
                                                                    jnp.float32))).reshape(xx.shape)
    top = float(np.ceil(min(values.max(), 3.0)))
    cs = right.contourf(xx, yy, values, levels=np.linspace(0.0, top, 31), cmap="viridis", extend="max")
    fig.colorbar(cs, ax=right, label="L(θ)", ticks=np.arange(0.0, top + 0.25, 0.5))
    for m in results["minima"]:
        right.plot(*m["point"][:2], "w*", ms=11)
        eig = ", ".join(number(v, 1) for v in m["hessian_eigenvalues"])
        first = m["basin"] == 0
        right.annotate(f"{names[m['basin']]}\nL = {number(m['loss'])}, λ = {eig}", m["point"][:2], color="w",
                       textcoords="offset points", xytext=(-6, -12) if first else (6, 10),
                       ha="right" if first else "left", va="top" if first else "bottom",
                       bbox=dict(boxstyle="round,pad=0.2", fc="black", alpha=0.35, lw=0))
    right.plot(*results["saddle"]["point"][:2], "rx", ms=8, mew=2)
    right.set_title("Landscape (minima ★, saddle ×)")
    right.set_xlabel("θ₁")
    right.set_ylabel("θ₂")
    return fig
