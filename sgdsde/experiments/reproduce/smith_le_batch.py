"""Smith & Le (2018): an optimal batch size at fixed learning rate (g), and B_opt ∝ ε·N (h).

Smith & Le read SGD (no momentum) as an SDE whose noise scale is g = ε(N/B − 1) ≈ εN/B
(ε the learning rate, N the training set size, B the batch size). If the test accuracy
depends on the noise through g, then at fixed ε it peaks at some batch size B_opt in the
interior of the batch-size range (too little noise: sharp minima; too much: the noise
swamps the gradient), and B_opt ∝ εN.

Protocol (both experiments): an MLP (one hidden ReLU layer, 128 units; 32 in the quick
version) trained by plain SGD (``sd.sgd("iid")``, no momentum) on the built-in digits for
a fixed number of **epochs** E (each batch size S runs round(E·N/S) steps), R replicas
per configuration (common random numbers), test accuracy at the end. Equal epochs make
the SDE time ε·steps = E·g a function of g alone, so the SDE picture predicts the test
accuracy as a function of g = εN/S alone; the figure of (h) plots every configuration
against g. One resumable sweep (:func:`sgdsde.sweep.run_sweep`) per (N, S): its grid is the
learning rates, in ``out/<name>-sweeps/N<N>-S<S>``.

B_opt: a weighted least-squares quadratic in u = ln S fitted to the mean test accuracy
(weights 1/se², se from the replicas, floored at 1/n_test) over every batch size where
training did not fail (mean test accuracy above the midpoint of chance and the best: the
cliff of unstable SGD at large g is left out, no quadratic describes it);
B_opt = exp(−b/2c) at the vertex, its standard error by the delta method from the
coefficients' covariance (scaled by the reduced χ² when that exceeds 1), its interval
exp(û ± 1.96 se).

- (g) ``smith-le-optimal-batch``: verdict on "the optimum is interior": confirmed when the
  curvature c is negative with its 95 % interval and the vertex lies inside the batch-size
  range; contradicted when c > 0 with its interval (accuracy has no interior maximum).
- (h) ``smith-le-scaling``: B_opt at several ε (N fixed) and at several N (nested training
  subsets, ε fixed); the slopes of ln B_opt on ln ε and on ln N with their Student-t
  intervals (:func:`~._verdict.slope_verdict`, expected value 1), over the fits that
  found a maximum (c < 0) inside the range (an interval holding 0 as well as 1 is "not
  confirmed"); and the premise itself, by :func:`collapse_exponent`: the exponent α for
  which the accuracy curves of every ε fall on one curve against ε^α/S (1 when the
  accuracy is a function of g).
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
from scipy import stats

import sgdsde as sd
from ... import nn as snn
from ..._progress import note
from ...nn import metrics
from ...sweep import run_sweep
from ..sde_check import load_data
from . import Experiment, sweep_folder
from ._verdict import CONFIRMED, CONTRADICTED, NOT_CONFIRMED, Verdict, slope_verdict
from ._smith_le_report import _mean_se, plot_optimal_batch, plot_scaling, table_optimal_batch, table_scaling

__all__ = ["EXPERIMENTS", "run_optimal_batch", "run_scaling", "quadratic_optimum", "train_grid"]

OPTIMAL, SCALING = "smith-le-optimal-batch", "smith-le-scaling"
Z95 = 1.959963984540054

# the default and quick sizes; "N" None: the whole training set
SIZES = {
    OPTIMAL: {
        False: {"hidden": (128,), "epochs": 20, "learning_rate": 0.8,
                "batch_sizes": (2, 4, 8, 16, 32, 64, 128, 256, 512),
                "replicas": 4, "N": None, "window": None},
        True: {"hidden": (32,), "epochs": 10, "learning_rate": 0.8, "batch_sizes": (8, 16, 32, 64),
               "replicas": 2, "N": 400, "window": None},
    },
    SCALING: {
        False: {"hidden": (128,), "epochs": 20, "learning_rates": (0.1, 0.2, 0.4, 0.8),
                "batch_sizes": (2, 4, 8, 16, 32, 64, 128, 256), "replicas": 4, "N": None,
                "subsets": (157, 315, 629), "n_learning_rate": 0.8, "window": None},
        True: {"hidden": (16,), "epochs": 5, "learning_rates": (0.1, 0.4), "batch_sizes": (2, 6, 18),
               "replicas": 2, "N": 300, "subsets": (150,), "n_learning_rate": 0.4, "window": None},
    },
}


# --------------------------------------------------------------------- training
def train_grid(out, name: str, key, splits, *, hidden, learning_rates, batch_sizes, epochs: int, replicas: int,
               progress: bool) -> dict:
    """Test and train accuracy (mean over the last axis: replicas) of every (ε, S): one
    resumable sweep per S over the learning rates, round(epochs·N/S) steps each.
    Returns arrays (n_ε, n_S, R): ``test_accuracy``, ``train_accuracy``, ``diverged``; and
    ``steps`` per S."""
    train, test = splits.train, splits.test
    n = train.num_examples
    problem = snn.classification_problem(snn.MLP(train.num_classes, hidden=tuple(hidden)), train)
    shape = (len(learning_rates), len(batch_sizes), replicas)
    test_acc, train_acc = np.full(shape, np.nan), np.full(shape, np.nan)
    diverged = np.zeros(shape, bool)
    steps_of = []
    for j, s in enumerate(batch_sizes):
        steps = max(1, int(round(epochs * n / s)))
        steps_of.append(steps)
        result = run_sweep(
            sweep_folder(out, name, f"N{n}-S{s}"), key, sd.sgd("iid"), problem,
            sd.Hyper.grid(list(map(float, learning_rates)), [int(s)]), problem.info["init_params"], steps,
            replicas=replicas, configs_per_chunk=len(learning_rates), progress=progress,
            observers=[metrics.evaluation_curve(test, steps, name="test"),
                       metrics.evaluation_curve("train", steps, name="train")])
        test_acc[:, j] = np.asarray(result["test"]["values"]["accuracy"])[:, 0, -1]
        train_acc[:, j] = np.asarray(result["train"]["values"]["accuracy"])[:, 0, -1]
        diverged[:, j] = np.asarray(result.diverged)[:, 0]
    return {"test_accuracy": test_acc, "train_accuracy": train_acc, "diverged": diverged, "steps": steps_of,
            "N": n, "n_test": test.num_examples}


def quadratic_optimum(batch_sizes, mean, se, *, window: int | None = None, se_floor: float = 0.0,
                      chance: float = 0.0) -> dict:
    """Weighted least-squares y = a + b·u + c·u², u = ln S, over ``window`` batch sizes
    centred on the largest mean (shifted to stay inside the grid; None: all); weights 1/se² (se
    floored at ``se_floor``). Configurations where training **failed** — mean accuracy
    below the midpoint of ``chance`` and the best mean (SGD unstable: a cliff, which no
    quadratic describes) — are left out of the fit and of the range. Returns the
    coefficients, the vertex û = −b/(2c) and B_opt = e^û with its delta-method standard
    error and 95 % interval, the curvature c with its Student-t interval (normal when the
    fit has no residual degrees of freedom), ``maximum_inside`` (c < 0 and the vertex
    inside the range of the usable batch sizes), and which points were fitted (indices
    into ``batch_sizes``) or failed."""
    s_all = np.asarray(batch_sizes, float)
    mean_all, se_all = np.asarray(mean, float), np.asarray(se, float)
    best_mean = float(np.nanmax(mean_all))
    failed = ~(mean_all >= 0.5 * (chance + best_mean))
    usable = np.flatnonzero(~failed)
    s, mean, se = s_all[usable], mean_all[usable], se_all[usable]
    n = s.size
    if n < 3:
        nan = math.nan
        return {"coefficients": np.full(3, nan), "coefficients_cov": np.full((3, 3), nan), "chi2": nan, "dof": 0,
                "fitted": usable, "failed": np.flatnonzero(failed), "best_index": int(np.nanargmax(mean_all)),
                "best_at_edge": True, "curvature": nan, "curvature_se": nan, "curvature_interval": (nan, nan),
                "log_b_opt": nan, "log_b_opt_se": nan, "b_opt": nan, "b_opt_interval": (nan, nan),
                "maximum_inside": False}
    best = int(np.nanargmax(mean))
    width = n if window is None else min(max(int(window), 3), n)
    lo = min(max(best - width // 2, 0), n - width)
    idx = np.arange(lo, lo + width)
    u = np.log(s[idx])
    y = mean[idx]
    sigma = np.maximum(np.where(np.isfinite(se[idx]), se[idx], se_floor), max(se_floor, 1e-12))
    design = np.column_stack([np.ones_like(u), u, u * u])
    w = 1.0 / sigma**2
    xtwx = design.T @ (design * w[:, None])
    coef = np.linalg.solve(xtwx, design.T @ (w * y))
    dof = width - 3
    chi2 = float(np.sum(w * (y - design @ coef) ** 2))
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
    cov = np.linalg.inv(xtwx) * scale
    a, b, c = coef
    vertex = -b / (2 * c) if c != 0 else math.nan
    grad = np.array([0.0, -1 / (2 * c), b / (2 * c * c)]) if c != 0 else np.full(3, np.nan)
    vertex_se = float(np.sqrt(grad @ cov @ grad))
    c_se = float(np.sqrt(cov[2, 2]))
    q = stats.t.ppf(0.975, dof) if dof > 0 else Z95
    exp = lambda v: float(np.exp(min(v, 700.0)))  # no overflow warning for a vertex far outside
    u_min, u_max = float(np.log(s.min())), float(np.log(s.max()))  # the usable range
    return {
        "coefficients": coef, "coefficients_cov": cov, "chi2": chi2, "dof": dof, "fitted": usable[idx],
        "failed": np.flatnonzero(failed), "best_index": int(usable[best]), "best_at_edge": best in (0, n - 1),
        "curvature": float(c), "curvature_se": c_se, "curvature_interval": (float(c - q * c_se), float(c + q * c_se)),
        "log_b_opt": float(vertex), "log_b_opt_se": vertex_se,
        "b_opt": exp(vertex), "b_opt_interval": (exp(vertex - Z95 * vertex_se), exp(vertex + Z95 * vertex_se)),
        "maximum_inside": bool(c < 0 and u_min <= vertex <= u_max),
    }


def interior_verdict(claim: str, fit: dict) -> Verdict:
    """Confirmed: c < 0 with its interval and the vertex inside the grid; contradicted:
    c > 0 with its interval; not confirmed otherwise."""
    low, high = fit["curvature_interval"]
    if high < 0 and fit["maximum_inside"]:
        verdict = CONFIRMED
    elif low > 0:
        verdict = CONTRADICTED
    else:
        verdict = NOT_CONFIRMED
    lo_b, hi_b = fit["b_opt_interval"]
    text = (f"curvature c = {fit['curvature']:+.3g}, 95% CI [{low:+.3g}, {high:+.3g}]; "
            f"B_opt = {fit['b_opt']:.3g} [{lo_b:.3g}, {hi_b:.3g}]")
    return Verdict(claim, "quadratic curvature", fit["curvature"], (low, high), None, verdict, text)


# --------------------------------------------------------------------- (g)
def run_optimal_batch(*, data=None, data_format=None, quick=False, seed=0, out=".", progress=True) -> dict:
    size = SIZES[OPTIMAL][bool(quick)]
    key = jax.random.key(seed)
    splits = load_data(data, data_format, key=jax.random.fold_in(key, 0), train_examples=size["N"])
    note(OPTIMAL, f"N = {splits.train.num_examples}, ε = {size['learning_rate']}, S ∈ {list(size['batch_sizes'])}, "
                  f"{size['epochs']} epochs, {size['replicas']} replicas", enabled=progress)
    began = time.perf_counter()
    grid = train_grid(out, OPTIMAL, jax.random.fold_in(key, 1), splits, hidden=size["hidden"],
                      learning_rates=[size["learning_rate"]], batch_sizes=size["batch_sizes"], epochs=size["epochs"],
                      replicas=size["replicas"], progress=progress)
    mean, se = _mean_se(grid["test_accuracy"][0])
    train_mean, train_se = _mean_se(grid["train_accuracy"][0])
    fit = quadratic_optimum(size["batch_sizes"], mean, se, window=size["window"], se_floor=1 / grid["n_test"],
                            chance=1 / splits.train.num_classes)
    verdict = interior_verdict("at a fixed learning rate the test accuracy peaks at a batch size inside the range "
                               "(a quadratic in ln S has negative curvature, vertex inside)", fit)
    n = grid["N"]
    return {
        "setup": {"data": splits.train.name, "N": n, "n_test": grid["n_test"], "model": f"MLP{tuple(size['hidden'])}, ReLU",
                  "sampling": "iid", "momentum": 0.0, "learning_rate": size["learning_rate"], "epochs": size["epochs"],
                  "replicas": size["replicas"], "window": size["window"], "seed": seed},
        "batch_sizes": np.asarray(size["batch_sizes"]), "steps": grid["steps"],
        "noise_scale": size["learning_rate"] * n / np.asarray(size["batch_sizes"], float),
        "test_accuracy": grid["test_accuracy"][0], "train_accuracy": grid["train_accuracy"][0],
        "test_mean": mean, "test_se": se, "train_mean": train_mean, "train_se": train_se,
        "diverged": grid["diverged"][0], "fit": fit, "seconds": time.perf_counter() - began,
        "verdicts": [verdict],
    }


def _optima(batch_sizes, test_acc, n_test: int, window: int, chance: float) -> list[dict]:
    fits = []
    for row in test_acc:
        mean, se = _mean_se(row)
        fits.append(quadratic_optimum(batch_sizes, mean, se, window=window, se_floor=1 / n_test, chance=chance))
    return fits


def collapse_exponent(learning_rates, batch_sizes, test_acc, *, chance: float, degree: int = 3,
                      alphas=np.linspace(-1.0, 3.0, 401)) -> dict:
    """How the test accuracy depends on ε and S: the exponent α for which the curves of
    every ε fall on one curve against x = α·ln ε − ln S (α = 1: a function of g = εN/S).

    For each α, a weighted least-squares polynomial of ``degree`` in x through the mean
    accuracies of all (ε, S) (weights 1/se², se floored at 0.002; failed runs — below the
    midpoint of chance and the best — left out), and its χ²(α). Returns α̂ = argmin χ²,
    its 95 % profile interval {α : χ²(α) ≤ χ²_min + 3.84·s} with s = max(1, χ²_min/dof)
    (the misfit scale), the χ² profile, and the number of points."""
    eps = np.asarray(learning_rates, float)
    s = np.asarray(batch_sizes, float)
    mean, se = _mean_se(np.asarray(test_acc, float))  # (n_ε, n_S)
    best = np.nanmax(mean)
    keep = np.isfinite(mean) & (mean >= 0.5 * (chance + best))
    le, ls = np.meshgrid(np.log(eps), np.log(s), indexing="ij")
    y = mean[keep]
    w = 1.0 / np.maximum(np.nan_to_num(se[keep], nan=0.002), 0.002) ** 2
    chi2 = []
    for alpha in alphas:
        x = (alpha * le - ls)[keep]
        x = (x - x.mean()) / (x.std() or 1.0)
        design = np.vander(x, degree + 1)
        coef = np.linalg.lstsq(design * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
        chi2.append(float(np.sum(w * (y - design @ coef) ** 2)))
    chi2 = np.asarray(chi2)
    k = int(np.argmin(chi2))
    dof = max(int(keep.sum()) - (degree + 1) - 1, 1)
    scale = max(1.0, chi2[k] / dof)
    inside = alphas[chi2 <= chi2[k] + 3.84 * scale]
    return {"alpha": float(alphas[k]), "interval": (float(inside.min()), float(inside.max())), "chi2_min": float(chi2[k]),
            "dof": dof, "points": int(keep.sum()), "alphas": np.asarray(alphas), "chi2": chi2,
            "at_grid_edge": bool(inside.min() <= alphas[0] or inside.max() >= alphas[-1])}


def collapse_verdict(claim: str, fit: dict) -> Verdict:
    """Confirmed: the interval holds 1 and excludes 0; contradicted: it excludes 1; not
    confirmed otherwise."""
    low, high = fit["interval"]
    if not low <= 1 <= high:
        verdict = CONTRADICTED
    elif low <= 0 <= high:
        verdict = NOT_CONFIRMED
    else:
        verdict = CONFIRMED
    text = (f"collapse exponent α = {fit['alpha']:+.2f}, 95% profile interval [{low:+.2f}, {high:+.2f}] "
            f"({fit['points']} points, χ²_min/dof = {fit['chi2_min'] / fit['dof']:.2g})")
    return Verdict(claim, "collapse exponent", fit["alpha"], (low, high), None, verdict, text)


def _slope(claim: str, x, fits) -> Verdict:
    keep = [k for k, f in enumerate(fits) if f["maximum_inside"]]
    x = np.log(np.asarray(x, float))[keep]
    y = np.asarray([fits[k]["log_b_opt"] for k in keep])
    verdict = slope_verdict(claim, x, y, expected_value=1.0)
    text = f"{verdict.text}; {len(keep)} of {len(fits)} fits have a maximum inside the range"
    if verdict.verdict == CONFIRMED and verdict.interval[0] <= 0 <= verdict.interval[1]:
        # an interval holding both 1 and 0 cannot tell B_opt ∝ x from no dependence at all
        return verdict._replace(verdict=NOT_CONFIRMED, text=f"{text}; the interval holds 0 too: cannot tell")
    return verdict._replace(text=text)


def run_scaling(*, data=None, data_format=None, quick=False, seed=0, out=".", progress=True) -> dict:
    size = SIZES[SCALING][bool(quick)]
    key = jax.random.key(seed)
    splits = load_data(data, data_format, key=jax.random.fold_in(key, 0), train_examples=size["N"])
    n_full = splits.train.num_examples
    eps_n = size["n_learning_rate"]
    if eps_n not in size["learning_rates"]:
        raise RuntimeError("the N scan's learning rate must be one of the ε scan's")
    batch_sizes = size["batch_sizes"]
    began = time.perf_counter()
    note(SCALING, f"ε scan: N = {n_full}, ε ∈ {list(size['learning_rates'])}, S ∈ {list(batch_sizes)}", enabled=progress)
    train_key = jax.random.fold_in(key, 1)
    eps_grid = train_grid(out, SCALING, train_key, splits, hidden=size["hidden"], learning_rates=size["learning_rates"],
                          batch_sizes=batch_sizes, epochs=size["epochs"], replicas=size["replicas"], progress=progress)
    n_test = eps_grid["n_test"]
    chance = 1 / splits.train.num_classes
    eps_fits = _optima(batch_sizes, eps_grid["test_accuracy"], n_test, size["window"], chance)
    subsets = [n for n in size["subsets"] if n < n_full]
    note(SCALING, f"N scan: ε = {eps_n}, N ∈ {subsets + [n_full]}", enabled=progress)
    n_rows = {}
    for n in subsets:
        sub = snn.data.Splits(snn.data.subset(splits.train, n), None, splits.test)
        sizes_n = [b for b in batch_sizes if b <= n]
        grid = train_grid(out, SCALING, train_key, sub, hidden=size["hidden"], learning_rates=[eps_n],
                          batch_sizes=sizes_n, epochs=size["epochs"], replicas=size["replicas"], progress=progress)
        acc = np.full((len(batch_sizes), size["replicas"]), np.nan)
        acc[:len(sizes_n)] = grid["test_accuracy"][0]
        train = np.full_like(acc, np.nan)
        train[:len(sizes_n)] = grid["train_accuracy"][0]
        n_rows[n] = (acc, train)
    row = list(size["learning_rates"]).index(eps_n)
    n_rows[n_full] = (eps_grid["test_accuracy"][row], eps_grid["train_accuracy"][row])
    ns = sorted(n_rows)
    n_test_acc = np.stack([n_rows[n][0] for n in ns])
    n_train_acc = np.stack([n_rows[n][1] for n in ns])
    n_fits = []
    for acc in n_test_acc:
        ok = np.isfinite(acc[:, 0])
        mean, se = _mean_se(acc[ok])
        n_fits.append(quadratic_optimum(np.asarray(batch_sizes)[ok], mean, se, window=size["window"], se_floor=1 / n_test,
                                        chance=chance))
    collapse = collapse_exponent(size["learning_rates"], batch_sizes, eps_grid["test_accuracy"], chance=chance)
    verdicts = [
        _slope("B_opt ∝ ε at fixed N: the slope of ln B_opt on ln ε is 1", size["learning_rates"], eps_fits),
        _slope("B_opt ∝ N at fixed ε: the slope of ln B_opt on ln N is 1", ns, n_fits),
        collapse_verdict("at fixed N the test accuracy depends on ε and S through g = εN/S: the curves of every ε "
                         "fall on one curve against ε^α/S with α = 1", collapse),
    ]
    return {
        "setup": {"data": splits.train.name, "N": n_full, "n_test": n_test, "model": f"MLP{tuple(size['hidden'])}, ReLU",
                  "sampling": "iid", "momentum": 0.0, "epochs": size["epochs"], "replicas": size["replicas"],
                  "window": size["window"], "seed": seed, "n_scan_learning_rate": eps_n},
        "batch_sizes": np.asarray(batch_sizes), "learning_rates": np.asarray(size["learning_rates"]),
        "training_sizes": np.asarray(ns),
        "eps_scan": {"test_accuracy": eps_grid["test_accuracy"], "train_accuracy": eps_grid["train_accuracy"],
                     "diverged": eps_grid["diverged"], "steps": eps_grid["steps"], "fits": eps_fits},
        "n_scan": {"test_accuracy": n_test_acc, "train_accuracy": n_train_acc, "fits": n_fits},
        "collapse": collapse,
        "seconds": time.perf_counter() - began, "verdicts": verdicts,
    }


EXPERIMENTS = (
    Experiment(
        name=OPTIMAL, label="g", paper="Smith & Le (2018): test accuracy against batch size at fixed ε",
        claim="at a fixed learning rate the test accuracy has a maximum at an interior batch size B_opt",
        run=run_optimal_batch, table=table_optimal_batch, plot=plot_optimal_batch,
        default_runtime="98 s on 2 shared, busy CPU cores (load ≈ 9)"),
    Experiment(
        name=SCALING, label="h", paper="Smith & Le (2018): B_opt against ε and against N",
        claim="the optimal batch size is proportional to the learning rate and to the training set size, "
              "B_opt ∝ εN",
        run=run_scaling, table=table_scaling, plot=plot_scaling,
        default_runtime="372 s on 2 shared, busy CPU cores (load ≈ 9)"),
)
