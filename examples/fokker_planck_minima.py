"""Which minimum does SGD prefer? The stationary Fokker–Planck density of a deep sharp and a
shallow wide minimum, as the noise scale n = η/S varies.

    python examples/fokker_planck_minima.py [--out DIR] [--quick]

Landscape (``sgdsde.problems.multi_well``, 2-D, isotropic gradient noise σ² = 16 exactly):
a deep sharp well at (−1, 0) (loss 0, Hessian 8 I) and a shallow wide well at (1.5, 0)
(loss 0.25, Hessian 0.5 I), joined by a smooth minimum of the two quadratics. For each
(η, S) the script builds the generator of SGD's Langevin model on a 160 × 144 grid,
``fp.generator(grid, problem, hyper=sd.Hyper(η, S), noise=sd.noise.isotropic(16))``, solves
for its stationary state with ``fp.stationary`` and measures the basin masses with
``fp.basin_masses`` (a cell belongs to the well whose quadratic is lower at its centre).

What it shows (docs/theory.md §3–4):

- The stationary law is Boltzmann, ∝ exp(−2L/(nσ²)), temperature T = nσ²/2: only n = η/S
  enters. Two sweeps, S = 2 … 7 at η = 0.05 and η = 0.03 … 0.06 at S = 4, fall on one curve.
  The solver's stationary state is compared with the exact discrete Boltzmann masses
  (``fp.boltzmann``).
- Small n (low temperature) puts the mass in the deep, sharp well; large n in the shallow,
  wide one (entropy: its Boltzmann volume ∝ det(H)^(−1/2) is 16× larger). The Laplace
  approximation p_sharp/p_wide = √(det H_wide / det H_sharp) · exp(2(L_wide − L_sharp)/(nσ²))
  predicts the crossover p_sharp = p_wide at n* = 4(L_wide − L_sharp)/(σ² ln(det H_sharp /
  det H_wide)); the script compares it with the crossover of the grid solution (log-ratio
  interpolated linearly in 1/n) and with the continuum Boltzmann basin masses computed by
  quadrature on a 3× finer grid in NumPy. The wells are exactly quadratic up to the
  smooth joint, so here the Laplace values agree with the exact ones to ~1e-5 and the
  crossovers coincide; the grid solution reproduces both (the point of the example is the
  density view, not a failure of Laplace).

Prints a table and writes fokker_planck_minima.png and fokker_planck_minima.json in the
output folder. About 30 s on two CPU cores (most of it compiling the 2-D solver once);
--quick uses a 96 × 86 grid and fewer points (larger cell Péclet numbers are then allowed:
the basin masses stay accurate because the stationary state of this scheme is the exact
discrete Boltzmann law at any resolution, but the warning says the grid is coarse).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import sgdsde as sd
import sgdsde.fokker_planck as fp
from sgdsde.experiments.output import check_out_dir, save_outputs
from sgdsde.plotting import figure, plain_log_ticks, styled

SPEC = {
    "centers": [[-1.0, 0.0], [1.5, 0.0]],  # well 0: deep and sharp; well 1: shallow and wide
    "levels": [0.0, 0.25],
    "curvatures": [8.0, 0.5],  # Hessians 8 I and 0.5 I
    "softness": 0.05,
    "sigma2": 16.0,
    "num_examples": 64,
    "lower": [-2.0, -2.9],
    "upper": [4.4, 2.9],
    "cells": [160, 144],
    "batch_sweep": {"learning_rate": 0.05, "batch_sizes": [2, 3, 4, 5, 6, 7]},
    "learning_rate_sweep": {"batch_size": 4, "learning_rates": [0.03, 0.04, 0.06]},
    "show_batch_sizes": [7, 2],  # the two density panels
}
QUICK = {"cells": [96, 86], "batch_sweep": {"learning_rate": 0.05, "batch_sizes": [2, 4, 7]},
         "learning_rate_sweep": {"batch_size": 4, "learning_rates": [0.03]}}
WELLS = ("sharp (deep)", "wide (shallow)")


def make_problem(spec: dict):
    return sd.problems.multi_well(spec["centers"], spec["levels"], spec["curvatures"], softness=spec["softness"],
                                  sigma2=spec["sigma2"], num_examples=spec["num_examples"], key=jax.random.key(0))


def make_classify(spec: dict):
    """θ → index of the well whose quadratic q_k(θ) = L_k + ½ h_k ‖θ − μ_k‖² is lowest."""
    mu = jnp.asarray(spec["centers"])
    lv = jnp.asarray(spec["levels"])
    hk = jnp.asarray(spec["curvatures"])

    def classify(theta):
        q = lv + 0.5 * hk * jnp.sum((theta - mu.astype(theta.dtype)) ** 2, axis=-1)
        return jnp.argmin(q)

    return classify


def loss_numpy(spec: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The multi_well loss in float64 NumPy: −s log Σ_k exp(−q_k/s)."""
    q = np.stack([lv + 0.5 * h * ((x - c[0]) ** 2 + (y - c[1]) ** 2)
                  for c, lv, h in zip(spec["centers"], spec["levels"], spec["curvatures"])])
    s = spec["softness"]
    qmin = q.min(axis=0)
    return qmin - s * np.log(np.exp(-(q - qmin) / s).sum(axis=0))


def laplace_fraction_sharp(spec: dict, n) -> np.ndarray:
    """Laplace: p_k ∝ det(H_k)^(−1/2) exp(−2 L_k/(nσ²)), normalised over the two wells."""
    n = np.asarray(n, np.float64)
    d = 2
    logp = [-0.5 * d * math.log(h) - 2 * lv / (n * spec["sigma2"]) for lv, h in zip(spec["levels"], spec["curvatures"])]
    return 1.0 / (1.0 + np.exp(logp[1] - logp[0]))


def laplace_crossover(spec: dict) -> float:
    """n* = 4 (L_wide − L_sharp) / (σ² ln(det H_sharp / det H_wide))."""
    dl = spec["levels"][1] - spec["levels"][0]
    return 4 * dl / (spec["sigma2"] * 2 * math.log(spec["curvatures"][0] / spec["curvatures"][1]))


def quadrature_fraction_sharp(spec: dict, n_values, refine: int = 3) -> np.ndarray:
    """Continuum Boltzmann mass of the sharp basin in the box, midpoint rule on a grid
    ``refine`` times finer than the solver's (float64 NumPy)."""
    cells = [c * refine for c in spec["cells"]]
    axes = [lo + (hi - lo) / m * (np.arange(m) + 0.5) for lo, hi, m in zip(spec["lower"], spec["upper"], cells)]
    x, y = np.meshgrid(*axes, indexing="ij")
    loss = loss_numpy(spec, x, y)
    q = [lv + 0.5 * h * ((x - c[0]) ** 2 + (y - c[1]) ** 2)
         for c, lv, h in zip(spec["centers"], spec["levels"], spec["curvatures"])]
    sharp = q[0] <= q[1]
    out = []
    for n in n_values:
        w = np.exp(-(loss - loss.min()) / (n * spec["sigma2"] / 2))
        out.append(w[sharp].sum() / w.sum())
    return np.asarray(out)


def crossover_from_points(n: np.ndarray, frac_sharp: np.ndarray) -> float | None:
    """n where p_sharp = p_wide: log(p_sharp/p_wide) interpolated linearly in 1/n (it is
    affine in 1/n in the Laplace approximation) between the two bracketing points."""
    order = np.argsort(n)
    n, f = n[order], frac_sharp[order]
    z = np.log(f) - np.log1p(-f)
    for i in range(len(n) - 1):
        if z[i] >= 0 > z[i + 1] or z[i] <= 0 < z[i + 1]:
            u0, u1 = 1 / n[i], 1 / n[i + 1]
            u = u0 + (u1 - u0) * z[i] / (z[i] - z[i + 1])
            return float(1 / u)
    return None


def _coarse_density(grid, mass) -> dict:
    """The density on 2 × 2 blocks of cells (block mass / block area), 4 significant
    digits: what the figure shows, small enough for the JSON."""
    m = np.asarray(mass)
    nx, ny = m.shape[0] // 2, m.shape[1] // 2
    block = m[: 2 * nx, : 2 * ny].reshape(nx, 2, ny, 2).sum(axis=(1, 3))
    density = block / (4 * grid.cell_volume)
    return {"density_2x2_blocks": np.vectorize(lambda v: float(f"{v:.4g}"))(density),
            "block_extent": [grid.lower[0], grid.lower[0] + 2 * nx * grid.spacing[0],
                             grid.lower[1], grid.lower[1] + 2 * ny * grid.spacing[1]]}


def minima_experiment(spec: dict) -> dict:
    problem = make_problem(spec)
    classify = make_classify(spec)
    grid = fp.grid(spec["lower"], spec["upper"], spec["cells"])
    noise = sd.noise.isotropic(spec["sigma2"])
    configs = [("S sweep", spec["batch_sweep"]["learning_rate"], s) for s in spec["batch_sweep"]["batch_sizes"]]
    configs += [("η sweep", eta, spec["learning_rate_sweep"]["batch_size"])
                for eta in spec["learning_rate_sweep"]["learning_rates"]]
    points, densities, warned = [], {}, []
    for sweep, eta, s in configs:
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gen = fp.generator(grid, problem, hyper=sd.Hyper(eta, s), noise=noise)
            mass = fp.stationary(gen)
        seconds = time.perf_counter() - started
        warned += [f"η={eta:g}, S={s}: {w.category.__name__}: {w.message}" for w in caught]
        n = eta / s
        temperature = n * spec["sigma2"] / 2
        exact = fp.boltzmann(grid, problem.info["loss"], temperature)
        basins = np.asarray(fp.basin_masses(grid, mass, classify, 2))
        points.append({
            "sweep": sweep, "learning_rate": eta, "batch_size": s, "noise_scale": n, "temperature": temperature,
            "basin_masses": basins, "fraction_sharp": float(basins[0]),
            "boltzmann_max_rel_error": float(np.abs(mass - exact).max() / exact.max()),
            "seconds": seconds,
        })
        if sweep == "S sweep" and s in spec["show_batch_sizes"]:
            densities[f"S={s}"] = {"batch_size": s, "noise_scale": n, **_coarse_density(grid, mass)}
        print(f"  η = {eta:<5g} S = {s:<2d} n = {n:.5f}: sharp {basins[0]:.4f}, wide {basins[1]:.4f} "
              f"({seconds:.1f} s)", flush=True)
    n_all = np.array([p["noise_scale"] for p in points])
    frac = np.array([p["fraction_sharp"] for p in points])
    quad = quadrature_fraction_sharp(spec, n_all)
    for p, qv in zip(points, quad):
        p["laplace_fraction_sharp"] = float(laplace_fraction_sharp(spec, p["noise_scale"]))
        p["quadrature_fraction_sharp"] = float(qv)
    n_curve = np.geomspace(n_all.min() / 1.3, n_all.max() * 1.3, 60)
    same = []  # (η, S) pairs with the same n = η/S: the stationary law depends on n only
    for i, p in enumerate(points):
        for q in points[i + 1:]:
            if p["sweep"] != q["sweep"] and math.isclose(p["noise_scale"], q["noise_scale"], rel_tol=1e-12):
                same.append({"noise_scale": p["noise_scale"], "a": (p["learning_rate"], p["batch_size"]),
                             "b": (q["learning_rate"], q["batch_size"]),
                             "max_abs_diff": float(np.abs(p["basin_masses"] - q["basin_masses"]).max())})
    return {
        "spec": spec,
        "grid": {"lower": grid.lower, "upper": grid.upper, "cells": grid.cells, "spacing": grid.spacing},
        "points": points,
        "crossover": {
            "laplace_n_star": laplace_crossover(spec),
            "grid_solution_n": crossover_from_points(n_all, frac),
            "quadrature_n": crossover_from_points(n_curve, quadrature_fraction_sharp(spec, n_curve)),
        },
        "curves": {"noise_scale": n_curve, "laplace_fraction_sharp": laplace_fraction_sharp(spec, n_curve),
                   "quadrature_fraction_sharp": quadrature_fraction_sharp(spec, n_curve)},
        "densities": densities,
        "same_noise_scale": same,
        "max_boltzmann_rel_error": max(p["boltzmann_max_rel_error"] for p in points),
        "warnings": warned,
    }


def format_table(results: dict) -> str:
    lines = [f"{'sweep':8} {'η':>6} {'S':>3} {'n = η/S':>9} {'T = nσ²/2':>10} {'sharp':>8} {'wide':>8} "
             f"{'Laplace sharp':>14} {'− Laplace':>10} {'quadrature':>11} {'− quadr.':>9} {'vs Boltzmann':>13}"]
    for p in sorted(results["points"], key=lambda p: p["noise_scale"]):
        lines.append(f"{p['sweep']:8} {p['learning_rate']:6g} {p['batch_size']:3d} {p['noise_scale']:9.5f} "
                     f"{p['temperature']:10.4f} {p['basin_masses'][0]:8.4f} {p['basin_masses'][1]:8.4f} "
                     f"{p['laplace_fraction_sharp']:14.4f} {p['fraction_sharp'] - p['laplace_fraction_sharp']:10.1e} "
                     f"{p['quadrature_fraction_sharp']:11.4f} "
                     f"{p['fraction_sharp'] - p['quadrature_fraction_sharp']:9.1e} "
                     f"{p['boltzmann_max_rel_error']:13.1e}")
    c = results["crossover"]
    grid_n = f"{c['grid_solution_n']:.6f}" if c["grid_solution_n"] else "not bracketed"
    lines.append(f"crossover p_sharp = p_wide: Laplace n* = {c['laplace_n_star']:.6f}, grid solution n = {grid_n}, "
                 f"continuum quadrature n = {c['quadrature_n']:.6f}")
    for pair in results["same_noise_scale"]:
        lines.append(f"same n = {pair['noise_scale']:.5f} from (η, S) = {pair['a']} and {pair['b']}: basin masses "
                     f"differ by {pair['max_abs_diff']:.1e}")
    lines.append(f"max relative distance of fp.stationary to the exact discrete Boltzmann law: "
                 f"{results['max_boltzmann_rel_error']:.1e}")
    for w in results["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


@styled
def plot(results: dict):
    from matplotlib.colors import LogNorm

    spec = results["spec"]
    g = results["grid"]
    axes_c = [lo + h * (np.arange(m) + 0.5) for lo, h, m in zip(g["lower"], g["spacing"], g["cells"])]
    x, y = np.meshgrid(*axes_c, indexing="ij")
    loss = loss_numpy(spec, x, y)
    q = [lv + 0.5 * h * ((x - c[0]) ** 2 + (y - c[1]) ** 2)
         for c, lv, h in zip(spec["centers"], spec["levels"], spec["curvatures"])]
    fig, axs = figure(2, 2, panel=(5.6, 4.4))
    ax = axs[0, 0]
    cs = ax.contourf(x, y, np.minimum(loss, 3.0), levels=np.linspace(0, 3, 25), cmap="viridis")
    fig.colorbar(cs, ax=ax, label="loss L(θ) (clipped at 3)", ticks=np.arange(0.0, 3.01, 0.5))
    ax.contour(x, y, q[0] - q[1], levels=[0.0], colors="w", linestyles="--", linewidths=1)
    for (cx, cy), name in zip(spec["centers"], WELLS):
        ax.plot(cx, cy, "r+", ms=10)
        ax.annotate(name, (cx, cy), textcoords="offset points", xytext=(6, 8), color="w")
    ax.set_title("landscape: L = 0, H = 8 I  vs  L = 0.25, H = 0.5 I\n(dashed: basin boundary)")
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")
    keys = sorted(results["densities"], key=lambda k: results["densities"][k]["noise_scale"])
    for ax, key in zip((axs[0, 1], axs[1, 0]), keys):
        d = results["densities"][key]
        p = next(p for p in results["points"] if p["sweep"] == "S sweep" and p["batch_size"] == d["batch_size"])
        dens = np.asarray(d["density_2x2_blocks"])
        norm = LogNorm(vmin=dens.max() * 1e-4, vmax=dens.max())
        im = ax.imshow(np.maximum(dens, dens.max() * 1e-4).T, origin="lower", extent=d["block_extent"],
                       aspect="auto", cmap="magma", norm=norm)
        fig.colorbar(im, ax=ax, label="stationary density (log scale, 4 decades)")
        ax.contour(x, y, q[0] - q[1], levels=[0.0], colors="w", linestyles="--", linewidths=0.8)
        ax.set_title(f"η = {p['learning_rate']:g}, S = {p['batch_size']} (n = η/S = {p['noise_scale']:.4f}):\n"
                     f"sharp {p['basin_masses'][0]:.3f}, wide {p['basin_masses'][1]:.3f}")
        ax.set_xlabel("θ₁")
        ax.set_ylabel("θ₂")
    ax = axs[1, 1]
    cur = results["curves"]
    ax.semilogx(cur["noise_scale"], cur["quadrature_fraction_sharp"], "k-", lw=1.2,
                label="continuum Boltzmann (quadrature)")
    ax.semilogx(cur["noise_scale"], cur["laplace_fraction_sharp"], "C3--", lw=1.2, label="Laplace approximation")
    for sweep, marker in (("S sweep", "o"), ("η sweep", "s")):
        pts = [p for p in results["points"] if p["sweep"] == sweep]
        if pts:
            lab = (f"fp.stationary, η = {pts[0]['learning_rate']:g}, S = 2…7" if sweep == "S sweep"
                   else f"fp.stationary, S = {pts[0]['batch_size']}, η varied")
            ax.semilogx([p["noise_scale"] for p in pts], [p["fraction_sharp"] for p in pts], marker, ms=7,
                        mfc="none", mew=1.5, label=lab)
    c = results["crossover"]
    ax.axvline(c["laplace_n_star"], color="C3", lw=0.8, ls=":")
    ax.axhline(0.5, color="gray", lw=0.6)
    ax.annotate(f"Laplace n* = {c['laplace_n_star']:.4f}", (c["laplace_n_star"], 0.05), rotation=90,
                textcoords="offset points", xytext=(4, 0), fontsize="small", color="C3")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("noise scale n = η/S")
    ax.set_ylabel("stationary mass of the sharp (deep) basin")
    ax.set_ylim(0, 1)
    ax.set_title("small n: the deep sharp minimum; large n: the shallow wide one")
    ax.legend(loc="upper right")
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--out", default="sgdsde-output/fokker_planck_minima",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="coarser grid (96 × 86) and fewer (η, S) points")
    args = parser.parse_args(argv)
    stem = "fokker_planck_minima"
    try:
        out = check_out_dir(args.out, "--out", files=(f"{stem}.json", f"{stem}.png"))
    except ValueError as err:
        parser.error(str(err))
    spec = {**SPEC, **(QUICK if args.quick else {})}
    started = time.perf_counter()
    results = minima_experiment(spec)
    results["seconds"] = time.perf_counter() - started
    print(f"({results['seconds']:.0f} s)")
    return save_outputs(results, out, stem, plot, format_table)


if __name__ == "__main__":
    main()
