"""Three Factors (a): sharpness and accuracy of the minima SGD finds against η/S
(Jastrzębski et al. 2018, §4.1, Fig. 1; docs/reproductions.md).

A 4-layer batch-norm ReLU MLP (:mod:`._three_factors`) is trained with plain SGD (no
momentum, a fresh uniform S-subset per step) for the same number of epochs at every (η, S)
of a grid × R replicas (resumable sweep, final parameters kept). At each endpoint:

- the paper's sharpness: ‖H‖_F of the training-loss Hessian by the finite-difference
  method it cites (§4.1, Wu, Zhu & E 2017): ‖H‖_F² = E_v ‖Hv‖², v ~ N(0, I), Hv from a
  forward difference of gradients with a step of length ε along v/‖v‖; beside it the same
  estimator with exact Hessian–vector products on the same probes (no finite-difference
  error), and λ_max (Lanczos);
- train and test loss and accuracy.

Claims (Fig. 1a, 1b): sharpness falls as η/S rises (Spearman ρ < 0 over the grid's
configurations, each the mean over its replicas) and test accuracy rises with η/S
(ρ > 0; "up to a point", appendix F.1). Also reported: each measurement against η alone
and 1/S alone (which factor carries the correlation).

Budget: as the paper (200 epochs each), the same number of epochs for every
configuration (⌈epochs·N/S⌉ steps; 100 epochs by default), so that (βη, βS) covers the
same SDE time η·steps as (η, S). ``run(budget="steps")`` gives every configuration the
same number of steps instead (2,000 by default): then (βη, βS) runs β times longer in SDE
time, and η, not η/S, carries the correlations (docs/reproductions.md).
"""

from __future__ import annotations

import jax
import numpy as np

from sgdsde._progress import note
from sgdsde.plotting import figure, number, plain_log_ticks, styled

from . import Experiment, sweep_folder
from . import _three_factors as tf
from ._verdict import correlation_verdict

NAME = "three-factors-sharpness"

DEFAULT = {"learning_rates": [0.005, 0.01, 0.02, 0.04, 0.08], "batch_sizes": [16, 32, 64, 128, 256],
           "epochs": 100, "steps": 2000, "replicas": 2, "hidden": list(tf.HIDDEN), "fd_samples": 20,
           "lanczos_iterations": 20, "group_batch_sizes": True, "exact_check": True}
QUICK = {"learning_rates": [0.01, 0.02, 0.04], "batch_sizes": [16, 64], "epochs": 8, "steps": 500, "replicas": 1,
         "hidden": list(tf.HIDDEN), "fd_samples": 6, "lanczos_iterations": 10, "group_batch_sizes": False,
         "exact_check": False}
FD_EPSILON = 1e-2  # step length of the finite difference in parameter space (see docs: kinks of ReLU)
BUDGETS = ("epochs", "steps")
FITTED = 0.99  # train accuracy of the configurations in the under-training control


def run(*, data=None, data_format=None, quick=False, seed=0, out="sgdsde-output/reproduce", progress=True,
        budget: str = "epochs") -> dict:
    """Train the grid, measure every endpoint, and return every number with the verdicts.

    budget: "epochs" (the paper's: every configuration for the same number of epochs,
    ⌈epochs·N/S⌉ steps, one resumable sweep per batch size) or "steps" (the same number
    of steps for all, one sweep over the grid)."""
    if budget not in BUDGETS:
        raise ValueError(f"budget: must be one of {BUDGETS}, got {budget!r}")
    setup = {**(QUICK if quick else DEFAULT), "budget": budget}
    key = jax.random.key(seed)
    splits = tf.load_splits(data, data_format, seed=seed)
    problem = tf.make_problem(splits, setup["hidden"])
    eta = np.asarray(setup["learning_rates"], float)
    size = np.asarray(setup["batch_sizes"], int)
    length = f"{setup['epochs']:g} epochs" if budget == "epochs" else f"{setup['steps']} SGD steps"
    note(NAME, f"{eta.size} × {size.size} grid × {setup['replicas']} replicas, {length}, "
         f"MLP{tuple(setup['hidden'])} with batch norm ({problem.info['num_parameters']} parameters) on "
         f"{splits.train.name} (N = {splits.train.num_examples})", enabled=progress)
    grid = (eta.size, size.size, setup["replicas"])
    if budget == "epochs":
        configs = [(float(e), int(b)) for e in eta for b in size]
        params, diverged, steps = tf.train_epochs(out, NAME, jax.random.fold_in(key, 1), problem, configs,
                                                  setup["epochs"], replicas=setup["replicas"], progress=progress)
        steps = steps.reshape(grid[:2])
    else:
        result, params = tf.train_grid(sweep_folder(out, NAME), jax.random.fold_in(key, 1), problem, eta, size,
                                       setup["steps"], replicas=setup["replicas"], progress=progress,
                                       group_batch_sizes=setup["group_batch_sizes"])
        diverged = np.asarray(result.diverged, bool)
        steps = np.full(grid[:2], setup["steps"])
    diverged = np.asarray(diverged, bool).reshape(grid)
    flat = tf.flatten_configs(params, 3 if budget == "steps" else 2)
    # diverged replicas have non-finite params: measure a finite stand-in, then mask
    keep = ~diverged.reshape(-1)
    if not keep.all():
        first = int(np.flatnonzero(keep)[0]) if keep.any() else None
        if first is None:
            raise RuntimeError("every replica of every configuration diverged")
        flat = jax.tree_util.tree_map(lambda x: x.at[np.flatnonzero(~keep)].set(x[first]), flat)

    shaped = lambda a: np.where(keep, np.asarray(a, float), np.nan).reshape(grid)
    note(NAME, "evaluating the endpoints", enabled=progress)
    train, test = tf.evaluate(problem, flat, "train"), tf.evaluate(problem, flat, splits.test)
    note(NAME, f"finite-difference Hessian norm ({setup['fd_samples']} probes, ε = {FD_EPSILON:g})",
         enabled=progress)
    fd, fd_se = tf.hessian_norm(problem, flat, jax.random.fold_in(key, 2), num_samples=setup["fd_samples"],
                                epsilon=FD_EPSILON)
    if setup["exact_check"]:  # the finite-difference error: the same probes with exact HVPs
        note(NAME, "the same probes with exact Hessian–vector products", enabled=progress)
        exact, exact_se = tf.hessian_norm_exact(problem, flat, jax.random.fold_in(key, 2),
                                                num_samples=setup["fd_samples"])
    else:
        exact = exact_se = np.full_like(fd, np.nan)
    note(NAME, "λ_max (Lanczos)", enabled=progress)
    lam = tf.top_eigenvalue(problem, flat, jax.random.fold_in(key, 3), num_iterations=setup["lanczos_iterations"])

    ratio = eta[:, None] / size[None, :]
    results = {
        "setup": {**setup, "data": splits.train.name, "n_train": splits.train.num_examples,
                  "n_test": splits.test.num_examples, "num_parameters": problem.info["num_parameters"],
                  "sampling": tf.SAMPLING, "fd_epsilon": FD_EPSILON, "fd_scheme": "forward", "seed": seed,
                  "steps_per_config": steps,
                  "epochs_min_max": [float((steps * size[None, :]).min() / splits.train.num_examples),
                                     float((steps * size[None, :]).max() / splits.train.num_examples)]},
        "eta_over_S": ratio,
        "hessian_norm_fd": shaped(fd), "hessian_norm_fd_squared_se": shaped(fd_se),
        "hessian_norm_exact": shaped(exact), "hessian_norm_exact_squared_se": shaped(exact_se),
        "lambda_max": shaped(lam),
        "train_loss": shaped(train["loss"]), "train_accuracy": shaped(train["accuracy"]),
        "test_loss": shaped(test["loss"]), "test_accuracy": shaped(test["accuracy"]),
        "diverged": diverged,
    }
    means = {k: _replica_mean(results[k]) for k in ("hessian_norm_fd", "hessian_norm_exact", "lambda_max",
                                                    "test_accuracy", "train_accuracy")}
    results["config_means"] = means
    x = ratio.ravel()
    results["verdicts"] = [
        correlation_verdict("The Hessian norm (the paper's finite-difference estimate) falls as η/S rises "
                            "(Fig. 1a): Spearman ρ < 0.", x, means["hessian_norm_fd"].ravel(), -1),
        correlation_verdict("λ_max of the Hessian falls as η/S rises: Spearman ρ < 0.", x,
                            means["lambda_max"].ravel(), -1),
        correlation_verdict("Test accuracy rises with η/S (Fig. 1b): Spearman ρ > 0.", x,
                            means["test_accuracy"].ravel(), +1),
    ]
    # which factor carries the effect: each measurement against η alone and against 1/S alone
    by_factor = {}
    for name in ("hessian_norm_fd", "lambda_max", "test_accuracy"):
        by_factor[name] = {
            factor: {"rho": v.value, "p_value": v.p_value}
            for factor, values in (("eta", np.broadcast_to(eta[:, None], ratio.shape)),
                                   ("inverse_S", np.broadcast_to(1 / size[None, :], ratio.shape)))
            for v in [correlation_verdict("", values.ravel(), means[name].ravel(), -1)]}
    results["spearman_by_factor"] = by_factor
    # the control for under-training: only the configurations that fit their training set
    fitted = means["train_accuracy"].ravel() >= FITTED
    results["spearman_fitted"] = {
        "train_accuracy_at_least": FITTED, "configurations": int(fitted.sum()),
        **{name: correlation_verdict("", x[fitted], means[name].ravel()[fitted], -1).as_dict()
           for name in ("hessian_norm_fd", "lambda_max", "test_accuracy")}}
    results["spearman_exact_hessian_norm"] = correlation_verdict(
        "‖H‖_F with exact HVPs falls as η/S rises", x, means["hessian_norm_exact"].ravel(), -1).as_dict()
    return results


def _budget(setup: dict) -> str:
    if setup.get("budget", "steps") == "epochs":
        return f"{setup['epochs']:g} epochs each"
    return f"{setup['steps']} steps each"


def _replica_mean(values) -> np.ndarray:
    """Mean over the last (replica) axis of the finite entries; NaN where there are none."""
    values = np.asarray(values, float)
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def table(results: dict) -> str:
    s = results["setup"]
    means = {k: np.asarray(v, float) for k, v in results["config_means"].items()}
    ratio = np.asarray(results["eta_over_S"], float)
    eta, size = s["learning_rates"], s["batch_sizes"]
    steps = np.asarray(s.get("steps_per_config", np.full(ratio.shape, s["steps"])), int)
    lines = [f"MLP{tuple(s['hidden'])} + batch norm on {s['data']} (N = {s['n_train']}), sgd({s['sampling']}), "
             f"{_budget(s)}, {s['replicas']} replicas",
             f"{'η':>7s} {'S':>5s} {'η/S':>9s} {'‖H‖_F fd':>10s} {'‖H‖_F':>8s} {'λ_max':>8s} "
             f"{'train acc':>9s} {'test acc':>9s} {'steps':>6s}"]
    order = np.argsort(ratio.ravel(), kind="stable")
    for flat_index in order:
        i, j = np.unravel_index(flat_index, ratio.shape)
        lines.append(f"{eta[i]:7.3g} {size[j]:5d} {ratio[i, j]:9.2e} {means['hessian_norm_fd'][i, j]:10.3g} "
                     f"{means['hessian_norm_exact'][i, j]:8.3g} {means['lambda_max'][i, j]:8.3g} "
                     f"{means['train_accuracy'][i, j]:9.3f} {means['test_accuracy'][i, j]:9.3f} {steps[i, j]:6d}")
    exact = results["spearman_exact_hessian_norm"]
    check = exact["text"] if results["setup"].get("exact_check", True) else "not computed (--quick)"
    lines.append(f"diverged replicas: {int(np.sum(results['diverged']))}; exact-HVP ‖H‖_F vs η/S: {check}")
    fit = results.get("spearman_fitted")
    if fit:
        rho = {k: number(fit[k]["value"]) for k in ("hessian_norm_fd", "lambda_max", "test_accuracy")}
        lines.append(f"fitted only (train acc ≥ {fit['train_accuracy_at_least']:g}, n = {fit['configurations']}): "
                     f"ρ = {rho['hessian_norm_fd']} ‖H‖_F fd, {rho['lambda_max']} λ_max, "
                     f"{rho['test_accuracy']} test acc")
    factor = results.get("spearman_by_factor", {})
    if factor:
        lines.append("Spearman ρ of the configuration means against η alone, against 1/S alone:")
        for name, f in factor.items():
            lines.append(f"  {name:16s} {number(f['eta']['rho']):>6s} (p = {f['eta']['p_value']:.1g}), "
                         f"{number(f['inverse_S']['rho']):>6s} (p = {f['inverse_S']['p_value']:.1g})")
    return "\n".join(lines)


@styled
def plot(results: dict):
    s = results["setup"]
    ratio = np.asarray(results["eta_over_S"], float)
    size = np.asarray(s["batch_sizes"], float)
    colour = np.broadcast_to(size[None, :], ratio.shape).ravel()
    verdicts = [tf.verdict_dict(v) for v in results["verdicts"]]
    fig, ax = figure(1, 3, panel=(4.6, 3.9))
    panels = [
        ("hessian_norm_fd", "‖H‖_F by finite differences", verdicts[0]),
        ("lambda_max", "λ_max of the Hessian", verdicts[1]),
        ("test_accuracy", "test accuracy", verdicts[2]),
    ]
    for a, (key, label, verdict) in zip(ax, panels):
        values = np.asarray(results[key], float)
        mean = _replica_mean(values).ravel()
        for r in range(values.shape[-1]):
            a.scatter(ratio.ravel(), values[..., r].ravel(), s=7, c="0.75", zorder=1,
                      label="replicas" if r == 0 else None)
        sc = a.scatter(ratio.ravel(), mean, c=np.log2(colour), cmap="viridis", s=22, zorder=2,
                       label="mean over replicas")
        exact = _replica_mean(results["hessian_norm_exact"]).ravel()
        if key == "hessian_norm_fd" and np.isfinite(exact).any():
            a.scatter(ratio.ravel(), exact, marker="x", s=18, c="C3", zorder=3, label="‖H‖_F, exact HVPs")
        a.set(xscale="log", xlabel="η/S", ylabel=label,
              title=f"{label} against η/S\nSpearman ρ = {number(verdict['value'])}, p = {verdict['p_value']:.1g}: "
                    f"{verdict['verdict']}")
        if key != "test_accuracy":
            a.set_yscale("log")
            plain_log_ticks(a.yaxis)
        plain_log_ticks(a.xaxis)
        a.legend(loc="best")
    bar = fig.colorbar(sc, ax=ax[-1], label="batch size S")
    ticks = np.log2(size)
    bar.set_ticks(ticks, labels=[f"{int(v)}" for v in size])
    fig.suptitle(f"Three Factors (a): MLP{tuple(s['hidden'])} + batch norm on {s['data']}, {_budget(s)}, "
                 f"{s['replicas']} replicas", fontsize=10)
    return fig


EXPERIMENTS = (
    Experiment(
        name=NAME, label="a", paper=f"{tf.PAPER}, §4.1 Fig. 1",
        claim="Minima found with larger η/S are flatter (smaller Hessian norm) and generalise better.",
        run=run, table=table, plot=plot,
        default_runtime="about 65 s on 2 shared, busy CPU cores (50 s of CPU time)"),
)
