"""(e) Three Factors §4.3, Fig. 5 and appendix F.3: at equal memorisation of random
labels, a higher η/S generalises better.

The paper trains an MLP on MNIST with 25 % and 50 % of the training labels replaced by
random ones, over a grid of η, S and momentum 0 and 0.9, and plots validation accuracy
(clean labels) against training accuracy on the noisy training set: at the same level of
memorisation, runs with a higher η/S sit higher.

Here: the 4-layer batch-norm MLP of :mod:`._three_factors` on the built-in digits, with
25 % and 50 % of the training labels replaced by a label drawn from the other classes
(:func:`sgdsde.nn.data.corrupt_labels`: exactly that many labels are wrong), trained for a
fixed number of SGD steps over a grid of (η, S) for momentum β = 0 and 0.9 (``sd.sgd``'s
heavy ball, β from ``Hyper.momentum``; the momentum grid uses smaller η, as the paper
drops its largest learning rates with momentum). Curves every few steps record

- memorisation M(t): the accuracy on the randomly labelled training examples, measured
  against their random labels (≈ 1/K at initialisation, 0 for a network that predicts the
  true class — the random label is never the true one — rising as it memorises), and
- the clean test accuracy A(t).

**Equal memorisation.** For a level m*, each configuration's replica-mean curve M̄(t) is
followed to its first record at or above m* after M̄'s minimum, and Ā is linearly interpolated in M̄ between
that record and the one before (M̄ is increasing there), and averaged with Ā at the
records after the minimum whose M̄ lies within ±0.05 of m* (Ā fluctuates from record to
record): A(m*), the test accuracy when the network has fitted a fraction m* of the
random labels. Configurations whose M̄ never reaches
m* are left out (counted in the results). The verdict, per momentum: Spearman ρ between
η/S and A(m*) among the runs that reached m*, pooled over the two label-noise fractions
after subtracting each fraction's mean A(m*) (the fractions differ in accuracy; the claim
is about the ordering by η/S within one). The claim: ρ > 0.
"""

from __future__ import annotations

import math

import jax
import numpy as np

import sgdsde as sd
from sgdsde import nn as snn
from sgdsde._progress import note
from sgdsde.nn import metrics
from sgdsde.plotting import figure, number, plain_log_ticks, styled
from sgdsde.sweep import run_sweep

from . import Experiment, sweep_folder
from . import _three_factors as tf
from ._verdict import NOT_CONFIRMED, correlation_verdict

NAME = "three-factors-memorisation"
BAND = 0.05  # records with |M̄ − m*| ≤ BAND are averaged into A(m*)
MIN_RUNS = 5  # fewer runs at a level give no verdict (Spearman's p from its t approximation needs n ≳ 5)

SIZES = {
    # per momentum: learning rates; batch sizes; label-noise fractions; steps; replicas;
    # records; memorisation levels m* (the first is the verdict's)
    "quick": dict(rates={0.0: (0.02, 0.1), 0.9: (0.005, 0.02)}, batch_sizes=(8, 64), fractions=(0.5,),
                  steps=400, replicas=2, records=20, levels=(0.2, 0.3), train_examples=200),
    "default": dict(rates={0.0: (0.02, 0.05, 0.1), 0.9: (0.002, 0.005, 0.01)}, batch_sizes=(8, 16, 32, 64),
                    fractions=(0.25, 0.5), steps=6000, replicas=6, records=80, levels=(0.3, 0.2, 0.5),
                    train_examples=None),
}


def grid(size: dict) -> tuple[sd.Hyper, list[dict]]:
    """A flat grid (G,) of (η, S, β): for each momentum its learning rates × the batch sizes."""
    configs = [{"learning_rate": float(eta), "batch_size": int(s), "momentum": float(beta)}
               for beta, rates in size["rates"].items() for eta in rates for s in size["batch_sizes"]]
    hyper = sd.Hyper(np.asarray([c["learning_rate"] for c in configs]), np.asarray([c["batch_size"] for c in configs]),
                     np.asarray([c["momentum"] for c in configs]))
    return hyper, configs


def accuracy_at_memorisation(memorised: np.ndarray, accuracy: np.ndarray, level: float) -> float:
    """Ā at the first crossing of M̄ = ``level`` after M̄'s minimum (linear in M̄ between the
    two records around it); NaN if M̄ never reaches it. Before its minimum M̄ falls from
    chance (≈ 1/K at initialisation) while the network learns the true classes; memorising
    is the rise after it."""
    memorised, accuracy = np.asarray(memorised, float), np.asarray(accuracy, float)
    if not np.all(np.isfinite(memorised)):
        return math.nan
    start = int(np.argmin(memorised))
    above = np.flatnonzero(memorised[start:] >= level)
    if above.size == 0:
        return math.nan
    i = start + int(above[0])
    if i == 0 or memorised[i] == memorised[i - 1]:
        crossing = float(accuracy[i])
    else:
        w = (level - memorised[i - 1]) / (memorised[i] - memorised[i - 1])
        crossing = float(accuracy[i - 1] + w * (accuracy[i] - accuracy[i - 1]))
    # averaged with the records after the minimum whose M̄ lies within ±BAND of the level
    # (the test accuracy fluctuates from record to record)
    near = np.abs(memorised[start:] - level) <= BAND
    return float(np.mean(np.concatenate([[crossing], accuracy[start:][near]])))


def run(*, data=None, data_format=None, quick: bool = False, seed: int = 0, out=".", progress: bool = True) -> dict:
    size = SIZES["quick" if quick else "default"]
    splits = tf.load_splits(data, data_format, seed=seed, train_examples=size["train_examples"])
    hyper, configs = grid(size)
    every = max(size["steps"] // size["records"], 1)
    runs = []
    for f_index, fraction in enumerate(size["fractions"]):
        corruption_key = jax.random.fold_in(jax.random.key(seed), 10 + f_index)
        train = snn.data.corrupt_labels(splits.train, fraction, key=corruption_key)
        noisy = np.asarray(train.corrupted)
        random_part = snn.data.make_dataset(train.x[noisy], train.y[noisy], train.num_classes, name="random labels")
        clean_part = snn.data.make_dataset(train.x[~noisy], train.y[~noisy], train.num_classes, name="clean labels")
        problem = tf.make_problem(snn.data.Splits(train, None, splits.test))
        observers = [metrics.accuracy_curve(random_part, every, name="memorised"),
                     metrics.accuracy_curve(clean_part, every, name="clean_train"),
                     metrics.accuracy_curve(splits.test, every, name="test")]
        note(NAME, f"{int(round(100 * fraction))} % random labels: {len(configs)} configurations × "
                   f"{size['replicas']} replicas, {size['steps']} steps", enabled=progress)
        result = run_sweep(sweep_folder(out, NAME, f"labels{int(round(100 * fraction))}"),
                           jax.random.fold_in(jax.random.key(seed), 1), sd.sgd(tf.SAMPLING), problem, hyper,
                           problem.info["init_params"], size["steps"], replicas=size["replicas"],
                           observers=observers, progress=progress)
        times = np.asarray(result["test"]["times"]).reshape(len(configs), -1)[0]
        for g, config in enumerate(configs):
            keep = ~np.asarray(result.diverged[g])
            curve = lambda name: (np.asarray(result[name]["values"][g])[:, keep].mean(axis=1) if keep.any()
                                  else np.full(times.shape, np.nan))
            entry = dict(config, fraction=float(fraction), ratio=config["learning_rate"] / config["batch_size"],
                         steps=times, memorised=curve("memorised"), clean_train=curve("clean_train"),
                         test=curve("test"), diverged=int((~keep).sum()))
            entry["at_level"] = {str(level): accuracy_at_memorisation(entry["memorised"], entry["test"], level)
                                 for level in size["levels"]}
            runs.append(entry)

    verdicts, statistics = [], {}
    for level in size["levels"]:
        for beta in size["rates"]:
            members = [r for r in runs if r["momentum"] == beta and math.isfinite(r["at_level"][str(level)])]
            centred, ratios = [], []
            for fraction in size["fractions"]:
                group = [r for r in members if r["fraction"] == fraction]
                if group:
                    mean = np.mean([r["at_level"][str(level)] for r in group])
                    centred += [r["at_level"][str(level)] - mean for r in group]
                    ratios += [r["ratio"] for r in group]
            verdict = correlation_verdict(
                f"At equal memorisation (a fraction {number(level)} of the random labels fitted), a higher η/S "
                f"gives a higher clean test accuracy (momentum {number(beta)})", ratios, centred, +1)
            if len(ratios) < MIN_RUNS and verdict.verdict != NOT_CONFIRMED:  # p of Spearman's t is meaningless
                verdict = verdict._replace(verdict=NOT_CONFIRMED,
                                           text=verdict.text + f"; fewer than {MIN_RUNS} runs: no verdict")
            total = sum(1 for r in runs if r["momentum"] == beta)
            statistics[f"{level}/{beta}"] = {"level": level, "momentum": beta, "reached": len(ratios), "of": total,
                                             "rho": verdict.value, "p": verdict.p_value}
            if level == size["levels"][0]:
                verdicts.append(verdict)
    return {"sizes": {k: (v if k != "rates" else {str(b): list(r) for b, r in v.items()}) for k, v in size.items()},
            "runs": runs, "statistics": statistics, "at_end": end_statistics(runs), "verdicts": verdicts}


def end_statistics(runs: list[dict]) -> list[dict]:
    """At the end of the run (the same number of steps for all): Spearman ρ of η/S with the
    memorisation M̄ and with the clean test accuracy, per label-noise fraction and momentum
    (not at equal memorisation: the paper's broader "noise prevents memorisation")."""
    from scipy import stats

    out = []
    for fraction in sorted({r["fraction"] for r in runs}):
        for beta in sorted({r["momentum"] for r in runs}):
            group = [r for r in runs if r["fraction"] == fraction and r["momentum"] == beta]
            ratio = [r["ratio"] for r in group]
            rho_m, p_m = stats.spearmanr(ratio, [r["memorised"][-1] for r in group])
            rho_a, p_a = stats.spearmanr(ratio, [r["test"][-1] for r in group])
            out.append({"fraction": fraction, "momentum": beta, "n": len(group), "rho_memorised": float(rho_m),
                        "p_memorised": float(p_m), "rho_test": float(rho_a), "p_test": float(p_a)})
    return out


def _float(value) -> float:
    """A number from the results or their JSON (where NaN is stored as null)."""
    return math.nan if value is None else float(value)


def table(results: dict) -> str:
    levels = results["sizes"]["levels"]
    head = "".join(f" {'A(' + number(m) + ')':>8}" for m in levels)
    lines = [f"{'noise':>5} {'β':>4} {'η':>6} {'S':>4} {'η/S':>8} {'M end':>6} {'test end':>8}{head}"]
    for r in results["runs"]:
        at = "".join(f" {_float(r['at_level'][str(m)]):>8.4f}" for m in levels)
        lines.append(f"{r['fraction']:>5.2f} {r['momentum']:>4.1f} {r['learning_rate']:>6.3g} {r['batch_size']:>4d} "
                     f"{r['ratio']:>8.2e} {r['memorised'][-1]:>6.3f} {r['test'][-1]:>8.4f}{at}")
    lines.append("Spearman ρ(η/S, A(m*)) per level and momentum (fractions centred):")
    for s in results["statistics"].values():
        lines.append(f"  m* = {number(s['level'])}, β = {number(s['momentum'])}: ρ = {_float(s['rho']):+.3f} "
                     f"(p = {s['p'] if s['p'] is None else format(s['p'], '.2g')}), {s['reached']} of {s['of']} "
                     "runs reached m*")
    lines.append("At the end (same steps for all), Spearman ρ with η/S of M̄ and of the test accuracy:")
    for e in results.get("at_end", []):
        lines.append(f"  {int(round(100 * e['fraction']))} % random, β = {number(e['momentum'])}: "
                     f"ρ(M) = {e['rho_memorised']:+.3f} (p = {e['p_memorised']:.2g}), "
                     f"ρ(test) = {e['rho_test']:+.3f} (p = {e['p_test']:.2g}), n = {e['n']}")
    return "\n".join(lines)


@styled
def plot(results: dict):
    import matplotlib as mpl

    fractions = sorted({r["fraction"] for r in results["runs"]})
    betas = sorted({r["momentum"] for r in results["runs"]})
    fig, axes = figure(len(betas), len(fractions) + 1, panel=(4.0, 3.3), squeeze=False)
    ratios = [r["ratio"] for r in results["runs"]]
    norm = mpl.colors.LogNorm(min(ratios), max(ratios))
    cmap = mpl.colormaps["coolwarm"]
    level = results["sizes"]["levels"][0]
    for i, beta in enumerate(betas):
        for j, fraction in enumerate(fractions):
            ax = axes[i, j]
            for r in (r for r in results["runs"] if r["momentum"] == beta and r["fraction"] == fraction):
                ax.plot(r["memorised"], r["test"], color=cmap(norm(r["ratio"])), lw=1.2)
            ax.axvline(level, color="0.5", lw=0.8, ls=":")
            ax.set_xlabel("random labels fitted (train accuracy on them)")
            ax.set_ylabel("clean test accuracy")
            ax.set_title(f"{int(round(100 * fraction))} % random labels, β = {number(beta)}")
        ax = axes[i, -1]
        for fraction, marker in zip(fractions, "os"):
            pts = [(r["ratio"], r["at_level"][str(level)]) for r in results["runs"]
                   if r["momentum"] == beta and r["fraction"] == fraction]
            x, y = zip(*pts)
            ax.scatter(x, y, marker=marker, c=[cmap(norm(v)) for v in x], edgecolor="k", lw=0.5)
            ax.scatter([], [], marker=marker, color="white", edgecolor="k", lw=0.5,
                       label=f"{int(round(100 * fraction))} % random")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel("η/S")
        ax.set_ylabel(f"test accuracy at M = {number(level)}")
        ax.set_title(f"at equal memorisation, β = {number(beta)}")
        ax.legend(fontsize=8)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[:, :-1], label="η/S (red: higher)",
                 shrink=0.8)
    return fig


EXPERIMENTS = (
    Experiment(
        name=NAME, label="e", paper=f"{tf.PAPER}, §4.3 Fig. 5, appendix F.3",
        claim="At the same level of memorisation of random labels, a higher η/S generalises better.",
        run=run, table=table, plot=plot, default_runtime="196 s on 2 shared, busy cores (load 5–8)",
    ),
)
