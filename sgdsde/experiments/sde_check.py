"""SGD against its SDE on a real network (docs/network_sde.md; docs/theory.md §2, §8).

An MLP on the built-in 8 × 8 digits (or a local MNIST / Fashion-MNIST / CIFAR folder),
trained from one initialisation (replicas differ in their keys only) by

- **SGD** (``sgd("subset")``): θ_{k+1} = θ_k − η ĝ_S(θ_k);
- **SVAG(ℓ)** (``svag(ℓ, "subset")``): ℓ calls of step η/ℓ per SGD step, gradient
  ((1 + r)/2) ĝ_{𝓑₁} + ((1 − r)/2) ĝ_{𝓑₂}, r = √(2ℓ − 1), covariance ℓ·f·C/S; it tends to
  the SDE dθ = −η g dt + η √(f/S) B dW weakly at order 1 in 1/ℓ; ℓ = 1 is SGD (run with
  SGD's keys: the same numbers, checked bit for bit);
- **the SDE** with the network's own C(θ) (``noise.empirical(finite_n=True)``: an exact
  draw ξ ~ N(0, C) per call, §1) by ``euler_maruyama`` or ``sme2``, fewer replicas (costly).

Curves are on the **SGD-step clock** (SVAG at SGD step k has made ℓ·k calls). The weak
error Δ(ℓ) = E_ℓ[φ] − E_ℓmax[φ] ≈ c (1/ℓ − 1/ℓmax) + O(1/ℓ²) gives the order p of
|Δ| ∝ (1/ℓ − 1/ℓmax)^p (GLS, :func:`sgdsde.compare.fit_order`; p = 1 expected). Noise
scales along SGD (``observers.noise_scales``, subsampled): B_simple = tr C/‖g‖² and
B_crit ≈ B_noise = tr(HC)/(gᵀHg). :func:`scaling_rule`: SGD at (κη, κS), κ = 1 … 64,
against SVAG at the base (η, S) at equal SME time, with κ* ≈ f·tr C/(S‖g‖²)
(``observers.scaling_rule_check``) from the base run. Tables and figures:
:mod:`~sgdsde.experiments.sde_check_report`.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from .. import noise, observers
from .._checks import check_int
from ..compare import fit_order
from ..hyper import Hyper
from ..nn import MLP, classification_problem
from ..nn import data as nn_data
from ..nn import metrics
from ..runner import DivergenceWarning, run
from ..sde import euler_maruyama
from ..sme import sme2
from ..steppers import sgd
from ..svag import svag
from .output import check_out_dir, save_outputs
from .sde_check_report import _scalar, format_scaling_table, format_table, plot, plot_scaling

__all__ = ["default_spec", "scaling_rule_spec", "load_data", "sde_check", "scaling_rule", "weak_error_in_ell",
           "format_table", "plot", "format_scaling_table", "plot_scaling", "main"]

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
# the scalar observables of the weak-error fit: the final values, and the train loss averaged
# over the recorded times after 0 (the whole run: the early phase, where they part, included)
OBSERVABLES = ("train_loss_mean", "train_loss", "test_loss", "test_accuracy")


def default_spec() -> dict:
    """The default settings of :func:`sde_check` (SGD-step clock)."""
    return {
        "hidden": [32],
        "weight_decay": 0.0,
        "learning_rate": 1.0,
        "batch_size": 32,
        "steps": 1000,
        "every": 50,
        "ells": [2, 4, 8, 16],
        "sde": "em",  # or "sme2": the second-order modified equation, drift g + (η/2)Hg
        "sde_dt": 0.25,
        "sde_replicas": 16,
        "noise_every": 100,
        "noise_replicas": 4,
        "noise_examples": 32,
        "train_examples": None,
        "test_examples": None,
        "min_z": 3.0,
    }


def _quick(spec: dict) -> dict:
    return {**spec, "steps": 100, "every": 25, "ells": [2, 4], "sde_dt": 0.5, "sde_replicas": 4,
            "noise_every": 50, "noise_replicas": 2, "noise_examples": 8}


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"sgdsde sde-check: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- data
def _detect_format(folder: Path) -> str:
    """The data format of a local folder, from the names of its files."""
    names = {p.name.removesuffix(".gz") for p in folder.rglob("*") if p.is_file()}
    if any(name.startswith("train-images") and name.endswith("idx3-ubyte") for name in names):
        return "mnist"  # Fashion-MNIST has the same files: pass data_format="fashion_mnist"
    if "data_batch_1.bin" in names:
        return "cifar10"
    if "train.bin" in names:
        return "cifar100"
    raise ValueError(f"data: cannot tell the format of {str(folder)!r} (no MNIST IDX or CIFAR binary files); "
                     f"pass the format, one of {nn_data.FORMATS[3:]}")


def load_data(folder: str | os.PathLike | None = None, data_format: str | None = None, *, key,
              train_examples: int | None = None, test_examples: int | None = None) -> nn_data.Splits:
    """Train and test sets: the built-in digits (``folder=None``: 1,258 train / 359 test),
    or a local folder in ``data_format`` (``nn.data.FORMATS``; detected from the file names
    when None). ``train_examples`` / ``test_examples``: keep the first n of each."""
    if folder is None:
        if data_format not in (None, "builtin", "digits"):
            raise ValueError(f"data_format: {data_format!r} needs a folder")
        splits = nn_data.load("builtin", key=key)
    else:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ValueError(f"data: {str(path)!r} is not a folder")
        splits = nn_data.load(data_format or _detect_format(path), path, key=key, validation=0)
    train, test = splits.train, splits.test
    if train_examples is not None:
        train = nn_data.subset(train, min(check_int(train_examples, "train_examples", 2), train.num_examples))
    if test_examples is not None:
        test = nn_data.subset(test, min(check_int(test_examples, "test_examples", 1), test.num_examples))
    return nn_data.Splits(train, None, test)


# --------------------------------------------------------------------- ensembles
def _summary(values: np.ndarray, keep: np.ndarray) -> dict:
    """Mean and standard error over the kept replicas (last axis) of (T, R) values."""
    used = int(keep.sum())
    kept = values[..., keep]
    mean = kept.mean(axis=-1) if used else np.full(values.shape[:-1], np.nan)
    stderr = kept.std(axis=-1, ddof=1) / np.sqrt(used) if used > 1 else np.full(values.shape[:-1], np.nan)
    return {"mean": mean, "stderr": stderr}


def _ensemble(key, stepper, problem, hyper, params, test, steps: int, every: int, replicas: int,
              progress: bool, label: str) -> dict:
    """Train/test loss and accuracy curves of one stepper at SGD steps 0, every, …, steps
    (``stepper.dt`` SGD steps per call); per-replica values of the scalar observables."""
    per_step = round(1 / stepper.dt)
    began = time.perf_counter()
    result = run(key, stepper, problem, hyper, params, steps * per_step, replicas=replicas, progress=progress,
                 observers=[metrics.evaluation_curve("train", every * per_step, name="train_metrics"),
                            metrics.evaluation_curve(test, every * per_step, name="test_metrics")])
    keep = ~np.asarray(result.diverged)
    curves = {}
    for split in ("train", "test"):
        record = result[f"{split}_metrics"]["values"]
        for metric in ("loss", "accuracy"):
            curves[f"{split}_{metric}"] = np.asarray(record[metric], np.float64)
    samples = {"train_loss_mean": curves["train_loss"][1:].mean(axis=0),
               **{name: curves[name][-1] for name in OBSERVABLES[1:]}}
    out = {
        "stepper": stepper.name,
        "calls_per_sgd_step": per_step,
        "replicas": replicas,
        "diverged": int((~keep).sum()),
        "times": np.asarray(result["train_metrics"]["times"], np.float64),
        "curves": {name: _summary(values, keep) for name, values in curves.items()},
        "samples": {name: np.where(keep, values, np.nan) for name, values in samples.items()},
        "seconds": time.perf_counter() - began,
    }
    _log(progress, f"{label}: {steps * per_step} calls × {replicas} replicas in {out['seconds']:.1f} s")
    return out


def weak_error_in_ell(runs: dict, ells: Sequence[int], min_z: float = 3.0) -> dict:
    """Δ(ℓ) = E_ℓ[φ] − E_ℓmax[φ] for every ℓ < ℓmax (ℓ = 1: SGD) and each observable, its
    standard error and z, and the GLS fit |Δ| ∝ (1/ℓ − 1/ℓmax)^p over the resolved points
    (|z| ≥ min_z): ``order`` over every ℓ, ``order_svag`` over ℓ ≥ 2 (SGD left out). The runs
    have independent keys: Cov(Δ_ℓ, Δ_ℓ') = δ_ℓℓ' se_ℓ² + se_ref² (the shared reference)."""
    ells = [int(e) for e in ells]
    reference, others = ells[-1], ells[:-1]
    x = np.array([1.0 / e - 1.0 / reference for e in others])
    out = {"ells": others, "reference_ell": reference, "x": x, "min_z": min_z}
    for name in OBSERVABLES:
        ref_mean, ref_se = _scalar(runs[f"svag{reference}"], name)
        stats = [_scalar(runs["sgd" if e == 1 else f"svag{e}"], name) for e in others]
        value = np.array([m - ref_mean for m, _ in stats])
        var = np.array([s**2 for _, s in stats])
        stderr = np.sqrt(var + ref_se**2)
        z = value / stderr
        resolved = np.isfinite(z) & (np.abs(z) >= min_z)
        covariance = np.diag(var) + ref_se**2
        fit, svag_only = (fit_order(x, value, covariance, use=resolved & keep)
                          for keep in (True, np.array(others) >= 2))  # all ℓ; SVAG alone (ℓ ≥ 2, no SGD)
        out[name] = {"value": value, "stderr": stderr, "z": z, "resolved": resolved, "order": fit.as_dict(),
                     "order_svag": svag_only.as_dict()}
    return out


def _noise_scales(key, problem, hyper, params, steps, spec, progress, sampling: str = "subset") -> dict:
    """B_simple and B_noise (≈ B_crit) along the first ``noise_replicas`` SGD replicas (the
    same keys as the SGD ensemble, so the same trajectories), subsampled, and the
    noise-to-signal ratio f·B_simple/S."""
    began = time.perf_counter()
    observer = observers.noise_scales(spec["noise_every"], method="subsample", num_examples=spec["noise_examples"])
    result = run(key, sgd(sampling), problem, hyper, params, steps, replicas=spec["noise_replicas"],
                 observers=[observer])
    record = result["noise_scales"]
    values = record["values"]
    check = observers.scaling_rule_check(result, num_examples=problem.num_examples if sampling == "subset" else None)
    out = {
        "times": np.asarray(record["times"], np.float64),
        "method": f"subsample, {spec['noise_examples']} examples per measurement",
        "replicas": spec["noise_replicas"],
        "nsr": np.asarray(check["nsr_mean"], np.float64),
        "kappa_star": float(check["kappa_star"]),
    }
    # the subsample is common to all replicas (its key folds in the step only), so its error
    # does not average out over replicas: se² = (replica spread)² + (mean subsample se)²
    for name in ("b_simple", "b_noise", "trace_cov", "grad_norm_sq", "trace_hc", "g_hg"):
        out[name] = np.asarray(values["mean"][name], np.float64)
        spread = np.asarray(values["mean_stderr"][name], np.float64)
        sampled = values.get(name + "_stderr")
        sampled = 0.0 if sampled is None else np.nanmean(np.asarray(sampled, np.float64), axis=-1)
        out[name + "_stderr"] = np.hypot(np.nan_to_num(spread), sampled)
    out["nsr_stderr"] = out["b_simple_stderr"] * out["nsr"] / out["b_simple"]
    out["seconds"] = time.perf_counter() - began
    _log(progress, f"noise scales on {spec['noise_replicas']} SGD replicas in {out['seconds']:.1f} s")
    return out


def _check_spec(spec: dict, replicas: int) -> dict:
    noise = spec["noise_every"] is not None
    for name in ("steps", "every", "batch_size", "sde_replicas") + (
            ("noise_every", "noise_replicas", "noise_examples") if noise else ()):
        check_int(spec[name], name, 1)
    check_int(replicas, "replicas", 2)
    if not np.isfinite(spec["learning_rate"]) or spec["learning_rate"] <= 0:
        raise ValueError(f"learning_rate: must be a finite number > 0, got {spec['learning_rate']!r}")
    if spec["steps"] % spec["every"] or (noise and spec["steps"] % spec["noise_every"]):
        raise ValueError(f"steps: must be a multiple of every ({spec['every']})"
                         + (f" and noise_every ({spec['noise_every']})" if noise else "") + f", got {spec['steps']}")
    ells = [check_int(e, "ells", 2) for e in spec["ells"]]
    if not ells or ells != sorted(set(ells)):
        raise ValueError(f"ells: need distinct increasing integers ≥ 2, got {spec['ells']!r}")
    if spec["sde"] not in ("em", "sme2"):
        raise ValueError(f"sde: must be 'em' or 'sme2', got {spec['sde']!r}")
    dt = spec["sde_dt"]
    if dt is not None and not (0 < dt <= 1 and abs(1 / dt - round(1 / dt)) < 1e-9):
        raise ValueError(f"sde_dt: must be 1/m for an integer m ≥ 1 (or None: no SDE run), got {dt!r}")
    if noise and spec["noise_replicas"] > replicas:
        raise ValueError(f"noise_replicas: at most replicas = {replicas}, got {spec['noise_replicas']}")
    return {**spec, "ells": ells}


def sde_check(
    *,
    data: str | os.PathLike | None = None,
    data_format: str | None = None,
    replicas: int = 32,
    steps: int | None = None,
    seed: int = 0,
    quick: bool = False,
    spec: dict | None = None,
    progress: bool = True,
) -> dict:
    """SGD vs SVAG(ℓ) vs the SDE on an MLP; returns plain numbers (JSON-ready).

    data: a folder of MNIST / Fashion-MNIST / CIFAR files (``data_format`` or detected),
      default the built-in digits. replicas: SGD and SVAG replicas (independent keys,
      one initialisation). steps: SGD steps (default ``spec["steps"]``). quick: a tiny
      run (the test suite). spec: overrides of :func:`default_spec` (or of its quick
      version); ``sde_dt=None`` or ``noise_every=None`` leave out the SDE or the noise scales.
    Keys from ``seed``: data split key(seed); initialisation fold_in(key(seed), 1); SGD
    and SVAG(1) fold_in(base, 1), SVAG(ℓ) fold_in(base, ℓ), the SDE fold_in(base, 0),
    base = fold_in(key(seed), 2).
    """
    spec = dict(_quick(default_spec()) if quick else default_spec(), **(spec or {}))
    if steps is not None:
        spec["steps"] = steps
    spec = _check_spec(spec, replicas)
    began = time.perf_counter()
    root = jax.random.key(check_int(seed, "seed", 0))
    splits = load_data(data, data_format, key=root, train_examples=spec["train_examples"],
                       test_examples=spec["test_examples"])
    problem = classification_problem(MLP(splits.train.num_classes, hidden=tuple(spec["hidden"])), splits.train,
                                     spec["weight_decay"])
    if spec["batch_size"] > problem.num_examples:
        raise ValueError(f"batch_size: at most N = {problem.num_examples}, got {spec['batch_size']}")
    params = problem.info["init_params"](jax.random.fold_in(root, 1))
    base = jax.random.fold_in(root, 2)
    hyper = Hyper(spec["learning_rate"], spec["batch_size"])
    ensemble = lambda key, stepper, count, label: _ensemble(
        key, stepper, problem, hyper, params, splits.test, spec["steps"], spec["every"], count, progress, label)
    runs = {
        "sgd": ensemble(jax.random.fold_in(base, 1), sgd("subset"), replicas, "SGD"),
        "svag1": ensemble(jax.random.fold_in(base, 1), svag(1, "subset"), replicas, "SVAG(1)"),
    }
    for ell in spec["ells"]:
        runs[f"svag{ell}"] = ensemble(jax.random.fold_in(base, ell), svag(ell, "subset"), replicas, f"SVAG({ell})")
    if spec["sde_dt"] is not None:
        solver = {"em": euler_maruyama, "sme2": sme2}[spec["sde"]]
        runs["sde"] = ensemble(jax.random.fold_in(base, 0), solver(noise.empirical(finite_n=True), spec["sde_dt"]),
                               spec["sde_replicas"], f"SDE ({spec['sde']}, dt = {spec['sde_dt']:g})")
    svag1_equals_sgd = all(
        np.array_equal(runs["sgd"]["samples"][n], runs["svag1"]["samples"][n], equal_nan=True) for n in OBSERVABLES
    ) and all(np.array_equal(runs["sgd"]["curves"][m]["mean"], runs["svag1"]["curves"][m]["mean"]) for m in METRICS)
    noise_scales = None if spec["noise_every"] is None else _noise_scales(
        jax.random.fold_in(base, 1), problem, hyper, params, spec["steps"], spec, progress)
    ells = [1] + spec["ells"]
    return {
        "description": "SGD vs SVAG(ℓ) vs the SDE (Euler–Maruyama, empirical gradient covariance) on an MLP",
        "clock": "SGD steps (an SVAG(ℓ) run makes ℓ calls per SGD step, the SDE 1/dt)",
        "spec": spec,
        "quick": quick,
        "replicas": replicas,
        "seed": seed,
        "data": {"name": splits.train.name, "train_examples": splits.train.num_examples,
                 "test_examples": splits.test.num_examples, "input_shape": list(splits.train.input_shape),
                 "num_classes": splits.train.num_classes},
        "model": {"name": f"MLP{tuple(spec['hidden'])}", "num_parameters": problem.info["num_parameters"]},
        "noise_scale": spec["learning_rate"] / spec["batch_size"],
        "runs": runs,
        "svag1_equals_sgd": bool(svag1_equals_sgd),
        "weak_error": weak_error_in_ell(runs, ells, spec["min_z"]),
        "noise_scales": noise_scales,
        "machine": {"cpu_count": os.cpu_count(), "load_average_1_5_15min": list(os.getloadavg()),
                    "jax_backend": jax.default_backend()},
        "runtime_s": time.perf_counter() - began,
    }


# ------------------------------------------------------------------ scaling rule
def scaling_rule_spec() -> dict:
    """The default settings of :func:`scaling_rule` (``iid`` sampling: the noise C/S has no
    finite-population factor, so (κη, κS) keeps η/S — and the SDE — exactly)."""
    return {
        "hidden": [32],
        "learning_rate": 0.02,
        "batch_size": 16,
        "steps": 3200,
        "kappas": [1, 2, 4, 8, 16, 32, 64],
        "reference_ell": 4,
        "noise_every": 400,
        "noise_replicas": 4,
        "noise_examples": 32,
        "min_z": 3.0,
    }


def _scaling_quick(spec: dict) -> dict:
    return {**spec, "steps": 64, "kappas": [1, 4, 16], "reference_ell": 2, "noise_every": 32,
            "noise_replicas": 2, "noise_examples": 8}


def _final(key, stepper, problem, hyper, params, test, calls, replicas) -> dict:
    """Final train/test loss and accuracy per replica (NaN for diverged replicas)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # counted and reported instead
        result = run(key, stepper, problem, hyper, params, calls, replicas=replicas,
                     observers=[metrics.evaluation_curve("train", calls, name="train_metrics"),
                                metrics.evaluation_curve(test, calls, name="test_metrics")])
    keep = ~np.asarray(result.diverged)
    out = {"diverged": int((~keep).sum()), "replicas": replicas}
    for name in METRICS:
        split, metric = name.split("_")
        out[name] = values = np.where(keep, np.asarray(result[f"{split}_metrics"]["values"][metric])[-1], np.nan)
        out[name + "_mean"], out[name + "_stderr"] = _scalar({"samples": {name: values}}, name)
    return out


def scaling_rule(
    *,
    data: str | os.PathLike | None = None,
    data_format: str | None = None,
    replicas: int = 16,
    seed: int = 0,
    quick: bool = False,
    spec: dict | None = None,
    progress: bool = True,
) -> dict:
    """The linear scaling rule on the MLP: SGD (``iid``) at (κη, κS) for κ in
    ``spec["kappas"]``, each run for steps/κ SGD steps (the same SME time T = η·steps),
    against SVAG(ℓ_ref) at the base (η, S) (the SDE reference, ℓ_ref·steps calls). The
    prediction: SGD leaves the SDE once κ exceeds κ* ≈ NSR = tr C/(S‖g‖²), the smallest
    replica-mean NSR along the base run (``observers.scaling_rule_check``). Reports the
    final losses and accuracies per κ, their gaps to the reference (± se, z), the first κ
    whose final train-loss gap is resolved (|z| ≥ min_z) or that diverged, and κ*.
    Keys: every κ and the noise-scale run fold_in(base, 1) (common random numbers across
    κ), the reference fold_in(base, 0), base = fold_in(key(seed), 2)."""
    spec = dict(_scaling_quick(scaling_rule_spec()) if quick else scaling_rule_spec(), **(spec or {}))
    check_int(replicas, "replicas", 2)
    kappas = [check_int(k, "kappas", 1) for k in spec["kappas"]]
    steps = check_int(spec["steps"], "steps", 1)
    if any(steps % k for k in kappas) or steps % spec["noise_every"]:
        raise ValueError(f"steps: must be a multiple of every κ {kappas} and of noise_every, got {steps}")
    began = time.perf_counter()
    root = jax.random.key(check_int(seed, "seed", 0))
    splits = load_data(data, data_format, key=root)
    problem = classification_problem(MLP(splits.train.num_classes, hidden=tuple(spec["hidden"])), splits.train)
    eta, size = float(spec["learning_rate"]), check_int(spec["batch_size"], "batch_size", 1)
    if max(kappas) * size > problem.num_examples:
        raise ValueError(f"kappas: κ·S = {max(kappas) * size} exceeds N = {problem.num_examples}")
    params = problem.info["init_params"](jax.random.fold_in(root, 1))
    base = jax.random.fold_in(root, 2)
    runs = []
    for kappa in kappas:
        start = time.perf_counter()
        runs.append({"kappa": kappa, "learning_rate": kappa * eta, "batch_size": kappa * size,
                     "steps": steps // kappa, **_final(jax.random.fold_in(base, 1), sgd("iid"), problem,
                                                       Hyper(kappa * eta, kappa * size), params, splits.test,
                                                       steps // kappa, replicas)})
        _log(progress, f"scaling rule κ = {kappa}: η = {kappa * eta:g}, S = {kappa * size}, {steps // kappa} steps "
                       f"× {replicas} replicas in {time.perf_counter() - start:.1f} s")
    ell = check_int(spec["reference_ell"], "reference_ell", 1)
    start = time.perf_counter()
    reference = _final(jax.random.fold_in(base, 0), svag(ell, "iid"), problem, Hyper(eta, size), params,
                       splits.test, steps * ell, replicas)
    _log(progress, f"scaling rule reference SVAG({ell}): {steps * ell} calls in {time.perf_counter() - start:.1f} s")
    for entry in runs:
        for name in METRICS:
            gap = entry[name + "_mean"] - reference[name + "_mean"]
            stderr = float(np.hypot(entry[name + "_stderr"], reference[name + "_stderr"]))
            entry[name + "_gap"], entry[name + "_gap_stderr"] = gap, stderr
            entry[name + "_gap_z"] = gap / stderr if stderr > 0 else float("nan")
    parted = [e["kappa"] for e in runs if e["diverged"] or abs(e["train_loss_gap_z"]) >= spec["min_z"]]
    noise_spec = {**spec, "learning_rate": eta}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        observed = _noise_scales(jax.random.fold_in(base, 1), problem, Hyper(eta, size), params, steps, noise_spec,
                                 progress, sampling="iid")
    return {
        "description": "linear scaling rule (κη, κS) against SVAG at the base (η, S), at equal SME time",
        "clock": f"SME time T = η·steps = {eta * steps:g} for every κ",
        "spec": spec,
        "quick": quick,
        "replicas": replicas,
        "seed": seed,
        "data": {"name": splits.train.name, "train_examples": splits.train.num_examples,
                 "test_examples": splits.test.num_examples},
        "runs": runs,
        "reference": {"stepper": f"svag({ell}, iid)", **reference},
        "first_parting_kappa": parted[0] if parted else None,
        "noise_scales": observed,
        "kappa_star": observed["kappa_star"],
        "runtime_s": time.perf_counter() - began,
    }


def main(out: str | Path = "sgdsde-output/sde_check", stem: str = "sde_check", **kwargs) -> dict:
    """Check ``out`` (before any work), run :func:`sde_check`, write ``<stem>.json``,
    print the table, write ``<stem>.png``."""
    out = check_out_dir(out, files=(f"{stem}.json", f"{stem}.png"))
    return save_outputs(sde_check(**kwargs), out, stem, plot, format_table)
