"""The printed tables and the figures of ``sgdsde sde-check`` and of the scaling-rule check
(:mod:`sgdsde.experiments.sde_check`). They read the JSON-ready results only (NaN may
arrive as None from a JSON file). Times are SGD steps; error bars are ±2 standard errors."""

from __future__ import annotations

import numpy as np

from ..plotting import figure, styled

__all__ = ["format_table", "plot", "format_scaling_table", "plot_scaling"]

LABELS = {"train_loss_mean": "train loss (avg)", "train_loss": "train loss (end)", "test_loss": "test loss (end)",
          "test_accuracy": "test acc (end)"}


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _pm(mean, stderr, digits: int = 4) -> str:
    mean, stderr = _num(mean), _num(stderr)
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}±{stderr:.{digits}f}" if np.isfinite(stderr) else f"{mean:.{digits}f}"


def _scalar(run: dict, name: str) -> tuple[float, float]:
    values = np.asarray([_num(v) for v in np.ravel(run["samples"][name])])
    kept = values[np.isfinite(values)]
    if kept.size < 2:
        return (float(kept.mean()) if kept.size else float("nan")), float("nan")
    return float(kept.mean()), float(kept.std(ddof=1) / np.sqrt(kept.size))


def _run_label(key: str, results: dict) -> str:
    if key == "sgd":
        return "SGD"
    if key == "sde":
        method = {"em": "EM", "sme2": "SME-2"}[results["spec"].get("sde", "em")]
        return f"SDE ({method}, dt={results['spec']['sde_dt']:g})"
    return f"SVAG({key.removeprefix('svag')})"


def _order_text(fit: dict) -> str:
    slope, stderr = _num(fit["slope"]), _num(fit["stderr"])
    if not np.isfinite(slope):
        return f"no fit ({int(np.sum(fit['used']))} resolved)"
    lo, hi = (_num(v) for v in fit["ci"])
    return f"p = {slope:.2f} ± {stderr:.2f} [{lo:.2f}, {hi:.2f}]"


def format_table(results: dict) -> str:
    """Final values per stepper (± 1 se), the weak-error gaps Δ(ℓ) with z and the fitted
    order in 1/ℓ, and the noise scales along SGD."""
    spec, data, runs = results["spec"], results["data"], results["runs"]
    lines = [
        f"{results['model']['name']} ({results['model']['num_parameters']:,} params) on {data['name']} "
        f"({data['train_examples']} train / {data['test_examples']} test);",
        f"η = {spec['learning_rate']:g}, S = {spec['batch_size']} (subset), {spec['steps']} SGD steps, "
        f"{results['replicas']} replicas (SDE {spec['sde_replicas']}) from one init; ± 1 se",
        "",
    ]
    short = {"train_loss_mean": "train loss avg", "train_loss": "train loss end", "test_loss": "test loss end",
             "test_accuracy": "test acc end"}
    head = f"{'stepper':<18}{'calls/step':>10} " + "".join(f"{short[n]:>16}" for n in LABELS) + f"{'div':>4}"
    lines += [head, "-" * len(head)]
    for key, run in runs.items():
        if key == "svag1":
            continue
        cells = "".join(f"{_pm(*_scalar(run, n)):>16}" for n in LABELS)
        lines.append(f"{_run_label(key, results):<18}{run['calls_per_sgd_step']:>10} {cells}{run['diverged']:>4}")
    lines.append(f"SVAG(1) with SGD's keys equals SGD bit for bit: {'yes' if results['svag1_equals_sgd'] else 'NO'}")
    weak = results["weak_error"]
    ref = weak["reference_ell"]
    lines += ["", f"Weak error against SVAG({ref}): Δ(ℓ) = E_ℓ[φ] − E_{ref}[φ] (z)"]
    head = f"{'observable':<17}" + "".join(f"{f'ℓ = {e}':>16}" for e in weak["ells"])
    lines += [head, "-" * len(head)]
    for name in LABELS:
        gap = weak[name]
        cells = "".join(f"{f'{_num(v):+.4f} ({_num(z):.1f})':>16}" for v, z in zip(gap["value"], gap["z"]))
        lines.append(f"{LABELS[name]:<17}{cells}")
    lines += ["", f"Order of |Δ| ∝ (1/ℓ − 1/{ref})^p over the gaps with |z| ≥ {weak['min_z']:g} (95% CI), "
                  "all ℓ | SVAG alone (ℓ ≥ 2):"]
    lines += [f"  {LABELS[name]:<17}{_order_text(weak[name]['order'])} | {_order_text(weak[name]['order_svag'])}"
              for name in LABELS]
    noise = results["noise_scales"]
    if noise is None:
        return "\n".join(lines + [f"\nruntime {results['runtime_s']:.0f} s"])
    lines += ["", f"Noise scales along SGD ({noise['replicas']} replicas, {noise['method']}); NSR = f·B_simple/S",
              f"{'SGD step':>8}{'B_simple':>20}{'B_crit ≈ B_noise':>20}{'NSR':>16}"]
    for i, t in enumerate(noise["times"]):
        lines.append(f"{_num(t):8.0f}{_pm(noise['b_simple'][i], noise['b_simple_stderr'][i], 1):>20}"
                     f"{_pm(noise['b_noise'][i], noise['b_noise_stderr'][i], 1):>20}"
                     f"{_pm(noise['nsr'][i], noise['nsr_stderr'][i], 2):>16}")
    lines.append(f"κ* = smallest NSR along the run = {_num(noise['kappa_star']):.2f}")
    lines.append(f"\nruntime {results['runtime_s']:.0f} s")
    return "\n".join(lines)


def _colours(results: dict) -> dict:
    import matplotlib

    ells = results["spec"]["ells"]
    cmap = matplotlib.colormaps["viridis"]
    out = {"sgd": "black", "sde": "#d62728"}
    for i, e in enumerate(ells):
        out[f"svag{e}"] = cmap(0.15 + 0.7 * i / max(len(ells) - 1, 1))
    return out


def _band(ax, t, mean, stderr, colour, label, style="-"):
    mean, stderr = np.asarray(mean, float), np.asarray(stderr, float)
    ax.plot(t, mean, style, color=colour, lw=1.4, label=label)
    ax.fill_between(t, mean - 2 * stderr, mean + 2 * stderr, color=colour, alpha=0.18, lw=0)


@styled
def plot(results: dict):
    """(a) train loss, (b) test loss, (c) test accuracy against SGD steps (±2 se bands);
    (d) the train-loss gap to SVAG(ℓmax) over time; (e) |Δ(ℓ)| against 1/ℓ − 1/ℓmax with
    the fitted orders; (f) B_simple and B_crit ≈ B_noise along SGD."""
    def nums(values):
        return np.asarray([_num(v) for v in np.ravel(values)])

    runs, spec = results["runs"], results["spec"]
    colours = _colours(results)
    order = ["sgd"] + [f"svag{e}" for e in spec["ells"]] + (["sde"] if "sde" in runs else [])
    fig, axes = figure(2, 3, panel=(5.6, 4.6))
    for ax, metric, title in ((axes[0, 0], "train_loss", "(a) train loss"), (axes[0, 1], "test_loss", "(b) test loss"),
                              (axes[0, 2], "test_accuracy", "(c) test accuracy")):
        for key in order:
            run = runs[key]
            curve = run["curves"][metric]
            _band(ax, nums(run["times"]), nums(curve["mean"]), nums(curve["stderr"]), colours[key],
                  f"{_run_label(key, results)} ({run['replicas']} replicas)", "--" if key == "sde" else "-")
        ax.set_xlabel("SGD steps")
        ax.set_title(f"{title}, mean ± 2 se")
        if metric.endswith("loss"):
            ax.set_yscale("log")
        else:
            late = np.concatenate([nums(runs[k]["curves"][metric]["mean"])[1:] for k in order])
            ax.set_ylim(max(0.0, np.nanmin(late) - 0.02), min(1.0, np.nanmax(late) + 0.01))
        ax.legend(loc="upper right" if metric.endswith("loss") else "lower right")
    ref = f"svag{spec['ells'][-1]}"
    ax = axes[1, 0]
    reference = runs[ref]["curves"]["train_loss"]
    for key in [k for k in order if k not in (ref,)]:
        curve = runs[key]["curves"]["train_loss"]
        gap = nums(curve["mean"]) - nums(reference["mean"])
        stderr = np.hypot(nums(curve["stderr"]), nums(reference["stderr"]))
        _band(ax, nums(runs[key]["times"]), gap, stderr, colours[key], _run_label(key, results),
              "--" if key == "sde" else "-")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("SGD steps")
    ax.set_ylabel(f"E[train loss] − E_SVAG({spec['ells'][-1]})[train loss]")
    ax.set_title(f"(d) gap to SVAG({spec['ells'][-1]}) over time, ± 2 se")
    ax.legend()

    ax = axes[1, 1]
    weak = results["weak_error"]
    x = nums(weak["x"])
    markers = {"train_loss_mean": "o", "train_loss": "s", "test_loss": "^", "test_accuracy": "D"}
    palette = {"train_loss_mean": "#1f77b4", "train_loss": "#ff7f0e", "test_loss": "#2ca02c",
               "test_accuracy": "#9467bd"}
    for name in LABELS:
        gap = weak[name]
        value, stderr = np.abs(nums(gap["value"])), nums(gap["stderr"])
        resolved = np.asarray(gap["resolved"], bool)
        colour = palette[name]
        ax.errorbar(x[resolved], value[resolved], yerr=np.minimum(2 * stderr[resolved], 0.999 * value[resolved]),
                    fmt=markers[name], color=colour, capsize=3, ms=5)
        if (~resolved).any():
            ax.plot(x[~resolved], value[~resolved] + 2 * stderr[~resolved], "v", color=colour, mfc="white", ms=6)
        fits = (gap["order"], gap["order_svag"])
        label = f"{LABELS[name]}: " + ("; ℓ ≥ 2: ".join(_order_text(f).split(" [")[0] for f in fits))
        ax.plot([], [], markers[name], color=colour, label=label)
        for fit, style in zip(fits, ("-", "--")):
            span = x[np.asarray(fit["used"], bool)]  # drawn over the points it fits
            if np.isfinite(_num(fit["slope"])):
                ax.plot(span, np.exp(_num(fit["intercept"])) * span ** _num(fit["slope"]), style, color=colour, lw=1)
    ax.plot([], [], "v", color="grey", mfc="white", label=f"|z| < {weak['min_z']:g}: 2-se upper limit")
    ax.plot([], [], "-", color="grey", lw=1, label="fit, all ℓ (dashed: ℓ ≥ 2)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"ℓ={e}" for e in weak["ells"]])
    ax.minorticks_off()
    ax.set_xlabel(f"1/ℓ − 1/{weak['reference_ell']}")
    ax.set_ylabel(f"|E_ℓ[φ] − E_{weak['reference_ell']}[φ]|  (± 2 se)")
    ax.set_title("(e) weak error of SVAG(ℓ) and its order in 1/ℓ")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * (high / low) ** 0.7)  # headroom for the legend on the log axis
    ax.legend(loc="upper left")

    ax = axes[1, 2]
    noise = results["noise_scales"]
    if noise is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "noise scales not measured (noise_every = None)", ha="center", transform=ax.transAxes)
    else:
        _noise_panel(ax, noise, spec["batch_size"])
    data = results["data"]
    fig.suptitle(f"SGD vs SVAG(ℓ) vs its SDE: {results['model']['name']} on {data['name']} "
                 f"(N = {data['train_examples']}), η = {spec['learning_rate']:g}, S = {spec['batch_size']}, "
                 f"one initialisation, {results['replicas']} replicas")
    return fig


def _noise_panel(ax, noise: dict, batch_size: int) -> None:
    """(f): B_simple and B_crit ≈ B_noise along SGD, ±2 se clipped above zero (log axis)."""
    nums = lambda values: np.asarray([_num(v) for v in np.ravel(values)])
    t = nums(noise["times"])
    for name, colour, label, shift in (("b_simple", "#1f77b4", "B_simple = tr C / ‖g‖²", -0.006),
                                       ("b_noise", "#ff7f0e", "B_crit ≈ B_noise = tr(HC) / gᵀHg", 0.006)):
        mean, stderr = nums(noise[name]), nums(noise[name + "_stderr"])
        lower = np.minimum(2 * stderr, 0.95 * mean)  # a log axis: bars clipped above zero
        span = (t.max() - t.min()) if t.size else 0.0
        ax.errorbar(t + shift * span, mean, yerr=[lower, 2 * stderr], fmt="o-", color=colour, capsize=3, ms=4,
                    label=label)
    ax.axhline(batch_size, color="k", ls=":", lw=1, label=f"batch size S = {batch_size}")
    ax.set_yscale("log")
    ax.set_xlabel("SGD steps")
    ax.set_ylabel("noise scale (examples)")
    ax.set_title(f"(f) noise scales along SGD ({noise['replicas']} replicas), ± 2 se (clipped at 0)")
    ax.legend()


# ------------------------------------------------------------------ scaling rule
def format_scaling_table(results: dict) -> str:
    """Final values per κ (± 1 se), the gaps to the SVAG reference (z), κ* and the first
    κ that parts."""
    spec, ref = results["spec"], results["reference"]
    lines = [f"Scaling rule: SGD (iid) at (κη, κS), η = {spec['learning_rate']:g}, S = {spec['batch_size']}, "
             f"{results['clock']}",
             f"reference {ref['stepper']} at (η, S); {results['replicas']} replicas; ± 1 se", ""]
    head = (f"{'κ':>3}{'κη':>7}{'κS':>6}{'steps':>6}{'train loss':>17}{'gap (z)':>16}{'test acc':>17}"
            f"{'gap (z)':>16}{'div':>5}")
    lines += [head, "-" * len(head)]
    def gap(e, name):
        return f"{_num(e[name + '_gap']):+.4f} ({_num(e[name + '_gap_z']):.1f})"

    for e in results["runs"]:
        lines.append(
            f"{e['kappa']:>3}{e['learning_rate']:>7.3g}{e['batch_size']:>6}{e['steps']:>6}"
            f"{_pm(e['train_loss_mean'], e['train_loss_stderr']):>17}{gap(e, 'train_loss'):>16}"
            f"{_pm(e['test_accuracy_mean'], e['test_accuracy_stderr']):>17}{gap(e, 'test_accuracy'):>16}"
            f"{e['diverged']:>5}")
    lines.append(f"{'ref':>3}{'':>19}{_pm(ref['train_loss_mean'], ref['train_loss_stderr']):>17}{'':>16}"
                 f"{_pm(ref['test_accuracy_mean'], ref['test_accuracy_stderr']):>17}")
    parted = results["first_parting_kappa"]
    lines += ["", f"predicted breaking κ* = smallest NSR = tr C/(S‖g‖²) along the base run: "
                  f"{_num(results['kappa_star']):.2f}",
              f"observed: first κ whose train-loss gap has |z| ≥ {spec['min_z']:g} (or diverged): "
              f"{parted if parted is not None else 'none'}", f"runtime {results['runtime_s']:.0f} s"]
    return "\n".join(lines)


@styled
def plot_scaling(results: dict):
    """(a) final test accuracy and (b) final train/test loss against κ, with the SVAG
    reference (±2 se band) and κ* drawn; (c) the NSR along the base run."""
    runs, ref = results["runs"], results["reference"]
    kappa = np.asarray([e["kappa"] for e in runs], float)
    star = _num(results["kappa_star"])
    fig, axes = figure(1, 3, panel=(5.6, 4.6))
    panels = ((axes[0], ("test_accuracy",), "final test accuracy", "(a)"),
              (axes[1], ("train_loss", "test_loss"), "final loss", "(b)"))
    colours = {"test_accuracy": "#9467bd", "train_loss": "#ff7f0e", "test_loss": "#2ca02c"}
    for ax, names, ylabel, letter in panels:
        for name in names:
            mean = np.asarray([_num(e[name + "_mean"]) for e in runs])
            stderr = np.asarray([_num(e[name + "_stderr"]) for e in runs])
            c = colours[name]
            ax.errorbar(kappa, mean, yerr=2 * stderr, fmt="o-", color=c, capsize=3, ms=5,
                        label=f"SGD at (κη, κS): {name.replace('_', ' ')}")
            r, rse = _num(ref[name + "_mean"]), _num(ref[name + "_stderr"])
            ax.axhspan(r - 2 * rse, r + 2 * rse, color=c, alpha=0.15)
            ax.axhline(r, color=c, ls="--", lw=1, label=f"{ref['stepper']} at (η, S) ± 2 se")
        if np.isfinite(star):
            ax.axvline(star, color="k", ls=":", lw=1.2, label=f"predicted κ* = min NSR = {star:.2f}")
        parted = results["first_parting_kappa"]
        if parted is not None:
            ax.axvline(parted, color="#d62728", ls="-.", lw=1, label=f"first resolved parting: κ = {parted}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(kappa, [f"{int(k)}" for k in kappa])
        ax.minorticks_off()
        ax.set_xlabel("κ (learning rate κη, batch size κS, steps/κ)")
        ax.set_ylabel(f"{ylabel} (± 2 se)")
        ax.set_title(f"{letter} {ylabel} at equal SME time")
        ax.legend()
    ax = axes[2]
    noise = results["noise_scales"]
    t = np.asarray([_num(v) for v in noise["times"]])
    nsr, se = (np.asarray([_num(v) for v in noise[k]]) for k in ("nsr", "nsr_stderr"))
    ax.errorbar(t, nsr, yerr=[np.minimum(2 * se, 0.95 * nsr), 2 * se], fmt="o-", color="#1f77b4", capsize=3, ms=4,
                label="NSR = tr C/(S‖g‖²), base run")
    if np.isfinite(star):
        ax.axhline(star, color="k", ls=":", lw=1.2, label=f"κ* = {star:.2f} (its minimum)")
    ax.set_yscale("log")
    ax.set_xlabel("SGD steps of the base run (η, S)")
    ax.set_ylabel("noise-to-signal ratio")
    ax.set_title(f"(c) NSR along the base run ({noise['replicas']} replicas) ± 2 se (clipped at 0)")
    ax.legend()
    fig.suptitle(f"Linear scaling rule on the MLP ({results['data']['name']}): {results['clock']}")
    return fig
