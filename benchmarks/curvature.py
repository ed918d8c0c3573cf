#!/usr/bin/env python
"""Benchmark: Hessian top-k eigenvalues and trace of an MLP, sgdsde.curvature against PyHessian,
at equal accuracy.

What is measured (issues 5, 11): for a tanh MLP of about 10⁵ parameters (100 → 256 → 256 → 10,
94,218 parameters) with mean cross-entropy on N generated examples, at the same weights and
data in both libraries (float32, CPU):

- top-k eigenvalues (k = 5). Accuracy criterion: every one of the k values within a relative
  ``--rel-tol`` (1e-3) of a converged reference (block Lanczos, blocks of 10, 300 HVPs, whose
  a-posteriori bounds must be ≤ rel-tol/10 relative). Each method's cheapest setting that meets
  the criterion on ``--calibration-seeds`` (3) random starts is found first (untimed), then timed:
  sgdsde ``top_eigenvalues(method="lanczos" | "block", num_iterations=m)`` over a ladder of m,
  PyHessian ``eigenvalues(top_n=k, maxIter=max_iter, tol=t)`` over t = 1e-3, 1e-4, … (its
  adaptive stop, the cheapest way it has to reach an accuracy; HVPs counted). Every timed
  result's accuracy is recorded.
- trace by Hutchinson's method: the same estimator (Rademacher probes) with the same number of
  probes n, so the same standard error (reported for both): ``hutchinson_trace(num_samples=n)``
  (zᵀHz by forward-over-forward) against PyHessian's ``trace(maxIter=n, tol=0)``.
- trace at equal accuracy by Hutch++ (``hutchpp_trace``: tr(QᵀHQ) exact on a sketched basis Q
  of s vectors, Hutchinson with r probes on the rest; m = 2s + r products: s HVPs and s + r
  quadratic forms). Calibration
  (untimed): the target is PyHessian's standard error at n probes (pooled over
  ``--calibration-seeds`` untimed PyHessian calls); for each s in ``HUTCHPP_SKETCHES`` a
  pilot run gives the residual probes' standard deviation σ_r(s) (pooled over the seeds), so
  r(s) = ⌈(σ_r(s)/target)²⌉ gives an expected standard error ≤ the target; the (s, r) with
  the fewest products m is timed against PyHessian's ``trace(maxIter=n)``. Every timed
  call's reported standard error is recorded against the target.
- trace at equal accuracy by the Gauss–Newton split (``gauss_newton_split_trace`` on the same
  network as an ``sgdsde.nn`` MLP: tr G exact by per-example norms of the dense layers,
  Hutchinson with m probes on the residual R = H − G). Calibration (untimed): pilot runs
  give the residual probes' standard deviation σ_R (pooled over the seeds), m =
  ⌈(σ_R/target)²⌉ against the same target as Hutch++.

Each timed call is what a user runs: PyHessian's includes building the ``hessian`` object
(one forward and backward pass with ``create_graph=True``), sgdsde's its input checks and
linearisation of the gradient. The ratio is PyHessian's time over sgdsde's (> 1: sgdsde
faster). Timing as in every benchmark here (``_common.py``): warm-up (JAX compiles), then
interleaved repeats; ratios use the median execution time, JAX compile seconds split off, and
the first call (compile included) is its own column and ratio. Each sgdsde first call is
cold: JAX's caches are cleared before it (``time_interleaved(cold_first=True)``), because
the calibration, the pilots and the methods share compiled programs (Hutchinson's and
Hutch++'s quadratic form, small eager ops), which would otherwise make a later first call
look cheaper than in a fresh process.
PyTorch runs with ``torch.set_num_threads(cores)``; XLA uses all cores.

Checks: the two libraries' losses, gradients and one HVP with the same vector agree (they
compute the same Hessian); every timed top-k result meets the accuracy criterion; the two
trace estimates agree within their combined standard error.

Needs ``torch`` and ``pyhessian`` (the ``bench`` extra). Usage:
    python benchmarks/curvature.py [--quick] [--k 5] [--rel-tol 1e-3] [--probes 100]

--quick runs a small version (< 1 min) to check that everything works; it writes
benchmarks/results/curvature_quick.json and leaves docs/benchmarks.md alone. A full run
writes benchmarks/results/curvature.json and the ``curvature`` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import linen  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import _common as C  # noqa: E402
import sgdsde as sd  # noqa: E402
from sgdsde import curvature as cv  # noqa: E402

NAME = "curvature"
DOC = C.ROOT / "docs" / "benchmarks.md"
LABELS = {
    "sgdsde_lanczos": "sgdsde top_eigenvalues (Lanczos)",
    "sgdsde_block": "sgdsde top_eigenvalues (block Lanczos)",
    "pyhessian_topk": "PyHessian eigenvalues (deflated power)",
    "sgdsde_trace": "sgdsde hutchinson_trace",
    "pyhessian_trace": "PyHessian trace (Hutchinson)",
    "sgdsde_hutchpp": "sgdsde hutchpp_trace (Hutch++, equal s.e.)",
    "sgdsde_gn_split": "sgdsde gauss_newton_split_trace (equal s.e.)",
}
LADDER = (10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 160, 200, 240, 300)  # sgdsde HVP budgets
PYHESSIAN_TOLS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
HUTCHPP_SKETCHES = (4, 8, 16, 32)  # Hutch++ sketch sizes s tried in the calibration
HUTCHPP_PILOT = 41  # residual probes per pilot run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small and fast (< 1 min), for checking")
    p.add_argument("--k", type=int, default=5, help="top eigenvalues (default 5)")
    p.add_argument("--rel-tol", type=float, default=1e-3, help="accuracy criterion: relative error of each (default 1e-3)")
    p.add_argument("--probes", type=int, default=None, help="Hutchinson probes (default 100; 20 with --quick)")
    p.add_argument("--block-size", type=int, default=None, help="block Lanczos block size (default k)")
    p.add_argument("--max-iter", type=int, default=1000, help="PyHessian maxIter per eigenvalue (default 1000)")
    p.add_argument("--calibration-seeds", type=int, default=None, help="random starts that must meet the criterion (default 3; 2 with --quick)")
    p.add_argument("--examples", type=int, default=None, help="training examples N (default 1000; 200 with --quick)")
    p.add_argument("--inputs", type=int, default=100, help="input dimension (default 100)")
    p.add_argument("--hidden", type=int, default=None, help="hidden width, two layers (default 256; 32 with --quick)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-steps", type=int, default=None,
                   help="full-batch gradient steps before measuring (default 100; 10 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3; 1 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: the available cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--tag", default=None, help="write benchmarks/results/curvature_<tag>.json and leave the docs alone")
    a = p.parse_args(argv)
    a.probes = a.probes or (20 if a.quick else 100)
    a.block_size = a.block_size or a.k
    a.calibration_seeds = a.calibration_seeds or (2 if a.quick else 3)
    a.examples = a.examples or (200 if a.quick else 1000)
    a.hidden = a.hidden or (32 if a.quick else 256)
    a.train_steps = a.train_steps if a.train_steps is not None else (10 if a.quick else 100)
    a.repeats = a.repeats or (1 if a.quick else 3)
    if a.probes < 2 or a.examples < 2 or a.k < 1 or not 0 < a.rel_tol < 1:
        p.error("--probes and --examples must be ≥ 2, --k ≥ 1, 0 < --rel-tol < 1")
    return a


# ------------------------------------------------------------------ the model, in both libraries
def init_params(rng: np.random.Generator, sizes) -> dict:
    """Glorot-uniform weights (float32), zero biases: {"w1", "b1", …}, w_i of shape (in, out)."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        params[f"w{i}"] = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        params[f"b{i}"] = np.zeros(fan_out, np.float32)
    return params


def mlp(params: dict, x):
    layers = len(params) // 2
    h = x
    for i in range(1, layers + 1):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < layers:
            h = jnp.tanh(h)
    return h


def per_example_loss(params, example):
    x, y = example
    logits = mlp(params, x)
    return jax.nn.logsumexp(logits) - logits[y]


def make_data(rng, n, inputs, classes):
    x = rng.normal(size=(n, inputs)).astype(np.float32)
    teacher = rng.normal(size=(inputs, classes)) / math.sqrt(inputs)
    y = np.argmax(x @ teacher + 0.5 * rng.normal(size=(n, classes)), axis=1).astype(np.int32)
    return x, y


def train(problem, params, steps, learning_rate=0.5):
    """Full-batch gradient descent, so the Hessian is measured away from the random start."""
    step = jax.jit(lambda p: jax.tree_util.tree_map(lambda w, g: w - learning_rate * g, p, problem.grad(p)))
    for _ in range(steps):
        params = step(params)
    return jax.block_until_ready(params)


def torch_model(params: dict, torch):
    layers = len(params) // 2
    modules = []
    for i in range(1, layers + 1):
        w = params[f"w{i}"]
        linear = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.array(np.asarray(w).T)))
            linear.bias.copy_(torch.from_numpy(np.array(params[f"b{i}"])))
        modules.append(linear)
        if i < layers:
            modules.append(torch.nn.Tanh())
    return torch.nn.Sequential(*modules)


def torch_flat(tensors) -> np.ndarray:
    """Flatten in sgdsde's order (ravel_pytree of {"b1", "b2", …, "w1", …}: sorted keys; w as (in, out))."""
    named = {}
    for i in range(0, len(tensors), 2):
        layer = i // 2 + 1
        named[f"w{layer}"] = tensors[i].detach().numpy().T
        named[f"b{layer}"] = tensors[i + 1].detach().numpy()
    return np.concatenate([np.asarray(named[k]).ravel() for k in sorted(named)])


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
    a = parse_args(argv)
    began, machine = C.begin()
    import pyhessian
    import torch

    cores = machine["cpus_available"] or machine["cpu_count"] or 1
    torch.set_num_threads(a.threads or cores)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    sizes = (a.inputs, a.hidden, a.hidden, a.classes)
    x, y = make_data(rng, a.examples, a.inputs, a.classes)
    problem = sd.Problem(per_example_loss, (jnp.asarray(x), jnp.asarray(y)))
    params = jax.tree_util.tree_map(jnp.asarray, init_params(rng, sizes))
    d = int(ravel_pytree(params)[0].size)
    C.log(f"MLP {sizes}: d = {d} parameters, N = {a.examples}; {a.train_steps} full-batch GD steps")
    params = train(problem, params, a.train_steps)
    n, k = a.probes, a.k

    # the same network as an sgdsde.nn problem (Flax MLP, tanh), for the Gauss–Newton split
    nn_problem = sd.nn.classification_problem(
        sd.nn.models.MLP(num_classes=a.classes, hidden=(a.hidden, a.hidden), activation=linen.tanh),
        sd.nn.data.make_dataset(x, y, a.classes))
    variables = {"params": {f"Dense_{i}": {"kernel": params[f"w{i + 1}"], "bias": params[f"b{i + 1}"]}
                            for i in range(len(sizes) - 1)}}

    model = torch_model(jax.tree_util.tree_map(np.asarray, params), torch)
    criterion = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    # ---- checks: the same loss, gradient and Hessian in both libraries
    loss_t = criterion(model(xt), yt)
    grads_t = torch.autograd.grad(loss_t, list(model.parameters()), create_graph=True)
    flat_params, unravel = ravel_pytree(params)
    v = rng.normal(size=d).astype(np.float32)
    v_t = []
    flat_order = {}  # torch parameter i -> its slice in sgdsde's flat vector
    start = 0
    for key in sorted(params):
        flat_order[key] = (start, start + params[key].size)
        start += params[key].size
    for i, p_t in enumerate(model.parameters()):
        layer, kind = i // 2 + 1, "w" if i % 2 == 0 else "b"
        lo, hi = flat_order[f"{kind}{layer}"]
        piece = v[lo:hi].reshape(params[f"{kind}{layer}"].shape)
        v_t.append(torch.from_numpy(np.ascontiguousarray(piece.T if kind == "w" else piece)))
    hv_t = torch.autograd.grad(grads_t, list(model.parameters()), grad_outputs=v_t)
    hv_j = ravel_pytree(cv.hvp(problem.loss, params, unravel(jnp.asarray(v))))[0]
    g_j = ravel_pytree(problem.grad(params))[0]
    checks = {
        "loss_torch": float(loss_t.detach()), "loss_sgdsde": float(problem.loss(params)),
        "grad_max_rel_diff": float(np.max(np.abs(torch_flat(grads_t) - np.asarray(g_j))) / np.max(np.abs(np.asarray(g_j)))),
        "hvp_max_rel_diff": float(np.max(np.abs(torch_flat(hv_t) - np.asarray(hv_j))) / np.max(np.abs(np.asarray(hv_j)))),
    }
    checks["loss_rel_diff"] = abs(checks["loss_torch"] - checks["loss_sgdsde"]) / abs(checks["loss_sgdsde"])
    checks["nn_loss_rel_diff"] = abs(float(nn_problem.loss(variables)) - checks["loss_sgdsde"]) / abs(checks["loss_sgdsde"])
    C.log(f"same model: loss rel diff {checks['loss_rel_diff']:.1e}, grad {checks['grad_max_rel_diff']:.1e}, "
          f"HVP {checks['hvp_max_rel_diff']:.1e} (float32)")

    # ---- the reference top-k and the accuracy criterion
    ref_budget = min(300, d - d % 10)
    ref = cv.block_lanczos(problem.loss, params, key=jax.random.key(10_000 + a.seed), block_size=10,
                           num_iterations=ref_budget)
    ref_values, _, ref_bounds = (np.asarray(x, np.float64) for x in ref.ritz())
    reference = ref_values[:k]
    ref_rel_bound = float(np.max(ref_bounds[:k] / np.abs(reference)))
    C.log(f"reference top-{k} (block Lanczos, {ref_budget} HVPs): {np.round(reference, 6).tolist()}, "
          f"a-posteriori bounds ≤ {ref_rel_bound:.1e} relative")
    if not ref_rel_bound <= a.rel_tol / 10:
        raise SystemExit(f"the reference is not converged to rel-tol/10 ({ref_rel_bound:.1e}); use a larger budget")

    def rel_error(values) -> float:
        values = -np.sort(-np.asarray(values, np.float64))[:k]
        return float(np.max(np.abs(values - reference) / np.abs(reference)))

    # ---- calibration (untimed): each method's cheapest setting meeting the criterion
    seeds = [jax.random.key(20_000 + a.seed + i) for i in range(a.calibration_seeds)]

    def sgdsde_topk(method, budget, key):  # the call that is timed
        return cv.top_eigenvalues(problem.loss, params, key=key, k=k, method=method, num_iterations=budget,
                                  block_size=a.block_size)

    # The first j steps of an m-step (block) Lanczos run are the j-step run (T_j is T_m's leading
    # block), so one run at the largest budget per start calibrates every budget without compiling.
    settings, calibration = {}, {}
    for method in ("lanczos", "block"):
        p = 1 if method == "lanczos" else a.block_size
        budgets = sorted({max(b // p, 1) * p for b in LADDER if k <= max(b // p, 1) * p <= d})
        tried, done = [], 0
        for longest in (60, 120, 240, LADDER[-1]):  # runs of growing length until a prefix meets the criterion
            todo = [b for b in budgets if done < b <= longest] or ([budgets[-1]] if budgets[-1] > done else [])
            if not todo:
                break
            tridiagonals = []
            for key in seeds:
                run = (cv.lanczos(problem.loss, params, key=key, num_iterations=todo[-1]) if method == "lanczos" else
                       cv.block_lanczos(problem.loss, params, key=key, block_size=p, num_iterations=todo[-1]))
                tridiagonals.append(np.asarray(run.tridiagonal(), np.float64))
            for budget in todo:
                errors = [rel_error(np.linalg.eigvalsh(t[:budget, :budget])[::-1][:k]) for t in tridiagonals]
                tried.append({"num_iterations": budget, "max_rel_error": max(errors)})
                if max(errors) <= a.rel_tol:
                    settings[method] = budget
                    break
            done = todo[-1]
            if method in settings:
                break
        calibration[f"sgdsde_{method}"] = tried
        C.log(f"sgdsde {method}: {tried[-1]}")
    hvp_count = {"n": 0}
    ph_module = sys.modules["pyhessian.hessian"]  # the module (pyhessian.hessian is also the class)
    original_hvp = ph_module.hessian_vector_product

    def counting_hvp(*args, **kwargs):
        hvp_count["n"] += 1
        return original_hvp(*args, **kwargs)

    def pyhessian_topk(tol, seed):
        torch.manual_seed(seed)
        h = pyhessian.hessian(model, criterion, data=(xt, yt), cuda=False)
        values, _ = h.eigenvalues(maxIter=a.max_iter, tol=tol, top_n=k)
        return values

    tried = []
    ph_module.hessian_vector_product = counting_hvp
    try:
        for tol in PYHESSIAN_TOLS:
            errors, hvps = [], []
            for i in range(a.calibration_seeds):
                hvp_count["n"] = 0
                errors.append(rel_error(pyhessian_topk(tol, 20_000 + a.seed + i)))
                hvps.append(hvp_count["n"])
            tried.append({"tol": tol, "max_iter": a.max_iter, "max_rel_error": max(errors), "hvps": hvps})
            C.log(f"PyHessian: {tried[-1]}")
            if max(errors) <= a.rel_tol:
                settings["pyhessian"] = tol
                break
    finally:
        ph_module.hessian_vector_product = original_hvp
    calibration["pyhessian"] = tried
    missing = [m for m in ("lanczos", "block", "pyhessian") if m not in settings]
    if missing:
        raise SystemExit(f"no setting met the criterion for {missing}: {calibration}")

    # ---- Hutch++ at PyHessian's standard error (untimed): the target, then σ_r(s) by pilots
    target_samples = []
    for i in range(a.calibration_seeds):
        torch.manual_seed(25_000 + a.seed + i)
        h = pyhessian.hessian(model, criterion, data=(xt, yt), cuda=False)
        target_samples.append(np.asarray(h.trace(maxIter=n, tol=0.0), dtype=np.float64))
    target_sd = float(np.sqrt(np.mean([np.var(t, ddof=1) for t in target_samples])))
    target_se = target_sd / math.sqrt(n)
    pilots = []
    for s in (s for s in HUTCHPP_SKETCHES if s <= d):
        runs = [cv.hutchpp_trace(problem.loss, params, key=jax.random.key(26_000 + a.seed + i),
                                 num_products=2 * s + HUTCHPP_PILOT, sketch_size=s) for i in range(a.calibration_seeds)]
        sigma = float(np.sqrt(np.mean([np.var(np.asarray(r.samples, np.float64), ddof=1) for r in runs])))
        r = max(2, math.ceil((sigma / target_se) ** 2))
        pilots.append({"sketch_size": s, "residual_sd": sigma, "residual_probes": r, "hvps": 2 * s + r,
                       "expected_stderr": sigma / math.sqrt(r)})
        C.log(f"Hutch++ pilot: {pilots[-1]}")
    hutchpp = min(pilots, key=lambda p: p["hvps"])
    calibration["hutchpp"] = {"target_stderr": target_se, "hutchinson_probe_sd": target_sd, "pilots": pilots,
                              "chosen": hutchpp}
    C.log(f"Hutch++ at PyHessian's standard error {target_se:.3g} (probe s.d. {target_sd:.3g}, n = {n}): "
          f"s = {hutchpp['sketch_size']}, r = {hutchpp['residual_probes']}, m = {hutchpp['hvps']} HVPs")
    gn_runs = [cv.gauss_newton_split_trace(nn_problem, variables, key=jax.random.key(27_000 + a.seed + i),
                                           num_samples=HUTCHPP_PILOT) for i in range(a.calibration_seeds)]
    gn_sigma = float(np.sqrt(np.mean([np.var(np.asarray(r.samples, np.float64), ddof=1) for r in gn_runs])))
    gn = {"residual_sd": gn_sigma, "residual_probes": max(2, math.ceil((gn_sigma / target_se) ** 2)),
          "gauss_newton_trace": float(gn_runs[0].gauss_newton)}
    gn["expected_stderr"] = gn_sigma / math.sqrt(gn["residual_probes"])
    calibration["gauss_newton_split"] = gn
    C.log(f"Gauss–Newton split at PyHessian's standard error: tr G = {gn['gauss_newton_trace']:.5g} (exact), "
          f"residual probe s.d. {gn_sigma:.3g} against {target_sd:.3g} for H: m = {gn['residual_probes']} probes")

    # ---- the timed calls
    keys = iter(jax.random.split(jax.random.key(a.seed), 10_000))
    torch_seeds = iter(range(30_000, 40_000))
    trace_samples = {"sgdsde": [], "pyhessian": []}  # every call's probes, pooled for the check
    hutchpp_runs = []  # (estimate, reported se) of every Hutch++ call
    gn_calls = []  # (estimate, reported se) of every Gauss–Newton split call
    errors = {"sgdsde_lanczos": [], "sgdsde_block": [], "pyhessian_topk": []}

    def recorded(name, values):
        errors[name].append(rel_error(values))
        return values

    def sgdsde_trace():
        est = cv.hutchinson_trace(problem.loss, params, key=next(keys), num_samples=n)
        trace_samples["sgdsde"].append(np.asarray(est.samples))
        return est

    def pyhessian_trace():
        h = pyhessian.hessian(model, criterion, data=(xt, yt), cuda=False)
        samples = h.trace(maxIter=n, tol=0.0)
        trace_samples["pyhessian"].append(np.asarray(samples, dtype=np.float64))
        return samples

    def sgdsde_hutchpp():
        est = cv.hutchpp_trace(problem.loss, params, key=next(keys), num_products=hutchpp["hvps"],
                               sketch_size=hutchpp["sketch_size"])
        hutchpp_runs.append((float(est.mean), float(est.stderr)))
        return est

    def sgdsde_gn_split():
        est = cv.gauss_newton_split_trace(nn_problem, variables, key=next(keys), num_samples=gn["residual_probes"])
        gn_calls.append((float(est.mean), float(est.stderr)))
        return est

    calls = {
        "sgdsde_lanczos": lambda: recorded("sgdsde_lanczos", sgdsde_topk("lanczos", settings["lanczos"], next(keys))),
        "sgdsde_block": lambda: recorded("sgdsde_block", sgdsde_topk("block", settings["block"], next(keys))),
        "pyhessian_topk": lambda: recorded("pyhessian_topk", pyhessian_topk(settings["pyhessian"], next(torch_seeds))),
        "sgdsde_trace": sgdsde_trace,
        "pyhessian_trace": pyhessian_trace,
        "sgdsde_hutchpp": sgdsde_hutchpp,
        "sgdsde_gn_split": sgdsde_gn_split,
    }
    C.log(f"timing {len(calls)} calls interleaved: 1 warm-up round, {a.repeats} timed rounds")
    # cold first calls: the calibration, the Hutch++ pilots and the other methods share compiled
    # programs (the quadratic form vᵀHv of Hutchinson and Hutch++, eager key ops, …)
    timings = C.time_interleaved(calls, warmup=1, repeats=a.repeats, cold_first=True)

    # ---- values and agreement
    tr_sd = timings["sgdsde_trace"].result
    py_samples = np.asarray(timings["pyhessian_trace"].result, dtype=np.float64)
    tr_py, se_py = float(py_samples.mean()), float(py_samples.std(ddof=1) / math.sqrt(py_samples.size))
    pooled = {name: np.concatenate(v).astype(np.float64) for name, v in trace_samples.items()}
    pooled_mean = {name: float(v.mean()) for name, v in pooled.items()}
    pooled_se = {name: float(v.std(ddof=1) / math.sqrt(v.size)) for name, v in pooled.items()}
    z_trace = (pooled_mean["sgdsde"] - pooled_mean["pyhessian"]) / math.hypot(*pooled_se.values())
    # Hutch++: the mean of its calls (independent keys) against PyHessian's pooled probes
    reference_mean = (pooled_mean["pyhessian"], pooled_se["pyhessian"])
    tr_pp = timings["sgdsde_hutchpp"].result
    pp = _calls_summary(hutchpp_runs, target_se, tr_pp, reference_mean, "z_hutchpp_vs_pyhessian")
    tr_gn = timings["sgdsde_gn_split"].result
    gc = _calls_summary(gn_calls, target_se, tr_gn, reference_mean, "z_gn_split_vs_pyhessian")
    pyhessian_hvps = max(calibration["pyhessian"][-1]["hvps"])
    hvps = {"sgdsde_lanczos": settings["lanczos"], "sgdsde_block": settings["block"] // a.block_size * a.block_size,
            "pyhessian_topk": pyhessian_hvps, "sgdsde_trace": n, "pyhessian_trace": n,
            "sgdsde_hutchpp": hutchpp["hvps"], "sgdsde_gn_split": gn["residual_probes"]}
    values = {
        "top_k": {"k": k, "rel_tol": a.rel_tol, "reference": reference.tolist(), "reference_budget": ref_budget,
                  "reference_max_rel_bound": ref_rel_bound, "settings": settings, "calibration": calibration,
                  "timed_max_rel_error": {name: max(v) for name, v in errors.items()},
                  "last": {name: np.asarray(timings[name].result, np.float64).tolist() for name in errors}},
        "trace": {"sgdsde": float(tr_sd.mean), "sgdsde_stderr": float(tr_sd.stderr), "pyhessian": tr_py,
                  "pyhessian_stderr": se_py, "probes_per_call": n,
                  "pooled_probes": {name: int(v.size) for name, v in pooled.items()}, "pooled_mean": pooled_mean,
                  "pooled_stderr": pooled_se, "z_sgdsde_vs_pyhessian": z_trace},
        "hutchpp": {"sketch_size": hutchpp["sketch_size"], "residual_probes": hutchpp["residual_probes"],
                    "hvps": hutchpp["hvps"], **pp, "last_deflated": float(tr_pp.deflated)},
        "gauss_newton_split": {**gn, **gc},
    }
    accurate = all(max(v) <= a.rel_tol for v in errors.values())
    ok = (checks["hvp_max_rel_diff"] < 1e-3 and checks["loss_rel_diff"] < 1e-5 and abs(z_trace) < 4
          and abs(pp["z_hutchpp_vs_pyhessian"]) < 4 and abs(gc["z_gn_split_vs_pyhessian"]) < 4
          and checks["nn_loss_rel_diff"] < 1e-5 and accurate)
    checks["ok"], checks["timed_top_k_accurate"] = bool(ok), bool(accurate)
    best_sgdsde = min(("sgdsde_lanczos", "sgdsde_block"), key=lambda name: timings[name].median)

    def ratio(anchor: str, ours: str, first: bool = False) -> float:
        if first:  # first call, compile included, on both sides
            return timings[anchor].first_call / timings[ours].first_call
        return timings[anchor].median / timings[ours].median

    ratios = {
        "top_k_pyhessian_over_sgdsde": ratio("pyhessian_topk", best_sgdsde),
        "top_k_sgdsde_method": best_sgdsde,
        "top_k_pyhessian_over_sgdsde_lanczos": ratio("pyhessian_topk", "sgdsde_lanczos"),
        "top_k_pyhessian_over_sgdsde_block": ratio("pyhessian_topk", "sgdsde_block"),
        "trace_pyhessian_over_sgdsde": ratio("pyhessian_trace", "sgdsde_trace"),
        "first_call_top_k_pyhessian_over_sgdsde": ratio("pyhessian_topk", best_sgdsde, first=True),
        "first_call_trace_pyhessian_over_sgdsde": ratio("pyhessian_trace", "sgdsde_trace", first=True),
        "trace_pyhessian_over_sgdsde_hutchpp": ratio("pyhessian_trace", "sgdsde_hutchpp"),
        "first_call_trace_pyhessian_over_sgdsde_hutchpp": ratio("pyhessian_trace", "sgdsde_hutchpp", first=True),
        "trace_pyhessian_over_sgdsde_gn_split": ratio("pyhessian_trace", "sgdsde_gn_split"),
        "first_call_trace_pyhessian_over_sgdsde_gn_split": ratio("pyhessian_trace", "sgdsde_gn_split", first=True),
    }
    results = {
        "config": {
            "model": f"tanh MLP {sizes}, mean cross-entropy", "parameters": d, "examples": a.examples,
            "train_steps": a.train_steps, "k": k, "rel_tol": a.rel_tol, "probes": n, "block_size": a.block_size,
            "pyhessian_max_iter": a.max_iter, "calibration_seeds": a.calibration_seeds, "repeats": a.repeats,
            "float": "float32", "torch": torch.__version__, "pyhessian": _pyhessian_version(),
            "torch_threads": torch.get_num_threads(), "quick": a.quick,
            "timing_statistic": "ratios use the median execution time over interleaved rounds (JAX "
                                "trace/lower/compile seconds inside a call split off); the first call, compile "
                                "included, is its own column and ratio",
        },
        "timings": {name: t.as_dict() for name, t in timings.items()},
        "hvps": hvps, "ratios": ratios, "values": values, "checks": checks,
    }

    header = ["implementation", "setting", "HVPs", "time (median)", "(best)", "first call", "compile",
              "PyHessian / sgdsde", "result"]
    setting = {"sgdsde_lanczos": f"num_iterations={settings['lanczos']}",
               "sgdsde_block": f"num_iterations={settings['block']}, block_size={a.block_size}",
               "pyhessian_topk": f"tol={settings['pyhessian']:g}, maxIter={a.max_iter}",
               "sgdsde_trace": f"num_samples={n}", "pyhessian_trace": f"maxIter={n}, tol=0",
               "sgdsde_hutchpp": f"num_products={hutchpp['hvps']}, sketch_size={hutchpp['sketch_size']}",
               "sgdsde_gn_split": f"num_samples={gn['residual_probes']} (+ exact tr G)"}
    rows = []
    for name in calls:
        t = timings[name]
        row_ratio = {"sgdsde_lanczos": ratios["top_k_pyhessian_over_sgdsde_lanczos"],
                     "sgdsde_block": ratios["top_k_pyhessian_over_sgdsde_block"],
                     "sgdsde_trace": ratios["trace_pyhessian_over_sgdsde"],
                     "sgdsde_hutchpp": ratios["trace_pyhessian_over_sgdsde_hutchpp"],
                     "sgdsde_gn_split": ratios["trace_pyhessian_over_sgdsde_gn_split"]}.get(name)
        result = (f"max rel. error {max(errors[name]):.1e}" if name in errors else
                  f"tr {float(tr_sd.mean):.5g} ± {float(tr_sd.stderr):.2g}" if name == "sgdsde_trace" else
                  f"tr {float(tr_pp.mean):.5g} ± {float(tr_pp.stderr):.2g} (target s.e. {target_se:.2g})"
                  if name == "sgdsde_hutchpp" else
                  f"tr {float(tr_gn.mean):.5g} ± {float(tr_gn.stderr):.2g} (target s.e. {target_se:.2g})"
                  if name == "sgdsde_gn_split" else
                  f"tr {tr_py:.5g} ± {se_py:.2g}")
        rows.append([LABELS[name], setting[name], hvps[name], C.fmt_seconds(t.median), C.fmt_seconds(t.best),
                     C.fmt_seconds(t.first_call), C.fmt_seconds(t.compile_seconds),
                     "" if row_ratio is None else f"{row_ratio:.2f}", result])
    C.print_table(header, rows, title=f"\nMLP {sizes}, d = {d}, N = {a.examples}, float32, CPU:")
    print(f"\nratios: {ratios}")
    print(f"checks ({'ok' if ok else 'MISMATCH'}): {checks}")
    suffix = "_quick" if a.quick else (f"_{a.tag}" if a.tag else "")
    versions = f"torch {torch.__version__} ({torch.get_num_threads()} threads), PyHessian {_pyhessian_version()}"
    C.finish(NAME, results, machine, began=began, suffix=suffix, write_docs=not (a.quick or a.tag or a.no_docs),
             render=lambda: _doc_block(results, machine, (header, rows), versions), versions=versions, doc=DOC)
    return results


def _calls_summary(runs: list, target_se: float, last, reference: tuple, z_name: str) -> dict:
    """The timed calls of an estimator reporting its own standard error (``runs``: (estimate,
    reported se) per call, independent keys): the target, the last call, the reported
    errors against the target, and the mean of the calls against PyHessian's pooled probes
    (``reference`` = (mean, standard error)) as a z-score."""
    runs = np.asarray(runs, np.float64)
    mean, se = float(runs[:, 0].mean()), float(np.sqrt(np.sum(runs[:, 1] ** 2)) / len(runs))
    return {"target_stderr": target_se, "last": float(last.mean), "last_stderr": float(last.stderr),
            "calls": len(runs), "reported_stderr": runs[:, 1].tolist(),
            "calls_with_stderr_at_most_target": int(np.sum(runs[:, 1] <= target_se)),
            "mean_of_calls": mean, "mean_of_calls_stderr": se,
            z_name: (mean - reference[0]) / math.hypot(se, reference[1])}


def calibration_sd(values) -> float:
    """The per-probe standard deviation of Hutchinson on H (PyHessian's calibration probes)."""
    return values["top_k"]["calibration"]["hutchpp"]["hutchinson_probe_sd"]


def _pyhessian_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("pyhessian")
    except Exception:
        return None


def _doc_block(results, machine, table, versions) -> str:
    cfg, r, ch, v = results["config"], results["ratios"], results["checks"], results["values"]
    tk, tr = v["top_k"], v["trace"]
    lead = (
        f"**Ratios** (PyHessian time / sgdsde time, median of {cfg['repeats']} interleaved rounds, equal accuracy): "
        f"top-{cfg['k']} eigenvalues **{r['top_k_pyhessian_over_sgdsde']:.2f}** "
        f"({r['top_k_sgdsde_method'].removeprefix('sgdsde_')}), trace **{r['trace_pyhessian_over_sgdsde']:.2f}**; "
        f"first call, compile included: top-{cfg['k']} {r['first_call_top_k_pyhessian_over_sgdsde']:.2f}, "
        f"trace {r['first_call_trace_pyhessian_over_sgdsde']:.2f}. Hutch++ trace at PyHessian's standard error: "
        f"**{r['trace_pyhessian_over_sgdsde_hutchpp']:.2f}**, first call "
        f"{r['first_call_trace_pyhessian_over_sgdsde_hutchpp']:.2f}. Gauss–Newton split at PyHessian's standard "
        f"error: **{r['trace_pyhessian_over_sgdsde_gn_split']:.2f}**, first call "
        f"{r['first_call_trace_pyhessian_over_sgdsde_gn_split']:.2f}."
    )
    setup = (
        f"{cfg['model']}, d = {cfg['parameters']:,} parameters, N = {cfg['examples']} examples, after "
        f"{cfg['train_steps']} full-batch GD steps; float32. Top-{cfg['k']} eigenvalues: each method at its cheapest "
        f"setting (calibrated on {cfg['calibration_seeds']} random starts) with every eigenvalue within a relative "
        f"{cfg['rel_tol']:g} of the reference {[round(x, 6) for x in tk['reference']]} (block Lanczos, "
        f"{tk['reference_budget']} HVPs, a-posteriori bounds ≤ {tk['reference_max_rel_bound']:.1e} relative). "
        f"Trace: {cfg['probes']} Rademacher probes in both (the same estimator, so the same standard error); "
        f"Hutch++: the fewest HVPs m = 2s + r whose expected standard error (pilot runs, s in "
        f"{list(HUTCHPP_SKETCHES)}) is ≤ PyHessian's {v['hutchpp']['target_stderr']:.3g} at {cfg['probes']} probes: "
        f"s = {v['hutchpp']['sketch_size']}, r = {v['hutchpp']['residual_probes']}, m = {v['hutchpp']['hvps']}. "
        f"Gauss–Newton split (the same network as an `sgdsde.nn` MLP): tr G = "
        f"{v['gauss_newton_split']['gauss_newton_trace']:.5g} exactly, the residual probes' standard deviation "
        f"{v['gauss_newton_split']['residual_sd']:.3g} (pilots) against {calibration_sd(v):.3g} for H's, so "
        f"m = {v['gauss_newton_split']['residual_probes']} residual probes:"
    )
    checks = (
        f"Checks ({'all ok' if ch['ok'] else 'MISMATCH'}): the same model in both libraries — loss relative "
        f"difference {ch['loss_rel_diff']:.1e}, gradient {ch['grad_max_rel_diff']:.1e}, one HVP "
        f"{ch['hvp_max_rel_diff']:.1e} (max relative, float32); every timed top-{cfg['k']} result within "
        f"{cfg['rel_tol']:g}: {'yes' if ch['timed_top_k_accurate'] else 'NO'} (largest errors "
        + ", ".join(f"{name} {err:.1e}" for name, err in tk["timed_max_rel_error"].items())
        + f"); pooling the probes of every call ({tr['pooled_probes']['sgdsde']} and "
        f"{tr['pooled_probes']['pyhessian']}), the trace estimates {tr['pooled_mean']['sgdsde']:.5g} ± "
        f"{tr['pooled_stderr']['sgdsde']:.2g} (sgdsde) and {tr['pooled_mean']['pyhessian']:.5g} ± "
        f"{tr['pooled_stderr']['pyhessian']:.2g} (PyHessian) differ by z = {tr['z_sgdsde_vs_pyhessian']:+.2f} "
        f"combined standard errors; the mean of the {v['hutchpp']['calls']} Hutch++ calls, "
        f"{v['hutchpp']['mean_of_calls']:.5g} ± {v['hutchpp']['mean_of_calls_stderr']:.2g}, differs from PyHessian's by "
        f"z = {v['hutchpp']['z_hutchpp_vs_pyhessian']:+.2f}; {v['hutchpp']['calls_with_stderr_at_most_target']} of "
        f"{v['hutchpp']['calls']} Hutch++ calls reported a standard error ≤ the target; the mean of the "
        f"{v['gauss_newton_split']['calls']} Gauss–Newton split calls, {v['gauss_newton_split']['mean_of_calls']:.5g} ± "
        f"{v['gauss_newton_split']['mean_of_calls_stderr']:.2g}, differs from PyHessian's by z = "
        f"{v['gauss_newton_split']['z_gn_split_vs_pyhessian']:+.2f}, and "
        f"{v['gauss_newton_split']['calls_with_stderr_at_most_target']} of {v['gauss_newton_split']['calls']} reported "
        f"a standard error ≤ the target; the Flax MLP's loss equals the hand-written one to "
        f"{ch['nn_loss_rel_diff']:.1e}."
    )
    return C.doc_block(NAME, "python benchmarks/curvature.py", results, machine, lead=lead,
                       sections=[setup, table, checks], versions=versions,
                       gpu_note="GPU: not measured (CPU comparison by design: PyHessian on CPU).")


if __name__ == "__main__":
    main()
