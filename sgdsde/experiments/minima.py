"""The main job: which minimum SGD ends in, as a function of the noise n = η/S, computed
five ways that describe the same system (docs/theory.md §3–4).

On a 2-D landscape with a deep sharp minimum A and a shallow wide minimum B (isotropic
gradient noise σ², exactly), for each batch size S at a fixed learning rate η:

1. **SGD** — an ensemble of discrete minibatch SGD runs (``subset`` sampling), the basin
   occupancy time-averaged after a burn-in of several relaxation times;
2. **Euler–Maruyama** — the same ensemble for the Langevin SDE dθ = −ηg dt + (η/√S)σ dW
   (finite-N noise factor (N−S)/(N−1), as ``subset`` has), time step ``em_dt`` SGD steps;
3. **Fokker–Planck** — the stationary state of the grid solver;
4. **quadrature** — the exact Boltzmann basin masses ∫_A exp(−2L/(n_eff σ²)) / Z;
5. **Laplace** — p_A ∝ det(H_A)^(−1/2) exp(−2L_A/(n_eff σ²)), from the minima found by
   :mod:`sgdsde.landscape`.

Methods 2–4 describe the SDE's stationary law, so they agree within Monte-Carlo, time-step
and grid error; SGD differs by its O(η) bias (reported, in standard errors). On the
built-in landscape SGD gives the sharp basin *less* mass than the SDE, although a
harmonic analysis of the wells alone (SGD's wider stationary spread nσ²/(λ(2 − ηλ)))
predicts more; the sharp saddle (η|λ_s| ≈ 0.5) is a likely cause, not verified here.
Laplace departs when the temperature nσ²/2 is not small against the barriers (the wide basin is not harmonic over the region its mass occupies). Each method's
crossover noise (p_A = p_B) is reported, and the mean escape times out of each minimum:
simulated (SGD and EM first-passage times), Eyring–Kramers, and exact on the grid (the
backward Kolmogorov equation of the Fokker–Planck generator). Times are in SGD steps.

This module holds the computation (:func:`minima_selection`) and :func:`main`; the
landscapes are in :mod:`~sgdsde.experiments.minima_landscapes`, the table and the figure in
:mod:`~sgdsde.experiments.minima_report` (all re-exported here).
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import landscape, noise, observers
from .. import fokker_planck as fp
from .._progress import Progress, note
from ..hyper import Hyper
from ..runner import run
from ..sde import euler_maruyama
from ..steppers import sgd
from .minima_landscapes import (
    LANDSCAPES,
    analyse_landscape,
    basin_probabilities,
    build_problem,
    load_landscape,
    lowest_in_basin,
)
from .minima_report import format_table, plot
from .output import check_out_dir, save_outputs

__all__ = ["LANDSCAPES", "load_landscape", "build_problem", "minima_selection", "format_table", "plot", "main"]


def _log(progress: bool, message: str) -> None:
    note("sgdsde minima", message, enabled=progress)


def _check_settings(learning_rate, batch_sizes, num_examples, replicas, escape_replicas, em_dt) -> list[int]:
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate: must be a finite number > 0, got {learning_rate!r}")
    if any(int(s) != s for s in batch_sizes):
        raise ValueError(f"batch_sizes: must be integers, got {list(batch_sizes)}")
    sizes = sorted({int(s) for s in batch_sizes})
    if not sizes or sizes[0] < 1 or sizes[-1] >= num_examples:
        raise ValueError(f"batch_sizes: need integers in [1, N − 1 = {num_examples - 1}], got {list(batch_sizes)}")
    for count, name in ((replicas, "replicas"), (escape_replicas, "escape_replicas")):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 2:
            raise ValueError(f"{name}: need an integer ≥ 2 (standard errors come from the spread), got {count!r}")
    if not 0 < em_dt <= 1:
        raise ValueError(f"em_dt: the Euler–Maruyama step must be in (0, 1] SGD steps, got {em_dt!r}")
    return sizes


def batch_sizes_for_noise(noise_range: Sequence[float], points: int, learning_rate: float) -> list[int]:
    """Integer batch sizes S = round(η/n) for ``points`` noise levels log-spaced over
    ``noise_range`` = (n_min, n_max), deduplicated (the realised n = η/S is reported)."""
    lo, hi = (float(v) for v in noise_range)
    if not (0 < lo <= hi) or not np.isfinite(hi):
        raise ValueError(f"noise range: need 0 < n_min ≤ n_max, got {noise_range!r}")
    sizes = np.round(learning_rate / np.geomspace(lo, hi, int(points))).astype(int)
    if sizes.max() < 1:
        raise ValueError(
            f"noise range: n_max = {hi} > η = {learning_rate} needs a batch size < 1; raise the learning rate"
        )
    return sorted(set(int(s) for s in np.clip(sizes, 1, None)))


def _split_start(points: np.ndarray):
    """Per-replica initial params: the minima in turn (replica r starts at minimum r mod K),
    an even split that favours no basin."""
    points = jnp.asarray(points, jnp.float32)

    def init(key):
        index = jax.random.randint(key, (), 0, points.shape[0])
        return points[index]

    return init


def _ensemble_basins(key, stepper, problem, hyper, starts, classify, num_basins, num_calls, burn_in_calls,
                     replicas, progress):
    """Time-averaged basin occupancy (fractions and replica standard errors) of an ensemble."""
    result = run(
        key, stepper, problem, hyper, _split_start(starts), num_calls, replicas=replicas,
        observers=[observers.basins(classify, num_basins, burn_in=burn_in_calls)], progress=progress,
    )
    b = result["basins"]
    return {
        "fractions": np.asarray(b["fractions"])[0],
        "stderr": np.asarray(b["stderr"])[0],
        "diverged": np.asarray(result.diverged)[0].sum(axis=-1),
    }


def _core_region(classify, loss, basin: int, ceiling: float):
    """The target of an escape into ``basin``: its points with L ≤ ``ceiling``."""
    def region(theta):
        return (classify(theta) == basin) & (loss(theta) <= ceiling)

    return region


def _simulated_escape(key, stepper, problem, hyper, start, region, num_calls, replicas, progress):
    """Mean first-passage time (SGD steps) from ``start`` into ``region`` per configuration."""
    result = run(
        key, stepper, problem, hyper, jnp.asarray(start, jnp.float32), num_calls, replicas=replicas,
        observers=[observers.first_passage(region)], progress=progress, clock="steps",
    )
    fpt = result["first_passage"]
    return {
        "mean": np.asarray(fpt["mean_time"])[0],
        "stderr": np.asarray(fpt["mean_time_stderr"])[0],
        "hit_fraction": np.asarray(fpt["hit_fraction"])[0],
    }


# ---------------------------------------------------------------------- theory pieces
def _log_ratio_crossover(noise, log_ratio, log_ratio_stderr=None):
    """Where log(p_A/p_B) changes sign, by linear interpolation in log n between the
    bracketing noise levels (the first sign change from small n). Returns (n*, stderr);
    (None, None) if the ratio does not change sign over the range."""
    noise, log_ratio = np.asarray(noise, float), np.asarray(log_ratio, float)
    order = np.argsort(noise)
    x, y = np.log(noise[order]), log_ratio[order]
    se = None if log_ratio_stderr is None else np.asarray(log_ratio_stderr, float)[order]
    for i in range(len(x) - 1):
        if np.isfinite(y[i]) and np.isfinite(y[i + 1]) and y[i] * y[i + 1] <= 0 and y[i] != y[i + 1]:
            slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
            w = y[i] / (y[i] - y[i + 1])
            log_star = x[i] + w * (x[i + 1] - x[i])
            stderr = None
            if se is not None:
                # the interpolated zero moves by δy/|slope|; δy from the two bracketing points
                dy = np.hypot((1 - w) * se[i], w * se[i + 1])
                stderr = float(np.exp(log_star) * dy / abs(slope))
            return float(np.exp(log_star)), stderr
    return None, None


def _log_ratio_and_stderr(p_a, p_b, se_a, se_b):
    """log(p_A/p_B) and its delta-method standard error (p_A, p_B from one ensemble;
    their errors are treated as independent, which overstates it slightly when
    p_A + p_B = 1)."""
    p_a, p_b = np.asarray(p_a, float), np.asarray(p_b, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(p_a / p_b)
        stderr = np.hypot(np.asarray(se_a) / p_a, np.asarray(se_b) / p_b)
    return ratio, stderr


def _quadrature_box(spec, minima, max_noise, sigma2, cells, widths=5.0):
    """The box of the Boltzmann quadrature: the landscape's box, widened where needed so
    that it holds every minimum's Laplace Gaussian N(θ_k, (nσ²/2) H_k⁻¹) to ``widths``
    standard deviations per axis at the largest noise n (docs/theory.md §3), so that the
    box cuts off no mass that matters; cells grow with it (the spec's cell size kept). Returns (lower, upper, cells) as lists."""
    lower, upper = np.asarray(spec["lower"], float), np.asarray(spec["upper"], float)
    temperature = max_noise * sigma2 / 2.0
    regular = ~np.asarray(minima.degenerate)  # a degenerate minimum has no Laplace Gaussian
    if not regular.any():
        return lower.tolist(), upper.tolist(), list(cells)
    points = np.asarray(minima.points)[regular]
    spread = widths * np.sqrt(temperature * np.stack([np.diag(np.linalg.inv(h)) for h in minima.hessians[regular]]))
    new_lower = np.minimum(lower, (points - spread).min(axis=0))
    new_upper = np.maximum(upper, (points + spread).max(axis=0))
    cell = (upper - lower) / np.asarray(cells, float)
    new_cells = np.ceil((new_upper - new_lower) / cell).astype(int)
    return new_lower.tolist(), new_upper.tolist(), new_cells.tolist()


def _fokker_planck(problem, spec, grid, sizes, learning_rate, classify, num_basins, cores, start_cells, progress):
    """Per batch size: stationary basin masses, grid mean first-passage times from each
    start cell into each core (bool masks on ``grid``) and the two-state relaxation time
    (all in SGD steps)."""
    from ..fokker_planck.passage import mean_first_passage_time

    masses, relaxation, passage = [], [], []
    bar = Progress("sgdsde minima [Fokker–Planck]", len(sizes), "noise levels", enabled=progress)
    with jax.enable_x64(True):
        for done, size in enumerate(sizes, start=1):
            # the SDE's noise: σ² I with subset sampling's finite-N factor (N−S)/(N−1)
            gen = fp.generator(grid, problem, hyper=Hyper(learning_rate, size),
                               noise=noise.isotropic(spec["sigma2"], finite_n=True), clock="steps")
            mass = fp.stationary(gen)
            masses.append(np.asarray(fp.basin_masses(grid, mass, classify, num_basins)))
            times = [float(mean_first_passage_time(gen, core)[start]) for core, start in zip(cores, start_cells)]
            passage.append(times)
            # two-state relaxation time 1/(k_AB + k_BA), k = 1/(mean escape time): the slow
            # mode of a bistable landscape (≈ 1/λ₁ of the generator, much cheaper than
            # fp.spectral_gap on a 2-D grid)
            relaxation.append(1.0 / sum(1.0 / t for t in times))
            bar.update(done)
    return np.array(masses), np.array(relaxation), np.array(passage)


def minima_selection(
    landscape_spec: str | dict = "sharp-wide",
    *,
    learning_rate: float = 0.025,
    batch_sizes: Sequence[int] = (2, 3, 4, 5, 6),
    replicas: int = 512,
    em_dt: float = 0.25,
    burn_in_relaxations: float = 3.0,
    sample_relaxations: float = 3.0,
    max_steps: int = 12_000,
    escape_replicas: int = 256,
    max_escape_steps: int = 8_000,
    grid_cells: Sequence[int] = (128, 112),
    quadrature_cells: Sequence[int] = (384, 320),
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Basin probabilities five ways, crossovers and escape times (module docstring).

    SGD and Euler–Maruyama ensembles start evenly split between the minima, run a burn-in
    of ``burn_in_relaxations`` slowest relaxation times (two-state, 1/(1/τ_AB + 1/τ_BA)
    from the grid's mean escape times, at the smallest noise) and average basin occupancy over a further
    ``sample_relaxations`` (steps capped at ``max_steps``; the table flags a burn-in
    shorter than 3 relaxation times). Escape times are simulated where 5× the grid
    prediction fits in ``max_escape_steps``. All times are SGD steps.
    """
    began = time.perf_counter()
    spec = load_landscape(landscape_spec) if isinstance(landscape_spec, str) else dict(landscape_spec)
    num_examples, sigma2 = int(spec["num_examples"]), float(spec["sigma2"])
    sizes = _check_settings(learning_rate, batch_sizes, num_examples, replicas, escape_replicas, em_dt)
    problem = build_problem(spec, seed)
    info = problem.info
    loss, classify, num_basins = info["loss"], info["classify"], int(info["num_basins"])
    sizes_arr = np.array(sizes, float)
    noise_scale = learning_rate / sizes_arr
    noise_eff = noise_scale * (num_examples - sizes_arr) / (num_examples - 1)  # subset sampling
    timings = {}

    # ---- landscape: minima, saddles, Laplace, critical noise
    _log(progress, f"landscape '{spec.get('description', '')}': finding minima and saddles")
    t0 = time.perf_counter()
    found = analyse_landscape(problem, spec, seed=seed)
    minima, saddles, minimum_basin = found["minima"], found["saddles"], found["minimum_basin"]
    a, b = lowest_in_basin(minima, minimum_basin, 0), lowest_in_basin(minima, minimum_basin, 1)
    log_w = landscape.laplace_log_probabilities(minima, noise_eff, sigma2)
    laplace_p = basin_probabilities(log_w, minimum_basin, num_basins)
    critical = landscape.critical_noise(minima, sigma2, pair=(a, b))
    timings["landscape"] = time.perf_counter() - t0

    # ---- exact Boltzmann quadrature (dense in n, for the crossover and the curve)
    t0 = time.perf_counter()
    dense = np.geomspace(noise_eff.min() / 1.5, noise_eff.max() * 1.5, 241)
    quad_lower, quad_upper, quad_cells = _quadrature_box(spec, minima, float(dense.max()), sigma2, quadrature_cells)
    with jax.enable_x64(True):
        quad = landscape.boltzmann_basin_masses(
            loss, classify, num_basins, lower=quad_lower, upper=quad_upper, cells=quad_cells,
            noise_scale=np.concatenate([noise_eff, dense]), sigma2=sigma2,
        )
    quad_p, quad_err = np.asarray(quad.masses), np.asarray(quad.error)
    timings["quadrature"] = time.perf_counter() - t0

    # ---- Fokker–Planck: stationary state, relaxation time, grid escape times
    _log(progress, f"Fokker–Planck on a {grid_cells[0]}×{grid_cells[1]} grid for {len(sizes)} noise levels")
    t0 = time.perf_counter()
    saddle_ab = saddles.between(a, b)
    if saddle_ab.num_saddles == 0:
        raise ValueError("landscape: no saddle joins the two lowest minima; cannot compute escape times")
    barrier = {a: float(saddle_ab.losses[0] - minima.losses[a]), b: float(saddle_ab.losses[0] - minima.losses[b])}
    # escape targets: the core of the other basin, L ≤ L_min + ¼ barrier (same set for every method)
    core_of = {
        k: _core_region(classify, loss, int(minimum_basin[k]), float(minima.losses[k] + 0.25 * barrier[k]))
        for k in (a, b)
    }

    with jax.enable_x64(True):
        grid = fp.grid(spec["lower"], spec["upper"], list(grid_cells))
        centres = grid.points().reshape(-1, grid.ndim)
        core_masks = [np.asarray(jax.vmap(core_of[k])(jnp.asarray(centres))).reshape(grid.shape) for k in (a, b)]
    start_cells = [
        tuple(np.unravel_index(np.argmin(np.sum((centres - minima.points[k]) ** 2, axis=1)), grid.shape))
        for k in (b, a)
    ]
    fp_p, relaxation, grid_escape = _fokker_planck(
        problem, spec, grid, sizes, learning_rate, classify, num_basins, core_masks, start_cells, progress,
    )  # grid_escape[:, 0]: from B into A's core; [:, 1]: from A into B's core
    timings["fokker_planck"] = time.perf_counter() - t0

    # ---- ensembles
    tau = float(relaxation.max())
    burn_in = int(min(np.ceil(burn_in_relaxations * tau), max_steps // 2))
    total = int(min(burn_in + max(np.ceil(sample_relaxations * tau), 1000), max_steps))
    hyper = Hyper.grid([learning_rate], sizes)
    starts = minima.points[[a, b]]
    _log(progress, f"SGD ensemble: {replicas} replicas × {len(sizes)} batch sizes × {total} steps "
                   f"(burn-in {burn_in} = {burn_in / tau:.1f} relaxation times)")
    t0 = time.perf_counter()
    sgd_b = _ensemble_basins(jax.random.key(seed + 1), sgd("subset"), problem, hyper, starts, classify,
                             num_basins, total, burn_in, replicas, progress)
    timings["sgd"] = time.perf_counter() - t0
    calls, burn_calls = int(round(total / em_dt)), int(round(burn_in / em_dt))
    _log(progress, f"Euler–Maruyama ensemble (dt = {em_dt} steps): {replicas} replicas × {len(sizes)} × {calls} calls")
    t0 = time.perf_counter()
    em_stepper = euler_maruyama(noise.isotropic(sigma2, finite_n=True), dt=em_dt)
    em_b = _ensemble_basins(jax.random.key(seed + 2), em_stepper, problem, hyper, starts, classify,
                            num_basins, calls, burn_calls, replicas, progress)
    timings["euler_maruyama"] = time.perf_counter() - t0

    # ---- escape times
    kramers = np.array([
        [landscape.kramers_escape_time(minima.at(src), saddle_ab, learning_rate=learning_rate,
                                       batch_size=learning_rate / n, sigma2=sigma2) for src in (b, a)]
        for n in noise_eff
    ])
    simulated = {"sgd": np.full((len(sizes), 2, 3), np.nan), "euler_maruyama": np.full((len(sizes), 2, 3), np.nan)}
    t0 = time.perf_counter()
    for j, (src, dst) in enumerate(((b, a), (a, b))):
        feasible = np.flatnonzero(5 * grid_escape[:, j] <= max_escape_steps)
        if feasible.size == 0:
            continue
        steps = int(np.ceil(5 * grid_escape[feasible, j].max()))
        esc_hyper = Hyper.grid([learning_rate], [sizes[i] for i in feasible])
        _log(progress, f"escape {spec.get('names', ['A', 'B'])[int(minimum_basin[src])]} → core of the other basin: "
                       f"{escape_replicas} replicas × {feasible.size} batch sizes × {steps} steps")
        for name, stepper, k, call_steps in (
            ("sgd", sgd("subset"), 3, steps),
            ("euler_maruyama", em_stepper, 4, int(np.ceil(steps / em_dt))),
        ):
            out = _simulated_escape(jax.random.key(seed + 10 * k + j), stepper, problem, esc_hyper,
                                    minima.points[src], core_of[dst], call_steps, escape_replicas, progress)
            simulated[name][feasible, j] = np.stack([out["mean"], out["stderr"], out["hit_fraction"]], axis=-1)
    timings["escape"] = time.perf_counter() - t0

    # ---- crossovers (p_A = p_B between basins 0 and 1)
    ba, bb = int(minimum_basin[a]), int(minimum_basin[b])
    crossover = {}
    for name, res in (("sgd", sgd_b), ("euler_maruyama", em_b)):
        ratio, ratio_se = _log_ratio_and_stderr(res["fractions"][:, ba], res["fractions"][:, bb],
                                                res["stderr"][:, ba], res["stderr"][:, bb])
        crossover[name] = _log_ratio_crossover(noise_eff, ratio, ratio_se)
    crossover["fokker_planck"] = _log_ratio_crossover(noise_eff, np.log(fp_p[:, ba] / fp_p[:, bb]))[0], None
    dense_p = quad_p[len(sizes):]
    crossover["quadrature"] = _log_ratio_crossover(dense, np.log(dense_p[:, ba] / dense_p[:, bb]))[0], None
    crossover["laplace"] = (float(critical.noise_scale) if critical.exists else None), None
    dense_laplace = basin_probabilities(landscape.laplace_log_probabilities(minima, dense, sigma2), minimum_basin,
                                         num_basins)

    names = spec.get("names") or [f"basin {k}" for k in range(num_basins)]
    return {
        "description": "Basin probabilities of SGD on a landscape with a deep sharp and a shallow wide minimum, "
                       "five ways: SGD ensemble, Euler–Maruyama ensemble, Fokker–Planck stationary state, "
                       "exact Boltzmann quadrature, Laplace",
        "clock": "SGD steps",
        "landscape": {k: v for k, v in spec.items()},
        "basin_names": names,
        "learning_rate": learning_rate,
        "batch_sizes": sizes,
        "noise_scale": noise_scale,
        "noise_scale_effective": noise_eff,
        "temperature": noise_eff * sigma2 / 2,
        "sampling": "subset",
        "minima": [
            {"point": minima.points[k], "loss": minima.losses[k], "hessian_eigenvalues": minima.eigenvalues[k],
             "logdet": minima.logdets[k], "basin": int(minimum_basin[k])}
            for k in range(minima.num_minima)
        ],
        "saddle": {"point": saddle_ab.points[0], "loss": saddle_ab.losses[0],
                   "negative_eigenvalue": saddle_ab.negative_eigenvalues[0]},
        "barriers": {"from_A": barrier[a], "from_B": barrier[b]},
        "lr_times_lambda_max": learning_rate * float(np.max(minima.eigenvalues)),
        "probabilities": {
            "sgd": {"value": sgd_b["fractions"], "stderr": sgd_b["stderr"]},
            "euler_maruyama": {"value": em_b["fractions"], "stderr": em_b["stderr"]},
            "fokker_planck": {"value": fp_p},
            "quadrature": {"value": quad_p[: len(sizes)], "error": quad_err[: len(sizes)]},
            "laplace": {"value": laplace_p},
        },
        "dense": {"noise_scale": dense, "quadrature": dense_p, "laplace": dense_laplace},
        "diverged": {"sgd": sgd_b["diverged"], "euler_maruyama": em_b["diverged"]},
        "crossover": {k: {"noise_scale": v[0], "stderr": v[1]} for k, v in crossover.items()},
        "critical_noise_paper_eq4": float(critical.noise_scale) / 4 if critical.exists else None,
        "relaxation_steps": relaxation,
        "burn_in_steps": burn_in,
        "total_steps": total,
        "burn_in_relaxations": burn_in / tau,
        "replicas": replicas,
        "em_dt": em_dt,
        "escape": {
            "directions": [f"{names[bb]} → {names[ba]}", f"{names[ba]} → {names[bb]}"],
            "target": "the other basin's core, L ≤ L_min + ¼ barrier",
            "grid": grid_escape,
            "kramers": kramers,
            "sgd": simulated["sgd"],
            "euler_maruyama": simulated["euler_maruyama"],
            "replicas": escape_replicas,
        },
        "grid_cells": list(grid_cells),
        "quadrature_cells": quad_cells,
        "quadrature_box": [quad_lower, quad_upper],
        "seed": seed,
        "seconds": {**timings, "total": time.perf_counter() - began},
    }


def main(out: str = "sgdsde-output/minima", **kwargs) -> dict:
    """Check ``out`` (before any work), run :func:`minima_selection`, write minima.json,
    print the table, write minima.png (:func:`~sgdsde.experiments.output.save_outputs`)."""
    out = check_out_dir(out, files=("minima.json", "minima.png"))
    return save_outputs(minima_selection(**kwargs), out, "minima", plot, format_table)
