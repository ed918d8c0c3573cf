"""Three Factors (b) and (c): the loss along the line between two minima
(Jastrzębski et al. 2018, §4.1, Figs. 2 and 3; appendix F.1 Figs. 10–12;
docs/reproductions.md).

θ(α) = (1 − α) θ_A + α θ_B between the endpoints of two SGD runs of the 4-layer batch-norm
MLP (:mod:`._three_factors`), α on an even grid over [−1, 2] (the paper's range); train
and test loss and accuracy along it. Every run lasts the same number of epochs (the
paper's budget; ⌈epochs·N/S⌉ steps, one resumable sweep per batch size), so that
(η, S) and (βη, βS) cover the same SDE time η·steps. Each replica r trains every
configuration from the same initialisation and the same minibatch draws (common random
numbers, ``fold_in(key, r)``); replicas differ in both, and give the error bars.

(b) ``three-factors-interpolation``: a baseline B = (η, S) against a large-batch run
(η, kS) and a small-learning-rate run (η/k, S), both of k-times smaller η/S (the paper:
ResNet-56, (0.1, 128) against (0.1, 1024) and (0.01, 128)). Claim: the minimum of smaller
η/S is sharper. Measure: the curvature of the training loss along the line at each end,
c = d²L/dα² by the three-point difference [L(α−h) − 2L(α) + L(α+h)]/h² at α = 0 (the
small-η/S end) and α = 1 (the baseline) — both along the same direction θ_B − θ_A, so
they compare like with like; verdict on the paired difference c_A − c_B over replicas
(> 0 claimed). Also reported: the same for log L (free of the loss level at each end).

(c) ``three-factors-same-ratio``: (η, S), (2η, 2S), (4η, 4S) — the same η/S (the
paper: VGG-11, (0.1β, 50β), β ∈ {0.25, 1, 4}). Claim: minima of the same η/S are
alike, the line between them has no barrier. Measure: the barrier max_{α∈[0,1]} [L(α) −
((1 − α) L(0) + α L(1))] of the training loss, for the same-ratio pairs (β = 1 ↔ 2,
1 ↔ 4) against the different-ratio pairs at the same distance in (η, S): (η, S) ↔
(4η, S) and (η, S) ↔ (η, 4S) (4: the largest β; 2 with --quick); verdict on the paired difference of the mean barriers
(< 0 claimed), and likewise on the relative difference of the end curvatures.
"""

from __future__ import annotations

import jax
import numpy as np

from sgdsde._progress import note
from sgdsde.plotting import figure, number, styled

from . import Experiment
from . import _three_factors as tf
from ._verdict import difference_verdict

NAME_B = "three-factors-interpolation"
NAME_C = "three-factors-same-ratio"

# (b): baseline (η, S), large batch (η, kS), small learning rate (η/k, S)
DEFAULT_B = {"eta": 0.04, "batch_size": 16, "factor": 4, "epochs": 60, "replicas": 8, "hidden": list(tf.HIDDEN),
             "alpha": [-1.0, 2.0, 0.05], "group_batch_sizes": True,
             "lanczos_iterations": 20}
QUICK_B = {"eta": 0.04, "batch_size": 16, "factor": 4, "epochs": 4, "replicas": 3, "hidden": [16, 16, 16, 16],
           "alpha": [-0.5, 1.5, 0.1], "group_batch_sizes": False,
           "lanczos_iterations": 0}
# (c): (β η, β S) for β in betas; different-ratio partners (4η, S) and (η, 4S)
DEFAULT_C = {"eta": 0.01, "batch_size": 16, "betas": [1, 2, 4], "epochs": 60, "replicas": 8,
             "hidden": list(tf.HIDDEN), "alpha": [-1.0, 2.0, 0.05], "group_batch_sizes": True,
             "lanczos_iterations": 20}
QUICK_C = {"eta": 0.01, "batch_size": 16, "betas": [1, 2], "epochs": 4, "replicas": 3,
           "hidden": [16, 16, 16, 16], "alpha": [-0.5, 1.5, 0.1], "group_batch_sizes": False,
           "lanczos_iterations": 0}


def alpha_grid(spec) -> np.ndarray:
    """Evenly spaced α from spec = [first, last, step] (0 and 1 are nodes)."""
    first, last, step = (float(v) for v in spec)
    count = int(round((last - first) / step)) + 1
    alphas = first + step * np.arange(count)
    if not (np.isclose(alphas, 0, atol=1e-9).any() and np.isclose(alphas, 1, atol=1e-9).any()):
        raise ValueError(f"alpha: 0 and 1 must be nodes of {spec}")
    return np.round(alphas, 12)


def _train(name, configs, setup, data, data_format, seed, out, progress):
    """Train the listed (η, S) × R for the same number of epochs; return (splits, problem,
    params (n, R, …), diverged (n, R), steps (n,))."""
    key = jax.random.key(seed)
    splits = tf.load_splits(data, data_format, seed=seed)
    problem = tf.make_problem(splits, setup["hidden"])
    note(name, f"{len(configs)} configurations (η, S) = {', '.join(f'({e:g}, {s})' for e, s in configs)} × "
         f"{setup['replicas']} replicas, {setup['epochs']:g} epochs each, MLP{tuple(setup['hidden'])} with batch "
         f"norm on {splits.train.name} (N = {splits.train.num_examples})", enabled=progress)
    params, diverged, steps = tf.train_epochs(out, name, jax.random.fold_in(key, 1), problem, configs,
                                              setup["epochs"], replicas=setup["replicas"], progress=progress,
                                              group_batch_sizes=setup["group_batch_sizes"])
    return splits, problem, params, diverged, steps


def _lines(problem, splits, params, pairs, alphas, replicas, diverged, progress, name) -> dict:
    """For each pair (i, j) of configuration indices and each replica: train/test loss and
    accuracy along θ(α) from config i (α = 0) to config j (α = 1), the end curvatures of
    the training loss and its barrier. Arrays (pairs, R, len(alphas)) / (pairs, R)."""
    out = {k: np.full((len(pairs), replicas, alphas.size), np.nan)
           for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
    curv = np.full((len(pairs), replicas, 2), np.nan)
    log_curv = np.full((len(pairs), replicas, 2), np.nan)
    height = np.full((len(pairs), replicas), np.nan)
    note(name, f"losses along {len(pairs)} lines × {replicas} replicas ({alphas.size} points each)",
         enabled=progress)
    for p, (i, j) in enumerate(pairs):
        for r in range(replicas):
            if diverged[i, r] or diverged[j, r]:
                continue
            line = tf.line_metrics(problem, tf.take(params, (i, r)), tf.take(params, (j, r)), alphas,
                                   {"train": "train", "test": splits.test})
            for k in out:
                out[k][p, r] = line[k]
            curv[p, r] = [tf.end_curvature(alphas, line["train_loss"], 0.0),
                          tf.end_curvature(alphas, line["train_loss"], 1.0)]
            log_curv[p, r] = [tf.end_curvature(alphas, np.log(line["train_loss"]), at) for at in (0.0, 1.0)]
            height[p, r] = tf.barrier(alphas, line["train_loss"])
    return {**out, "end_curvature": curv, "end_curvature_log_loss": log_curv, "barrier": height}


def _endpoints(problem, splits, params, diverged, key, lanczos_iterations: int) -> dict:
    """Train/test accuracy and loss of every configuration's endpoints, (n, R); with
    ``lanczos_iterations`` > 0 also λ_max of the training-loss Hessian (Lanczos)."""
    n, replicas = diverged.shape
    flat = tf.flatten_configs(params, 2)
    train, test = tf.evaluate(problem, flat, "train"), tf.evaluate(problem, flat, splits.test)
    mask = lambda a: np.where(diverged, np.nan, np.asarray(a, float).reshape(n, replicas))
    out = {"train_loss": mask(train["loss"]), "train_accuracy": mask(train["accuracy"]),
           "test_loss": mask(test["loss"]), "test_accuracy": mask(test["accuracy"])}
    if lanczos_iterations:
        out["lambda_max"] = mask(tf.top_eigenvalue(problem, flat, key, num_iterations=lanczos_iterations))
    return out


def _paired(a, b) -> dict:
    """Mean and se over replicas of a − b (pairs where both are finite)."""
    return tf.summary(np.asarray(a, float) - np.asarray(b, float))


def _endpoint_rows(results: dict, width: int) -> list[str]:
    """Table rows: each configuration's η, S, η/S, mean train/test accuracy, test loss, steps."""
    s, ends = results["setup"], results["endpoints"]
    sharp = "lambda_max" in ends
    rows = [f"{'run':{width}s} {'η':>7s} {'S':>5s} {'η/S':>9s} {'train acc':>9s} {'test acc':>9s} "
            f"{'test loss':>9s} {'steps':>6s}" + (f" {'λ_max':>8s}" if sharp else "")]
    for c, ((eta, size), label) in enumerate(zip(s["configs"], s["labels"])):
        mean = {k: np.nanmean(np.asarray(ends[k], float)[c])
                for k in ("train_accuracy", "test_accuracy", "test_loss") + (("lambda_max",) if sharp else ())}
        rows.append(f"{label:{width}s} {eta:7.3g} {size:5d} {eta / size:9.2e} {mean['train_accuracy']:9.3f} "
                    f"{mean['test_accuracy']:9.3f} {mean['test_loss']:9.3f} {int(s['steps'][c]):6d}"
                    + (f" {mean['lambda_max']:8.3g}" if sharp else ""))
    return rows


# ----------------------------------------------------------------------------- (b)
def run_interpolation(*, data=None, data_format=None, quick=False, seed=0, out="sgdsde-output/reproduce",
                      progress=True) -> dict:
    """(b): baseline against large batch and small learning rate; end curvatures."""
    setup = dict(QUICK_B if quick else DEFAULT_B)
    eta, size, k = setup["eta"], setup["batch_size"], setup["factor"]
    configs = [(eta, size), (eta, k * size), (eta / k, size)]
    labels = ["baseline", "large batch", "small η"]
    splits, problem, params, diverged, steps = _train(NAME_B, configs, setup, data, data_format, seed, out, progress)
    alphas = alpha_grid(setup["alpha"])
    # α = 0: the small-η/S minimum A; α = 1: the baseline B
    pairs = [(1, 0), (2, 0)]
    lines = _lines(problem, splits, params, pairs, alphas, setup["replicas"], diverged, progress, NAME_B)
    ends = _endpoints(problem, splits, params, diverged, jax.random.fold_in(jax.random.key(seed), 2),
                      setup["lanczos_iterations"])
    verdicts, stats = [], {}
    for p, label in enumerate(["large batch", "small η"]):
        c_a, c_b = lines["end_curvature"][p, :, 0], lines["end_curvature"][p, :, 1]
        d = _paired(c_a, c_b)
        stats[label] = {"curvature_small_ratio": tf.summary(c_a), "curvature_baseline": tf.summary(c_b),
                        "difference": d, "log_ratio": tf.summary(np.log(c_a / c_b)),
                        # curvature of log L: free of the loss level at each end (cross-entropy's
                        # Hessian shrinks with the loss near zero training loss)
                        "log_loss_curvature_difference": _paired(lines["end_curvature_log_loss"][p, :, 0],
                                                                 lines["end_curvature_log_loss"][p, :, 1])}
        i = pairs[p][0]
        verdicts.append(difference_verdict(
            f"The {label} minimum (η, S) = ({configs[i][0]:g}, {configs[i][1]}), η/S {k}× smaller, is sharper "
            f"than the baseline ({eta:g}, {size}): the training loss curves up faster at its end of the line "
            f"(d²L/dα² at α = 0 minus at α = 1 > 0; Fig. 2).", d["mean"], d["se"], 0.0, 0.0, +1))
    return {"setup": {**setup, "configs": configs, "labels": labels, "pairs": pairs, "steps": steps,
                      "data": splits.train.name,
                      "n_train": splits.train.num_examples, "num_parameters": problem.info["num_parameters"],
                      "sampling": tf.SAMPLING, "seed": seed},
            "alphas": alphas, "lines": lines, "endpoints": ends, "diverged": diverged, "statistics": stats,
            "verdicts": verdicts}


def table_interpolation(results: dict) -> str:
    s = results["setup"]
    lines = [f"MLP{tuple(s['hidden'])} + batch norm on {s['data']} (N = {s['n_train']}), sgd({s['sampling']}), "
             f"{s['epochs']:g} epochs, {s['replicas']} replicas",
             *_endpoint_rows(results, 12)]
    lines.append(f"{'line':24s} {'d²L/dα² small η/S (α=0)':>24s} {'baseline (α=1)':>16s} {'difference':>16s}")
    for label, st in results["statistics"].items():
        a, b, d = st["curvature_small_ratio"], st["curvature_baseline"], st["difference"]
        lines.append(f"{label + ' ↔ baseline':24s} {a['mean']:15.3g} ± {a['se']:<6.2g} {b['mean']:9.3g} ± "
                     f"{b['se']:<6.2g}{d['mean']:9.3g} ± {d['se']:<6.2g}")
    lines.append("the same for log L (d² log L/dα², small-η/S end minus baseline end):")
    for label, st in results["statistics"].items():
        d = st["log_loss_curvature_difference"]
        lines.append(f"  {label + ' ↔ baseline':22s} {d['mean']:+9.3g} ± {d['se']:.2g}")
    return "\n".join(lines)


def _line_panel(ax, alphas, lines, p, key, colour, label):
    values = np.asarray(lines[key], float)[p]
    mean = np.nanmean(values, axis=0)
    count = np.sum(np.isfinite(values[:, 0]))
    se = np.nanstd(values, axis=0, ddof=1) / np.sqrt(max(count, 1)) if count > 1 else np.zeros_like(mean)
    ax.plot(alphas, mean, color=colour, label=label)
    ax.fill_between(alphas, mean - se, mean + se, color=colour, alpha=0.25, linewidth=0)


@styled
def plot_interpolation(results: dict):
    s = results["setup"]
    alphas = np.asarray(results["alphas"], float)
    lines = results["lines"]
    verdicts = [tf.verdict_dict(v) for v in results["verdicts"]]
    fig, ax = figure(1, 3, panel=(4.6, 3.8))
    for p, (i, j) in enumerate(s["pairs"]):
        a = ax[p]
        (ea, sa), (eb, sb) = s["configs"][i], s["configs"][j]
        _line_panel(a, alphas, lines, p, "train_loss", "C0", "train loss")
        _line_panel(a, alphas, lines, p, "test_loss", "C1", "test loss")
        a.set_yscale("log")
        low, high = a.get_ylim()
        a.set_ylim(low / 50, high)  # room for the legend below the curves
        a.set(xlabel=f"α   (0: η = {ea:g}, S = {sa};  1: η = {eb:g}, S = {sb})", ylabel="loss (mean ± se)",
              title=f"{s['labels'][i]} (α = 0) ↔ baseline (α = 1)\n"
                    f"Δ d²L/dα² = {number(verdicts[p]['value'])} ± "
                    f"{number(np.diff(verdicts[p]['interval'])[0] / 4)}"
                    f": {verdicts[p]['verdict']}")
        for x in (0, 1):
            a.axvline(x, color="0.6", lw=0.8, ls=":")
        acc = a.twinx()
        _line_panel(acc, alphas, lines, p, "test_accuracy", "C2", "test accuracy")
        acc.set_ylabel("test accuracy")
        acc.set_ylim(0, 1.02)
        handles = a.get_legend_handles_labels()[0] + acc.get_legend_handles_labels()[0]
        a.legend(handles, [h.get_label() for h in handles], loc="lower center", ncols=3, fontsize=8)
    st = results["statistics"]
    names = list(st)
    x = np.arange(len(names))
    for shift, field, label, colour in ((-0.15, "curvature_small_ratio", "small-η/S end (α = 0)", "C3"),
                                        (0.15, "curvature_baseline", "baseline end (α = 1)", "C0")):
        ax[2].errorbar(x + shift, [st[n][field]["mean"] for n in names], [st[n][field]["se"] for n in names],
                       fmt="o", color=colour, capsize=3, label=label)
        values = np.asarray(results["lines"]["end_curvature"], float)[:, :, 0 if shift < 0 else 1]
        for p in range(len(names)):
            ax[2].scatter(np.full(values.shape[1], p + shift), values[p], s=8, color=colour, alpha=0.35)
    ax[2].set_xticks(x, [f"{n} ↔ baseline" for n in names])
    ax[2].set_xlim(-0.6, len(names) - 0.4)
    ax[2].set(ylabel="d²L_train/dα² at the end (mean ± se; dots: replicas)",
              title="curvature along the line at each end")
    ax[2].legend(loc="best")
    fig.suptitle(f"Three Factors (b): MLP{tuple(s['hidden'])} + batch norm on {s['data']}, {s['epochs']:g} epochs, "
                 f"{s['replicas']} replicas", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- (c)
def run_same_ratio(*, data=None, data_format=None, quick=False, seed=0, out="sgdsde-output/reproduce",
                   progress=True) -> dict:
    """(c): (βη, βS) for β in betas, and the different-ratio partners (4η, S), (η, 4S)."""
    setup = dict(QUICK_C if quick else DEFAULT_C)
    eta, size, betas = setup["eta"], setup["batch_size"], [int(b) for b in setup["betas"]]
    far = max(betas)
    configs = [(eta * b, size * b) for b in betas] + [(eta * far, size), (eta, size * far)]
    labels = [f"β = {b}" for b in betas] + [f"{far}η, S", f"η, {far}S"]
    splits, problem, params, diverged, steps = _train(NAME_C, configs, setup, data, data_format, seed, out, progress)
    alphas = alpha_grid(setup["alpha"])
    same = [(0, i) for i in range(1, len(betas))]
    different = [(0, len(betas)), (0, len(betas) + 1)]
    pairs = same + different
    lines = _lines(problem, splits, params, pairs, alphas, setup["replicas"], diverged, progress, NAME_C)
    ends = _endpoints(problem, splits, params, diverged, jax.random.fold_in(jax.random.key(seed), 2),
                      setup["lanczos_iterations"])
    height = lines["barrier"]
    curv = lines["end_curvature"]
    rel = np.abs(curv[..., 0] - curv[..., 1]) / (0.5 * np.abs(curv[..., 0] + curv[..., 1]))
    n_same = len(same)
    b_same, b_diff = height[:n_same].mean(axis=0), height[n_same:].mean(axis=0)
    r_same, r_diff = rel[:n_same].mean(axis=0), rel[n_same:].mean(axis=0)
    d_barrier, d_rel = _paired(b_same, b_diff), _paired(r_same, r_diff)
    stats = {"barrier": {labels[j]: tf.summary(height[p]) for p, (_, j) in enumerate(pairs)},
             "relative_curvature_difference": {labels[j]: tf.summary(rel[p]) for p, (_, j) in enumerate(pairs)},
             "barrier_same_minus_different": d_barrier, "relative_curvature_same_minus_different": d_rel,
             "barrier_same": tf.summary(b_same), "barrier_different": tf.summary(b_diff)}
    verdicts = [
        difference_verdict("Minima of the same η/S are connected without a barrier (Fig. 3): the training-loss "
                           "barrier between (η, S) and (βη, βS) is smaller than between (η, S) and a minimum of "
                           f"{far}× larger or smaller η/S (same-ratio minus different-ratio < 0).",
                           d_barrier["mean"], d_barrier["se"], 0.0, 0.0, -1),
        difference_verdict("Minima of the same η/S are equally sharp: the relative difference of the end curvatures "
                           "d²L/dα² is smaller for same-ratio pairs than for different-ratio pairs (< 0).",
                           d_rel["mean"], d_rel["se"], 0.0, 0.0, -1),
    ]
    return {"setup": {**setup, "configs": configs, "labels": labels, "pairs": pairs, "same_pairs": n_same,
                      "steps": steps,
                      "data": splits.train.name, "n_train": splits.train.num_examples,
                      "num_parameters": problem.info["num_parameters"], "sampling": tf.SAMPLING, "seed": seed},
            "alphas": alphas, "lines": lines, "relative_curvature_difference": rel, "endpoints": ends,
            "diverged": diverged, "statistics": stats, "verdicts": verdicts}


def table_same_ratio(results: dict) -> str:
    s = results["setup"]
    st = results["statistics"]
    lines = [f"MLP{tuple(s['hidden'])} + batch norm on {s['data']} (N = {s['n_train']}), sgd({s['sampling']}), "
             f"{s['epochs']:g} epochs, {s['replicas']} replicas",
             *_endpoint_rows(results, 10)]
    lines.append(f"{'line from β = 1 to':22s} {'same η/S':>9s} {'barrier':>18s} {'|Δc|/c̄ at the ends':>22s}")
    for p, (_, j) in enumerate(s["pairs"]):
        name = s["labels"][j]
        b, r = st["barrier"][name], st["relative_curvature_difference"][name]
        lines.append(f"{name:22s} {'yes' if p < s['same_pairs'] else 'no':>9s} {b['mean']:9.3g} ± {b['se']:<6.2g} "
                     f"{r['mean']:13.3g} ± {r['se']:<6.2g}")
    return "\n".join(lines)


@styled
def plot_same_ratio(results: dict):
    s = results["setup"]
    alphas = np.asarray(results["alphas"], float)
    lines = results["lines"]
    verdicts = [tf.verdict_dict(v) for v in results["verdicts"]]
    fig, ax = figure(1, 3, panel=(4.6, 3.8))
    colours = ["C0", "C1", "C3", "C4", "C5"]
    for p, (_, j) in enumerate(s["pairs"]):
        same = p < s["same_pairs"]
        label = f"→ {s['labels'][j]} ({'same' if same else 'different'} η/S)"
        _line_panel(ax[0 if same else 1], alphas, lines, p, "train_loss", colours[p], label)
    titles = ["same η/S: (η, S) → (βη, βS)", f"different η/S (η = {s['eta']:g}, S = {s['batch_size']} →)"]
    for a, title in zip(ax[:2], titles):
        a.set_yscale("log")
        a.set(xlabel="α   (0: β = 1;  1: the other minimum)", ylabel="training loss (mean ± se)", title=title)
        for x in (0, 1):
            a.axvline(x, color="0.6", lw=0.8, ls=":")
        a.legend(loc="upper center")
    low = min(a.get_ylim()[0] for a in ax[:2])
    high = max(a.get_ylim()[1] for a in ax[:2])
    for a in ax[:2]:
        a.set_ylim(low, high)
    st = results["statistics"]["barrier"]
    names = [s["labels"][j] for _, j in s["pairs"]]
    x = np.arange(len(names))
    heights = np.asarray(lines["barrier"], float)
    for p, name in enumerate(names):
        colour = colours[p]
        ax[2].errorbar(p, st[name]["mean"], st[name]["se"], fmt="o", color=colour, capsize=3)
        ax[2].scatter(np.full(heights.shape[1], p + 0.12), heights[p], s=8, color=colour, alpha=0.4)
    ax[2].axhline(0, color="0.6", lw=0.8)
    ax[2].axvline(s["same_pairs"] - 0.5, color="0.6", lw=0.8, ls="--")
    ax[2].set_xticks(x, [f"→ {n}" for n in names])
    ax[2].set(ylabel="barrier: max over α ∈ [0, 1] of L − chord",
              title=f"same − different: {number(verdicts[0]['value'], 3)} ± "
                    f"{number(np.diff(verdicts[0]['interval'])[0] / 4, 3)}: {verdicts[0]['verdict']}")
    fig.suptitle(f"Three Factors (c): MLP{tuple(s['hidden'])} + batch norm on {s['data']}, {s['epochs']:g} epochs, "
                 f"{s['replicas']} replicas; β = 1: η = {s['eta']:g}, S = {s['batch_size']}", fontsize=10)
    return fig


EXPERIMENTS = (
    Experiment(
        name=NAME_B, label="b", paper=f"{tf.PAPER}, §4.1 Fig. 2 (appendix F.1 Figs. 10–12)",
        claim="The minimum found with smaller η/S (larger batch or smaller learning rate) is sharper: the loss "
              "rises faster away from it along the line to the minimum of larger η/S.",
        run=run_interpolation, table=table_interpolation, plot=plot_interpolation,
        default_runtime="about 30–50 s on 2 shared, busy CPU cores (26 s of CPU time)"),
    Experiment(
        name=NAME_C, label="c", paper=f"{tf.PAPER}, §4.1 Fig. 3",
        claim="Minima found with the same η/S from different (η, S) are alike: no barrier on the line between "
              "them, similar sharpness.",
        run=run_same_ratio, table=table_same_ratio, plot=plot_same_ratio,
        default_runtime="about 25–50 s on 2 shared, busy CPU cores (30 s of CPU time)"),
)
