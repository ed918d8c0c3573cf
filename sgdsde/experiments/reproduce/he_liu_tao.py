"""He, Liu & Tao (NeurIPS 2019): test accuracy falls as the ratio S/η of batch size to
learning rate grows (docs/reproductions.md, "He, Liu & Tao").

The paper trains 1,600 networks (ResNet-110 and VGG-19 on CIFAR-10 and CIFAR-100) over a
20 × 20 grid, S ∈ {16, 32, …, 320} and η ∈ {0.01, 0.02, …, 0.20}, plain SGD (no momentum,
constant η and S), **200 epochs for every configuration**, and takes each network's best
test accuracy over the epochs. Spearman's ρ between test accuracy and S/η over the 400
networks of each architecture and data set is −0.94 to −0.98 (p < 10⁻¹⁷⁹); the paper's
significance level is p < 0.005.

Here: an MLP (64-32-10, ReLU) on the built-in 8 × 8 digits (or a ``--data`` folder),
``sgd("iid")``, the same grid (3 × 3 with ``quick``), one replica, each configuration
trained under two budgets, both through resumable sweeps (:func:`sgdsde.sweep.run_sweep`):

- **equal epochs** (the paper's protocol, the main verdict): every configuration sees
  E = 200 epochs (8 with ``quick``), i.e. round(E·N/S) steps, so a small batch trains
  more steps. One sweep per batch size (``sweep_folder(out, name, "epochs-S016")``, …),
  each one compiled program over the learning rates, run for that batch size's own
  number of steps.
- **fixed steps** (the budget of ``examples/batch_size_learning_rate.py``): T = 1000
  steps (200 with ``quick``) for every configuration, so S = 320 sees 20× the epochs of
  S = 16; one sweep (``"steps"``) masked at the largest S: one compiled program.

Measured for every configuration: the test accuracy at the end and the best over the run
(the paper's measure; a record about once per epoch, or every T/20 steps, and the end),
the train accuracy at the end (the under-training control: the paper's networks all fit
their training sets, ours need not at large S/η), and the generalisation gap train −
test accuracy. Statistics: Spearman ρ of each against S/η (against η/S the same |ρ| with
the other sign: ranks reverse), over all configurations and over the *fitted* ones (train
accuracy ≥ 0.99) only. Verdicts (:func:`~._verdict.correlation_verdict`, α = 0.005 like
the paper): ρ(best test accuracy, S/η) < 0 under equal epochs over all configurations and
over the fitted ones, ρ(end test accuracy, S/η) < 0 over the fitted ones, ρ(gap, S/η) > 0
(the paper's bound is a bound on the gap), and ρ(best test accuracy, S/η) < 0 under fixed
steps.
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
from scipy import stats

from ..._progress import Progress, note
from ...hyper import Hyper
from ...nn import MLP, classification_problem
from ...nn import metrics
from ...plotting import figure, number, plain_log_ticks, styled
from ...steppers import sgd
from ...sweep import run_sweep
from . import Experiment, sweep_folder
from ._verdict import correlation_verdict

__all__ = ["EXPERIMENTS", "NAME", "DEFAULTS", "QUICK", "PAPER", "grid_values", "problem_for", "epoch_steps",
           "train_grid", "spearman", "correlations", "he_liu_tao", "run", "table", "plot", "draw_heatmap",
           "draw_accuracy"]

NAME = "he-liu-tao"
HIDDEN = (64, 32)
SAMPLING = "iid"
FITTED = 0.99  # train accuracy of a "fitted" configuration (the under-training control)
ALPHA = 0.005  # the paper's significance level
FIXED_STEP_RECORDS = 20  # test-accuracy records of a fixed-steps run (T a multiple of this)
BUDGETS = ("epochs", "steps")
BUDGET_TITLES = {"epochs": "equal epochs", "steps": "fixed steps"}
DEFAULTS = {"grid_size": 20, "epochs": 200, "steps": 1000, "replicas": 1}
QUICK = {"grid_size": 3, "epochs": 8, "steps": 200, "replicas": 1}

# the paper's Table 3: Spearman ρ of test accuracy with S/η over 400 networks each (200
# epochs, best test accuracy over the epochs); the signs are negative (the abstract, and
# its Figure 1: accuracy falls with S/η)
PAPER = {
    "protocol": "20 × 20 grid S ∈ {16, …, 320}, η ∈ {0.01, …, 0.20}; plain SGD; 200 epochs each; best test "
                "accuracy over the epochs; Spearman ρ over the 400 networks of each architecture and data set",
    "spearman_test_accuracy_vs_S_over_eta": {"rho_range": [-0.98, -0.94], "p_range": [5.3e-293, 6.1e-180],
                                             "n": 400, "significance": ALPHA},
    "networks": ["ResNet-110 on CIFAR-10", "ResNet-110 on CIFAR-100", "VGG-19 on CIFAR-10", "VGG-19 on CIFAR-100"],
}


def grid_values(grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """n learning rates in {0.01, …, 0.20} and n batch sizes in {16, …, 320}, evenly
    spread (n = 20: the paper's grid)."""
    if not (isinstance(grid_size, (int, np.integer)) and 2 <= grid_size <= 20):
        raise ValueError(f"grid_size: must be an integer in [2, 20], got {grid_size!r}")
    steps = np.unique(np.round(np.linspace(1, 20, grid_size)).astype(int))
    return 0.01 * steps, 16 * steps


def epoch_steps(epochs: int, num_examples: int, batch_size: int) -> tuple[int, int]:
    """(steps, record interval) of ``epochs`` epochs at batch size S: round(E·N/S) steps,
    a test record every round(N/S) steps (about one per epoch)."""
    return max(1, round(epochs * num_examples / batch_size)), max(1, round(num_examples / batch_size))


def _final_metrics(problem, splits):
    """A jitted function of params (leaves (G, …)) → train and test accuracy and test loss
    (G,): one compilation for every group of the same width."""
    one = lambda p: (metrics.evaluate(problem, p, splits.train)["accuracy"], metrics.evaluate(problem, p, splits.test))
    return jax.jit(jax.vmap(one))


def _summaries(curve_result, params, evaluate) -> dict:
    """(n_η, R) arrays of one batch size: final test accuracy and loss (from the final
    params), best test accuracy (over the records and the end), final train accuracy.
    ``curve_result``: the test_curve observation (…, T, R); ``params``: leaves (n_η, R, …)."""
    shape = np.shape(curve_result["values"]["accuracy"])
    lead = shape[:-2] + shape[-1:]  # (n_η, R)
    flat = jax.tree_util.tree_map(lambda x: np.reshape(x, (-1,) + np.shape(x)[len(lead):]), params)
    train, test = evaluate(flat)
    end = np.asarray(test["accuracy"]).reshape(lead)
    curve = np.asarray(curve_result["values"]["accuracy"])
    return {"test_accuracy": end, "test_accuracy_best": np.maximum(curve.max(axis=-2), end),
            "train_accuracy": np.asarray(train).reshape(lead), "test_loss": np.asarray(test["loss"]).reshape(lead)}


def problem_for(splits):
    """The classification problem of the MLP on ``splits.train``."""
    return classification_problem(MLP(splits.train.num_classes, hidden=HIDDEN), splits.train)


def train_grid(splits, learning_rates, batch_sizes, *, budget: str, epochs: int = 40, steps: int = 1000,
               replicas: int = 1, key, out, name: str = NAME, keep_params: bool = False,
               progress: bool = True, label: str | None = None) -> dict:
    """Train the MLP on ``splits.train`` for every (η, S) of the grid under ``budget``
    ("epochs": ``epochs`` epochs each, one sweep per batch size run at its own S for its
    own round(E·N/S) steps; "steps": ``steps`` steps each, one sweep masked at the largest
    S: one compiled program), resumable under ``sweep_folder(out, name, …)``. Returns
    arrays (n_η, n_S, R): ``test_accuracy``, ``test_accuracy_best`` (over the records and
    the end), ``train_accuracy``, ``test_loss``, ``diverged``; ``steps`` and ``epochs``
    per batch size; ``seconds``; with ``keep_params``, ``params`` (leaves (n_η, n_S, R, …)).
    ``label``: of the progress line (default ``sgdsde reproduce <name>``)."""
    if budget not in BUDGETS:
        raise ValueError(f"budget: must be one of {BUDGETS}, got {budget!r}")
    problem = problem_for(splits)
    init, stepper, evaluate = problem.info["init_params"], sgd(SAMPLING), _final_metrics(problem, splits)
    n = splits.train.num_examples
    learning_rates, batch_sizes = np.asarray(learning_rates, float), np.asarray(batch_sizes, int)
    total = learning_rates.size * batch_sizes.size
    label = f"{label or f'sgdsde reproduce {name}'} [{BUDGET_TITLES[budget]}]"
    meter = Progress(label, total, "configurations", enabled=progress)
    shown = [-1]

    def show(done: int) -> None:
        if done != shown[0]:
            shown[0] = done
            meter.update(done)

    began = time.perf_counter()
    columns, params = [], []
    if budget == "steps":
        if steps % FIXED_STEP_RECORDS:
            raise ValueError(f"steps: must be a multiple of {FIXED_STEP_RECORDS}, got {steps}")
        result = run_sweep(sweep_folder(out, name, "steps"), key, stepper, problem,
                           Hyper.grid(learning_rates, batch_sizes), init, steps, replicas=replicas,
                           observers=[metrics.evaluation_curve(splits.test, steps // FIXED_STEP_RECORDS,
                                                               name="test_curve")],
                           keep_state=True, group_batch_sizes=False,
                           progress=(lambda p: show(p.done)) if progress else False)
        counts = np.full(batch_sizes.shape, steps)
        for j in range(batch_sizes.size):
            column = jax.tree_util.tree_map(lambda x: np.asarray(x)[:, j], result.state["params"])
            curve = {"values": {k: np.asarray(v)[:, j] for k, v in result["test_curve"]["values"].items()}}
            columns.append(_summaries(curve, column, evaluate) | {"diverged": np.asarray(result.diverged)[:, j]})
            params.append(column)
    else:
        counts = []
        for j, size in enumerate(batch_sizes):
            num_steps, every = epoch_steps(epochs, n, int(size))
            counts.append(num_steps)
            result = run_sweep(sweep_folder(out, name, f"epochs-S{int(size):03d}"), key, stepper, problem,
                               Hyper.grid(learning_rates, int(size)), init, num_steps, replicas=replicas,
                               observers=[metrics.evaluation_curve(splits.test, every, name="test_curve")],
                               keep_state=True, configs_per_chunk=learning_rates.size,
                               progress=(lambda p, j=j: show(j * learning_rates.size + p.done))
                               if progress else False)
            columns.append(_summaries(result.observations["test_curve"], result.state["params"], evaluate)
                           | {"diverged": np.asarray(result.diverged)})
            params.append(result.state["params"])
        counts = np.asarray(counts)
    show(total)
    grid = {k: np.stack([c[k] for c in columns], axis=1) for k in columns[0]}  # (n_η, n_S, R)
    grid |= {"steps": counts, "epochs": counts * batch_sizes / n, "seconds": time.perf_counter() - began}
    if keep_params:
        grid["params"] = jax.tree_util.tree_map(lambda *a: np.stack(a, axis=1), *params)
    return grid


def spearman(x, y) -> dict:
    """Spearman ρ, two-sided p and n of the finite pairs (ρ = NaN below 3 pairs or for a
    constant sample)."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": math.nan, "p_value": math.nan, "n": int(x.size)}
    res = stats.spearmanr(x, y)
    return {"rho": float(res.statistic), "p_value": float(res.pvalue), "n": int(x.size)}


def _means(learning_rates, batch_sizes, grid: dict) -> dict:
    """Means over replicas (n_η, n_S), S/η, and the kept (no diverged replica) and fitted
    masks."""
    ratio = np.asarray(batch_sizes, float)[None, :] / np.asarray(learning_rates, float)[:, None]
    mean = {k: np.asarray(grid[k], float).mean(-1)
            for k in ("test_accuracy", "test_accuracy_best", "train_accuracy", "test_loss")}
    keep = np.isfinite(mean["test_accuracy"]) & ~np.asarray(grid["diverged"]).any(-1)
    return {"ratio": ratio, **mean, "gap": mean["train_accuracy"] - mean["test_accuracy"], "keep": keep,
            "fitted": keep & (mean["train_accuracy"] >= FITTED)}


def correlations(learning_rates, batch_sizes, grid: dict) -> dict:
    """Spearman ρ over the grid's configurations (means over replicas), leaving out those
    with a diverged replica: test accuracy (final and best) against S/η and η/S, the
    generalisation gap and the train accuracy against S/η, and (``…_fitted``) the test
    accuracy and gap over the fitted configurations only (train accuracy ≥ 0.99)."""
    m = _means(learning_rates, batch_sizes, grid)
    r, k, f = m["ratio"], m["keep"], m["fitted"]
    return {
        "test_accuracy_vs_S_over_eta": spearman(r[k], m["test_accuracy"][k]),
        "test_accuracy_vs_eta_over_S": spearman(1 / r[k], m["test_accuracy"][k]),
        "best_test_accuracy_vs_S_over_eta": spearman(r[k], m["test_accuracy_best"][k]),
        "best_test_accuracy_vs_eta_over_S": spearman(1 / r[k], m["test_accuracy_best"][k]),
        "generalization_gap_vs_S_over_eta": spearman(r[k], m["gap"][k]),
        "train_accuracy_vs_S_over_eta": spearman(r[k], m["train_accuracy"][k]),
        "test_accuracy_vs_S_over_eta_fitted": spearman(r[f], m["test_accuracy"][f]),
        "best_test_accuracy_vs_S_over_eta_fitted": spearman(r[f], m["test_accuracy_best"][f]),
        "generalization_gap_vs_S_over_eta_fitted": spearman(r[f], m["gap"][f]),
    }


def _verdicts(results: dict) -> list:
    """The paper's claim, ρ(test accuracy, S/η) < 0 at p < 0.005, under each budget, with
    the under-training controls, and the generalisation gap."""
    eta, size = results["learning_rates"], results["batch_sizes"]
    claim = "test accuracy (the best over the run, the paper's measure) falls as S/η grows: ρ < 0, p < 0.005"
    verdicts = []
    for budget, grid in results["budgets"].items():
        m = _means(eta, size, grid)
        r, k, f = m["ratio"], m["keep"], m["fitted"]
        title = BUDGET_TITLES[budget]
        verdicts.append(correlation_verdict(f"{claim} ({title}, all configurations)", r[k],
                                            m["test_accuracy_best"][k], -1, alpha=ALPHA))
        if budget == "epochs":
            verdicts += [
                correlation_verdict(f"{claim} ({title}, fitted configurations only: train accuracy ≥ {FITTED})",
                                    r[f], m["test_accuracy_best"][f], -1, alpha=ALPHA),
                correlation_verdict(f"test accuracy at the end of training falls as S/η grows: ρ < 0, p < 0.005 "
                                    f"({title}, fitted configurations only)", r[f], m["test_accuracy"][f], -1,
                                    alpha=ALPHA),
                correlation_verdict(f"the generalisation gap (train − test accuracy at the end) grows with S/η: "
                                    f"ρ > 0, p < 0.005 ({title}, all configurations)", r[k], m["gap"][k], +1,
                                    alpha=ALPHA)]
    return verdicts


def he_liu_tao(*, out, data=None, data_format: str | None = None, grid_size: int = DEFAULTS["grid_size"],
               epochs: int = DEFAULTS["epochs"], steps: int = DEFAULTS["steps"],
               replicas: int = DEFAULTS["replicas"], budgets=BUDGETS, seed: int = 0,
               train_examples: int | None = None, progress: bool = True) -> dict:
    """The He–Liu–Tao grid under each of ``budgets`` ("epochs", "steps"); every number,
    with ``"verdicts"`` (module docstring)."""
    from ..sde_check import load_data

    budgets = tuple(budgets)
    if not budgets or any(b not in BUDGETS for b in budgets):
        raise ValueError(f"budgets: must be a non-empty subset of {BUDGETS}, got {budgets!r}")
    key = jax.random.key(seed)
    splits = load_data(data, data_format, key=jax.random.fold_in(key, 0), train_examples=train_examples)
    learning_rates, batch_sizes = grid_values(grid_size)
    note(f"sgdsde reproduce {NAME}", f"{learning_rates.size} × {batch_sizes.size} grid (η × S) on "
         f"{splits.train.name} (N = {splits.train.num_examples}); budgets: "
         f"{', '.join(BUDGET_TITLES[b] for b in budgets)}", enabled=progress)
    grids = {b: train_grid(splits, learning_rates, batch_sizes, budget=b, epochs=epochs, steps=steps,
                           replicas=replicas, key=jax.random.fold_in(key, 1), out=out, progress=progress)
             for b in budgets}
    results = {
        "setup": {"data": splits.train.name, "n_train": splits.train.num_examples,
                  "n_test": splits.test.num_examples, "model": f"MLP{HIDDEN}, ReLU",
                  "sampling": SAMPLING, "grid_size": int(grid_size), "epochs": int(epochs),
                  "steps": int(steps), "replicas": int(replicas), "seed": int(seed),
                  "fitted_train_accuracy": FITTED, "alpha": ALPHA,
                  "fixed_step_records": FIXED_STEP_RECORDS},
        "learning_rates": learning_rates, "batch_sizes": batch_sizes,
        "budgets": grids,
        "spearman": {b: correlations(learning_rates, batch_sizes, g) for b, g in grids.items()},
        "paper": PAPER,
        "device": f"{jax.default_backend()}: {jax.devices()[0].device_kind} × {jax.device_count()}",
    }
    results["verdicts"] = _verdicts(results)
    return results


def run(*, data=None, data_format=None, quick: bool = False, seed: int = 0, out, progress: bool = True) -> dict:
    """The registry's entry: :func:`he_liu_tao` at :data:`DEFAULTS` (or :data:`QUICK`),
    both budgets."""
    return he_liu_tao(out=out, data=data, data_format=data_format, seed=seed, progress=progress,
                      **(QUICK if quick else DEFAULTS))


# --------------------------------------------------------------------------- report
def table(results: dict) -> str:
    """Setup, the Spearman correlations of both budgets, and the paper's numbers (≤ 100
    characters wide)."""
    s = results["setup"]
    eta, size = np.asarray(results["learning_rates"]), np.asarray(results["batch_sizes"])
    lines = [f"{s['model']} on {s['data']} (N = {s['n_train']}, test {s['n_test']}), sgd({s['sampling']}), "
             f"{eta.size} × {size.size} grid (η × S)",
             f"  η ∈ [{number(eta.min())}, {number(eta.max())}], S ∈ [{size.min()}, {size.max()}], "
             f"{s['replicas']} replica(s); fitted: train accuracy ≥ {s['fitted_train_accuracy']}"]
    for budget, grid in results["budgets"].items():
        m = _means(eta, size, grid)
        epochs, steps = np.asarray(grid["epochs"], float), np.asarray(grid["steps"])
        lines += ["", f"{BUDGET_TITLES[budget]}: {steps.min()}–{steps.max()} steps, "
                      f"{number(epochs.min(), 1)}–{number(epochs.max(), 1)} epochs; {grid['seconds']:.0f} s; "
                      f"fitted {int(m['fitted'].sum())}/{m['fitted'].size}; diverged "
                      f"{int(np.sum(grid['diverged']))}",
                  f"  test accuracy {m['test_accuracy'].min():.3f}–{m['test_accuracy'].max():.3f}, "
                  f"train accuracy {m['train_accuracy'].min():.3f}–{m['train_accuracy'].max():.3f}",
                  f"  {'Spearman ρ of':44s} {'ρ':>7s} {'p':>9s} {'n':>4s}"]
        for what, r in results["spearman"][budget].items():
            rho, p = (math.nan if r[k] is None else r[k] for k in ("rho", "p_value"))
            lines.append(f"  {what:44s} {rho:+7.3f} {p:9.2g} {r['n']:4d}")
    p = results["paper"]["spearman_test_accuracy_vs_S_over_eta"]
    lines += ["", "paper (ResNet-110, VGG-19 on CIFAR-10/100; 200 epochs; best test accuracy):",
              f"  ρ(test accuracy, S/η) = {p['rho_range'][0]:+.2f} … {p['rho_range'][1]:+.2f}, "
              f"p = {p['p_range'][0]:.1e} … {p['p_range'][1]:.1e}, n = {p['n']} each"]
    return "\n".join(lines)


def _rho_text(r: dict, name: str = "Spearman ρ") -> str:
    """"Spearman ρ = −0.78, p = 2.2e-82, n = 400" (NaN, or null from the JSON: "undefined")."""
    rho, p = (math.nan if r[k] is None else float(r[k]) for k in ("rho", "p_value"))
    if not math.isfinite(rho):
        return f"{name} undefined (n = {r['n']})"
    return f"{name} = {rho:+.2f}, p = {p:.1e}, n = {r['n']}"


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly unevenly spaced) centres: the midpoints, and half a
    spacing beyond the ends."""
    c = np.asarray(centres, float)
    if c.size == 1:
        return np.array([c[0] * 0.9, c[0] * 1.1])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def draw_heatmap(fig, ax, learning_rates, batch_sizes, values, *, label: str, title: str, vmin=None, vmax=None):
    """``values`` (n_η, n_S) as a heat map over the grid (η up, S across; each cell
    centred on its grid point)."""
    mesh = ax.pcolormesh(_edges(batch_sizes), _edges(learning_rates), np.asarray(values, float), cmap="viridis",
                         vmin=vmin, vmax=vmax)
    fig.colorbar(mesh, ax=ax, label=label)
    ax.set(xlabel="batch size S", ylabel="learning rate η", title=title)
    return mesh


def draw_accuracy(fig, ax, learning_rates, batch_sizes, test, train, *, rho: dict, title: str, colorbar=True,
                  test_label: str = "test accuracy"):
    """Test accuracy (coloured by η) and train accuracy (grey) against S/η, log x; a
    dotted line at the fitted threshold."""
    eta, size = np.asarray(learning_rates, float), np.asarray(batch_sizes, float)
    ratio = size[None, :] / eta[:, None]
    colour = np.broadcast_to(eta[:, None], ratio.shape).ravel()
    ax.scatter(ratio.ravel(), np.asarray(train).ravel(), s=7, c="0.65", marker="s", label="train accuracy (end)")
    sc = ax.scatter(ratio.ravel(), np.asarray(test).ravel(), c=colour, s=14, cmap="plasma",
                    vmin=eta.min(), vmax=eta.max(), label=f"{test_label} (colour: η)")
    ax.axhline(FITTED, color="0.4", lw=0.8, ls=":", label=f"fitted: train accuracy ≥ {FITTED}")
    if colorbar:
        fig.colorbar(sc, ax=ax, label="learning rate η")
    ax.set(xscale="log", xlabel="S/η", ylabel="accuracy", title=f"{title}\n{_rho_text(rho)}")
    ax.legend(loc="lower left")
    plain_log_ticks(ax.xaxis)
    return sc


@styled
def plot(results: dict):
    """Top: best test accuracy (and end train accuracy) against S/η, one panel per budget,
    and the paper's claim; bottom: heat maps of the best test accuracy over the grid."""
    eta, size = np.asarray(results["learning_rates"]), np.asarray(results["batch_sizes"])
    budgets = list(results["budgets"])
    fig, ax = figure(2, len(budgets), panel=(5.8, 4.4), squeeze=False)
    means = {b: _means(eta, size, results["budgets"][b]) for b in budgets}
    low = min(np.nanmin(m["test_accuracy_best"]) for m in means.values())
    high = max(np.nanmax(m["test_accuracy_best"]) for m in means.values())
    for i, b in enumerate(budgets):
        grid, m = results["budgets"][b], means[b]
        epochs, steps = np.asarray(grid["epochs"], float), np.asarray(grid["steps"])
        budget = (f"{number(epochs.mean(), 0)} epochs ({steps.min()}–{steps.max()} steps)" if b == "epochs"
                  else f"{steps.max()} steps ({number(epochs.min(), 1)}–{number(epochs.max(), 0)} epochs)")
        rho = results["spearman"][b]["best_test_accuracy_vs_S_over_eta"]
        fitted = results["spearman"][b]["best_test_accuracy_vs_S_over_eta_fitted"]
        control = f"fitted only: {_rho_text(fitted, 'ρ')}"
        draw_accuracy(fig, ax[0, i], eta, size, m["test_accuracy_best"], m["train_accuracy"], rho=rho,
                      title=f"({'ab'[i]}) {BUDGET_TITLES[b]}: {budget}", test_label="best test accuracy")
        ax[0, i].set_title(f"{ax[0, i].get_title()}\n{control}")
        ax[0, i].set_ylim(min(low, np.nanmin(m["train_accuracy"])) - 0.05, 1.02)
        draw_heatmap(fig, ax[1, i], eta, size, m["test_accuracy_best"], label="best test accuracy",
                     title=f"({'cd'[i]}) best test accuracy, {BUDGET_TITLES[b]}", vmin=low, vmax=high)
    return fig


EXPERIMENTS = (
    Experiment(
        name=NAME,
        label="hlt",
        paper="He, Liu & Tao 2019, Control Batch Size and Learning Rate to Generalize Well (Fig. 1, Table 3)",
        claim="test accuracy falls as the ratio S/η of batch size to learning rate grows (Spearman ρ < 0, "
              "p < 0.005)",
        run=run,
        table=table,
        plot=plot,
        default_runtime="11 min on 2 shared, busy cores (load ≈ 10): equal epochs 475 s, fixed steps 185 s",
    ),
)
