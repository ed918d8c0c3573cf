"""SGD against its SDE on the 2-D double well, at equal SME time (docs/theory.md §2).

Problem: L(θ) = b((θ₁/w)² − 1)² + tilt·θ₁ + ½ k θ₂² with exactly isotropic per-example
gradient noise σ² (``sgdsde.problems.double_well_2d``); the tilt makes the left well
the lower one. Every replica starts at the minimum of the upper (right) well.

Three steppers, one problem, one set of hyperparameters:

- SGD: ``sgd("subset")`` (minibatches without replacement);
- Gaussian SGD: ``euler_maruyama(isotropic(σ², finite_n=True), dt=1)``, SGD with the
  minibatch noise replaced by Gaussian noise of the same covariance;
- the SDE: the same model with dt = 0.1 SGD steps (10 Euler–Maruyama steps per SGD step;
  its own discretisation error is O(η·dt), ten times smaller).

Two sweeps: (i) η shrinking at fixed noise scale η/S (the SDE is the same for every η:
the gap should vanish like O(η)); (ii) η growing at fixed S towards the breaking point
η λ_max ≈ 2 of docs/theory.md §2 (Three Factors §4.4), where the discrete dynamics diverge.
Observables, time-averaged over t_sme = η·(SGD steps) ∈ [t0, t1] and compared at equal
SME time: the mean loss E[L] and the occupancy of the lower well P(θ₁ < 0).
Diverged replicas are reported as a fraction, never averaged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import compare, noise, problems
from .._progress import Progress
from ..plotting import figure, plain_log_ticks, styled
from ..sde import euler_maruyama
from ..steppers import sgd
from .output import check_out_dir, save_outputs

__all__ = ["default_spec", "sgd_vs_sde", "format_table", "plot", "main"]

STEPPERS = ("sgd", "gauss", "sde")
LABELS = {"sgd": "SGD (subset)", "gauss": "Gaussian SGD (EM, dt=1)", "sde": "SDE (EM, dt=0.1)"}


def default_spec() -> dict:
    """The double well and the two sweeps (defaults of :func:`sgd_vs_sde`)."""
    return {
        "barrier": 1.0,
        "width": 1.0,
        "curvature": 4.0,
        "tilt": 0.25,
        "sigma2": 120.0,
        "num_examples": 128,
        # (i) fixed η/S = 0.005: S = 2, 4, 8, 16
        "noise_scale": 0.005,
        "shrinking_learning_rates": [0.01, 0.02, 0.04, 0.08],
        # (ii) fixed S = 32 (η = 0.16 is sweep (i)'s noise scale)
        "batch_size": 32,
        "growing_learning_rates": [0.04, 0.08, 0.12, 0.16, 0.2, 0.24, 0.28],
        "window": [0.5, 4.0],
        "sde_dt": 0.1,
    }


def _quick(spec: dict) -> dict:
    return {
        **spec,
        "shrinking_learning_rates": [0.02, 0.04, 0.08],
        "growing_learning_rates": [0.08, 0.16, 0.24],
        "window": [0.5, 2.0],
    }


def sgd_vs_sde(
    *,
    replicas: int = 4000,
    seed: int = 0,
    quick: bool = False,
    gaussian_sgd: bool | None = None,
    spec: dict | None = None,
    progress: bool = True,
) -> dict:
    """Run both sweeps for the three steppers and return plain numbers (JSON-ready).

    ``quick``: fewer learning rates, a shorter window, no Gaussian SGD (use with fewer
    replicas). ``gaussian_sgd``: include Gaussian SGD (default: unless ``quick``).
    Keys: stepper s uses key(seed + 1 + s) in both sweeps; the three steppers are
    independent.
    """
    spec = dict(default_spec(), **(spec or {}))
    spec = _quick(spec) if quick else spec
    problem = problems.double_well_2d(
        spec["barrier"], spec["width"], spec["curvature"], spec["tilt"], sigma2=spec["sigma2"],
        num_examples=spec["num_examples"], key=jax.random.key(seed),
    )
    minima = problem.info["minima"]
    upper = max(minima, key=lambda m: m["loss"])
    lambda_max = max(float(np.linalg.eigvalsh(m["hessian"]).max()) for m in minima)
    model = noise.isotropic(spec["sigma2"], finite_n=True)
    steppers = {"sgd": sgd("subset"), "gauss": euler_maruyama(model, dt=1.0), "sde": euler_maruyama(model, dt=spec["sde_dt"])}
    if not (not quick if gaussian_sgd is None else gaussian_sgd):
        del steppers["gauss"]
    observables = {
        "loss": problem.info["loss"],  # L(θ) in closed form (= the data mean, exactly)
        "lower_well": compare.basin_indicator(lambda theta: (theta[0] < 0).astype(jnp.int32), 1),
    }
    theta0 = jnp.asarray(upper["point"], dtype=jnp.result_type(float))
    sweeps = {
        "fixed_noise_scale": dict(learning_rates=spec["shrinking_learning_rates"], noise_scale=spec["noise_scale"]),
        "fixed_batch_size": dict(learning_rates=spec["growing_learning_rates"], batch_size=spec["batch_size"]),
    }
    results = {
        "description": "SGD vs Gaussian SGD vs its SDE on the 2-D double well, time-averaged over an SME-time window",
        "clock": "SME time (t_sme = learning rate × SGD steps)",
        "spec": spec,
        "quick": quick,
        "replicas": replicas,
        "seed": seed,
        "minima": minima,
        "start": upper["point"],
        "lambda_max": lambda_max,
        "steppers": {k: s.name for k, s in steppers.items()},
    }
    began = time.perf_counter()
    total, done = len(sweeps) * len(steppers), 0
    bar = Progress("sgd_vs_sde", total, "runs", enabled=progress)
    for sweep, kwargs in sweeps.items():
        runs = {}
        for index, (name, stepper) in enumerate(steppers.items()):
            runs[name] = compare.expectations(
                jax.random.key(seed + 1 + index), problem, stepper, theta0, observables=observables,
                window=tuple(spec["window"]), replicas=replicas, **kwargs,
            )
            done += 1
            bar.update(done)
        results[sweep] = {
            **{k: v for k, v in kwargs.items() if k != "learning_rates"},
            "learning_rates": np.asarray(kwargs["learning_rates"], dtype=float),
            "lr_times_lambda_max": np.asarray(kwargs["learning_rates"], dtype=float) * lambda_max,
            "sgd_vs_sde": compare.gap(runs["sgd"], runs["sde"]).as_dict(),
        }
        if "gauss" in runs:
            results[sweep]["gauss_vs_sde"] = compare.gap(runs["gauss"], runs["sde"]).as_dict()
    results["runtime_s"] = time.perf_counter() - began
    return results


def _finite(value) -> bool:
    """True for a finite number (the JSON form writes NaN as None)."""
    return value is not None and bool(np.isfinite(float(value)))


def _has(sweep: dict, stepper: str) -> bool:
    return stepper != "gauss" or "gauss_vs_sde" in sweep


def _column(sweep: dict, stepper: str, observable: str, field: str = "mean") -> np.ndarray:
    pair = "gauss_vs_sde" if stepper == "gauss" else "sgd_vs_sde"
    side = "sde" if stepper == "sde" else "sgd"
    return np.asarray(sweep[pair][side][field][observable])[:, 0]


def _diverged(sweep: dict, stepper: str) -> np.ndarray:
    pair = "gauss_vs_sde" if stepper == "gauss" else "sgd_vs_sde"
    side = "sde" if stepper == "sde" else "sgd"
    return np.asarray(sweep[pair][side]["diverged"])[:, 0]


def format_table(results: dict) -> str:
    """One table per sweep: E[L] and the lower-well occupancy for the three steppers,
    the gap SGD − SDE (± stderr, z), the diverged fractions, and the fitted order."""
    t0, t1 = results["spec"]["window"]
    lines = [f"Time averages over t_sme ∈ [{t0:g}, {t1:g}] (SME time), from the upper minimum "
             f"{np.round(results['start'], 3).tolist()}; λ_max = {results['lambda_max']:.2f};",
             f"{results['replicas']} replicas per configuration; '—': replicas diverged, no mean reported."]
    titles = {
        "fixed_noise_scale": f"(i) η shrinking at fixed η/S = {results['spec']['noise_scale']:g}",
        "fixed_batch_size": f"(ii) η growing at fixed S = {results['spec']['batch_size']}",
    }
    for sweep_name, title in titles.items():
        sweep = results[sweep_name]
        pair = sweep["sgd_vs_sde"]
        # two tables of ≤ 100 characters: the loss with the divergences, then the occupancy
        heads = {
            "loss": f"{'eta':>6} {'S':>4} {'eta*lmax':>8} | {'E[L] SGD':>9} {'Gauss':>7} {'SDE':>7} {'gap±se':>16} "
                    f"{'z':>6} | {'div SGD':>7} {'Gauss':>6}",
            "lower_well": f"{'eta':>6} {'S':>4} {'eta*lmax':>8} | {'P(lower) SGD':>12} {'Gauss':>6} {'SDE':>6} "
                          f"{'gap±se':>15}",
        }
        lines += ["", title]
        for observable, width, digits in (("loss", 7, 4), ("lower_well", 6, 3)):
            lines += ([] if observable == "loss" else [""]) + [heads[observable], "-" * len(heads[observable])]
            for g, eta in enumerate(sweep["learning_rates"]):
                values = []
                for name in STEPPERS:
                    w = 9 if (observable == "loss" and name == "sgd") else (12 if name == "sgd" else width)
                    if not _has(sweep, name):
                        values.append(f"{'n/a':>{w}}")
                        continue
                    mean = _column(sweep, name, observable)[g]
                    values.append(f"{mean:{w}.{digits}f}" if _diverged(sweep, name)[g] == 0 else f"{'—':>{w}}")
                d = pair["gap"][observable]
                if _diverged(sweep, "sgd")[g] == 0 and _diverged(sweep, "sde")[g] == 0:
                    gap = f"{d['value'][g][0]:+.4f}±{d['stderr'][g][0]:.4f}"
                    z = f"{d['z'][g][0]:6.1f}"
                else:
                    gap, z = "—", "—"
                row = (f"{eta:6.3f} {int(pair['batch_sizes'][g]):4d} {sweep['lr_times_lambda_max'][g]:8.2f} | "
                       + " ".join(values) + f" {gap:>{16 if observable == 'loss' else 15}}")
                if observable == "loss":
                    gauss = f"{100 * _diverged(sweep, 'gauss')[g]:5.2f}%" if _has(sweep, "gauss") else f"{'n/a':>6}"
                    row += f" {z:>6} | {100 * _diverged(sweep, 'sgd')[g]:6.2f}% {gauss}"
                lines.append(row)
        for observable in ("loss", "lower_well"):
            fit = pair["order"][observable][0]
            if _finite(fit["slope"]):
                lines.append(f"order in η of SGD − SDE ({observable}): {fit['slope']:.2f} ± {fit['stderr']:.2f} "
                             f"(95% CI [{fit['ci'][0]:.2f}, {fit['ci'][1]:.2f}], {int(np.sum(fit['used']))} points, "
                             f"χ²/dof = {fit['chi2']:.2f}/{fit['dof']})")
            else:
                lines.append(f"order in η of SGD − SDE ({observable}): no fit ({fit['note']})")
    lines.append(f"\nruntime {results['runtime_s']:.1f} s")
    return "\n".join(lines)


@styled
def plot(results: dict):
    """(a) E[L] vs η at fixed η/S; (b) the gaps vs η, log-log, with the fitted order;
    (c) E[L] and (d) lower-well occupancy vs η λ_max at fixed S, with the fraction of
    diverged replicas (means only where no replica diverged)."""
    colours = {"sgd": "#1f77b4", "gauss": "#ff7f0e", "sde": "#2ca02c"}
    markers = {"sgd": "o", "gauss": "s", "sde": "^"}
    fig, axes = figure(2, 2, panel=(6.4, 4.8))
    t0, t1 = results["spec"]["window"]
    shrink, grow = results["fixed_noise_scale"], results["fixed_batch_size"]

    ax = axes[0, 0]
    eta = shrink["learning_rates"]
    sizes = np.asarray(shrink["sgd_vs_sde"]["batch_sizes"])
    for name in (n for n in STEPPERS if _has(shrink, n)):
        ok = _diverged(shrink, name) == 0
        ax.errorbar(eta[ok], _column(shrink, name, "loss")[ok], yerr=2 * _column(shrink, name, "loss", "stderr")[ok],
                    fmt=markers[name] + "-", color=colours[name], capsize=3, ms=5, label=LABELS[name])
    ax.set_xscale("log")
    ax.set_xticks(eta, [f"{e:g}\nS={int(s)}" for e, s in zip(eta, sizes)])
    ax.minorticks_off()
    ax.set_xlabel("learning rate η (batch size S = η / (η/S))")
    ax.set_ylabel(f"E[L], time-averaged over t_sme ∈ [{t0:g}, {t1:g}]  (±2 se)")
    ax.set_title(f"(a) fixed η/S = {results['spec']['noise_scale']:g}: SGD → SDE as η → 0")
    ax.legend()

    ax = axes[0, 1]
    for pair, name, label in (("sgd_vs_sde", "sgd", "SGD − SDE"), ("gauss_vs_sde", "gauss", "Gaussian SGD − SDE")):
        if not _has(shrink, name):
            continue
        for observable, style, obs_label in (("loss", "-", "E[L]"), ("lower_well", ":", "P(lower well)")):
            d = shrink[pair]["gap"][observable]
            value, se = np.asarray(d["value"])[:, 0], np.asarray(d["stderr"])[:, 0]
            resolved = np.asarray(d["resolved"], dtype=bool)[:, 0]
            colour = colours[name]
            ax.errorbar(eta[resolved], np.abs(value[resolved]), yerr=2 * se[resolved], fmt=markers[name],
                        color=colour, capsize=3, ms=5, mfc=colour if observable == "loss" else "white")
            if (~resolved).any():  # not resolved: 2-stderr upper limits
                ax.plot(eta[~resolved], np.abs(value[~resolved]) + 2 * se[~resolved], "v", color=colour,
                        mfc="white", ms=6, alpha=0.7)
            fit = shrink[pair]["order"][observable][0]
            if _finite(fit["slope"]):
                line = np.exp(fit["intercept"]) * eta ** fit["slope"]
                ax.plot(eta, line, style, color=colour, lw=1.2,
                        label=f"{label}, {obs_label}: fitted order {fit['slope']:.2f} ± {fit['stderr']:.2f}")
    reference = np.exp(shrink["sgd_vs_sde"]["order"]["loss"][0]["intercept"]) * eta[-1] ** 1.0
    ax.plot(eta, 0.5 * reference * eta / eta[-1], "--", color="grey", lw=0.9, label="∝ η (order 1, for reference)")
    ax.plot([], [], "v", color="grey", mfc="white", label="occupancy gap not resolved: 2-se upper limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(eta, [f"{e:g}" for e in eta])
    ax.minorticks_off()
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("learning rate η (fixed η/S)")
    ax.set_ylabel("|E_SGD[φ] − E_SDE[φ]|  (±2 se)")
    ax.set_title("(b) the gap vanishes like η (GLS fit with 1-se errors)")
    ax.legend(loc="upper left")

    x = grow["lr_times_lambda_max"]
    for ax, observable, ylabel, letter in (
        (axes[1, 0], "loss", "E[L]", "c"),
        (axes[1, 1], "lower_well", "P(θ₁ < 0)  (lower-well occupancy)", "d"),
    ):
        for name in (n for n in STEPPERS if _has(grow, n)):
            ok = _diverged(grow, name) == 0
            ax.errorbar(x[ok], _column(grow, name, observable)[ok], yerr=2 * _column(grow, name, observable, "stderr")[ok],
                        fmt=markers[name] + "-", color=colours[name], capsize=3, ms=5, label=LABELS[name])
        ax.axvline(2.0, color="k", ls="--", lw=0.8)
        ax.set_xlabel("η · λ_max   (λ_max: largest Hessian eigenvalue at the minima)")
        ax.set_ylabel(f"{ylabel}, time-averaged")
        ax.set_title(f"({letter}) fixed S = {results['spec']['batch_size']}: η grows to the breaking point")
        twin = ax.twinx()
        for name in (n for n in ("sgd", "gauss") if _has(grow, n)):
            twin.plot(x, 100 * _diverged(grow, name), markers[name] + ":", color=colours[name], alpha=0.5, ms=4,
                      mfc="white", label=f"{LABELS[name]}: % diverged")
        twin.set_ylim(-3, 103)
        twin.set_ylabel("% replicas diverged by t1 (dotted); no mean once any has")
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
        ax.legend(handles, labels, loc="upper left")
        ax.text(2.0, ax.get_ylim()[0], "ηλ_max = 2 ", va="bottom", ha="right")
    fig.suptitle(f"SGD vs its SDE on the 2-D double well (σ² = {results['spec']['sigma2']:g}, "
                 f"N = {results['spec']['num_examples']}, {results['replicas']} replicas; SME-time window "
                 f"[{t0:g}, {t1:g}], start in the upper well)")
    return fig


def main(out: str | Path = "sgdsde-output/sgd_vs_sde", **kwargs) -> dict:
    """Check ``out`` (before any work), run, write ``sgd_vs_sde.json``, print the table,
    write ``sgd_vs_sde.png``."""
    out = check_out_dir(out, files=("sgd_vs_sde.json", "sgd_vs_sde.png"))
    return save_outputs(sgd_vs_sde(**kwargs), out, "sgd_vs_sde", plot, format_table)
