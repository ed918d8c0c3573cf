"""The demo: SGD's stationary covariance on an anisotropic quadratic, against the exact
discrete theory and the SDE (continuous Lyapunov) prediction (docs/theory.md §5).

On L = ½θᵀAθ with per-example gradient covariance C, discrete SGD settles into a
Gaussian-like cloud whose covariance solves AΣ + ΣA − ηAΣA = (η/S)C′ exactly; the SDE
predicts AΣ + ΣA = (η/S)C′ (C′ = C(N−S)/(N−1) for subset sampling). The gap between the
two is O(η λ): small steps agree, large steps show where the continuum model breaks.
Covariances are in parameter units; step counts are SGD steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import observers, problems, theory
from .._checks import check_int
from ..hyper import Hyper
from ..plotting import figure, plain_log_ticks, styled
from ..runner import run
from ..steppers import sgd
from .output import check_out_dir, save_outputs

__all__ = ["default_problem_spec", "stationary_covariance", "format_table", "plot", "main"]


def default_problem_spec() -> dict:
    """A 3-D quadratic with eigenvalues (0.5, 1.5, 4), rotated, and a correlated C."""
    rotation = np.linalg.qr(np.array([[1.0, 0.4, -0.3], [0.2, 1.0, 0.5], [-0.1, 0.3, 1.0]]))[0]
    hessian = rotation @ np.diag([0.5, 1.5, 4.0]) @ rotation.T
    noise_cov = np.array([[1.0, 0.6, -0.2], [0.6, 2.0, 0.5], [-0.2, 0.5, 1.2]])
    return {"hessian": hessian, "noise_cov": noise_cov, "num_examples": 256}


def stationary_covariance(
    learning_rates: Sequence[float] = (0.025, 0.05, 0.1, 0.2, 0.4),
    batch_sizes: Sequence[int] = (8, 32),
    *,
    sampling: str = "subset",
    replicas: int = 1000,
    relaxation_times: float = 8.0,
    sample_steps: int = 1500,
    seed: int = 0,
    spec: dict | None = None,
    progress: bool = True,
) -> dict:
    """Run the SGD ensemble for every (η, S) and compare with theory.

    Burn-in is ``relaxation_times`` slowest relaxation times 1/(η_min λ_min) (SGD steps),
    then ``sample_steps`` SGD steps are averaged. The defaults (10 configurations × 1000
    replicas × 2140 steps) take about 15 s on 2 CPU cores, compilation included; the
    standard errors shrink like 1/√(replicas · sample_steps). Returns a dict of plain arrays.
    """
    if not learning_rates or min(learning_rates) <= 0:
        raise ValueError(f"learning_rate: every learning rate must be > 0, got {list(learning_rates)}")
    sample_steps = check_int(sample_steps, "sample_steps", 1)
    spec = spec or default_problem_spec()
    hessian, noise_cov, n = spec["hessian"], spec["noise_cov"], spec["num_examples"]
    eigenvalues = np.linalg.eigvalsh(hessian)
    problem = problems.quadratic(hessian, noise_cov, n, key=jax.random.key(seed))
    hyper = Hyper.grid(list(learning_rates), list(batch_sizes))
    burn_in = int(np.ceil(relaxation_times / (min(learning_rates) * eigenvalues.min())))
    result = run(
        jax.random.key(seed + 1), sgd(sampling), problem, hyper, jnp.zeros(3), burn_in + sample_steps,
        replicas=replicas, observers=[observers.moments(burn_in=burn_in)], progress=progress,
    )
    moments = result["moments"]
    rows = []
    for i, lr in enumerate(learning_rates):
        for j, size in enumerate(batch_sizes):
            exact = np.asarray(theory.sgd_stationary_cov(hessian, noise_cov, lr, size, sampling=sampling,
                                                         num_examples=n))
            factor = (n - size) / (n - 1) if sampling in ("subset", "epoch") else 1.0
            sde = np.asarray(theory.ou_stationary_cov(hessian, factor * noise_cov, lr, size))
            cov, stderr = np.asarray(moments["cov"][i, j]), np.asarray(moments["cov_stderr"][i, j])
            iu = np.triu_indices(3)
            rows.append({
                "learning_rate": lr,
                "batch_size": size,
                "noise_scale": lr / size,
                "lr_times_lambda_max": lr * eigenvalues.max(),
                "cov_sgd": cov,
                "cov_sgd_stderr": stderr,
                "cov_exact_discrete": exact,
                "cov_sde": sde,
                "rel_error_sgd_vs_exact": np.linalg.norm(cov - exact) / np.linalg.norm(exact),
                "rel_gap_sde_vs_exact": np.linalg.norm(sde - exact) / np.linalg.norm(exact),
                "max_z_sgd_vs_exact": float(np.max(np.abs(cov - exact)[iu] / stderr[iu])),
                "diverged_replicas": int(np.sum(result.diverged[i, j])),
            })
    return {
        "description": "SGD stationary covariance on a 3-D quadratic vs exact discrete theory and the SDE",
        "clock": "SGD steps",
        "sampling": sampling,
        "hessian": hessian,
        "hessian_eigenvalues": eigenvalues,
        "noise_cov": noise_cov,
        "num_examples": n,
        "replicas": replicas,
        "burn_in_steps": burn_in,
        "sample_steps": sample_steps,
        "seed": seed,
        "rows": rows,
    }


def format_table(results: dict) -> str:
    head = (f"{'eta':>7} {'S':>4} {'eta/S':>8} {'eta*lmax':>8} {'tr Sgd':>10} {'± se':>8} {'tr exact':>10} "
            f"{'tr SDE':>10} {'|SGD-ex|':>9} {'max z':>6} {'|SDE-ex|':>9}")
    lines = [head, "-" * len(head)]
    for r in results["rows"]:
        lines.append(
            f"{r['learning_rate']:7.3f} {r['batch_size']:4d} {r['noise_scale']:8.5f} {r['lr_times_lambda_max']:8.3f} "
            f"{np.trace(r['cov_sgd']):10.5f} {np.sqrt(np.sum(np.diag(r['cov_sgd_stderr']) ** 2)):8.5f} "
            f"{np.trace(r['cov_exact_discrete']):10.5f} {np.trace(r['cov_sde']):10.5f} "
            f"{100 * r['rel_error_sgd_vs_exact']:8.2f}% {r['max_z_sgd_vs_exact']:6.2f} "
            f"{100 * r['rel_gap_sde_vs_exact']:8.2f}%"
        )
    lines += ["|SGD-ex|, |SDE-ex|: Frobenius error relative to the exact discrete covariance;",
              "max z: largest |SGD − exact| over the 6 entries in Monte-Carlo standard errors."]
    return "\n".join(lines)


def _trace_curves(results: dict, size: int, learning_rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tr Σ/(η/S) of the exact discrete theory and of the SDE on a fine grid of η."""
    hessian, noise_cov, n = (np.asarray(results[k]) for k in ("hessian", "noise_cov", "num_examples"))
    factor = (n - size) / (n - 1) if results["sampling"] in ("subset", "epoch") else 1.0
    exact_trace = jax.vmap(lambda lr: jnp.trace(theory.sgd_stationary_cov(
        hessian, noise_cov, lr, size, sampling=results["sampling"], num_examples=int(n))))  # one compile for all η
    exact = np.asarray(exact_trace(jnp.asarray(learning_rates))) / (learning_rates / size)
    sde = np.trace(np.asarray(theory.ou_stationary_cov(hessian, factor * noise_cov, 1.0, size))) * size
    return exact, np.full(len(learning_rates), sde)


@styled
def plot(results: dict):
    """Left: tr Σ/(η/S) against η λ_max: the SGD ensemble (±2 standard errors), the exact
    discrete theory and the SDE (continuous Lyapunov; flat: its Σ is proportional to η/S).
    Right: every entry of SGD's Σ minus the exact discrete Σ, in Monte-Carlo standard errors."""
    import matplotlib.pyplot as plt

    fig, (left, right) = figure(1, 2, panel=(6.2, 4.8))
    rows = results["rows"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    iu = np.triu_indices(3)
    lam_max = float(np.max(results["hessian_eigenvalues"])) if rows else 1.0
    sizes = sorted({r["batch_size"] for r in rows})
    for c, size in enumerate(sizes):
        sub = [r for r in rows if r["batch_size"] == size]
        col = colours[c % len(colours)]
        x = np.array([r["lr_times_lambda_max"] for r in sub])
        n = np.array([r["noise_scale"] for r in sub])
        sgd_tr = np.array([np.trace(r["cov_sgd"]) for r in sub]) / n
        se = np.array([np.sqrt(np.sum(np.diag(r["cov_sgd_stderr"]) ** 2)) for r in sub]) / n
        fine = np.geomspace(x.min() / 1.3, min(x.max() * 1.15, 1.95), 60) / lam_max
        exact, sde = _trace_curves(results, size, fine)
        left.plot(fine * lam_max, exact, "-", color=col, label=f"exact discrete SGD, S={size}")
        left.plot(fine * lam_max, sde, "--", color=col, alpha=0.7, label=f"SDE (continuous Lyapunov), S={size}")
        left.errorbar(x, sgd_tr, yerr=2 * se, fmt="o", ms=5, color=col, capsize=3,
                      label=f"SGD ensemble, S={size} (±2 se)")
        for k, r in enumerate(sub):
            z = (np.asarray(r["cov_sgd"]) - np.asarray(r["cov_exact_discrete"]))[iu] / np.asarray(r["cov_sgd_stderr"])[iu]
            offsets = (np.arange(len(z)) - (len(z) - 1) / 2) * 0.012 + (c - (len(sizes) - 1) / 2) * 0.09
            right.plot(x[k] * 10 ** offsets, z, "o", ms=4, color=col, label=f"S={size}" if k == 0 else None)
    left.set_xscale("log")
    plain_log_ticks(left.xaxis)
    left.set_xlabel("η · λ_max(A)   (log scale)")
    left.set_ylabel("tr Σ / (η/S)")
    left.set_title("Stationary covariance: SGD, its exact theory, the SDE")
    left.legend(fontsize="small")
    largest = max([abs(v) for line in right.get_lines() for v in line.get_ydata()], default=0.0)
    right.set_ylim(-max(4.0, 1.35 * largest), max(4.0, 1.35 * largest))  # symmetric, room for the note
    right.axhspan(-2, 2, color="0.9", zorder=0, label="±2 standard errors")
    right.axhline(0.0, color="k", lw=0.8)
    right.set_xscale("log")
    plain_log_ticks(right.xaxis)
    right.set_xlabel("η · λ_max(A)   (log scale; the 6 entries of each Σ side by side)")
    right.set_ylabel("(Σ_SGD − Σ_exact)_ij / standard error")
    right.set_title("SGD against the exact discrete theory, entry by entry")
    right.text(0.02, 0.98, "errors are correlated: the 6 entries share their replicas,\n"
               "and every (η, S) uses the same random numbers", transform=right.transAxes, va="top", fontsize="small")
    right.legend(loc="lower right")
    if rows:
        eig = ", ".join(f"{v:g}" for v in np.round(results["hessian_eigenvalues"], 3))
        fig.suptitle(f"SGD ({results['sampling']} sampling) on a 3-D quadratic, Hessian eigenvalues {eig}, "
                     f"N = {results['num_examples']}: {results['replicas']} replicas, {results['burn_in_steps']} "
                     f"burn-in + {results['sample_steps']} averaged SGD steps")
    return fig


def main(out: str | Path = "sgdsde-output/demo", **kwargs) -> dict:
    """Check ``out`` (before any work), run, write ``covariance.json``, print the table,
    write ``covariance.png``."""
    out = check_out_dir(out, files=("covariance.json", "covariance.png"))
    return save_outputs(stationary_covariance(**kwargs), out, "covariance", plot, format_table)
