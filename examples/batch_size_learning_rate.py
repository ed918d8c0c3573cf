"""Batch size and learning rate: test accuracy against S/η, sharpness against η/S.

    python examples/batch_size_learning_rate.py [--out DIR] [--steps T] [--grid-size n]
                                                [--replicas R] [--seed K] [--quick] [--quiet]

An MLP (64-32-10, ReLU) on the built-in 8×8 digits (1258 train / 180 validation / 359
test; the real UCI digits shipped in the package) trained
with ``sgdsde.sgd("iid")`` for every configuration of a 20 × 20 grid of batch sizes
S ∈ {16, 32, …, 320} and learning rates η ∈ {0.01, 0.02, …, 0.20}, all 400 (× R
replicas) in ONE compiled program (``sd.run`` with an array-valued ``Hyper.grid``; the
batch size is traced and masked at S_max = 320).

- **Sampling**: ``"iid"`` (with replacement). ``"subset"`` and ``"epoch"`` cost O(S_max²)
  per step in the masked grid (a partial Fisher–Yates shuffle per configuration),
  about 10× the iid step here (docs/nn.md); with N = 1258 ≫ S the noise covariances
  differ only by the factor (N−S)/(N−1) ≥ 0.75 (docs/theory.md §1).
- **Budget**: a fixed number of SGD steps T for every configuration (default 1000), not
  a fixed number of epochs: one program runs one T for the whole grid, so S = 16 sees
  T·16/N ≈ 13 epochs and S = 320 about 254. The train accuracy is reported beside the
  test accuracy so that under-training can be told apart from generalisation.
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
from scipy import stats

import sgdsde as sd
import sgdsde.nn as snn
from sgdsde import curvature
from sgdsde.nn import data, metrics
from sgdsde.cli import integer_at_least
from sgdsde.experiments.output import check_out_dir, save_outputs
from sgdsde.plotting import figure, plain_log_ticks, styled

STEM = "batch_size_learning_rate"
HIDDEN = (64, 32)
SAMPLING = "iid"
LANCZOS_ITERATIONS = 20  # Ritz value of the top eigenvalue; 20 Krylov steps suffice here (see JSON: vs 40)


def grid_values(grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """n learning rates in {0.01, …, 0.20} and n batch sizes in {16, …, 320}, evenly
    spread (n = 20: all of them)."""
    steps = np.unique(np.round(np.linspace(1, 20, grid_size)).astype(int))
    return 0.01 * steps, 16 * steps


def sharpness(problem, params, key, num_iterations: int = LANCZOS_ITERATIONS) -> np.ndarray:
    """λ_max of ∇²L(θ) (full training loss, incl. the regulariser) for every leading
    index of ``params`` (leaves (G, …)), vmapped Lanczos."""
    count = jax.tree_util.tree_leaves(params)[0].shape[0]
    keys = jax.random.split(key, count)
    top = jax.jit(jax.vmap(lambda p, k: curvature.top_eigenvalues(problem.loss, p, key=k, num_iterations=num_iterations)[0]))
    return np.asarray(top(params, keys))


def spearman(x, y) -> dict:
    res = stats.spearmanr(x, y)
    return {"rho": float(res.statistic), "p_value": float(res.pvalue), "n": int(np.size(x))}


FITTED = 0.99  # train accuracy of the "fitted" configurations (the control for under-training)


def correlations(learning_rates, batch_sizes, test_acc, train_acc, lam, diverged) -> dict:
    """Spearman correlations over the grid's configurations (means over replicas; arrays
    (n_η, n_S, R)), leaving out configurations with a diverged replica. The
    ``..._fitted`` entries use only the configurations whose mean train accuracy is
    ≥ FITTED, so that under-trained configurations (small η·T) do not drive the result."""
    ratio = np.asarray(batch_sizes, float)[None, :] / np.asarray(learning_rates, float)[:, None]  # S/η
    test, train, lam = (np.asarray(a, float).mean(-1) for a in (test_acc, train_acc, lam))
    keep = np.isfinite(test) & np.isfinite(lam) & ~np.asarray(diverged).any(-1)
    fitted = keep & (train >= FITTED)
    out = {
        "test_accuracy_vs_S_over_eta": spearman(ratio[keep], test[keep]),
        "generalization_gap_vs_S_over_eta": spearman(ratio[keep], (train - test)[keep]),
        "train_accuracy_vs_S_over_eta": spearman(ratio[keep], train[keep]),
        "sharpness_vs_eta_over_S": spearman(1 / ratio[keep], lam[keep]),
    }
    if fitted.sum() >= 3:
        out["test_accuracy_vs_S_over_eta_fitted"] = spearman(ratio[fitted], test[fitted])
        out["generalization_gap_vs_S_over_eta_fitted"] = spearman(ratio[fitted], (train - test)[fitted])
    return out


def experiment(*, steps: int, grid_size: int, replicas: int, seed: int, progress: bool = True) -> dict:
    key = jax.random.key(seed)
    splits = data.load("builtin", key=jax.random.fold_in(key, 0))
    problem = snn.classification_problem(snn.MLP(splits.train.num_classes, hidden=HIDDEN), splits.train)
    learning_rates, batch_sizes = grid_values(grid_size)
    hyper = sd.Hyper.grid(learning_rates, batch_sizes)  # grid axes (η, S)

    began = time.perf_counter()
    result = sd.run(
        jax.random.fold_in(key, 1), sd.sgd(SAMPLING), problem, hyper,
        problem.info["init_params"], steps, replicas=replicas, progress=progress,
    )
    params = jax.block_until_ready(result.state.params)
    train_seconds = time.perf_counter() - began

    grid_shape = result.grid_shape + (replicas,)
    flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[len(grid_shape):]), params)
    evaluate = lambda dataset: jax.jit(jax.vmap(lambda p: metrics.evaluate(problem, p, dataset)))(flat)
    test, train = evaluate(splits.test), evaluate(splits.train)

    began = time.perf_counter()
    lam = sharpness(problem, flat, jax.random.fold_in(key, 2))
    sharpness_seconds = time.perf_counter() - began
    # convergence check of the Lanczos value on a few configurations
    check = slice(0, min(8, lam.shape[0]))
    lam_more = sharpness(problem, jax.tree_util.tree_map(lambda x: x[check], flat), jax.random.fold_in(key, 3),
                         2 * LANCZOS_ITERATIONS)

    shaped = lambda a: np.asarray(a).reshape(grid_shape)
    test_acc, train_acc, lam = shaped(test["accuracy"]), shaped(train["accuracy"]), shaped(lam)
    return {
        "setup": {
            "data": splits.train.name, "n_train": len(splits.train.y), "n_test": len(splits.test.y),
            "model": f"MLP{HIDDEN}, ReLU", "num_parameters": problem.info["num_parameters"],
            "sampling": SAMPLING, "steps": steps, "replicas": replicas, "seed": seed,
            "epochs_min_max": [steps * int(batch_sizes.min()) / len(splits.train.y),
                               steps * int(batch_sizes.max()) / len(splits.train.y)],
            "lanczos_iterations": LANCZOS_ITERATIONS,
        },
        "learning_rates": learning_rates, "batch_sizes": batch_sizes,
        "test_accuracy": test_acc, "train_accuracy": train_acc, "sharpness": lam,
        "diverged": result.diverged,
        "spearman": correlations(learning_rates, batch_sizes, test_acc, train_acc, lam, result.diverged),
        "lanczos_check": {"iterations": [LANCZOS_ITERATIONS, 2 * LANCZOS_ITERATIONS],
                          "max_relative_difference": float(np.max(np.abs(lam.reshape(-1)[check] - lam_more) / lam_more))},
        "seconds": {"train_one_program": train_seconds, "sharpness": sharpness_seconds},
        "device": f"{jax.default_backend()}: {jax.devices()[0].device_kind} × {jax.device_count()}",
    }


def table(results: dict) -> str:
    s = results["setup"]
    lines = [
        f"{s['model']} on {s['data']} (N = {s['n_train']}), sgd({s['sampling']}), {s['steps']} steps "
        f"({s['epochs_min_max'][0]:.1f}–{s['epochs_min_max'][1]:.0f} epochs), "
        f"{len(results['learning_rates'])} × {len(results['batch_sizes'])} grid × {s['replicas']} replicas",
        f"one program: {results['seconds']['train_one_program']:.1f} s; sharpness (vmapped Lanczos): "
        f"{results['seconds']['sharpness']:.1f} s; diverged replicas: {int(np.sum(results['diverged']))}",
        f"{'relation':40s} {'Spearman ρ':>11s} {'p-value':>10s} {'n':>5s}",
    ]
    for name, r in results["spearman"].items():
        lines.append(f"{name:40s} {r['rho']:+11.3f} {r['p_value']:10.2e} {r['n']:5d}")
    acc = np.asarray(results["test_accuracy"]).mean(-1)
    lines.append(f"test accuracy: {acc.min():.3f} … {acc.max():.3f}; sharpness: "
                 f"{np.min(results['sharpness']):.3g} … {np.max(results['sharpness']):.3g}")
    return "\n".join(lines)


@styled
def plot(results: dict):
    eta = np.asarray(results["learning_rates"])
    batch = np.asarray(results["batch_sizes"])
    test = np.asarray(results["test_accuracy"]).mean(-1)
    train = np.asarray(results["train_accuracy"]).mean(-1)
    lam = np.asarray(results["sharpness"]).mean(-1)
    ratio = batch[None, :] / eta[:, None]
    sp = results["spearman"]
    fig, ax = figure(1, 3, panel=(5.6, 4.4))
    im = ax[0].imshow(test, origin="lower", aspect="auto", cmap="viridis",
                      extent=(batch[0] - 8, batch[-1] + 8, eta[0] - 0.005, eta[-1] + 0.005))
    fig.colorbar(im, ax=ax[0], label="test accuracy")
    ax[0].set(xlabel="batch size S", ylabel="learning rate η", title="test accuracy over the (η, S) grid")
    sc = ax[1].scatter(ratio.ravel(), test.ravel(), c=np.broadcast_to(eta[:, None], ratio.shape).ravel(), s=12, cmap="plasma",
                    label="test accuracy (colour: η)")
    ax[1].scatter(ratio.ravel(), train.ravel(), s=4, c="0.7", label="train accuracy")
    fig.colorbar(sc, ax=ax[1], label="η")
    r = sp["test_accuracy_vs_S_over_eta"]
    ax[1].set(xscale="log", xlabel="S/η", ylabel="accuracy",
              title=f"test accuracy vs S/η: Spearman ρ = {r['rho']:+.2f}, p = {r['p_value']:.1e}")
    ax[1].legend(loc="lower left")
    sc = ax[2].scatter((1 / ratio).ravel(), lam.ravel(), c=np.broadcast_to(batch[None, :], ratio.shape).ravel(), s=12, cmap="cividis")
    fig.colorbar(sc, ax=ax[2], label="S")
    r = sp["sharpness_vs_eta_over_S"]
    ax[2].set(xscale="log", yscale="log", xlabel="η/S", ylabel="λ_max of the training-loss Hessian",
              title=f"sharpness vs η/S: Spearman ρ = {r['rho']:+.2f}, p = {r['p_value']:.1e}")
    for axis in (ax[1].xaxis, ax[2].xaxis, ax[2].yaxis):
        plain_log_ticks(axis)
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--out", default="sgdsde-output/batch_size_learning_rate", help="output folder (default: %(default)s)")
    parser.add_argument("--steps", type=integer_at_least(1), default=None,
                        help="SGD steps for every configuration (default 1000; 300 with --quick)")
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
    try:
        out = check_out_dir(args.out, "--out", files=(f"{STEM}.json", f"{STEM}.png"))
    except ValueError as err:
        parser.error(str(err))
    results = experiment(steps=steps, grid_size=grid_size, replicas=args.replicas, seed=args.seed,
                         progress=not args.quiet)
    return save_outputs(results, out, STEM, plot, table)


if __name__ == "__main__":
    main()
