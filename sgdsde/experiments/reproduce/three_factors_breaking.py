"""(f) Three Factors §4.4, Fig. 6: the breaking point of the η/S rule.

The paper trains VGG-11 on CIFAR-10 at (βη, βS) with η/S fixed (η = 0.1, S = 50) for
growing β: validation accuracy stays level up to some β, then drops; with half the noise
(η = 0.05, S = 50) the drop comes at a much larger β — the rule breaks when the learning
rate βη gets too large (or the batch size too small for the data set).

Here: the 4-layer batch-norm MLP of :mod:`._three_factors` on the built-in digits, at
(βη₀, βS₀) for β = 1, 2, 4, … (βS₀ ≤ N) and two noise levels η₀/S₀ (η₀ and η₀/2 at the
same S₀), every run for the same number of examples B (the same number of epochs, hence
the same SME time Σ η = B·η₀/S₀: B/(βS₀) steps), replicas with common random numbers
(replica r starts from the same initialisation in every configuration). One resumable
sweep per β (its number of steps), over the two noise levels.

**The breaking point.** drop(β) = A(1) − A(β), the paired difference (per replica) of the
final test accuracy at β = 1 and at β, with the standard error of the paired differences.
β* is the smallest β whose drop exceeds MARGIN (two percentage points, fixed beforehand)
by two standard errors: drop − 2·se > MARGIN. The claim "it breaks earlier at higher
noise" is tested at the high-noise level's β*: the drop of the high-noise level minus that
of the low-noise level at that β, with its paired standard error (difference ± se; sign
+). If the high-noise level never breaks, the verdict is "not confirmed".
"""

from __future__ import annotations

import math

import jax
import numpy as np

import sgdsde as sd
from sgdsde._progress import note
from sgdsde.nn import metrics
from sgdsde.plotting import figure, number, plain_log_ticks, styled
from sgdsde.sweep import run_sweep

from . import Experiment, sweep_folder
from . import _three_factors as tf
from ._verdict import NOT_CONFIRMED, Verdict, difference_verdict, paired_difference

NAME = "three-factors-breaking-point"
MARGIN = 0.02  # a drop below β = 1's test accuracy larger than 2 percentage points (+ 2 se) is a break

SIZES = {
    # η₀ of the two noise levels (high first), S₀, β values, examples per run, replicas
    "quick": dict(rates=(0.04, 0.02), batch=16, betas=(1, 8), examples=2048, replicas=4),
    "default": dict(rates=(0.04, 0.02), batch=16, betas=(1, 2, 4, 8, 16, 32), examples=12288, replicas=8),
}


def breaking_beta(betas, drops, ses, margin: float = MARGIN, z: float = 2.0):
    """The smallest β with drop − z·se > margin, or None."""
    for beta, drop, se in zip(betas, drops, ses):
        if math.isfinite(drop) and math.isfinite(se) and drop - z * se > margin:
            return beta
    return None


def run(*, data=None, data_format=None, quick: bool = False, seed: int = 0, out=".", progress: bool = True) -> dict:
    size = SIZES["quick" if quick else "default"]
    splits = tf.load_splits(data, data_format, seed=seed)
    problem = tf.make_problem(splits)
    n = problem.num_examples
    betas = [b for b in size["betas"] if b * size["batch"] <= n]
    rates = np.asarray(size["rates"], float)
    accuracy = {}  # β → (levels, R) final test accuracy
    train_accuracy, diverged = {}, {}
    for beta in betas:
        batch = beta * size["batch"]
        steps = max(int(round(size["examples"] / batch)), 1)
        observers = [metrics.evaluation_curve(splits.test, steps, name="test"),
                     metrics.evaluation_curve("train", steps, name="train")]
        note(NAME, f"β = {beta}: η = {', '.join(number(beta * r, 3) for r in rates)}, S = {batch}, {steps} steps",
             enabled=progress)
        result = run_sweep(sweep_folder(out, NAME, f"beta{beta}"), jax.random.fold_in(jax.random.key(seed), 1),
                           sd.sgd(tf.SAMPLING), problem, sd.Hyper(beta * rates, batch), problem.info["init_params"],
                           steps, replicas=size["replicas"], observers=observers, progress=progress)
        accuracy[beta] = np.asarray(result["test"]["values"]["accuracy"])[:, -1, :]
        train_accuracy[beta] = np.asarray(result["train"]["values"]["accuracy"])[:, -1, :]
        diverged[beta] = np.asarray(result.diverged).sum(axis=-1)

    levels = []
    for i, eta in enumerate(rates):
        drops = [paired_difference(accuracy[betas[0]][i], accuracy[b][i]) for b in betas]
        entry = {"eta": float(eta), "ratio": float(eta / size["batch"]), "betas": betas,
                 "test_accuracy": [float(accuracy[b][i].mean()) for b in betas],
                 "test_accuracy_se": [float(accuracy[b][i].std(ddof=1) / math.sqrt(accuracy[b][i].size))
                                      for b in betas],
                 "train_accuracy": [float(train_accuracy[b][i].mean()) for b in betas],
                 "drop": [d for d, _ in drops], "drop_se": [s for _, s in drops],
                 "diverged": [int(diverged[b][i]) for b in betas],
                 "per_replica": [accuracy[b][i] for b in betas]}
        entry["breaking_beta"] = breaking_beta(betas, entry["drop"], entry["drop_se"])
        entry["breaking_eta"] = None if entry["breaking_beta"] is None else entry["breaking_beta"] * float(eta)
        levels.append(entry)

    high, low = levels
    claim = ("With η/S fixed, scaling (βη, βS) keeps the test accuracy until a breaking β, which comes earlier "
             "for the higher noise level (larger η)")
    if high["breaking_beta"] is None:
        verdict = Verdict(claim, "difference", math.nan, None, None, NOT_CONFIRMED,
                          f"the high-noise level does not break up to β = {betas[-1]} "
                          f"(margin {100 * MARGIN:g} pp + 2 se)")
    else:
        b = high["breaking_beta"]
        mean, se = paired_difference(accuracy[betas[0]][0] - accuracy[b][0], accuracy[betas[0]][1] - accuracy[b][1])
        verdict = difference_verdict(claim + f" (drop at β = {b}, high minus low noise)", mean, se, 0.0, 0.0, +1)
    return {"sizes": size, "num_examples": n, "margin": MARGIN, "levels": levels, "verdicts": [verdict]}


def table(results: dict) -> str:
    lines = [f"{'η₀':>6} {'β':>4} {'βη':>7} {'βS':>5} {'test acc':>17} {'drop (pp)':>15} {'div':>4}"]
    for level in results["levels"]:
        for k, beta in enumerate(level["betas"]):
            lines.append(f"{level['eta']:>6.3g} {beta:>4d} {beta * level['eta']:>7.3g} "
                         f"{beta * results['sizes']['batch']:>5d} {level['test_accuracy'][k]:>8.4f} ± "
                         f"{level['test_accuracy_se'][k]:.4f} {100 * level['drop'][k]:>+7.2f} ± "
                         f"{100 * level['drop_se'][k]:>5.2f} {level['diverged'][k]:>4d}")
        where = ("none" if level["breaking_beta"] is None else
                 f"β* = {level['breaking_beta']} (βη = {number(level['breaking_eta'], 3)})")
        lines.append(f"η₀ = {number(level['eta'], 3)}, η/S = {level['ratio']:.2e}: breaking point {where}")
    return "\n".join(lines)


@styled
def plot(results: dict):
    fig, axes = figure(1, 2, panel=(4.6, 3.6), squeeze=False)
    for level, colour in zip(results["levels"], ("tab:red", "tab:blue")):
        betas = np.asarray(level["betas"], float)
        label = f"η₀ = {number(level['eta'], 3)}, S₀ = {results['sizes']['batch']}"
        for ax, x in zip(axes[0], (betas, betas * level["eta"])):
            ax.errorbar(x, level["test_accuracy"], yerr=2 * np.asarray(level["test_accuracy_se"]), color=colour,
                        marker="o", ms=4, capsize=2, label=label)
            if level["breaking_beta"] is not None:
                xb = level["breaking_beta"] * (1 if x is betas else level["eta"])
                ax.axvline(xb, color=colour, ls=":", lw=1)
    for ax, xlabel in zip(axes[0], ("β (η = βη₀, S = βS₀)", "learning rate βη₀")):
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("final test accuracy (± 2 se)")
        ax.legend(fontsize=8, title="dotted: breaking point")
    axes[0, 0].set_title("η/S fixed, (βη, βS) scaled")
    axes[0, 1].set_title("against the learning rate")
    return fig


EXPERIMENTS = (
    Experiment(
        name=NAME, label="f", paper=f"{tf.PAPER}, §4.4 Fig. 6",
        claim="The η/S rule holds up to a breaking β that comes earlier at higher noise (larger η).",
        run=run, table=table, plot=plot, default_runtime="108 s on 2 shared, busy cores (load 9–10)",
    ),
)
