#!/usr/bin/env python
"""Benchmark: the Fokker–Planck grid solver ``sgdsde.fokker_planck`` against fplanck and py-pde.

What is measured (issue 4), in one run:

1. **1-D transient, accuracy and speed.** The tilted double well
   L(θ) = (θ² − 1)² + 0.3 θ on [−2.5, 2.5], drift −L′, diffusion D = 0.25:

       ∂P/∂t = ∂θ(L′ P) + 0.25 ∂²θ P,   zero flux at ±2.5,

   400 cells, from N(1, 0.05²) to T = 50 (about two Kramers times: the mass is still
   moving between the wells). With the library this is ``fp.langevin_generator(grid,
   potential=L, diffusion=0.25)``, i.e. η = 1, S = 1, isotropic σ² = 0.5. Implementations:

   - ``sgdsde``: ``fp.evolve(gen, fp.gaussian(grid, 1, 0.05²), 50, dt=dt, method=...)``
     (Scharfetter–Gummel fluxes, TR-BDF2 or backward Euler, tridiagonal solves, float64);
     timed after compilation (the compile seconds are reported apart).
   - ``fplanck`` 0.2.2: ``fplanck.fokker_planck(temperature=D/k_B, drag=1, extent=5,
     resolution=5/400, potential=L, boundary=reflecting).propagate(initial, 50)``. With
     kT = D and drag 1 its equation is ∂P = ∂(L′P) + D ∂²P (diffusion kT/drag, mobility
     1/drag); its 400 grid points are our cell centres. ``propagate`` is
     ``scipy.sparse.linalg.expm_multiply`` of its master-equation matrix (exact in time:
     its error is its spatial error). Its matrix is built once, outside the timing.
     fplanck 0.2.2 calls ``np.product``, which NumPy 2 removed: this script sets
     ``np.product = np.prod`` before importing it (nothing else is changed).
   - ``py-pde`` 0.59: ``pde.PDE({"p": "d_dx((4x³ − 4x + 0.3) p) + 0.25 laplace(p)"})`` on
     ``CartesianGrid([[-2.5, 2.5]], 400)`` (cell centres, central differences) with the
     zero-flux (Robin) condition ∂ₙp + (L′·n/D) p = 0 as py-pde ``mixed`` conditions, solved
     with ``solver="scipy", method="BDF"`` (SciPy's solve_ivp) at two tolerances: SciPy's
     defaults (rtol 1e-3, atol 1e-6) and tight (rtol 1e-6, atol 1e-9). Warm: the first
     call (numba compilation) is excluded and reported apart.

   Score: the max error of the density at T at the 400 cell centres against a converged
   reference, and the wall time (median of interleaved repeats). sgdsde's density is
   mass / cell width; fplanck's normalised point weights / spacing; py-pde's field values.
   sgdsde's step dt is swept (TR-BDF2 and backward Euler), and for each anchor the largest
   TR-BDF2 step whose error is ≤ the anchor's error is timed against it. Targets: ≥ 50×
   faster than fplanck and ≥ 10× faster than py-pde at equal or better error.

   **Reference** (independent of sgdsde's code): the same PDE on much finer grids, with
   27 × 400 and 81 × 400 cells (odd multiples, so that a fine cell is centred on each of
   the 400 centres), discretised here in NumPy with Scharfetter–Gummel rates and solved
   *exactly in time*: the generator is a birth–death chain in detailed balance, so
   Π^{−1/2} G Π^{1/2} is a symmetric tridiagonal matrix; its eigenpairs with
   λ > −40/T (``scipy.linalg.eigh_tridiagonal``; the rest decay below e^{−40}) give
   P(T) = π + Π^{1/2} V e^{ΛT} Vᵀ Π^{−1/2} P(0), with the zero mode replaced by the exact π.
   The two fine solutions are Richardson-extrapolated, R = (9 R₈₁ − R₂₇)/8 (second-order
   scheme, refinement 3). Checks in the same run: (i) the eigen-solution against SciPy's
   Radau (rtol 1e-11) on the 400-cell system; (ii) a reference built the same way from a
   different discretisation (fplanck's exponential rates D/h² e^{∓ΔL/2D}) must agree —
   both converge to the PDE, not to each other's scheme; (iii) |R₈₁ − R₂₇|/8 bounds the
   error of R₈₁, and R is better still.

2. **2-D stationary state, 256 × 256.** L(θ) = (θ₁² − 1)² + 0.3 θ₁ + (θ₂ − θ₁/2)² (a
   tilted double well with a sheared, non-separable valley) on [−2.5, 2.5]², D = 0.25:
   ``fp.stationary(gen)`` (this generator is reversible: the exact detailed-balance path), its time, its residual ‖G m‖ and its
   distance to the exact discrete Boltzmann masses ∝ exp(−L/D) at the cell centres
   (computed here in NumPy). Anchors: fplanck's ``steady_state()`` (shift-invert ARPACK
   on its own matrix) and a sparse direct solve (SciPy SuperLU) of sgdsde's own
   generator with one row replaced by Σ m = 1.

3. **Scaling with the number of cells.** 1-D: ``fp.evolve`` of problem 1 for 100 … 6400
   cells at the TR-BDF2 step chosen against fplanck (its error against a reference on
   each grid's centres; fplanck and py-pde on the smaller grids). 2-D: ``fp.stationary``
   and 20 TR-BDF2 steps of ``fp.evolve`` (dt = 0.5) for 32² … 256² cells.

Usage:
    python benchmarks/fokker_planck.py [--quick] [--repeats 5] [--no-docs]

A full run takes a few minutes on 2 CPU cores (fplanck's propagate alone takes ~25 s per
call) and writes benchmarks/results/fokker_planck.json, the results block of
docs/benchmarks.md and docs/figures/fokker_planck_benchmark.png; --quick (≈ 1–2 min; 200
cells, small 2-D grids; numbers not meaningful) writes
benchmarks/results/fokker_planck_quick.json only.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.linalg import eigh_tridiagonal  # noqa: E402

import _common as C  # noqa: E402
import sgdsde as sd  # noqa: E402
import sgdsde.fokker_planck as fp  # noqa: E402
from sgdsde.fokker_planck import sparse as fp_sparse  # noqa: E402
from sgdsde.fokker_planck.diagnostics import _check_solver  # noqa: E402  (what solver="auto" takes)
from sgdsde.plotting import save_figure  # noqa: E402

NAME = "fokker_planck"
DOC = C.ROOT / "docs" / "benchmarks.md"
FIGURE = C.ROOT / "docs" / "figures" / "fokker_planck_benchmark.png"

# ------------------------------------------------------------------ the problems
LOWER, UPPER = -2.5, 2.5
DIFFUSION = 0.25
TILT = 0.3
T_FINAL = 50.0
MEAN0, STD0 = 1.0, 0.05
SHEAR = 0.5  # 2-D: (θ₂ − SHEAR·θ₁)²
TARGETS = {"fplanck": 50.0, "py-pde": 10.0}  # issue 4: sgdsde at least this many times faster
DT_SWEEP = {
    "tr_bdf2": (5.0, 2.5, 2.0, 1.25, 1.0, 0.625, 0.5, 0.25, 0.125, 0.0625),
    "backward_euler": (1.0, 0.25, 0.0625, 0.015625),
}


def loss_np(x):
    return (x**2 - 1) ** 2 + TILT * x


def dloss_np(x):
    return 4 * x**3 - 4 * x + TILT


def loss_jax(theta):
    u = theta[0]
    return (u**2 - 1) ** 2 + TILT * u


def loss2_np(x, y):
    return (x**2 - 1) ** 2 + TILT * x + (y - SHEAR * x) ** 2


def loss2_jax(theta):
    return loss2_np(theta[0], theta[1])


def centres(n: int) -> np.ndarray:
    h = (UPPER - LOWER) / n
    return LOWER + h * (np.arange(n) + 0.5)


_log = C.log


# ------------------------------------------------------------------ the reference (NumPy/SciPy)
def _bernoulli(x: np.ndarray) -> np.ndarray:
    """B(x) = x/(eˣ − 1) (series near 0)."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    small = np.abs(x) < 1e-6
    out[small] = 1 - x[small] / 2 + x[small] ** 2 / 12
    xs = x[~small]
    out[~small] = xs / np.expm1(xs)
    return out


def chain_rates(cells: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """Rates i → i+1 and i+1 → i of the 1-D problem on ``cells`` cells: Scharfetter–Gummel
    (D/h² B(±ΔL/D)) or fplanck's exponential form (D/h² e^{∓ΔL/2D}). Both satisfy detailed
    balance with the Boltzmann weights at the cell centres."""
    h = (UPPER - LOWER) / cells
    du = np.diff(loss_np(centres(cells))) / DIFFUSION
    if scheme == "sg":
        return DIFFUSION / h**2 * _bernoulli(du), DIFFUSION / h**2 * _bernoulli(-du)
    if scheme == "exp":
        return DIFFUSION / h**2 * np.exp(-du / 2), DIFFUSION / h**2 * np.exp(du / 2)
    raise ValueError(scheme)


def chain_solution(cells: int, t: float, scheme: str = "sg") -> np.ndarray:
    """Masses at time t of the birth–death chain of ``scheme`` from the midpoint-sampled
    N(MEAN0, STD0²), exact in time (symmetrised tridiagonal eigenproblem, see module doc)."""
    fwd, bwd = chain_rates(cells, scheme)
    diag = np.zeros(cells)
    diag[:-1] -= fwd
    diag[1:] -= bwd
    off = np.sqrt(fwd * bwd)
    logpi = -loss_np(centres(cells)) / DIFFUSION
    logpi -= logpi.max()
    pi = np.exp(logpi)
    sq = np.sqrt(pi)
    w, v = eigh_tridiagonal(diag, off, select="v", select_range=(-40.0 / t, 1.0))
    keep = np.arange(len(w)) != np.argmax(w)  # the zero mode: replaced by the exact π
    w, v = w[keep], v[:, keep]
    v0 = sq / np.linalg.norm(sq)
    v = v - np.outer(v0, v0 @ v)
    v /= np.linalg.norm(v, axis=0)
    x = centres(cells)
    p0 = np.exp(-0.5 * ((x - MEAN0) / STD0) ** 2)
    p0 /= p0.sum()
    return pi / pi.sum() + sq * (v @ (np.exp(w * t) * (v.T @ (p0 / sq))))


def point_density(cells: int, factor: int, t: float, scheme: str = "sg") -> np.ndarray:
    """Density at the centres of a ``cells`` grid from the chain on ``factor``·cells cells
    (odd factor: the fine cell centred on each coarse centre)."""
    fine = cells * factor
    m = chain_solution(fine, t, scheme)
    h_fine = (UPPER - LOWER) / fine
    return m.reshape(cells, factor)[:, factor // 2] / h_fine


def reference(cells: int, t: float = T_FINAL, *, max_fine: int = 40000) -> dict:
    """Richardson-extrapolated point densities at the cell centres (see module doc)."""
    k2 = 81
    while cells * k2 > max_fine and k2 > 9:
        k2 //= 3
    k1 = k2 // 3
    started = time.perf_counter()
    r1, r2 = point_density(cells, k1, t), point_density(cells, k2, t)
    ref = (9 * r2 - r1) / 8
    out = {"cells": cells, "fine_cells": [cells * k1, cells * k2], "density": ref,
           "error_bound_of_finer": float(np.abs(r2 - r1).max() / 8)}
    out["seconds"] = time.perf_counter() - started
    return out


def reference_checks(cells: int, ref: dict, t: float = T_FINAL) -> dict:
    """(i) eigen-solution vs SciPy Radau on the ``cells`` chain; (ii) the reference from the
    exponential-rate discretisation; returns the max differences (densities)."""
    from scipy.integrate import solve_ivp
    import scipy.sparse as sparse

    h = (UPPER - LOWER) / cells
    fwd, bwd = chain_rates(cells, "sg")
    diag = np.zeros(cells)
    diag[:-1] -= fwd
    diag[1:] -= bwd
    a = sparse.diags([bwd, diag, fwd], [1, 0, -1], format="csc")
    x = centres(cells)
    p0 = np.exp(-0.5 * ((x - MEAN0) / STD0) ** 2)
    p0 /= p0.sum()
    started = time.perf_counter()
    sol = solve_ivp(lambda _, y: a @ y, (0.0, t), p0, method="Radau", rtol=1e-11, atol=1e-16, jac=a,
                    t_eval=[t])
    radau_s = time.perf_counter() - started
    eig = chain_solution(cells, t, "sg")
    k2 = int(ref["fine_cells"][1] // cells)
    e1, e2 = point_density(cells, k2 // 3, t, "exp"), point_density(cells, k2, t, "exp")
    ref_exp = (9 * e2 - e1) / 8
    return {
        "eigen_vs_radau_max_density_diff": float(np.abs(eig - sol.y[:, -1]).max() / h),
        "radau_seconds": radau_s, "radau_nfev": int(sol.nfev),
        "sg_vs_exponential_rates_reference_max_diff": float(np.abs(ref["density"] - ref_exp).max()),
    }


# ------------------------------------------------------------------ anchors
def fplanck_1d(cells: int):
    """(propagate call → density at the centres, seconds to build the matrix)."""
    if not hasattr(np, "product"):  # fplanck 0.2.2 calls np.product (removed in NumPy 2)
        np.product = np.prod
    import fplanck
    from scipy import constants

    started = time.perf_counter()
    sim = fplanck.fokker_planck(temperature=DIFFUSION / constants.k, drag=1.0, extent=UPPER - LOWER,
                                resolution=(UPPER - LOWER) / cells, potential=loss_np,
                                boundary=fplanck.boundary.reflecting)
    build = time.perf_counter() - started
    axis = sim.axes[0] + 0.5 * (LOWER + UPPER)
    if axis.shape != (cells,) or np.abs(axis - centres(cells)).max() > 1e-9:
        raise RuntimeError("fplanck's grid does not match the cell centres")
    h = (UPPER - LOWER) / cells
    initial = lambda x: np.exp(-0.5 * ((x - MEAN0) / STD0) ** 2)  # noqa: E731
    return (lambda: sim.propagate(initial, T_FINAL) / h), build


def pypde_1d(cells: int, rtol: float, atol: float):
    """(warm-able solve call → density at the centres, info dict filled by each call)."""
    import pde

    grid = pde.CartesianGrid([[LOWER, UPPER]], cells)
    field = pde.ScalarField.from_expression(grid, f"exp(-(x - {MEAN0})**2 / (2 * {STD0}**2))")
    field /= field.integral
    # zero flux D p' + L' p = 0 as ∂ₙp + γ p = 0: γ = L'(upper)/D, −L'(lower)/D
    bc = {"x-": {"mixed": -dloss_np(LOWER) / DIFFUSION}, "x+": {"mixed": dloss_np(UPPER) / DIFFUSION}}
    eq = pde.PDE({"p": f"d_dx((4*x**3 - 4*x + {TILT}) * p) + {DIFFUSION} * laplace(p)"}, bc=bc)
    info: dict = {}

    def solve():
        out, meta = eq.solve(field.copy(), t_range=T_FINAL, solver="scipy", method="BDF", rtol=rtol, atol=atol,
                             tracker=None, ret_info=True)
        info["rhs_evaluations"] = meta.get("solver", {}).get("steps")
        return np.asarray(out.data)

    return solve, info


# ------------------------------------------------------------------ sgdsde
class Sgdsde1D:
    def __init__(self, cells: int):
        self.grid = fp.grid(LOWER, UPPER, cells)
        started = time.perf_counter()
        self.gen = fp.langevin_generator(self.grid, potential=loss_jax, diffusion=DIFFUSION)
        self.generator_seconds = time.perf_counter() - started
        self.mass0 = fp.gaussian(self.grid, MEAN0, STD0**2)

    def call(self, dt: float, method: str):
        gen, m0, h = self.gen, self.mass0, self.grid.cell_volume
        return lambda: fp.evolve(gen, m0, T_FINAL, dt=dt, method=method).mass[-1] / h


def library_path_check(cells: int) -> dict | None:
    """The same generator through the SGD mapping fp.generator(problem, Hyper(1, 1),
    isotropic(0.5)) (U = ηL, D = η²σ²/2S = 0.25): max relative difference of the rates."""
    if not hasattr(fp, "generator"):
        return None
    g = fp.grid(LOWER, UPPER, cells)
    problem = sd.problems.double_well_1d(tilt=TILT, sigma2=0.5, num_examples=16, key=jax.random.key(0))
    a = fp.langevin_generator(g, potential=loss_jax, diffusion=DIFFUSION)
    b = fp.generator(g, problem, hyper=sd.Hyper(1.0, 1), noise=sd.noise.isotropic(0.5))
    diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(np.abs(np.asarray(x)), 1e-300)))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    return {"max_relative_rate_difference": diff}


# ------------------------------------------------------------------ timing helpers
def _new_timing() -> C.Timing:
    return C.Timing([], [], [], [])


def _record(t: C.Timing, fn, warmup: bool = False):
    wall, comp, t.result = C._timed(fn)
    (t.warmup_wall if warmup else t.wall).append(wall)
    (t.warmup_compile if warmup else t.compile).append(comp)
    return t.result


def _summary(t: C.Timing) -> dict:
    out = t.as_dict()
    out["execute_median_s"] = round(t.median, 6)
    return out


def _err(density, ref) -> float:
    return float(np.max(np.abs(np.asarray(density, np.float64) - ref)))


def _catch(fn):
    """Call fn, returning (result, [warning messages]); a solver that stops above its
    tolerance (``fp.ConvergenceError``) gives (None, [its message]) instead of ending the run."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn()
        except fp.ConvergenceError as err:
            out, caught = None, [*caught, warnings.WarningMessage(err, type(err), __file__, 0)]
    return out, [f"{w.category.__name__}: {w.message}" for w in caught]


# ------------------------------------------------------------------ part 1: the 1-D comparison
def part_1d(a, results: dict) -> dict:
    n = a.cells
    h = (UPPER - LOWER) / n
    _log(f"[1-D] reference for {n} cells")
    ref = reference(n)
    checks = reference_checks(n, ref)
    results["reference"] = {
        "method": "Richardson (9 R_fine2 − R_fine1)/8 of point densities from Scharfetter–Gummel chains on "
                  "the fine grids, each exact in time by the symmetrised tridiagonal eigenproblem",
        "fine_cells": ref["fine_cells"], "seconds": ref["seconds"],
        "error_bound_of_finer_grid": ref["error_bound_of_finer"], **checks,
    }
    _log(f"  fine grids {ref['fine_cells']}: |R2 − R1|/8 = {ref['error_bound_of_finer']:.1e}; "
         f"eigen vs Radau {checks['eigen_vs_radau_max_density_diff']:.1e}; "
         f"SG vs exp-rate references {checks['sg_vs_exponential_rates_reference_max_diff']:.1e}")
    dens = ref["density"]
    results["density_scale"] = float(dens.max())

    # ---- sgdsde: the dt sweep
    sg = Sgdsde1D(n)
    sweep = []
    for method, dts in DT_SWEEP.items():
        for dt in dts:
            call = sg.call(dt, method)
            t = _new_timing()
            with C.CompileMonitor() as cm:
                out, warns = _catch(lambda: _record(t, call, warmup=True))
            for _ in range(a.sweep_repeats):
                _record(t, call)
            m = np.asarray(out) * h
            sweep.append({"method": method, "dt": dt, "steps": math.ceil(T_FINAL / dt - 1e-9),
                          "error": _err(out, dens), "mass_error": float(abs(m.sum() - 1)),
                          "min_mass": float(m.min()), "compile_s": cm.seconds,
                          "first_call_s": t.warmup_wall[0], "execute_median_s": t.median,
                          "execute_best_s": t.best, "warnings": warns})
            _log(f"  sgdsde {method} dt={dt:g}: error {sweep[-1]['error']:.2e}, {C.fmt_seconds(t.median)}")
    results["sgdsde_dt_sweep"] = sweep
    exact_time = chain_solution(n, T_FINAL, "sg") / h  # the SG scheme at 400 cells, exact in time
    results["sgdsde_scheme_exact_in_time_error"] = _err(exact_time, dens)

    # ---- anchors: first calls
    _log("[1-D] anchors: first calls (fplanck ≈ 25 s at 400 cells)")
    anchors = {}
    fpl_call, fpl_build = fplanck_1d(n)
    anchors["fplanck"] = {"call": fpl_call, "setting": "propagate (expm_multiply)", "setup_s": fpl_build}
    for label, (rtol, atol) in {"py-pde (rtol 1e-3, atol 1e-6)": (1e-3, 1e-6),
                                "py-pde (rtol 1e-6, atol 1e-9)": (1e-6, 1e-9)}.items():
        call, info = pypde_1d(n, rtol, atol)
        anchors[label] = {"call": call, "setting": f"scipy BDF rtol={rtol:g} atol={atol:g}", "info": info}
    timings = {}
    for label, anc in anchors.items():
        t = _new_timing()
        out = _record(t, anc["call"], warmup=True)
        anc["error"] = _err(out, dens)
        anc["mass"] = float(np.sum(out) * h)
        timings[label] = t
        _log(f"  {label}: error {anc['error']:.2e}, first call {C.fmt_seconds(t.warmup_wall[0])}")

    # ---- matched sgdsde settings: the largest TR-BDF2 step with error ≤ each anchor's
    matched = {}
    tr = [s for s in sweep if s["method"] == "tr_bdf2"]
    for label, anc in anchors.items():
        ok = [s for s in tr if s["error"] <= anc["error"]]
        matched[label] = max(ok, key=lambda s: s["dt"]) if ok else None
    dts = sorted({m["dt"] for m in matched.values() if m is not None}, reverse=True)
    sg_calls = {dt: sg.call(dt, "tr_bdf2") for dt in dts}
    sg_times = {dt: _new_timing() for dt in dts}
    for dt, call in sg_calls.items():
        _record(sg_times[dt], call, warmup=True)

    # ---- interleaved rounds: every anchor once, sgdsde `inner` times per setting
    _log(f"[1-D] timing interleaved, {a.repeats} rounds (sgdsde ×{a.inner} per round)")
    for r in range(a.repeats):
        if not a.quick:  # --quick: the anchors' first calls stand in for their timings
            for label, anc in anchors.items():
                _record(timings[label], anc["call"])
        for dt, call in sg_calls.items():
            for _ in range(a.inner):
                _record(sg_times[dt], call)
        _log(f"  round {r + 1}/{a.repeats} done")
    if a.quick:
        for t in timings.values():
            t.wall, t.compile = list(t.warmup_wall), list(t.warmup_compile)

    rows, main = [], {}
    for label, anc in anchors.items():
        t = timings[label]
        m = matched[label]
        entry = {"setting": anc["setting"], "error": anc["error"], "mass": anc["mass"], **_summary(t)}
        if "setup_s" in anc:
            entry["setup_s"] = anc["setup_s"]
        if "info" in anc:
            entry.update(anc["info"])
        if m is not None:
            ts = sg_times[m["dt"]]
            speedup = t.median / ts.median
            entry["sgdsde_match"] = {"method": "tr_bdf2", "dt": m["dt"], "error": m["error"],
                                     "execute_median_s": ts.median, "execute_best_s": ts.best,
                                     "speedup_median": speedup, "speedup_best": t.best / ts.best,
                                     "target": TARGETS["fplanck" if label == "fplanck" else "py-pde"],
                                     "met": bool(speedup >= TARGETS["fplanck" if label == "fplanck" else "py-pde"])}
        else:
            entry["sgdsde_match"] = None
        main[label] = entry
    for dt, t in sg_times.items():
        s = next(s for s in tr if s["dt"] == dt)
        main[f"sgdsde tr_bdf2 dt={dt:g}"] = {"setting": f"fp.evolve TR-BDF2, dt={dt:g} ({s['steps']} steps)",
                                              "error": s["error"], "mass": 1 - s["mass_error"],
                                              **_summary(t), "compile_s": s["compile_s"]}
    results["main"] = main
    results["sgdsde_generator_build_s"] = sg.generator_seconds
    # fixed cost of a warm fp.evolve call (one step)
    one = C.time_call(lambda: fp.evolve(sg.gen, sg.mass0, 1.0, dt=1.0).mass[-1], warmup=1, repeats=2 * a.inner)
    results["sgdsde_evolve_fixed_cost_s"] = one.median
    return {"ref": ref, "sweep": sweep, "matched": matched, "anchors": anchors, "timings": timings,
            "sg_times": sg_times}


# ------------------------------------------------------------------ part 2: 2-D stationary
def boltzmann2(g) -> np.ndarray:
    x, y = np.meshgrid(*g.centers, indexing="ij")
    u = loss2_np(x, y) / DIFFUSION
    b = np.exp(-(u - u.min()))
    return b / b.sum()


def stationary_metrics(gen, m, exact) -> dict:
    m = np.asarray(m, np.float64)
    with jax.enable_x64(True):  # the generator's rates are float64
        r = np.asarray(gen.apply(jnp.asarray(m)), np.float64)
        outflow = np.asarray(gen.exit_rates(), np.float64) * m
    return {
        "residual_max_rel": float(np.abs(r).max() / outflow.max()),
        "residual_l1": float(np.abs(r).sum()),
        "boltzmann_max_rel_error": float(np.abs(m - exact).max() / exact.max()),
        "boltzmann_l1_error": float(np.abs(m - exact).sum()),
        "mass_error": float(abs(m.sum() - 1)),
        "min_mass": float(m.min()),
    }


def sgdsde_2d(n: int):
    g = fp.grid([LOWER, LOWER], [UPPER, UPPER], [n, n])
    return g, fp.langevin_generator(g, potential=loss2_jax, diffusion=DIFFUSION)


def sparse_direct_2d(gen):
    """SuperLU on sgdsde's generator with the last row replaced by Σ m = 1."""
    import scipy.sparse as sparse
    import scipy.sparse.linalg as spla

    from sgdsde.fokker_planck.passage import generator_matrix

    gmat = generator_matrix(gen)
    size = gmat.shape[0]

    def solve():
        a = gmat.tolil()
        a[size - 1, :] = np.ones(size)
        rhs = np.zeros(size)
        rhs[-1] = 1.0
        return spla.spsolve(sparse.csc_matrix(a), rhs).reshape(gen.grid.shape)

    return solve


def fplanck_2d(n: int):
    if not hasattr(np, "product"):
        np.product = np.prod
    import fplanck
    from scipy import constants

    started = time.perf_counter()
    sim = fplanck.fokker_planck(temperature=DIFFUSION / constants.k, drag=1.0, extent=[UPPER - LOWER] * 2,
                                resolution=(UPPER - LOWER) / n, potential=loss2_np,
                                boundary=fplanck.boundary.reflecting)
    build = time.perf_counter() - started
    if tuple(sim.Ngrid) != (n, n) or np.abs(sim.axes[0] - centres(n)).max() > 1e-9:
        raise RuntimeError("fplanck's 2-D grid does not match the cell centres")
    x, y = np.meshgrid(sim.axes[0], sim.axes[1], indexing="ij")
    u = loss2_np(x, y) / DIFFUSION
    exact = np.exp(-(u - u.min()))
    return sim.steady_state, build, exact / exact.sum()


def part_2d(a, results: dict) -> dict:
    n = a.cells_2d
    _log(f"[2-D] stationary state, {n}×{n}")
    g, gen = sgdsde_2d(n)
    exact = boltzmann2(g)
    t = _new_timing()
    with C.CompileMonitor() as cm:
        m, warns = _catch(lambda: _record(t, lambda: fp.stationary(gen), warmup=True))
    for _ in range(a.repeats_2d):
        _record(t, lambda: fp.stationary(gen))
    entry = {"cells": [n, n], "setting": "fp.stationary (reversible generator: exact detailed-balance products)", **_summary(t),
             "compile_s": cm.seconds, "warnings": warns, **stationary_metrics(gen, m, exact)}
    out = {"sgdsde": entry}
    _log(f"  sgdsde: {C.fmt_seconds(t.median)}, Boltzmann max rel error {entry['boltzmann_max_rel_error']:.1e}, "
         f"residual {entry['residual_max_rel']:.1e}")
    ts = C.time_call(sparse_direct_2d(gen), warmup=0, repeats=a.repeats_2d)
    out["scipy SuperLU (same generator)"] = {"setting": "spsolve, one row replaced by Σm = 1", **_summary(ts),
                                             **stationary_metrics(gen, ts.result, exact)}
    err = out["scipy SuperLU (same generator)"]["boltzmann_max_rel_error"]
    _log(f"  SuperLU: {C.fmt_seconds(ts.median)}, error {err:.1e}")
    steady, build, exact_f = fplanck_2d(n)
    tf = C.time_call(steady, warmup=0, repeats=a.repeats_2d)
    mf = np.asarray(tf.result, np.float64)
    out["fplanck steady_state"] = {"setting": "eigs(sigma=0) shift-invert ARPACK", **_summary(tf),
                                   "setup_s": build,
                                   "boltzmann_max_rel_error": float(np.abs(mf - exact_f).max() / exact_f.max()),
                                   "boltzmann_l1_error": float(np.abs(mf - exact_f).sum()),
                                   "min_mass": float(mf.min())}
    _log(f"  fplanck: {C.fmt_seconds(tf.median)} (+ {C.fmt_seconds(build)} to build), error "
         f"{out['fplanck steady_state']['boltzmann_max_rel_error']:.1e}")
    results["stationary_2d"] = out
    return out


# ------------------------------------------------------------------ part 3: scaling
def part_scaling(a, results: dict, chosen_dt: float, main_1d: dict | None = None) -> dict:
    rows1 = []
    for n in a.scaling_1d:
        _log(f"[scaling 1-D] {n} cells")
        ref = reference(n)
        sg = Sgdsde1D(n)
        call = sg.call(chosen_dt, "tr_bdf2")
        t = _new_timing()
        with C.CompileMonitor() as cm:
            out, warns = _catch(lambda: _record(t, call, warmup=True))
        for _ in range(a.inner * 2):
            _record(t, call)
        row = {"cells": n, "dt": chosen_dt, "error": _err(out, ref["density"]), "compile_s": cm.seconds,
               "reference_error_bound": ref["error_bound_of_finer"], **_summary(t), "warnings": warns}
        row["scheme_exact_in_time_error"] = _err(chain_solution(n, T_FINAL, "sg") / ((UPPER - LOWER) / n),
                                                 ref["density"])
        if n == a.cells and main_1d is not None:  # the main comparison's grid: reuse its anchor timings
            for key, label in (("fplanck", "fplanck"), ("py-pde (rtol 1e-3)", "py-pde (rtol 1e-3, atol 1e-6)")):
                e = main_1d["main"][label]
                row[key] = {"error": e["error"], "execute_median_s": e["execute_median_s"],
                            "execute_best_s": e["execute_best_s"], "reused_from_main": True}
        elif n <= a.fplanck_max:
            call_f, _ = fplanck_1d(n)
            tf = C.time_call(call_f, warmup=0, repeats=1)  # tens of seconds a call
            row["fplanck"] = {"error": _err(tf.result, ref["density"]), **_summary(tf)}
        if n != a.cells and n <= a.pypde_max:
            call_p, _ = pypde_1d(n, 1e-3, 1e-6)
            tp = C.time_call(call_p, warmup=1, repeats=2 if n < 800 else 1)
            row["py-pde (rtol 1e-3)"] = {"error": _err(tp.result, ref["density"]), **_summary(tp)}
        rows1.append(row)
    rows2 = []
    for n in a.scaling_2d:
        _log(f"[scaling 2-D] {n}×{n}")
        g, gen = sgdsde_2d(n)
        reps = a.repeats_2d if n < 256 else max(1, a.repeats_2d - 1)
        if n == a.cells_2d and "stationary_2d" in results:  # measured in part 2: reuse
            stationary = {k: v for k, v in results["stationary_2d"]["sgdsde"].items()
                          if k not in ("cells", "setting")}
        else:
            exact = boltzmann2(g)
            ts = _new_timing()
            with C.CompileMonitor() as cm:
                m, warns = _catch(lambda: _record(ts, lambda: fp.stationary(gen), warmup=True))
            for _ in range(reps):
                _record(ts, lambda: fp.stationary(gen))
            stationary = {**_summary(ts), "compile_s": cm.seconds, "warnings": warns,
                          **stationary_metrics(gen, m, exact)}
        m0 = fp.gaussian(g, [MEAN0, SHEAR * MEAN0], 0.1**2)
        te = _new_timing()
        evolve = lambda: fp.evolve(gen, m0, 10.0, dt=0.5).mass[-1]  # noqa: E731
        with C.CompileMonitor() as cme:
            me, warns_e = _catch(lambda: _record(te, evolve, warmup=True))
        for _ in range(reps):
            _record(te, evolve)
        me = np.asarray(me)
        rows2.append({"cells": [n, n], "stationary": stationary,
                      "evolve_20_steps": {**_summary(te), "compile_s": cme.seconds, "warnings": warns_e,
                                          "mass_error": float(abs(me.sum() - 1)), "min_mass": float(me.min())}})
    results["scaling_1d"] = rows1
    results["scaling_2d"] = rows2
    return {"1d": rows1, "2d": rows2}


# ------------------------------------------------------------------ part 4: the SciPy LU-once anchor
ANCHOR_DT = 0.5


def loss3_np(x, y, z):
    return loss2_np(x, y) + 0.5 * z**2


def loss3_jax(theta):
    return loss3_np(theta[0], theta[1], theta[2])


def scipy_tr_bdf2(gen, mass0, t_final: float, dt: float):
    """What a careful SciPy user writes: TR-BDF2 on the same generator matrix G
    (``generator_matrix``), with (I − cΔt G), c = 1 − 1/√2, factored once by
    ``scipy.sparse.linalg.splu`` (the trapezoidal and the BDF2 stage share this matrix,
    see sgdsde.fokker_planck.stepping) and two back-solves per step. The factor is made on
    the first call and kept (as fp.evolve keeps its own): later calls only back-solve."""
    import scipy.sparse as sparse
    import scipy.sparse.linalg as spla

    from sgdsde.fokker_planck.sparse import generator_matrix

    gmat = generator_matrix(gen)
    steps = max(1, math.ceil(t_final / dt - 1e-9))
    c = (1.0 - 1.0 / math.sqrt(2.0)) * (t_final / steps)
    gamma = 2.0 - math.sqrt(2.0)
    b = (1.0 - gamma) ** 2 / (gamma * (2.0 - gamma))
    m0 = np.asarray(mass0, np.float64).ravel()
    kept: dict = {}

    def call():
        if "lu" not in kept:
            kept["lu"] = spla.splu((sparse.identity(gmat.shape[0], format="csc") - c * gmat).tocsc())
        lu, m = kept["lu"], m0
        for _ in range(steps):
            stage = 2.0 * lu.solve(m) - m
            m = lu.solve(stage + b * (stage - m))
        return m.reshape(gen.grid.shape)

    return call


def anchor_problem(n: int, dims: int):
    lo, hi = [LOWER] * dims, [UPPER] * dims
    g = fp.grid(lo, hi, [n] * dims)
    gen = fp.langevin_generator(g, potential=loss2_jax if dims == 2 else loss3_jax, diffusion=DIFFUSION)
    mean = [MEAN0, SHEAR * MEAN0] + [0.0] * (dims - 2)
    return gen, fp.gaussian(g, mean, 0.1**2)


def part_anchor(a, results: dict) -> list:
    """2-D and 3-D transients: fp.evolve (solver "auto" and "krylov") against the SciPy
    LU-once TR-BDF2 on the same generator; medians of interleaved repeats; first calls apart."""
    rows = []
    for dims, sizes, steps in ((2, a.anchor_2d, 20), (3, a.anchor_3d, 10)):
        for n in sizes:
            _log(f"[anchor {dims}-D] {n}^{dims}, {steps} TR-BDF2 steps of dt = {ANCHOR_DT:g}")
            gen, m0 = anchor_problem(n, dims)
            t_final = steps * ANCHOR_DT
            # the direct solver gets a column of its own where "auto" does not take it (3-D 48³ at
            # 10 steps: fewer than the factorisation's break-even): a user repeating evolves of one
            # generator and Δt passes solver="direct" and reuses the cached factor
            # (without Δt, the choice of a first call: no ledger of earlier Krylov steps is read or kept)
            auto_choice = _check_solver(gen, "auto", steps)
            # where "auto" starts with Krylov (3-D 48³ at 10 steps: fewer than the factorisation's
            # break-even), it rents Krylov until repeated evolves of the system would have paid for
            # the factor: measured as a loop of calls from cold caches (repeated_evolves), and the
            # interleaved repeats time "krylov" and "direct" instead of an "auto" that changes
            solvers = ("auto", "krylov") if auto_choice == "direct" else ("krylov", "direct")
            calls = {f"sgdsde {solver}": (lambda solver=solver: fp.evolve(gen, m0, t_final, dt=ANCHOR_DT,
                                                                           solver=solver).mass[-1])
                     for solver in solvers}
            row = {"dims": dims, "cells": [n] * dims, "steps": steps, "dt": ANCHOR_DT, "auto_takes": auto_choice}
            scipy_first = None
            if n <= (a.scipy_2d_max if dims == 2 else a.scipy_3d_max):
                calls["scipy splu once"] = scipy_tr_bdf2(gen, m0, t_final, ANCHOR_DT)
                if auto_choice != "direct" and a.loop_calls:
                    row["repeated_evolves"] = repeated_evolves(gen, m0, t_final, calls["scipy splu once"],
                                                               a.loop_calls)
                    scipy_first = row["repeated_evolves"]["scipy splu once"]["call_s"][0]  # its factor is kept
            else:
                row["scipy_skipped"] = (f"{n}^{dims} above --scipy-{dims}d-max: SuperLU's fill-in "
                                        "(48³: about 4 GB and 100 s to factor)")
            fp_sparse._cache.clear()  # sgdsde's first calls below factorise again
            fp_sparse._krylov_ledger.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                timings = C.time_interleaved(calls, warmup=1, repeats=a.anchor_repeats)
            for label, t in timings.items():
                row[label] = {**_summary(t), "first_call_s": t.warmup_wall[0]}
            if scipy_first is not None:
                row["scipy splu once"]["first_call_s"] = scipy_first
            if "scipy splu once" in timings:
                ref = np.asarray(timings["scipy splu once"].result)
                labels = [f"sgdsde {solver}" for solver in solvers]
                for label in labels:
                    diff = float(np.abs(np.asarray(timings[label].result) - ref).max())
                    row[label]["max_abs_diff_vs_scipy"] = diff
                    if diff > 1e-9:  # same scheme, same matrix: equal to the solvers' rounding (~1e-12)
                        raise SystemExit(f"{label} differs from the SciPy anchor by {diff:.1e} at {n}^{dims}")
                best = min(labels, key=lambda k: timings[k].median)
                row["fastest_sgdsde"] = best
                row["scipy_over_sgdsde"] = timings["scipy splu once"].median / timings[best].median
            rows.append(row)
            _log("  " + ", ".join(f"{k} {C.fmt_seconds(v.median)}" for k, v in timings.items()))
    results["anchor_transient"] = rows
    return rows


def repeated_evolves(gen, m0, t_final: float, scipy_call, num_calls: int) -> dict:
    """A loop of ``num_calls`` identical evolves, as a notebook re-runs one system: sgdsde
    with the default ``solver="auto"`` from cold caches (no factor, an empty ledger of
    Krylov steps) against the SciPy anchor's closure from its first call (which factors),
    the two libraries' calls alternating. Records each call's wall time, which solver
    "auto" took (Krylov if it added steps to the ledger), the cumulative times and their
    ratio, and the largest difference of the last answers."""
    fp_sparse._cache.clear()
    fp_sparse._krylov_ledger.clear()
    ledger_steps = lambda: sum(steps for _, steps in fp_sparse._krylov_ledger.values())  # noqa: E731
    times: dict = {"sgdsde auto": [], "scipy splu once": []}
    took, last = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(num_calls):
            before = ledger_steps()
            for label, call in (("sgdsde auto", lambda: fp.evolve(gen, m0, t_final, dt=ANCHOR_DT).mass[-1]),
                                ("scipy splu once", scipy_call)):
                began = time.perf_counter()
                last[label] = np.asarray(call())
                times[label].append(time.perf_counter() - began)
            took.append("krylov" if ledger_steps() > before else "direct")
            _log(f"  repeated evolve {i + 1}/{num_calls}: auto ({took[-1]}) {times['sgdsde auto'][-1]:.2f} s, "
                 f"scipy {times['scipy splu once'][-1]:.2f} s")
    diff = float(np.abs(last["sgdsde auto"] - last["scipy splu once"]).max())
    if diff > 1e-9:
        raise SystemExit(f"repeated evolves: sgdsde auto differs from the SciPy anchor by {diff:.1e}")
    total = {label: float(np.sum(t)) for label, t in times.items()}
    return {"calls": num_calls, "auto_took": took, "max_abs_diff_vs_scipy": diff,
            **{label: {"call_s": [float(x) for x in t], "cumulative_s": [float(x) for x in np.cumsum(t)],
                       "total_s": total[label]} for label, t in times.items()},
            "scipy_over_sgdsde_total": total["scipy splu once"] / total["sgdsde auto"]}


def anchor_table(rows: list) -> tuple:
    header = ["cells", "steps", "scipy / sgdsde (median)", "sgdsde auto (takes)", "sgdsde krylov", "sgdsde direct",
              "scipy splu once", "1st call incl. compile: auto", "krylov", "direct", "scipy (incl. factor)",
              "max |Δm| vs scipy"]
    body = []
    for r in rows:
        cells = "×".join(str(c) for c in r["cells"])
        scipy_row = r.get("scipy splu once")

        def med(label):
            return C.fmt_seconds(r[label]["execute_median_s"]) if label in r else "—"

        def first(label):
            return C.fmt_seconds(r[label]["first_call_s"]) if label in r else "—"

        ratio = (f"**{r['scipy_over_sgdsde']:.2f}×** ({r['fastest_sgdsde'].removeprefix('sgdsde ')})"
                 if scipy_row else "— (" + r.get("scipy_skipped", "") + ")")
        diff = (f"{max(r[k]['max_abs_diff_vs_scipy'] for k in r if k.startswith('sgdsde ')):.0e}"
                if scipy_row else "—")
        auto = med("sgdsde auto") + (f" ({r['auto_takes']})" if "auto_takes" in r else "")
        direct = med("sgdsde direct") if "sgdsde direct" in r else "= auto"
        direct_first = first("sgdsde direct") if "sgdsde direct" in r else "= auto"
        body.append([cells, r["steps"], ratio, auto, med("sgdsde krylov"), direct, med("scipy splu once"),
                     first("sgdsde auto"), first("sgdsde krylov"), direct_first, first("scipy splu once"), diff])
    return header, body


def repeated_table(rows: list) -> tuple:
    header = ["cells", "steps a call", "calls", "auto took (call by call)", "sgdsde auto: call times",
              "total", "scipy: call times", "total", "scipy / sgdsde (total)"]
    body = []
    for r in rows:
        if "repeated_evolves" not in r:
            continue
        e = r["repeated_evolves"]
        times = lambda label: ", ".join(f"{x:.1f}" for x in e[label]["call_s"]) + " s"  # noqa: E731
        took = ", ".join(f"{took}" for took in e["auto_took"])
        body.append(["×".join(str(c) for c in r["cells"]), r["steps"], e["calls"], took, times("sgdsde auto"),
                     C.fmt_seconds(e["sgdsde auto"]["total_s"]), times("scipy splu once"),
                     C.fmt_seconds(e["scipy splu once"]["total_s"]), f"**{e['scipy_over_sgdsde_total']:.2f}×**"])
    return header, body


# ------------------------------------------------------------------ figure
def make_figure(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13.5, 4.2))
    sweep = results["sgdsde_dt_sweep"]
    for method, marker in (("tr_bdf2", "o-"), ("backward_euler", "s--")):
        s = [x for x in sweep if x["method"] == method]
        ax1.loglog([x["execute_median_s"] for x in s], [x["error"] for x in s], marker,
                   label=f"sgdsde {method.replace('_', ' ')} (dt swept)")
    for label, e in results["main"].items():
        if label.startswith("sgdsde"):
            continue
        ax1.loglog([e["execute_median_s"]], [e["error"]], "*", ms=13, label=label)
    ax1.axhline(results["sgdsde_scheme_exact_in_time_error"], color="gray", lw=0.8, ls=":",
                label="sgdsde scheme, exact in time")
    ax1.set_xlabel("wall time per solve [s] (median)")
    ax1.set_ylabel("max |density − reference| at T = 50")
    ax1.set_title(f"1-D tilted double well, {results['config']['cells']} cells, T = 50")
    ax1.legend(fontsize=7)
    rows = results["scaling_1d"]
    ax2.loglog([r["cells"] for r in rows], [r["execute_median_s"] for r in rows], "o-",
               label=f"1-D fp.evolve (TR-BDF2, dt={rows[0]['dt']:g})")
    for key, mk in (("fplanck", "*--"), ("py-pde (rtol 1e-3)", "^--")):
        pts = [(r["cells"], r[key]["execute_median_s"]) for r in rows if key in r]
        if pts:
            ax2.loglog(*zip(*pts), mk, label=f"1-D {key}")
    rows2 = results["scaling_2d"]
    cells2 = [r["cells"][0] * r["cells"][1] for r in rows2]
    ax2.loglog(cells2, [r["stationary"]["execute_median_s"] for r in rows2], "s-", label="2-D fp.stationary")
    ax2.loglog(cells2, [r["evolve_20_steps"]["execute_median_s"] for r in rows2], "d-",
               label="2-D fp.evolve, 20 TR-BDF2 steps")
    for dims, style in ((2, "-"), (3, ":")):  # the SciPy LU-once anchor and sgdsde on the same transients
        # ("sgdsde direct" only where "auto" takes Krylov: 3-D 48³ at 10 steps)
        rows_a = [r for r in results.get("anchor_transient", []) if r["dims"] == dims]
        for label, mk in (("sgdsde auto", "o"), ("sgdsde direct", "s"), ("scipy splu once", "x")):
            pts = [(int(np.prod(r["cells"])), r[label]["execute_median_s"]) for r in rows_a if label in r]
            if pts:
                steps = rows_a[0]["steps"]
                ax2.loglog(*zip(*pts), mk + style, label=f"{dims}-D evolve, {steps} steps: {label}")
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_xlabel("cells")
    ax2.set_ylabel("wall time [s] (median, compiled)")
    ax2.set_title("scaling with the number of cells")
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small and fast (≈ 1 min), for checking")
    p.add_argument("--cells", type=int, default=None, help="1-D cells (default 400; 100 with --quick)")
    p.add_argument("--cells-2d", type=int, default=None, help="2-D cells per axis (default 256; 64 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)")
    p.add_argument("--inner", type=int, default=None, help="sgdsde calls per round (default 7; 3 with --quick)")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md or the figure")
    p.add_argument("--parts", default=",".join(PARTS),
                   help="which parts to run (default all; 'anchor' alone needs neither fplanck nor py-pde)")
    p.add_argument("--anchor-2d", default=None, help="2-D grids (cells per axis) of the anchor part (default "
                   "64,128,256; 16,32 with --quick)")
    p.add_argument("--anchor-3d", default=None, help="3-D grids of the anchor part (default 32,48; 10 with --quick; "
                   "'' for none)")
    p.add_argument("--loop-calls", type=int, default=10,
                   help="calls of the repeated-evolves loop where auto starts with Krylov (default 10; 3 with "
                        "--quick; 0: none)")
    p.add_argument("--scipy-2d-max", type=int, default=256, help="largest 2-D grid (per axis) for the SciPy anchor")
    p.add_argument("--scipy-3d-max", type=int, default=48,
                   help="largest 3-D grid (per axis) for the SciPy anchor (48³: ~4 GB, ~100 s to factor)")
    a = p.parse_args(argv)
    a.cells = a.cells or (200 if a.quick else 400)
    a.cells_2d = a.cells_2d or (64 if a.quick else 256)
    a.repeats = a.repeats or (1 if a.quick else 3)
    a.inner = a.inner or (3 if a.quick else 7)
    a.sweep_repeats = 2 if a.quick else 5
    a.repeats_2d = 1 if a.quick else 3
    a.scaling_1d = [200, 800] if a.quick else [100, 200, 400, 800, 1600, 3200, 6400]
    a.scaling_2d = [32, 64] if a.quick else [32, 64, 128, 256]
    a.fplanck_max = 0 if a.quick else 400  # (the main grid's anchors are always reused)
    a.pypde_max = 0 if a.quick else 1600
    default_2d, default_3d = ("16,32", "10") if a.quick else ("64,128,256", "32,48")
    a.anchor_2d = [int(x) for x in (default_2d if a.anchor_2d is None else a.anchor_2d).split(",") if x.strip()]
    a.anchor_3d = [int(x) for x in (default_3d if a.anchor_3d is None else a.anchor_3d).split(",") if x.strip()]
    a.anchor_repeats = 1 if a.quick else 5
    a.loop_calls = 3 if a.quick else a.loop_calls
    a.parts = [x.strip() for x in a.parts.split(",")]
    if a.cells < 3 or a.cells_2d < 3:
        p.error("--cells and --cells-2d must be ≥ 3")
    if not set(a.parts) <= set(PARTS):
        p.error(f"--parts: choose from {','.join(PARTS)}")
    return a


PARTS = ("1d", "2d", "scaling", "anchor")  # 1d, 2d and scaling need fplanck and py-pde


def main(argv=None) -> dict:
    a = parse_args(argv)
    began, machine = C.begin()
    import scipy

    for mod in ("fplanck", "py-pde", "scipy", "numba"):
        machine[mod] = C._version(mod)
    results: dict = {
        "config": {
            "equation": "dP/dt = d/dθ(L'(θ) P) + 0.25 d²P/dθ², L = (θ²−1)² + 0.3θ, zero flux on [−2.5, 2.5]",
            "library_equivalent": "fp.langevin_generator(grid, potential=L, diffusion=0.25) (η=1, S=1, σ²=0.5)",
            "cells": a.cells, "t_final": T_FINAL, "initial": f"N({MEAN0}, {STD0}²) sampled at the cell centres",
            "score": "max |density − reference| over the cell centres at T; wall time median of interleaved rounds",
            "equation_2d": f"L = (θ₁²−1)² + 0.3θ₁ + (θ₂ − {SHEAR}θ₁)², D = 0.25 on [−2.5, 2.5]²",
            "equation_3d": "the 2-D L + θ₃²/2, D = 0.25 on [−2.5, 2.5]³",
            "cells_2d": [a.cells_2d] * 2, "repeats": a.repeats, "inner": a.inner, "quick": a.quick,
            "parts": a.parts,
            "float": "float64 (sgdsde.fokker_planck's default; fplanck, py-pde and SciPy compute in float64)",
            "versions": {"fplanck": machine["fplanck"], "py-pde": machine["py-pde"], "scipy": scipy.__version__},
        },
    }
    lib = library_path_check(a.cells)
    if lib is not None:
        results["library_path_check"] = lib
    if "1d" in a.parts:
        one = part_1d(a, results)
        tr_fpl = one["matched"].get("fplanck")
        chosen_dt = tr_fpl["dt"] if tr_fpl else 0.5
    else:
        chosen_dt = 0.5
    if "2d" in a.parts:
        part_2d(a, results)
    if "scaling" in a.parts:
        part_scaling(a, results, chosen_dt, results if "1d" in a.parts else None)
    if "anchor" in a.parts:
        part_anchor(a, results)
    results["sgdsde_file"] = sd.__file__

    tables = report(results)
    versions = (f"fplanck {machine.get('fplanck')}, py-pde {machine.get('py-pde')}, SciPy {machine.get('scipy')}")
    full = not a.quick and not a.no_docs and set(a.parts) == set(PARTS)
    if full:
        fig = make_figure(results, FIGURE)
        print(f"wrote {C.shown(fig)}")
    path = C.finish(NAME, results, machine, began=began, suffix="_quick" if a.quick else "", write_docs=full,
                    render=lambda: _doc_block(results, machine, tables, a), versions=versions)
    return results


def _e(x) -> str:
    return f"{x:.2e}"


def report(results: dict) -> dict:
    """Print every table of the parts that ran; returns them as {name: (header, rows)}."""
    tables = {}
    if "main" in results:
        tables.update(_report_1d(results))
    if "stationary_2d" in results:
        tables["stationary"] = _report_stationary(results)
    if "scaling_1d" in results:
        tables.update(_report_scaling(results))
    if "anchor_transient" in results:
        tables["anchor"] = anchor_table(results["anchor_transient"])
        if any("repeated_evolves" in r for r in results["anchor_transient"]):
            tables["repeated"] = repeated_table(results["anchor_transient"])
            C.print_table(*tables["repeated"], title="repeated evolves from cold caches (auto's ski-rental)")
        print()
        C.print_table(*tables["anchor"], title="2-D / 3-D transients against the SciPy LU-once anchor")
    return tables


def _report_1d(results: dict) -> dict:
    cfg = results["config"]
    main = results["main"]
    header = ["implementation", "setting", "max error", "time (median)", "(best)", "compile / setup",
              "sgdsde at ≤ error", "sgdsde time", "speed-up", "target", ""]
    rows = []
    for label, e in main.items():
        if label.startswith("sgdsde"):
            continue
        m = e["sgdsde_match"]
        first = e["warmup_wall_s"][0] if e.get("warmup_wall_s") else None
        setup = (f"build {C.fmt_seconds(e['setup_s'])}" if "setup_s" in e
                 else f"1st call {C.fmt_seconds(first)}" if first else "")
        if m:
            rows.append([label, e["setting"], _e(e["error"]), C.fmt_seconds(e["execute_median_s"]),
                         C.fmt_seconds(e["execute_best_s"]), setup,
                         f"TR-BDF2 dt={m['dt']:g}: {_e(m['error'])}", C.fmt_seconds(m["execute_median_s"]),
                         f"{m['speedup_median']:.0f}×", f"≥ {m['target']:g}×", "met" if m["met"] else "MISSED"])
        else:
            rows.append([label, e["setting"], _e(e["error"]), C.fmt_seconds(e["execute_median_s"]),
                         C.fmt_seconds(e["execute_best_s"]), setup, "none (error floor above)", "—", "—",
                         "", "MISSED"])
    sg_rows = [[label, e["setting"], _e(e["error"]), C.fmt_seconds(e["execute_median_s"]),
                C.fmt_seconds(e["execute_best_s"]), f"compile {C.fmt_seconds(e['compile_s'])}"]
               for label, e in main.items() if label.startswith("sgdsde")]
    sweep_header = ["method", "dt", "steps", "max error", "time (median)", "compile", "mass error Σm − 1",
                    "min mass"]
    sweep_rows = [[s["method"], f"{s['dt']:g}", s["steps"], _e(s["error"]), C.fmt_seconds(s["execute_median_s"]),
                   C.fmt_seconds(s["compile_s"]), f"{s['mass_error']:.0e}", f"{s['min_mass']:.1e}"]
                  for s in results["sgdsde_dt_sweep"]]
    print()
    C.print_table(header, rows, title=f"1-D tilted double well, {cfg['cells']} cells, T = {T_FINAL:g}: anchors "
                                      "and the fastest sgdsde setting at equal or better error")
    C.print_table(["implementation", "setting", "max error", "time (median)", "(best)", ""], sg_rows)
    ref = results["reference"]
    print(f"  reference: fine grids {ref['fine_cells']}, |R2 − R1|/8 = {ref['error_bound_of_finer_grid']:.1e}; "
          f"eigen vs Radau {ref['eigen_vs_radau_max_density_diff']:.1e}; SG vs exponential-rate reference "
          f"{ref['sg_vs_exponential_rates_reference_max_diff']:.1e}; density max {results['density_scale']:.3f}")
    print(f"  sgdsde's scheme at {cfg['cells']} cells, exact in time: error "
          f"{results['sgdsde_scheme_exact_in_time_error']:.2e}; generator build "
          f"{C.fmt_seconds(results['sgdsde_generator_build_s'])}; fixed cost of a warm fp.evolve call "
          f"{C.fmt_seconds(results['sgdsde_evolve_fixed_cost_s'])}")
    print()
    C.print_table(sweep_header, sweep_rows, title="sgdsde dt sweep (fp.evolve to T = 50)")
    return {"main": (header, rows), "sgdsde": (["implementation", "setting", "max error", "time (median)", "(best)",
                                                ""], sg_rows),
            "sweep": (sweep_header, sweep_rows)}


def _report_stationary(results: dict) -> tuple:
    cfg = results["config"]
    s2 = results["stationary_2d"]
    st_header = ["implementation", "setting", "time (median)", "Boltzmann max rel. error", "L1 distance to Boltzmann",
                 "residual: max abs(Gm) / max outflow", "min mass"]
    st_rows = [[k, v["setting"], C.fmt_seconds(v["execute_median_s"]), _e(v["boltzmann_max_rel_error"]),
                _e(v["boltzmann_l1_error"]), _e(v["residual_max_rel"]) if "residual_max_rel" in v else "—",
                f"{v['min_mass']:.1e}"] for k, v in s2.items()]
    print()
    C.print_table(st_header, st_rows, title=f"2-D stationary state, {cfg['cells_2d'][0]}×{cfg['cells_2d'][1]}")
    return st_header, st_rows


def _report_scaling(results: dict) -> dict:
    sc1_header = ["cells", "sgdsde time (median)", "per cell-step", "sgdsde max error", "scheme error (exact time)",
                  "fplanck time", "fplanck error", "py-pde (rtol 1e-3) time", "py-pde error"]
    sc1_rows = []
    for r in results["scaling_1d"]:
        steps = math.ceil(T_FINAL / r["dt"] - 1e-9)
        f, p = r.get("fplanck"), r.get("py-pde (rtol 1e-3)")
        sc1_rows.append([r["cells"], C.fmt_seconds(r["execute_median_s"]),
                         f"{r['execute_median_s'] / (r['cells'] * steps) * 1e9:.1f} ns", _e(r["error"]),
                         _e(r["scheme_exact_in_time_error"]),
                         C.fmt_seconds(f["execute_median_s"]) if f else "—", _e(f["error"]) if f else "—",
                         C.fmt_seconds(p["execute_median_s"]) if p else "—", _e(p["error"]) if p else "—"])
    sc2_header = ["cells", "stationary time", "compile", "Boltzmann max rel. error", "residual",
                  "evolve 20 steps", "per cell-step", "evolve mass error"]
    sc2_rows = []
    for r in results["scaling_2d"]:
        s, e = r["stationary"], r["evolve_20_steps"]
        cells = r["cells"][0] * r["cells"][1]
        sc2_rows.append([f"{r['cells'][0]}×{r['cells'][1]}", C.fmt_seconds(s["execute_median_s"]),
                         C.fmt_seconds(s["compile_s"]), _e(s["boltzmann_max_rel_error"]), _e(s["residual_max_rel"]),
                         C.fmt_seconds(e["execute_median_s"]), f"{e['execute_median_s'] / (cells * 20) * 1e9:.0f} ns",
                         f"{e['mass_error']:.0e}"])
    print()
    C.print_table(sc1_header, sc1_rows, title="1-D scaling (evolve to T = 50)")
    print()
    C.print_table(sc2_header, sc2_rows, title="2-D scaling")
    return {"scaling_1d": (sc1_header, sc1_rows), "scaling_2d": (sc2_header, sc2_rows)}


def _lead(results: dict) -> str:
    """The ratios first: each comparison against its strongest anchor (medians of interleaved rounds)."""
    parts = []
    for r in results.get("anchor_transient", []):
        if "scipy_over_sgdsde" in r:
            parts.append(f"{'×'.join(map(str, r['cells']))} **{r['scipy_over_sgdsde']:.2f}×**")
    lead = []
    if parts:
        lead.append("SciPy TR-BDF2 with its LU factored once (the strongest anchor: the same scheme on the same "
                    "generator matrix, equal answers) time / sgdsde time: " + ", ".join(parts))
    for label, e in results.get("main", {}).items():
        m = e.get("sgdsde_match")
        if m:
            lead.append(f"1-D at equal or better error, {label} / sgdsde: **{m['speedup_median']:.0f}×**")
    return ("**Ratios** (> 1: sgdsde faster; medians of interleaved rounds): " + "; ".join(lead) + "."
            if lead else "**Ratios**: none measured in this run.")


def _doc_block(results, machine, tables, a) -> str:
    cfg = results["config"]
    sections = []
    if "main" in tables:
        ref = results["reference"]
        sections += [
            f"1-D, {cfg['cells']} cells, T = {T_FINAL:g} (max error of the density at the cell centres; the density "
            f"peaks at {results['density_scale']:.2f}); time = median of {a.repeats} interleaved rounds "
            f"(sgdsde: {a.inner} calls per round), compiled:",
            tables["main"], tables["sgdsde"],
            f"- Reference: fine grids of {ref['fine_cells'][0]} and {ref['fine_cells'][1]} cells, Richardson; "
            f"|R₂ − R₁|/8 = {ref['error_bound_of_finer_grid']:.1e}; the eigen-solution agrees with SciPy Radau "
            f"(rtol 1e-11) to {ref['eigen_vs_radau_max_density_diff']:.1e}; the reference from fplanck-type "
            f"exponential rates agrees to {ref['sg_vs_exponential_rates_reference_max_diff']:.1e}.\n"
            f"- sgdsde's scheme at {cfg['cells']} cells, exact in time: error "
            f"{results['sgdsde_scheme_exact_in_time_error']:.2e} (the spatial error; the rest is the TR-BDF2 time "
            f"error). Generator build {C.fmt_seconds(results['sgdsde_generator_build_s'])}; fixed cost "
            f"of a warm `fp.evolve` call {C.fmt_seconds(results['sgdsde_evolve_fixed_cost_s'])}.",
            "The dt sweep (every `fp.evolve` step count compiles once; time after compilation):",
            tables["sweep"],
        ]
    if "stationary" in tables:
        sections += [f"2-D stationary state, {cfg['cells_2d'][0]}×{cfg['cells_2d'][1]} cells:", tables["stationary"]]
    if "scaling_1d" in tables:
        sections += [
            "Scaling, 1-D (evolve to T = 50, TR-BDF2 at the step chosen against fplanck; errors against a "
            "reference on each grid's centres):", tables["scaling_1d"],
            "Scaling, 2-D (stationary state, and 20 TR-BDF2 steps of dt = 0.5 from N((1, 0.5), 0.1² I)):",
            tables["scaling_2d"],
        ]
    if "anchor" in tables:
        sections += [
            f"2-D and 3-D transients (TR-BDF2, dt = {ANCHOR_DT:g}, from N((1, 0.5, 0), 0.1² I); 3-D: {cfg['equation_3d']}) "
            "against the SciPy anchor a careful user writes: the library's own generator matrix "
            "(`generator_matrix`), (I − cΔt G) factored once by `scipy.sparse.linalg.splu`, two back-solves per "
            "step. Times are medians of interleaved repeats after a first call; the first call (sgdsde: compile "
            "and factor; SciPy: factor) is its own column. fplanck and py-pde have no column here (fplanck's "
            "`propagate` is `expm_multiply`, timed in 1-D above; py-pde is not set up for 2-D zero-flux here).",
            tables["anchor"],
        ]
    if "repeated" in tables:
        sections += [
            "Repeated evolves of one system where `solver=\"auto\"` starts with Krylov (a notebook loop of "
            "identical calls; sgdsde from cold caches, SciPy's closure from its first call, which factors; the "
            "calls alternate): \"auto\" rents Krylov until the Krylov steps run on the system reach the "
            "factorisation's break-even, then factorises once and back-solves (the ski-rental rule). Wall "
            "times of each call, cumulative ratio SciPy ÷ sgdsde:",
            tables["repeated"],
        ]
    if "main" in tables:
        sections.append(f"Figure: `docs/figures/{FIGURE.name}`.")
    return C.doc_block(NAME, "python benchmarks/fokker_planck.py" + ("" if set(a.parts) == set(PARTS) else
                                                                     f" --parts {','.join(a.parts)}"),
                       results, machine, lead=_lead(results), sections=sections,
                       versions=(f"fplanck {machine.get('fplanck')}, py-pde {machine.get('py-pde')}, "
                                 f"SciPy {machine.get('scipy')}"))


if __name__ == "__main__":
    main()
