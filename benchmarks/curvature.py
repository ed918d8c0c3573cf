#!/usr/bin/env python
"""Benchmark: Hessian top eigenvalue and trace of an MLP, sgdsde.curvature against PyHessian.

What is measured (issue 5): for a tanh MLP of about 10⁵ parameters (100 → 256 → 256 → 10,
94,218 parameters) with mean cross-entropy on N generated examples, at the same weights
and data in both libraries (float32, CPU):

- top eigenvalue by power iteration, ``num_iterations`` Hessian–vector products (HVPs):
  ``sgdsde.curvature.power_iteration(problem.loss, params, key=…, num_iterations=n)``
  against PyHessian's ``hessian(model, criterion, data=(x, y), cuda=False).eigenvalues(
  maxIter=n, tol=0)`` (tol = 0: exactly n iterations, no early stop);
- trace by Hutchinson's method with the same number of Rademacher probes:
  ``sgdsde.curvature.hutchinson_trace(…, num_samples=n)`` against PyHessian's
  ``trace(maxIter=n, tol=0)``;
- for reference (no PyHessian counterpart with the same iteration count): the top
  eigenvalue by ``sgdsde.curvature.top_eigenvalues(method="lanczos")`` with n Lanczos
  steps, whose a-posteriori bound says how converged the power iterations are.

Each timed call is what a user runs: PyHessian's includes building the ``hessian`` object
(one forward and backward pass with ``create_graph=True``), sgdsde's its input checks and
linearisation of the gradient at the parameters (one forward and backward pass). The
ratio is PyHessian's time over sgdsde's (> 1: sgdsde faster). Timing as in every
benchmark here (``_common.py``): warm-up (JAX compiles), then interleaved repeats; ratios
use the best execution time, JAX compile seconds split off. PyTorch runs with
``torch.set_num_threads(cores)``; XLA uses all cores.

Checks: the two libraries' losses, gradients and one HVP with the same vector agree (they
compute the same Hessian); the power-iteration eigenvalues agree with each other and with
the Lanczos value; the two trace estimates agree within their combined standard error.
PyHessian's ``density`` (SLQ) is not compared: it calls ``torch.eig``, removed from
PyTorch 2.x.

Needs ``torch`` and ``pyhessian`` (the ``bench`` extra). Usage:
    python benchmarks/curvature.py [--quick] [--iterations 100] [--examples 1000]

--quick runs a small version (< 30 s) to check that everything works; it writes
benchmarks/results/curvature_quick.json and leaves docs/benchmarks.md alone. A full run
writes benchmarks/results/curvature.json and the ``curvature`` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import _common as C  # noqa: E402
import sgdsde as sd  # noqa: E402
from sgdsde import curvature as cv  # noqa: E402

NAME = "curvature"
DOC = C.ROOT / "docs" / "benchmarks.md"
LABELS = {
    "sgdsde_power": "sgdsde power_iteration",
    "pyhessian_power": "PyHessian eigenvalues (power)",
    "sgdsde_trace": "sgdsde hutchinson_trace",
    "pyhessian_trace": "PyHessian trace (Hutchinson)",
    "sgdsde_lanczos": "sgdsde top_eigenvalues (Lanczos), reference",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small and fast (< 30 s on a quiet machine), for checking")
    p.add_argument("--iterations", type=int, default=None,
                   help="power iterations = Hutchinson probes = Lanczos steps (default 100; 10 with --quick)")
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
    a.iterations = a.iterations or (10 if a.quick else 100)
    a.examples = a.examples or (200 if a.quick else 1000)
    a.hidden = a.hidden or (32 if a.quick else 256)
    a.train_steps = a.train_steps if a.train_steps is not None else (10 if a.quick else 100)
    a.repeats = a.repeats or (1 if a.quick else 3)
    if a.iterations < 2 or a.examples < 2:
        p.error("--iterations and --examples must be ≥ 2")
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
    n = a.iterations

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
    C.log(f"same model: loss rel diff {checks['loss_rel_diff']:.1e}, grad {checks['grad_max_rel_diff']:.1e}, "
          f"HVP {checks['hvp_max_rel_diff']:.1e} (float32)")

    # ---- the timed calls
    keys = iter(jax.random.split(jax.random.key(a.seed), 10_000))
    trace_samples = {"sgdsde": [], "pyhessian": []}  # every call's probes, pooled for the check

    def sgdsde_power():
        return cv.power_iteration(problem.loss, params, key=next(keys), num_iterations=n).eigenvalue

    def sgdsde_trace():
        est = cv.hutchinson_trace(problem.loss, params, key=next(keys), num_samples=n)
        trace_samples["sgdsde"].append(np.asarray(est.samples))
        return est

    def sgdsde_lanczos():
        result = cv.lanczos(problem.loss, params, key=next(keys), num_iterations=n)
        values, _, bounds = result.ritz()
        return values[0], bounds[0]

    def pyhessian_power():
        h = pyhessian.hessian(model, criterion, data=(xt, yt), cuda=False)
        values, _ = h.eigenvalues(maxIter=n, tol=0.0, top_n=1)
        return values[0]

    def pyhessian_trace():
        h = pyhessian.hessian(model, criterion, data=(xt, yt), cuda=False)
        samples = h.trace(maxIter=n, tol=0.0)
        trace_samples["pyhessian"].append(np.asarray(samples, dtype=np.float64))
        return samples

    calls = {"sgdsde_power": sgdsde_power, "pyhessian_power": pyhessian_power, "sgdsde_trace": sgdsde_trace,
             "pyhessian_trace": pyhessian_trace, "sgdsde_lanczos": sgdsde_lanczos}
    C.log(f"timing {len(calls)} calls interleaved: 1 warm-up round, {a.repeats} timed rounds ({n} HVPs each)")
    timings = C.time_interleaved(calls, warmup=1, repeats=a.repeats)

    # ---- values and agreement (the last timed result of each)
    lam_sd = float(timings["sgdsde_power"].result)
    lam_py = float(timings["pyhessian_power"].result)
    lam_lz, bound_lz = (float(x) for x in timings["sgdsde_lanczos"].result)
    tr_sd = timings["sgdsde_trace"].result
    py_samples = np.asarray(timings["pyhessian_trace"].result, dtype=np.float64)
    tr_py, se_py = float(py_samples.mean()), float(py_samples.std(ddof=1) / math.sqrt(py_samples.size))
    # the check pools every call's probes (warm-up and timed rounds): independent estimates
    pooled = {k: np.concatenate(v).astype(np.float64) for k, v in trace_samples.items()}
    pooled_mean = {k: float(v.mean()) for k, v in pooled.items()}
    pooled_se = {k: float(v.std(ddof=1) / math.sqrt(v.size)) for k, v in pooled.items()}
    z_trace = (pooled_mean["sgdsde"] - pooled_mean["pyhessian"]) / math.hypot(*pooled_se.values())
    values = {
        "top_eigenvalue": {"sgdsde_power": lam_sd, "pyhessian_power": lam_py, "sgdsde_lanczos": lam_lz,
                           "lanczos_a_posteriori_bound": bound_lz,
                           "power_rel_diff_sgdsde_vs_pyhessian": abs(lam_sd - lam_py) / abs(lam_lz),
                           "sgdsde_power_rel_diff_vs_lanczos": abs(lam_sd - lam_lz) / abs(lam_lz),
                           "pyhessian_power_rel_diff_vs_lanczos": abs(lam_py - lam_lz) / abs(lam_lz)},
        "trace": {"sgdsde": float(tr_sd.mean), "sgdsde_stderr": float(tr_sd.stderr), "pyhessian": tr_py,
                  "pyhessian_stderr": se_py, "probes_per_call": int(py_samples.size),
                  "pooled_probes": {k: int(v.size) for k, v in pooled.items()}, "pooled_mean": pooled_mean,
                  "pooled_stderr": pooled_se, "z_sgdsde_vs_pyhessian": z_trace},
    }
    # the eigenvalues can only agree once power iteration has converged: judged against the
    # Lanczos value (its bound ≪ 1e-2·λ) — short runs (--quick) report rather than check it
    te = values["top_eigenvalue"]
    converged = bound_lz < 1e-3 * abs(lam_lz) and max(te["sgdsde_power_rel_diff_vs_lanczos"],
                                                       te["pyhessian_power_rel_diff_vs_lanczos"]) < 1e-2
    te["power_converged"] = bool(converged)
    ok = (checks["hvp_max_rel_diff"] < 1e-3 and checks["loss_rel_diff"] < 1e-5 and abs(z_trace) < 4
          and (not converged or te["power_rel_diff_sgdsde_vs_pyhessian"] < 1e-2))
    checks["ok"] = bool(ok)
    ratios = {
        "power_pyhessian_over_sgdsde": timings["pyhessian_power"].best / timings["sgdsde_power"].best,
        "trace_pyhessian_over_sgdsde": timings["pyhessian_trace"].best / timings["sgdsde_trace"].best,
    }
    results = {
        "config": {
            "model": f"tanh MLP {sizes}, mean cross-entropy", "parameters": d, "examples": a.examples,
            "train_steps": a.train_steps, "iterations": n, "repeats": a.repeats, "float": "float32",
            "torch": torch.__version__, "pyhessian": _pyhessian_version(), "torch_threads": torch.get_num_threads(),
            "quick": a.quick,
            "timing_statistic": "ratios use the best (minimum) execution time over interleaved rounds; JAX "
                                "trace/lower/compile seconds inside a call are split off",
        },
        "timings": {name: t.as_dict() for name, t in timings.items()},
        "ratios": ratios, "values": values, "checks": checks,
    }
    results["elapsed_s"] = time.perf_counter() - began
    machine["load_average_1_5_15min_end"] = C.machine_info()["load_average_1_5_15min"]

    header = ["implementation", "HVPs", "time (best)", "(median)", "compile", "PyHessian / sgdsde", "value"]
    rows = []
    for name in calls:
        t = timings[name]
        ratio = {"sgdsde_power": ratios["power_pyhessian_over_sgdsde"],
                 "sgdsde_trace": ratios["trace_pyhessian_over_sgdsde"]}.get(name)
        value = {"sgdsde_power": f"λ_max {lam_sd:.6g}", "pyhessian_power": f"λ_max {lam_py:.6g}",
                 "sgdsde_lanczos": f"λ_max {lam_lz:.6g} (± {bound_lz:.1e})",
                 "sgdsde_trace": f"tr {float(tr_sd.mean):.5g} ± {float(tr_sd.stderr):.2g}",
                 "pyhessian_trace": f"tr {tr_py:.5g} ± {se_py:.2g}"}[name]
        rows.append([LABELS[name], n, C.fmt_seconds(t.best), C.fmt_seconds(t.median),
                     C.fmt_seconds(t.compile_seconds), "" if ratio is None else f"{ratio:.2f}", value])
    C.print_table(header, rows, title=f"\nMLP {sizes}, d = {d}, N = {a.examples}, float32, CPU:")
    print(f"\nchecks ({'ok' if ok else 'MISMATCH'}): {checks}")
    print(f"values: {values}")
    suffix = "_quick" if a.quick else (f"_{a.tag}" if a.tag else "")
    path = C.write_json(NAME + suffix, results, machine=machine)
    print(f"\nmachine: {C.machine_summary(machine)}; torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"wrote {path.relative_to(C.ROOT)} ({results['elapsed_s']:.0f} s)")
    if not (a.quick or a.tag or a.no_docs):
        if C.update_doc_section(DOC, NAME, _doc_block(results, machine, (header, rows), a)):
            print(f"updated {DOC.relative_to(C.ROOT)}")
        else:
            print(f"{DOC.relative_to(C.ROOT)}: no '<!-- BEGIN {NAME} -->' block, left unchanged")
    return results


def _pyhessian_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("pyhessian")
    except Exception:
        return None


def _doc_block(results, machine, table, a) -> str:
    cfg, r, ch, v = results["config"], results["ratios"], results["checks"], results["values"]
    git = machine.get("git", {})
    te, tr = v["top_eigenvalue"], v["trace"]
    return "\n".join([
        f"Measured {machine['date_utc']} with `python benchmarks/curvature.py` (git {git.get('commit', '?')[:10]}"
        f"{', with uncommitted changes' if git.get('dirty') else ''}; {results['elapsed_s']:.0f} s in all). "
        "GPU: not measured (CPU comparison by design: PyHessian on CPU).",
        "",
        f"**Machine:** {C.machine_summary(machine)}; torch {cfg['torch']} ({cfg['torch_threads']} threads), "
        f"PyHessian {cfg['pyhessian']}. Load average (1/5/15 min) {machine['load_average_1_5_15min']} at the start, "
        f"{machine['load_average_1_5_15min_end']} at the end.",
        "",
        f"{cfg['model']}, d = {cfg['parameters']:,} parameters, N = {cfg['examples']} examples, after "
        f"{cfg['train_steps']} full-batch GD steps; {cfg['iterations']} HVPs per call; float32:",
        "",
        C.markdown_table(*table),
        "",
        f"**Ratios** (PyHessian time / sgdsde time, best of {cfg['repeats']}): top eigenvalue by power iteration "
        f"**{r['power_pyhessian_over_sgdsde']:.2f}**, trace by Hutchinson **{r['trace_pyhessian_over_sgdsde']:.2f}**.",
        "",
        f"Checks ({'all ok' if ch['ok'] else 'MISMATCH'}): the same model in both libraries — loss relative "
        f"difference {ch['loss_rel_diff']:.1e}, gradient {ch['grad_max_rel_diff']:.1e}, one HVP "
        f"{ch['hvp_max_rel_diff']:.1e} (max relative, float32); power-iteration eigenvalues differ by "
        f"{te['power_rel_diff_sgdsde_vs_pyhessian']:.1e} (relative) from each other and by "
        f"{te['sgdsde_power_rel_diff_vs_lanczos']:.1e} (sgdsde) and {te['pyhessian_power_rel_diff_vs_lanczos']:.1e} "
        f"(PyHessian) from the Lanczos value (a-posteriori bound {te['lanczos_a_posteriori_bound']:.1e}); pooling "
        f"the probes of every call ({tr['pooled_probes']['sgdsde']} and {tr['pooled_probes']['pyhessian']}), the "
        f"trace estimates {tr['pooled_mean']['sgdsde']:.5g} ± {tr['pooled_stderr']['sgdsde']:.2g} (sgdsde) and "
        f"{tr['pooled_mean']['pyhessian']:.5g} ± {tr['pooled_stderr']['pyhessian']:.2g} (PyHessian) differ by "
        f"z = {tr['z_sgdsde_vs_pyhessian']:+.2f} combined standard errors.",
        "",
        "All numbers: `benchmarks/results/curvature.json`.",
    ])


if __name__ == "__main__":
    main()
