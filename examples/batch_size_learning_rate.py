"""Batch size and learning rate: test accuracy against S/η, sharpness against η/S.

    python examples/batch_size_learning_rate.py [--out DIR] [--steps T] [--grid-size n]
                                                [--replicas R] [--seed K] [--quick] [--quiet]

An MLP (64-32-10, ReLU) on the built-in 8×8 digits (1258 train / 180 validation / 359
test; the real UCI digits shipped in the package) trained
with ``sgdsde.sgd("iid")`` for every configuration of a 20 × 20 grid of batch sizes
S ∈ {16, 32, …, 320} and learning rates η ∈ {0.01, 0.02, …, 0.20}, all 400 (× R
replicas) in ONE compiled program (a resumable sweep, ``sgdsde.sweep.run_sweep``, masked at
S_max = 320, in ``OUT/batch_size_learning_rate-sweeps``: run it again to continue). The
training, the correlations and two of the panels are those of the fixed-steps budget of
``sgdsde reproduce he-liu-tao`` (``sgdsde/experiments/reproduce/he_liu_tao.py``, which
also trains every configuration for an equal number of epochs); this example adds the
sharpness.

- **Sampling**: ``"iid"`` (with replacement). ``"subset"`` and ``"epoch"`` cost O(S_max²)
  per step in the masked grid (a partial Fisher–Yates shuffle per configuration),
  about 10× the iid step here (docs/nn.md); with N = 1258 ≫ S the noise covariances
  differ only by the factor (N−S)/(N−1) ≥ 0.75 (docs/theory.md §1).
- **Budget**: a fixed number of SGD steps T for every configuration (default 1000, a
  multiple of 20), not a fixed number of epochs: one program runs one T for the whole
  grid, so S = 16 sees T·16/N ≈ 13 epochs and S = 320 about 254 (``sgdsde reproduce
  he-liu-tao`` runs the equal-epochs budget as well). The train accuracy is reported
  beside the test accuracy so that under-training can be told apart from generalisation;
  the test accuracy is the one at the end of training (the JSON also holds the best over
  20 records, He et al.'s measure).
- **He et al. (2019)**: test accuracy falls as S/η grows: Spearman ρ < 0 with p < 0.005
  over the grid (scipy.stats.spearmanr; the configurations are the samples, each the
  mean over its replicas). Also reported: the generalisation gap (train − test
  accuracy), which their bound is about (ρ > 0 expected). Control for under-training:
  the same correlations over the "fitted" configurations only (train accuracy ≥ 0.99).
- **Three Factors (Jastrzębski et al. 2018)**: the sharpness at the end, λ_max of the
  Hessian of the full training loss (``sgdsde.curvature.top_eigenvalues``, Lanczos,
  vmapped over the grid), falls as η/S rises (ρ < 0 expected).

Prints a table and writes batch_size_learning_rate.png and .json in the output folder
(``sgdsde.experiments.output.save_outputs``: the JSON first, then the figure). Defaults take about 3–5 minutes on two shared CPU
cores; --quick (a 6 × 6 grid, 300 steps) well under a minute.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from sgdsde import curvature
from sgdsde.cli import integer_at_least
from sgdsde.experiments.output import check_out_dir, save_outputs
from sgdsde.experiments.reproduce import he_liu_tao as hlt
from sgdsde.experiments.sde_check import load_data
from sgdsde.plotting import figure, plain_log_ticks, styled

STEM = "batch_size_learning_rate"
LANCZOS_ITERATIONS = 20  # Ritz value of the top eigenvalue; 20 Krylov steps suffice here (see JSON: vs 40)
grid_values = hlt.grid_values


def sharpness(problem, params, key, num_iterations: int = LANCZOS_ITERATIONS) -> np.ndarray:
    """λ_max of ∇²L(θ) (full training loss, incl. the regulariser) for every leading
    index of ``params`` (leaves (G, …)), vmapped Lanczos."""
    count = jax.tree_util.tree_leaves(params)[0].shape[0]
    keys = jax.random.split(key, count)
    top = jax.jit(jax.vmap(lambda p, k: curvature.top_eigenvalues(problem.loss, p, key=k, num_iterations=num_iterations)[0]))
    return np.asarray(top(params, keys))


def correlations(learning_rates, batch_sizes, grid: dict, lam) -> dict:
    """He et al.'s correlations (:func:`sgdsde.experiments.reproduce.he_liu_tao.correlations`)
    and the sharpness λ_max against η/S (configurations with a diverged replica left out)."""
    ratio = np.asarray(batch_sizes, float)[None, :] / np.asarray(learning_rates, float)[:, None]
    lam = np.asarray(lam, float).mean(-1)
    keep = np.isfinite(lam) & ~np.asarray(grid["diverged"]).any(-1)
    return hlt.correlations(learning_rates, batch_sizes, grid) | {
        "sharpness_vs_eta_over_S": hlt.spearman(1 / ratio[keep], lam[keep])}


def experiment(*, steps: int, grid_size: int, replicas: int, seed: int, out, progress: bool = True) -> dict:
    key = jax.random.key(seed)
    splits = load_data(None, key=jax.random.fold_in(key, 0))
    learning_rates, batch_sizes = grid_values(grid_size)
    grid = hlt.train_grid(splits, learning_rates, batch_sizes, budget="steps", steps=steps, replicas=replicas,
                          key=jax.random.fold_in(key, 1), out=out, name=STEM, keep_params=True,
                          progress=progress, label=f"examples/{STEM}.py")
    params = grid.pop("params")
    grid_shape = (learning_rates.size, batch_sizes.size, replicas)
    flat = jax.tree_util.tree_map(lambda x: np.reshape(x, (-1,) + np.shape(x)[len(grid_shape):]), params)
    problem = hlt.problem_for(splits)

    began = time.perf_counter()
    lam = sharpness(problem, flat, jax.random.fold_in(key, 2))
    sharpness_seconds = time.perf_counter() - began
    # convergence check of the Lanczos value on a few configurations
    check = slice(0, min(8, lam.shape[0]))
    lam_more = sharpness(problem, jax.tree_util.tree_map(lambda x: x[check], flat), jax.random.fold_in(key, 3),
                         2 * LANCZOS_ITERATIONS)
    lam = lam.reshape(grid_shape)
    return {
        "setup": {
            "data": splits.train.name, "n_train": splits.train.num_examples, "n_test": splits.test.num_examples,
            "model": f"MLP{hlt.HIDDEN}, ReLU", "num_parameters": problem.info["num_parameters"],
            "sampling": hlt.SAMPLING, "steps": steps, "replicas": replicas, "seed": seed,
            "epochs_min_max": [float(np.min(grid["epochs"])), float(np.max(grid["epochs"]))],
            "lanczos_iterations": LANCZOS_ITERATIONS,
        },
        "learning_rates": learning_rates, "batch_sizes": batch_sizes,
        "test_accuracy": grid["test_accuracy"], "test_accuracy_best": grid["test_accuracy_best"],
        "train_accuracy": grid["train_accuracy"], "sharpness": lam, "diverged": grid["diverged"],
        "spearman": correlations(learning_rates, batch_sizes, grid, lam),
        "lanczos_check": {"iterations": [LANCZOS_ITERATIONS, 2 * LANCZOS_ITERATIONS],
                          "max_relative_difference": float(np.max(np.abs(lam.reshape(-1)[check] - lam_more) / lam_more))},
        "seconds": {"train": grid["seconds"], "sharpness": sharpness_seconds},
        "device": f"{jax.default_backend()}: {jax.devices()[0].device_kind} × {jax.device_count()}",
    }


def table(results: dict) -> str:
    s = results["setup"]
    lines = [
        f"{s['model']} on {s['data']} (N = {s['n_train']}), sgd({s['sampling']}), {s['steps']} steps "
        f"({s['epochs_min_max'][0]:.1f}–{s['epochs_min_max'][1]:.0f} epochs), "
        f"{len(results['learning_rates'])} × {len(results['batch_sizes'])} grid × {s['replicas']} replicas",
        f"training (one program): {results['seconds']['train']:.1f} s; sharpness (vmapped Lanczos): "
        f"{results['seconds']['sharpness']:.1f} s; diverged replicas: {int(np.sum(results['diverged']))}",
        f"{'relation':44s} {'Spearman ρ':>11s} {'p-value':>10s} {'n':>5s}",
    ]
    for name, r in results["spearman"].items():
        lines.append(f"{name:44s} {r['rho']:+11.3f} {r['p_value']:10.2e} {r['n']:5d}")
    acc = np.asarray(results["test_accuracy"]).mean(-1)
    lines.append(f"test accuracy: {acc.min():.3f} … {acc.max():.3f}; sharpness: "
                 f"{np.min(results['sharpness']):.3g} … {np.max(results['sharpness']):.3g}")
    return "\n".join(lines)


@styled
def plot(results: dict):
    eta, batch = np.asarray(results["learning_rates"]), np.asarray(results["batch_sizes"])
    test = np.asarray(results["test_accuracy"], float).mean(-1)
    train = np.asarray(results["train_accuracy"], float).mean(-1)
    lam = np.asarray(results["sharpness"], float).mean(-1)
    ratio = batch[None, :] / eta[:, None]
    sp = results["spearman"]
    fig, ax = figure(1, 3, panel=(5.6, 4.4))
    hlt.draw_heatmap(fig, ax[0], eta, batch, test, label="test accuracy", title="test accuracy over the (η, S) grid")
    hlt.draw_accuracy(fig, ax[1], eta, batch, test, train, rho=sp["test_accuracy_vs_S_over_eta"],
                      title="test accuracy vs S/η")
    sc = ax[2].scatter((1 / ratio).ravel(), lam.ravel(), c=np.broadcast_to(batch[None, :], ratio.shape).ravel(), s=12,
                       cmap="cividis")
    fig.colorbar(sc, ax=ax[2], label="S")
    r = sp["sharpness_vs_eta_over_S"]
    ax[2].set(xscale="log", yscale="log", xlabel="η/S", ylabel="λ_max of the training-loss Hessian",
              title=f"sharpness vs η/S\nSpearman ρ = {r['rho']:+.2f}, p = {r['p_value']:.1e}, n = {r['n']}")
    for axis in (ax[2].xaxis, ax[2].yaxis):
        plain_log_ticks(axis)
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--out", default="sgdsde-output/batch_size_learning_rate", help="output folder (default: %(default)s)")
    parser.add_argument("--steps", type=integer_at_least(1), default=None,
                        help="SGD steps for every configuration, a multiple of 20 (default 1000; 300 with --quick)")
    parser.add_argument("--grid-size", type=integer_at_least(2), default=None,
                        help="n learning rates × n batch sizes, 2 ≤ n ≤ 20 (default 20; 6 with --quick)")
    parser.add_argument("--replicas", type=integer_at_least(1), default=1, help="replicas per configuration (default 1)")
    parser.add_argument("--seed", type=integer_at_least(0), default=0)
    parser.add_argument("--quick", action="store_true", help="a 6 × 6 grid and 300 steps")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    steps = args.steps if args.steps is not None else (300 if args.quick else 1000)
    grid_size = args.grid_size if args.grid_size is not None else (6 if args.quick else 20)
    if grid_size > 20:
        parser.error(f"--grid-size: must lie in [2, 20], got {grid_size}")
    if steps % hlt.FIXED_STEP_RECORDS:
        parser.error(f"--steps: must be a multiple of {hlt.FIXED_STEP_RECORDS}, got {steps}")
    try:
        out = check_out_dir(args.out, "--out", files=(f"{STEM}.json", f"{STEM}.png"))
    except ValueError as err:
        parser.error(str(err))
    results = experiment(steps=steps, grid_size=grid_size, replicas=args.replicas, seed=args.seed, out=out,
                         progress=not args.quiet)
    return save_outputs(results, out, STEM, plot, table)


if __name__ == "__main__":
    main()
