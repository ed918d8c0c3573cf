"""(d) Three Factors §4.2, Fig. 4 and appendix F.4: a cyclic batch size for a cyclic
learning rate, at the same η/S at all times.

The paper trains VGG-11 on CIFAR-10 with S cycling 128 ↔ 640 at η = 0.005 against η
cycling 0.005 ↔ 0.001 at S = 128 ("discrete" schedules: two levels, max = 5 × min, cycles
of several epochs), and the constant pair η/S = 0.001/128 = 0.005/640; the train and test
accuracy curves of each pair coincide over epochs and the endpoints agree (89.39 % vs
89.24 %, 87.25 % vs 86.92 %).

Here: the 4-layer batch-norm MLP of :mod:`._three_factors` on the built-in digits, per
base learning rate η_h: cyclic S (η_h; S₀ ↔ 5S₀), cyclic η (S₀; η_h ↔ η_h/5), the constant
pair (η_h/5, S₀) and (η_h, 5S₀), and the constant (η_h, S₀) at the cycles' high noise.
Time is counted in **examples seen** (epochs), as in the paper: each phase of a cycle
lasts the same number of examples L, i.e. L/S₀ steps at S₀ and L/(5S₀) at 5S₀, so the
two cyclic schedules have the same η/S at every example (and the same SME time Σ η per
example, N·η/S per epoch). The phases are therefore unequal in steps, and the schedules
are :func:`sgdsde.schedules.piecewise_constant` (square cycles in examples). Every
configuration of every base ratio runs in ONE compiled program: the schedules are
stacked (parameters as leaves) and the sweep is masked at 5S₀ (``group_batch_sizes=
False``); all run the steps the S₀ schedules need, and the 5S₀ ones are read at their
own step for each number of examples.

Verdicts. "Coincide" is an equivalence test: the paired difference d of the final test
accuracies of cyclic S and cyclic η (common random numbers: replica r of every
configuration has the same initialisation and keys, so the difference is taken per
replica and its standard error is that of the paired differences) must have its
two-standard-error interval inside ±MARGIN (one percentage point, stated before
running); the same for the constant pair; "contradicted" when the interval lies wholly
outside ±MARGIN. And the cyclic schedules (both) against the constant schedule at the
cycles' low η/S (a schedule with a different η/S): the paper's appendix F.4 finds the
cyclic ones generalise better (a sign claim, difference ± se).
"""

from __future__ import annotations

import math

import jax
import numpy as np

import sgdsde as sd
from sgdsde import schedules as sch
from sgdsde._progress import note
from sgdsde.nn import metrics
from sgdsde.plotting import figure, number, styled
from sgdsde.sweep import run_sweep

from . import Experiment, sweep_folder
from . import _three_factors as tf
from ._verdict import CONFIRMED, CONTRADICTED, NOT_CONFIRMED, Verdict, difference_verdict, paired_difference

NAME = "three-factors-cyclic"
MARGIN = 0.01  # the equivalence margin on test accuracy (1 percentage point)
FACTOR = 5     # max = 5 × min, as in the paper
LABELS = ("cyclic S", "cyclic η", "η/5, S", "η, 5S", "η, S")

SIZES = {
    # base learning rates η_h, S₀, m (a phase is L = 5·S₀·m examples: 5m steps at S₀, m at
    # 5S₀), cycles, replicas, records per phase
    "quick": dict(base_rates=(0.05,), batch=16, m=3, cycles=2, replicas=4, records=1),
    "default": dict(base_rates=(0.05, 0.025), batch=16, m=32, cycles=4, replicas=12, records=4),
}


def _phase_values(levels: tuple, phases: int) -> np.ndarray:
    """(a, b, a, b, …): phase j at levels[j mod 2]."""
    return np.asarray([levels[j % 2] for j in range(phases)], float)


def _boundaries(sizes: np.ndarray, phase_examples: int) -> np.ndarray:
    """Step boundaries of phases of ``phase_examples`` examples each at batch sizes ``sizes``."""
    return np.cumsum(phase_examples // sizes.astype(int))[:-1]


def configurations(base_rates, batch: int, m: int, cycles: int) -> list[dict]:
    """Per base rate the five configurations (LABELS) as piecewise-constant schedules of the
    SGD step with one boundary per phase (same number of boundaries for all: they stack into
    one schedule)."""
    phases, length = 2 * cycles, FACTOR * batch * m
    out = []
    for eta in base_rates:
        levels = {  # (η in phases A, B), (S in phases A, B): A is the high-noise phase
            "cyclic S": ((eta, eta), (batch, FACTOR * batch)),
            "cyclic η": ((eta, eta / FACTOR), (batch, batch)),
            "η/5, S": ((eta / FACTOR,) * 2, (batch, batch)),
            "η, 5S": ((eta, eta), (FACTOR * batch,) * 2),
            "η, S": ((eta, eta), (batch, batch)),
        }
        for label in LABELS:
            rates, sizes = levels[label]
            size_values = _phase_values(sizes, phases)
            bounds = _boundaries(size_values, length)
            out.append({"label": label, "base_rate": float(eta), "rates": _phase_values(rates, phases),
                        "sizes": size_values, "boundaries": bounds,
                        "steps": int(np.sum(length // size_values.astype(int))),
                        "ratio_low": float(rates[1] / sizes[1])})
    return out


def stacked_hyper(configs: list[dict]) -> sd.Hyper:
    """One Hyper of grid shape (G,) whose η and S are stacked piecewise-constant schedules."""
    lrs = sch.stack([sch.piecewise_constant(c["boundaries"], c["rates"]) for c in configs])
    sizes = sch.stack([sch.piecewise_constant(c["boundaries"], c["sizes"]) for c in configs])
    return sd.Hyper(lrs, sizes)


def examples_seen(config: dict, steps: np.ndarray) -> np.ndarray:
    """Examples processed after each number of steps (Σ S_k over the steps taken)."""
    steps = np.asarray(steps, int)
    phase = np.searchsorted(config["boundaries"], np.arange(int(steps.max(initial=0))), side="right")
    seen = np.concatenate([[0.0], np.cumsum(np.asarray(config["sizes"])[phase])])
    return seen[steps]


def equivalence_verdict(claim: str, difference: float, se: float, margin: float, z: float = 2.0) -> Verdict:
    """Equivalence within ±margin: confirmed when d ± z·se lies inside (−margin, margin),
    contradicted when it lies wholly outside it (|d| − z·se > margin), else not confirmed."""
    low, high = difference - z * se, difference + z * se
    if not (math.isfinite(low) and math.isfinite(high)):
        verdict = NOT_CONFIRMED
    elif -margin < low and high < margin:
        verdict = CONFIRMED
    elif abs(difference) - z * se > margin:
        verdict = CONTRADICTED
    else:
        verdict = NOT_CONFIRMED
    return Verdict(claim, "difference", float(difference), (float(low), float(high)), None, verdict,
                   f"difference = {100 * difference:+.2f} ± {100 * se:.2f} pp (se), {z:g}-se interval "
                   f"[{100 * low:+.2f}, {100 * high:+.2f}] vs margin ±{100 * margin:g} pp")


def run(*, data=None, data_format=None, quick: bool = False, seed: int = 0, out=".", progress: bool = True) -> dict:
    size = SIZES["quick" if quick else "default"]
    splits = tf.load_splits(data, data_format, seed=seed)
    problem = tf.make_problem(splits)
    configs = configurations(size["base_rates"], size["batch"], size["m"], size["cycles"])
    hyper = stacked_hyper(configs)
    num_steps = max(c["steps"] for c in configs)
    every = max(size["m"] // size["records"], 1)
    observers = [metrics.evaluation_curve("train", every, name="train"),
                 metrics.evaluation_curve(splits.test, every, name="test")]
    note(NAME, f"{len(configs)} configurations × {size['replicas']} replicas, {num_steps} steps, one program",
         enabled=progress)
    result = run_sweep(sweep_folder(out, NAME), jax.random.fold_in(jax.random.key(seed), 1), sd.sgd(tf.SAMPLING),
                       problem, hyper, problem.info["init_params"], num_steps, replicas=size["replicas"],
                       observers=observers, progress=progress, group_batch_sizes=False)
    times = np.asarray(result["train"]["times"]).reshape(len(configs), -1)[0].astype(int)  # SGD steps
    curves = []
    n = problem.num_examples
    for g, config in enumerate(configs):
        keep = times <= config["steps"]
        epochs = examples_seen(config, times[keep]) / n
        entry = {"label": config["label"], "base_rate": config["base_rate"], "steps": config["steps"],
                 "epochs": epochs}
        for split in ("train", "test"):
            for metric in ("accuracy", "loss"):
                values = np.asarray(result[split]["values"][metric][g])[keep]  # (T, R)
                entry[f"{split}_{metric}"] = values.mean(axis=1)
                entry[f"{split}_{metric}_se"] = values.std(axis=1, ddof=1) / math.sqrt(values.shape[1])
                entry[f"final_{split}_{metric}"] = values[-1]
        entry["diverged"] = int(np.sum(result.diverged[g]))
        curves.append(entry)

    verdicts, comparisons = [], []
    for eta in size["base_rates"]:
        by = {c["label"]: c for c in curves if c["base_rate"] == eta}
        d_cyc = paired_difference(by["cyclic S"]["final_test_accuracy"], by["cyclic η"]["final_test_accuracy"])
        d_con = paired_difference(by["η, 5S"]["final_test_accuracy"], by["η/5, S"]["final_test_accuracy"])
        cyclic_mean = 0.5 * (by["cyclic S"]["final_test_accuracy"] + by["cyclic η"]["final_test_accuracy"])
        d_diff = paired_difference(cyclic_mean, by["η/5, S"]["final_test_accuracy"])
        # the curves: largest |difference of means| over the common records (in examples)
        # (the records of cyclic S fall on examples where cyclic η also has one: np.interp is exact there)
        a, b = by["cyclic S"], by["cyclic η"]
        gap = float(np.max(np.abs(a["test_accuracy"] - np.interp(a["epochs"], b["epochs"], b["test_accuracy"]))))
        comparisons.append({"base_rate": eta, "cyclic_S_minus_cyclic_eta": d_cyc, "constant_pair": d_con,
                            "cyclic_minus_low_constant": d_diff, "max_curve_gap_cyclic": gap})
    # the verdicts pool the paired differences of every base rate (replicas × base rates)
    final = lambda label: np.concatenate([c["final_test_accuracy"] for c in curves if c["label"] == label])
    pooled = {"cyclic_S_minus_cyclic_eta": paired_difference(final("cyclic S"), final("cyclic η")),
              "constant_pair": paired_difference(final("η, 5S"), final("η/5, S")),
              "cyclic_minus_low_constant": paired_difference(0.5 * (final("cyclic S") + final("cyclic η")), final("η/5, S"))}
    rates = ", ".join(number(eta, 3) for eta in size["base_rates"])
    verdicts.append(equivalence_verdict(
        f"A cyclic batch size and a cyclic learning rate with the same η/S at all times reach the same test "
        f"accuracy (paired over replicas and η_h = {rates}; equivalence margin ±{100 * MARGIN:g} pp)",
        *pooled["cyclic_S_minus_cyclic_eta"], MARGIN))
    verdicts.append(equivalence_verdict(
        f"The constant pair η/S = (η_h/5)/S₀ = η_h/(5S₀) reaches the same test accuracy "
        f"(margin ±{100 * MARGIN:g} pp)",
        *pooled["constant_pair"], MARGIN))
    mean, se = pooled["cyclic_minus_low_constant"]
    verdicts.append(difference_verdict(
        "The cyclic schedules differ from (generalise better than) the constant schedule at the cycles' low "
        "η/S (paired difference of test accuracy)", mean, se, 0.0, 0.0, +1))
    return {"sizes": size, "num_steps": num_steps, "num_examples": n, "margin": MARGIN, "curves": curves,
            "comparisons": comparisons, "pooled": pooled, "verdicts": verdicts}


def table(results: dict) -> str:
    lines = [f"{'η_h':>6} {'schedule':<10} {'epochs':>6} {'train acc':>16} {'test acc':>16} {'test loss':>16}"]
    for c in results["curves"]:
        acc = np.asarray(c["final_train_accuracy"]), np.asarray(c["final_test_accuracy"])
        loss = np.asarray(c["final_test_loss"])
        se = lambda x: x.std(ddof=1) / math.sqrt(x.size)
        lines.append(f"{c['base_rate']:>6.3g} {c['label']:<10} {np.asarray(c['epochs'])[-1]:>6.1f} "
                     f"{acc[0].mean():>8.4f} ± {se(acc[0]):.4f} {acc[1].mean():>8.4f} ± {se(acc[1]):.4f} "
                     f"{loss.mean():>8.4f} ± {se(loss):.4f}")
    for comp in results["comparisons"]:
        d, s = comp["cyclic_S_minus_cyclic_eta"]
        lines.append(f"η_h = {comp['base_rate']:g}: cyclic S − cyclic η = {100 * d:+.2f} ± {100 * s:.2f} pp; "
                     f"largest curve gap {100 * comp['max_curve_gap_cyclic']:.2f} pp")
    return "\n".join(lines)


COLOURS = {"cyclic S": "tab:blue", "cyclic η": "tab:red", "η/5, S": "tab:green", "η, 5S": "tab:orange",
           "η, S": "tab:gray"}
STYLES = {"cyclic S": "-", "cyclic η": "--", "η/5, S": "-", "η, 5S": "--", "η, S": ":"}
LEGEND = {"cyclic S": "cyclic S: η_h; S₀ ↔ 5S₀", "cyclic η": "cyclic η: η_h ↔ η_h/5; S₀",
          "η/5, S": "constant η_h/5, S₀", "η, 5S": "constant η_h, 5S₀", "η, S": "constant η_h, S₀"}


@styled
def plot(results: dict):
    rates = sorted({c["base_rate"] for c in results["curves"]}, reverse=True)
    fig, axes = figure(len(rates), 3, panel=(4.2, 3.2), squeeze=False)
    for row, eta in enumerate(rates):
        for c in (c for c in results["curves"] if c["base_rate"] == eta):
            epochs = np.asarray(c["epochs"])
            kw = dict(color=COLOURS[c["label"]], linestyle=STYLES[c["label"]], lw=1.3)
            axes[row, 0].plot(epochs, c["train_accuracy"], label=LEGEND[c["label"]], **kw)
            axes[row, 1].plot(epochs, c["test_accuracy"], label=LEGEND[c["label"]], **kw)
            axes[row, 2].plot(epochs, c["test_loss"], label=LEGEND[c["label"]], **kw)
        for ax, title in zip(axes[row], ("train accuracy", "test accuracy", "test loss")):
            ax.set_title(f"{title}, η_h = {number(eta, 3)}")
            ax.set_xlabel("epochs (examples seen / N)")
        axes[row, 2].legend(title=f"S₀ = {results['sizes']['batch']}, phases of "
                                  f"{FACTOR * results['sizes']['batch'] * results['sizes']['m']} examples", fontsize=8)
    return fig


EXPERIMENTS = (
    Experiment(
        name=NAME, label="d", paper=f"{tf.PAPER}, §4.2 Fig. 4, appendix F.4",
        claim="A cyclic batch-size schedule can replace a cyclic learning-rate schedule with the same η/S at all "
              "times: their train and test curves coincide.",
        run=run, table=table, plot=plot, default_runtime="92 s on 2 shared, busy cores (load 8–9)",
    ),
)
