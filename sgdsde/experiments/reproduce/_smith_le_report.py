"""Tables and figures of the Smith & Le batch-size experiments (g) and (h)
(:mod:`.smith_le_batch`): accuracy against S with the fitted quadratic in ln S and B_opt;
the ε and N scans against the noise scale g = εN/S, and B_opt against ε and N."""

from __future__ import annotations


import numpy as np

from ...plotting import figure, number, plain_log_ticks, styled
from ._verdict import mean_stderr

__all__ = ["table_optimal_batch", "plot_optimal_batch", "table_scaling", "plot_scaling"]


def _mean_se(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over the last axis (replicas); NaN where a batch size was not run."""
    return mean_stderr(values, axis=-1)


# --------------------------------------------------------------------- the optimum


def table_optimal_batch(results: dict) -> str:
    s = results["setup"]
    lines = [f"{s['model']} on {s['data']} (N = {s['N']}), plain SGD, ε = {s['learning_rate']}, {s['epochs']} epochs, "
             f"R = {s['replicas']}",
             f"{'S':>6s} {'g=εN/S':>8s} {'steps':>7s} {'test acc':>9s} {'± se':>7s} {'train acc':>10s} {'diverged':>9s}"]
    for k, b in enumerate(results["batch_sizes"]):
        lines.append(f"{int(b):6d} {results['noise_scale'][k]:8.3g} {results['steps'][k]:7d} "
                     f"{results['test_mean'][k]:9.4f} {results['test_se'][k]:7.4f} {results['train_mean'][k]:10.4f} "
                     f"{int(np.sum(results['diverged'][k])):9d}")
    fit = results["fit"]
    lo, hi = fit["b_opt_interval"]
    lines.append(f"B_opt = {fit['b_opt']:.3g} (95% CI {lo:.3g} … {hi:.3g}); quadratic in ln S over "
                 f"{len(fit['fitted'])} points, curvature {fit['curvature']:+.3g} ± {fit['curvature_se']:.2g}")
    return "\n".join(lines)


def _fit_curve(fit: dict, batch_sizes) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(fit["fitted"])
    s = np.asarray(batch_sizes, float)[idx]
    u = np.linspace(np.log(s.min()), np.log(s.max()), 60)
    a, b, c = np.asarray(fit["coefficients"], float)
    return np.exp(u), a + b * u + c * u * u


@styled
def plot_optimal_batch(results: dict):
    fig, ax = figure(1, 2, panel=(5.2, 4.2))
    s = np.asarray(results["batch_sizes"], float)
    mean, se = np.asarray(results["test_mean"], float), np.asarray(results["test_se"], float)
    train = np.asarray(results["train_mean"], float)
    fit = results["fit"]
    fitted = np.asarray(fit["fitted"], int)
    failed = np.asarray(fit["failed"], int)
    st = results["setup"]
    for a in ax:
        a.errorbar(s, mean, yerr=se, fmt="o", color="C0", capsize=3, label="test accuracy (mean ± se)")
        a.plot(s, train, "s", color="0.6", ms=4, label="train accuracy")
        if failed.size and a is ax[0]:
            a.plot(s[failed], mean[failed], "x", color="C3", ms=9, mew=2, label="training failed: not fitted")
        a.set_xscale("log")
        a.set_xlim(s.min() / 1.5, s.max() * 1.5)
        a.set(xlabel="batch size S", ylabel="accuracy")
        plain_log_ticks(a.xaxis)
    ax[0].set(ylim=(0, 1.02), title=f"ε = {st['learning_rate']}, N = {st['N']}, {st['epochs']} epochs")
    ax[0].legend(loc="lower right")
    if np.isfinite(fit["b_opt"]):
        xs, ys = _fit_curve(fit, s)
        ax[1].plot(xs, ys, "-", color="C1", label="quadratic in ln S")
        lo, hi = fit["b_opt_interval"]
        ax[1].axvspan(max(lo, s.min() / 1.5), min(hi, s.max() * 1.5), color="C1", alpha=0.15,
                      label=f"B_opt = {number(fit['b_opt'], 1)} (95% CI)")
        ax[1].axvline(fit["b_opt"], color="C1", lw=1)
    if fitted.size:
        band = np.concatenate([mean[fitted] - np.nan_to_num(se[fitted]), mean[fitted] + np.nan_to_num(se[fitted]),
                               train[fitted]])
        pad = 0.1 * max(np.ptp(band), 0.01)
        ax[1].set_ylim(band.min() - pad, min(1.0 + pad, band.max() + 3 * pad))
    ax[1].set_title(f"the fitted points: {results['verdicts'][0]['verdict']}")
    ax[1].legend(loc="lower center", fontsize=8)
    top = ax[1].secondary_xaxis("top", functions=(lambda b: st["learning_rate"] * st["N"] / np.maximum(b, 1e-9),
                                                  lambda g: st["learning_rate"] * st["N"] / np.maximum(g, 1e-9)))
    top.set_xlabel("noise scale g = εN/S")
    plain_log_ticks(top.xaxis)
    return fig


# --------------------------------------------------------------------- (h)


def table_scaling(results: dict) -> str:
    s = results["setup"]
    lines = [f"{s['model']} on {s['data']}, plain SGD, {s['epochs']} epochs, R = {s['replicas']}; B_opt by a quadratic "
             "in ln S",
             f"{'scan':6s} {'value':>7s} {'best S':>7s} {'best acc':>9s} {'B_opt':>8s} {'95% CI':>17s} {'max inside':>11s}"]
    s_grid = np.asarray(results["batch_sizes"])
    for label, values, scan in (("ε", results["learning_rates"], results["eps_scan"]),
                                ("N", results["training_sizes"], results["n_scan"])):
        for k, v in enumerate(values):
            fit = scan["fits"][k]
            mean = _mean_se(scan["test_accuracy"][k])[0]
            lo, hi = fit["b_opt_interval"]
            lines.append(f"{label:6s} {number(v, 3):>7s} {int(s_grid[int(np.nanargmax(mean))]):7d} {np.nanmax(mean):9.4f} "
                         f"{fit['b_opt']:8.3g} {f'{lo:.3g} … {hi:.3g}':>17s} {str(fit['maximum_inside']):>11s}")
    c = results.get("collapse")
    if c is not None:
        lines.append(f"ε curves collapse on ε^α/S at α = {c['alpha']:.2f}, 95% interval "
                     f"[{c['interval'][0]:.2f}, {c['interval'][1]:.2f}] (α = 1: a function of g = εN/S)")
    return "\n".join(lines)


@styled
def plot_scaling(results: dict):
    fig, ax = figure(1, 3, panel=(4.6, 4.0))
    s_grid = np.asarray(results["batch_sizes"], float)
    st = results["setup"]
    eps = np.asarray(results["learning_rates"], float)
    scan = results["eps_scan"]
    acc = np.asarray(scan["test_accuracy"], float)
    for k, e in enumerate(eps):
        mean, se = _mean_se(acc[k])
        ax[0].errorbar(s_grid, mean, yerr=se, fmt="o-", ms=3, capsize=2, color=f"C{k}", label=f"ε = {number(e, 2)}")
        ax[1].plot(e * st["N"] / s_grid, mean, "o-", ms=3, color=f"C{k}", label=f"ε = {number(e, 2)}, N = {st['N']}")
    ns = np.asarray(results["training_sizes"], float)
    nacc = np.asarray(results["n_scan"]["test_accuracy"], float)
    for k, n in enumerate(ns[:-1]):
        mean, _ = _mean_se(nacc[k])
        ax[1].plot(st["n_scan_learning_rate"] * n / s_grid, mean, "^--", ms=3, color=f"C{len(eps) + k}",
                   label=f"ε = {number(st['n_scan_learning_rate'], 2)}, N = {int(n)}")
    best = max(np.nanmax(_mean_se(acc)[0]), np.nanmax(_mean_se(nacc)[0]))
    for a in ax[:2]:
        a.set_xscale("log")
        a.set_ylim(max(0.0, best - 0.25), min(1.005, best + 0.03))
        plain_log_ticks(a.xaxis)
    ax[0].set(xlabel="batch size S", ylabel="test accuracy", title=f"N = {st['N']}: test accuracy against S")
    ax[0].legend(loc="lower right")
    c = results.get("collapse")
    title = "every configuration against g"
    if c is not None:
        title += f"\n(N = {st['N']}: collapse exponent α = {number(c['alpha'], 2)}, CI {number(c['interval'][0], 2)}"\
                 f"–{number(c['interval'][1], 2)})"
    ax[1].set(xlabel="noise scale g = εN/S", ylabel="test accuracy", title=title)
    ax[1].legend(loc="lower left", fontsize=8)
    verdict_eps, verdict_n = results["verdicts"][:2]
    for values, scan, marker, label, verdict, k0 in (
            (eps / eps.max(), scan, "o", "ε/ε_max (N fixed)", verdict_eps, 0),
            (ns / ns.max(), results["n_scan"], "^", "N/N_max (ε fixed)", verdict_n, 1)):
        fits = scan["fits"]
        inside = np.array([f["maximum_inside"] for f in fits], bool)
        b = np.array([f["b_opt"] for f in fits])
        lo = np.array([f["b_opt_interval"][0] for f in fits])
        hi = np.array([f["b_opt_interval"][1] for f in fits])
        color = f"C{k0}"
        ax[2].errorbar(values[inside], b[inside], yerr=[b[inside] - lo[inside], hi[inside] - b[inside]], fmt=marker,
                       color=color, capsize=3, label=f"B_opt vs {label}: slope "
                       f"{number(verdict['value'], 2) if np.isfinite(verdict['value']) else '(too few points)'}")
        if np.any(~inside):
            ax[2].plot(values[~inside], b[~inside], marker, mfc="none", color=color, label=f"{label}: no maximum inside")
    ref = np.array([min(eps.min() / eps.max(), ns.min() / ns.max()), 1.0])
    anchor = results["eps_scan"]["fits"][-1]["b_opt"]
    ax[2].plot(ref, anchor * ref, ":", color="0.4", label="slope 1 (B_opt ∝ εN)")
    ax[2].set(xscale="log", yscale="log", xlabel="ε/ε_max or N/N_max", ylabel="B_opt (95% CI)",
              title="the optimal batch size")
    ax[2].set_ylim(s_grid.min() / 4, s_grid.max() * 4)
    plain_log_ticks(ax[2].xaxis)
    plain_log_ticks(ax[2].yaxis)
    ax[2].legend(loc="upper left", fontsize=8)
    return fig
