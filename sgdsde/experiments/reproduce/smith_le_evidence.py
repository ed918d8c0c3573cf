"""Smith & Le (2018): the Bayesian evidence tells real labels from random ones (i).

Zhang et al.'s memorisation puzzle on a small linear model: a logistic regression with as
many parameters as training examples fits real labels and random labels of the same
inputs equally well (training accuracy 100 %, training loss near 0), yet only the real
labels generalise. The Laplace evidence

    log p(y) ≈ −C(ω₀) − ½ log det(∇²C(ω₀)/λ),   C(ω) = −log p(y | ω) + (λ/2)‖ω‖²,

(prior N(0, λ⁻¹I), :func:`sgdsde.landscape.logistic_regression_log_evidence`, dense log
det) penalises the sharp, large-norm random-label solution, so the evidence per example
is higher for real labels.

Setup: two classes of the built-in digits (0 and 1 by default; ``pair``), a training set
of N = 32 images (64 pixels and an intercept, d = 65; the pixels of the two classes
span about 50 dimensions, more than N, so any labelling is linearly separable), the two
classes' test images as the test set (scored against their real labels). Random labels:
a random permutation of the real ones (the same class balance). Each seed draws a new training subset and a new permutation. The evidence is
computed for a grid of prior precisions λ (Smith & Le plot against the regularisation);
the verdict uses λ = ``headline`` (prior variance 1/λ stated in the table): the paired
difference of log evidence per example (real − random) over the seeds, its mean and
standard error (:func:`~._verdict.difference_verdict` with the random side folded into
the paired difference).

Network version (new): an MLP (one hidden tanh layer) trained on the same N images with
real and with random labels by full-batch gradient descent (``sd.sgd`` with S = N)
on the Laplace cost (weight decay λ/(2N), the prior), through resumable sweeps (one per
seed and labelling, ``out/smith-le-evidence-sweeps/``); its evidence by
:func:`sgdsde.landscape.network_log_evidence` with the Gauss–Newton curvature (positive
definite by construction; the SLQ standard error is reported). G has rank at most N·(K − 1)
= 32 (one logit direction per example), so G + λI has at most 33 distinct eigenvalues and
40 Lanczos steps make each probe's Gauss quadrature exact: only the probes' Monte-Carlo
error remains. The verdict is the same paired difference, its standard error combining
the spread over seeds and the SLQ errors.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sgdsde as sd
from ... import nn as snn
from ..._progress import note
from ...landscape import evidence as ev_lib
from ...plotting import figure, number, plain_log_ticks, styled
from ...sweep import run_sweep
from ..sde_check import load_data
from . import Experiment, sweep_folder
from ._verdict import difference_verdict, mean_stderr

__all__ = ["EXPERIMENTS", "run", "table", "plot"]

NAME = "smith-le-evidence"
SIZES = {
    False: {"pair": (0, 1), "N": 32, "seeds": 8, "precisions": (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
            "headline": 0.001, "net_seeds": 4, "hidden": 32, "net_precision": 0.1, "net_steps": 10000,
            "net_learning_rate": 0.2,
            "probes": 10, "lanczos_steps": 40},
    True: {"pair": (0, 1), "N": 32, "seeds": 4, "precisions": (0.001, 0.01, 0.1, 1.0), "headline": 0.001,
           "net_seeds": 2, "hidden": 16, "net_precision": 0.1, "net_steps": 1500, "net_learning_rate": 0.5,
           "probes": 6, "lanczos_steps": 40},
}


# --------------------------------------------------------------------- data
def _pair(splits, pair):
    """(x_train, y_train, x_test, y_test) of two classes, inputs flattened, labels 0/1."""
    out = []
    for ds in (splits.train, splits.test):
        keep = np.isin(ds.y, pair)
        x = np.asarray(ds.x, np.float64)[keep].reshape(int(keep.sum()), -1)
        out += [x, (np.asarray(ds.y)[keep] == pair[1]).astype(np.float64)]
    return out


def _with_intercept(x):
    return np.column_stack([np.ones(len(x)), x])


# --------------------------------------------------------------------- logistic regression
def _logistic(x, y, x_test, y_test, precisions) -> dict:
    """Evidence per example, training accuracy and loss per example, test accuracy, ‖ω₀‖ per λ."""
    rows = {k: [] for k in ("evidence", "train_accuracy", "train_loss", "test_accuracy", "norm", "log_det")}
    design, test_design = _with_intercept(x), _with_intercept(x_test)
    n = len(y)
    for lam in precisions:
        ev = ev_lib.logistic_regression_log_evidence(design, y, lam)
        w = np.asarray(ev.minimum)
        logits = design @ w
        rows["evidence"].append(ev.log_evidence / n)
        rows["train_accuracy"].append(np.mean((logits > 0) == (y == 1)))
        rows["train_loss"].append(np.mean(np.logaddexp(0, -(2 * y - 1) * logits)))
        rows["test_accuracy"].append(np.mean((test_design @ w > 0) == (y_test == 1)))
        rows["norm"].append(float(np.linalg.norm(w)))
        rows["log_det"].append(ev.log_det)
    return {k: np.asarray(v) for k, v in rows.items()}


# --------------------------------------------------------------------- network
class _NetLoss:
    """Per-example cross-entropy of a 2-class MLP with ``hidden`` tanh units; equal for equal
    widths, so every labelling shares one compiled program."""

    def __init__(self, hidden: int):
        self.hidden = int(hidden)
        self.model = snn.MLP(2, hidden=(self.hidden,), activation=jnp.tanh)

    def __eq__(self, other):
        return isinstance(other, _NetLoss) and other.hidden == self.hidden

    def __hash__(self):
        return hash(("smith-le-evidence-mlp", self.hidden))

    def logits(self, params, x):
        return self.model.apply(params, x)

    def __call__(self, params, example):
        logits = self.model.apply(params, example["x"][None])[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, example["y"])


class _WeightDecay:
    """τ‖ω‖² (the prior as weight decay, τ = λ/(2N)); equal for equal τ."""

    def __init__(self, tau: float):
        self.tau = float(tau)

    def __eq__(self, other):
        return isinstance(other, _WeightDecay) and other.tau == self.tau

    def __hash__(self):
        return hash(("smith-le-evidence-decay", self.tau))

    def __call__(self, params):
        return self.tau * sum(jnp.sum(leaf * leaf) for leaf in jax.tree_util.tree_leaves(params))


def _network(out, key, loss: _NetLoss, info: dict, x, y, x_test, y_test, size, tag: str, progress: bool) -> dict:
    n = len(y)
    lam = size["net_precision"]
    data = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.int32)}
    problem = sd.Problem(loss, data, _WeightDecay(lam / (2 * n)), info=info)
    init = loss.model.init(jax.random.fold_in(key, 0), data["x"][:1])
    result = run_sweep(sweep_folder(out, NAME, tag), key, sd.sgd("iid"), problem,
                       sd.Hyper(size["net_learning_rate"], n), init, size["net_steps"], replicas=1,
                       keep_state=True, progress=progress)
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(v)[0], result.state["params"])
    evidence = ev_lib.network_log_evidence(problem, params, lam, key=jax.random.fold_in(key, 1),
                                           curvature="gauss_newton", num_probes=size["probes"],
                                           num_steps=size["lanczos_steps"])
    train_logits = loss.logits(params, data["x"])
    test_logits = loss.logits(params, jnp.asarray(x_test, jnp.float32))
    return {"evidence": evidence.log_evidence / n, "evidence_se": evidence.log_evidence_stderr / n,
            "train_accuracy": float(jnp.mean(jnp.argmax(train_logits, -1) == data["y"])),
            "train_loss": float(problem.data_loss(params)),
            "test_accuracy": float(jnp.mean(jnp.argmax(test_logits, -1) == jnp.asarray(y_test, jnp.int32))),
            "gradient_norm": evidence.gradient_norm, "log_det": evidence.log_det,
            "diverged": bool(np.any(result.diverged))}


# --------------------------------------------------------------------- the experiment
def _paired(claim: str, real, random, se_extra=None):
    diff = np.asarray(real, float) - np.asarray(random, float)
    k = diff.size
    se = diff.std(ddof=1) / math.sqrt(k) if k > 1 else math.inf
    if se_extra is not None:  # the SLQ error of each seed's difference, averaged
        se = math.hypot(se, math.sqrt(np.sum(np.asarray(se_extra, float) ** 2)) / k)
    return difference_verdict(claim, float(diff.mean()), se, 0.0, 0.0, expected_sign=+1)


def run(*, data=None, data_format=None, quick=False, seed=0, out=".", progress=True) -> dict:
    size = SIZES[bool(quick)]
    key = jax.random.key(seed)
    splits = load_data(data, data_format, key=jax.random.fold_in(key, 0))
    x_all, y_all, x_test, y_test = _pair(splits, size["pair"])
    n = size["N"]
    if len(y_all) < n:
        raise ValueError(f"data: the pair {size['pair']} has only {len(y_all)} training examples, need {n}")
    precisions = np.asarray(size["precisions"], float)
    began = time.perf_counter()
    note(NAME, f"logistic regression, digits {size['pair']}, N = {n}, d = {x_all.shape[1] + 1}, "
               f"{size['seeds']} seeds × {len(precisions)} prior precisions", enabled=progress)
    logistic = {"real": [], "random": []}
    nets = {"real": [], "random": []}
    loss = _NetLoss(size["hidden"])
    info = {"logits": loss.logits, "num_classes": 2, "batch_norm": False}
    for s in range(size["seeds"]):
        rng = np.random.default_rng([seed, s])
        chosen = np.sort(rng.choice(len(y_all), n, replace=False))
        x, y = x_all[chosen], y_all[chosen]
        labels = {"real": y, "random": rng.permutation(y)}
        with jax.enable_x64(True):
            for name, lab in labels.items():
                logistic[name].append(_logistic(x, lab, x_test, y_test, precisions))
        if s < size["net_seeds"]:
            note(NAME, f"network, seed {s}: real and random labels", enabled=progress)
            for name, lab in labels.items():
                nets[name].append(_network(out, jax.random.fold_in(key, 100 + s), loss, info, x, lab, x_test, y_test,
                                           size, f"seed{s}-{name}", progress))
    stack = lambda rows, field: np.stack([r[field] for r in rows])  # (seeds, λ)
    fields = ("evidence", "train_accuracy", "train_loss", "test_accuracy", "norm", "log_det")
    lr = {name: {f: stack(rows, f) for f in fields} for name, rows in logistic.items()}
    head = int(np.argmin(np.abs(precisions - size["headline"])))
    net = {name: {f: np.array([r[f] for r in rows]) for f in rows[0]} for name, rows in nets.items()}
    verdicts = [
        _paired(f"logistic regression (prior variance {number(1 / precisions[head], 3)}): the log evidence per example "
                "is higher for real labels than for random labels of the same inputs",
                lr["real"]["evidence"][:, head], lr["random"]["evidence"][:, head]),
        _paired(f"MLP ({size['hidden']} tanh units, prior variance {number(1 / size['net_precision'], 3)}, SLQ "
                "Gauss-Newton log det): the log evidence per example is higher for real labels",
                net["real"]["evidence"], net["random"]["evidence"],
                se_extra=np.hypot(net["real"]["evidence_se"], net["random"]["evidence_se"])),
    ]
    return {
        "setup": {"data": splits.train.name, "pair": list(size["pair"]), "N": n, "d": int(x_all.shape[1] + 1),
                  "n_test": int(len(y_test)), "seeds": size["seeds"], "headline_precision": float(precisions[head]),
                  "random_labels": "a random permutation of the real labels",
                  "network": {"hidden": size["hidden"], "activation": "tanh", "precision": size["net_precision"],
                              "steps": size["net_steps"], "learning_rate": size["net_learning_rate"],
                              "batch_size": n, "seeds": size["net_seeds"], "slq_probes": size["probes"],
                              "lanczos_steps": size["lanczos_steps"], "curvature": "gauss_newton"}},
        "precisions": precisions, "logistic": lr, "network": net,
        "seconds": time.perf_counter() - began, "verdicts": verdicts,
    }


def _ms(a):
    return mean_stderr(a, axis=0)


def table(results: dict) -> str:
    s = results["setup"]
    lines = [f"digits {s['pair'][0]} vs {s['pair'][1]}: N = {s['N']} training images, d = {s['d']}, "
             f"{s['n_test']} test images, {s['seeds']} seeds (mean over seeds)",
             f"{'model':8s} {'labels':7s} {'λ':>6s} {'train acc':>9s} {'train loss':>10s} {'test acc':>8s} "
             f"{'log ev/N':>9s} {'± se':>7s}"]
    lr = results["logistic"]
    for k, lam in enumerate(results["precisions"]):
        for name in ("real", "random"):
            r = lr[name]
            ev_m, ev_s = _ms(r["evidence"])
            lines.append(f"{'logistic':8s} {name:7s} {lam:6.3g} {np.mean(r['train_accuracy'][:, k]):9.3f} "
                         f"{np.mean(r['train_loss'][:, k]):10.4f} {np.mean(r['test_accuracy'][:, k]):8.3f} "
                         f"{ev_m[k]:9.4f} {ev_s[k]:7.4f}")
    net = results["network"]
    lam = s["network"]["precision"]
    for name in ("real", "random"):
        r = net[name]
        ev = np.asarray(r["evidence"], float)
        se = ev.std(ddof=1) / math.sqrt(ev.size) if ev.size > 1 else float(np.mean(r["evidence_se"]))
        lines.append(f"{'MLP':8s} {name:7s} {lam:6.3g} {np.mean(r['train_accuracy']):9.3f} "
                     f"{np.mean(r['train_loss']):10.4f} {np.mean(r['test_accuracy']):8.3f} {ev.mean():9.4f} {se:7.4f}")
    return "\n".join(lines)


@styled
def plot(results: dict):
    fig, ax = figure(1, 3, panel=(4.6, 4.0))
    lam = np.asarray(results["precisions"], float)
    lr = results["logistic"]
    for name, color in (("real", "C0"), ("random", "C3")):
        m, se = _ms(lr[name]["evidence"])
        ax[0].errorbar(lam, m, yerr=se, fmt="o-", color=color, capsize=3, label=f"{name} labels")
        for field, style, text in (("train_accuracy", "s--", "train"), ("test_accuracy", "o-", "test")):
            ax[1].plot(lam, np.mean(lr[name][field], 0), style, color=color, ms=4, label=f"{name} labels, {text}")
    head = results["setup"]["headline_precision"]
    ax[0].axvline(head, color="0.5", ls=":", lw=1, label=f"verdict at λ = {number(head, 3)}")
    ax[0].set(xscale="log", xlabel="prior precision λ", ylabel="log evidence per example (mean ± se)",
              title="logistic regression: evidence")
    ax[1].set(xscale="log", xlabel="prior precision λ", ylabel="accuracy", title="logistic regression: accuracy",
              ylim=(0.3, 1.03))
    for a in ax[:2]:
        plain_log_ticks(a.xaxis)
    ax[0].legend(loc="center left")
    ax[1].legend(loc="lower right", fontsize=8)
    net = results["network"]
    for k, name in enumerate(("real", "random")):
        ev = np.asarray(net[name]["evidence"], float)
        se = np.asarray(net[name]["evidence_se"], float)
        ax[2].errorbar(np.full(ev.size, k) + np.linspace(-0.1, 0.1, ev.size), ev, yerr=se, fmt="o",
                       color=("C0", "C3")[k], capsize=3, label=f"{name} labels (± SLQ se)")
    ax[2].set_xticks([0, 1], ["real", "random"])
    ax[2].set_xlim(-0.6, 1.6)
    v = results["verdicts"][1]
    ax[2].set(ylabel="log evidence per example", title=f"MLP, SLQ log det: {v['verdict']}")
    ax[2].legend(loc="best")
    return fig


EXPERIMENTS = (
    Experiment(
        name=NAME, label="i", paper="Smith & Le (2018): random against real labels on a small linear model",
        claim="a model that fits both real and random labels has a higher Bayesian evidence for the real labels",
        run=run, table=table, plot=plot, default_runtime="47 s on 2 shared, busy CPU cores (load ≈ 7-9)"),
)
