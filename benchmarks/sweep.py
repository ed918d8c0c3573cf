#!/usr/bin/env python
"""Benchmark: a 400-configuration (η, S) sweep of a Flax MLP as ONE ``sgdsde.run``
program against 400 sequential runs of a standard Flax + optax training loop (issue 6).

Setup (the grid of ``examples/batch_size_learning_rate.py``): MLP 64-32-10 (ReLU) on
the built-in 8×8 digits (N = 1258 training examples), S ∈ {16, 32, …, 320} ×
η ∈ {0.01, …, 0.20}, T SGD steps per configuration, iid minibatches (with replacement),
float32, no weight decay, one replica per configuration.

- ``sgdsde.run``: ``sd.run(key, sd.sgd("iid"), problem, sd.Hyper.grid(η, S),
  problem.info["init_params"], T)``: all configurations in one compiled program
  (``lax.scan`` over steps, ``vmap`` over the grid; the batch size is traced and masked
  at S_max = 320, so every configuration pays for 320 examples a step).
- ``Flax + optax loop``: what a user writes per configuration: ``optax.inject_hyperparams
  (optax.sgd)`` (η lives in the optimiser state, so one compiled step serves every η),
  a ``jax.jit``-ed ``train_step(params, opt_state, replica_key, k)`` that draws the S
  indices (``jax.random.randint`` with key fold_in(replica key, k)), takes the gradient
  of the batch-mean cross-entropy of ``model.apply`` and applies the optax update; a
  Python ``for`` loop over the T steps; the 400 configurations one after another. The
  batch size is static (one compile per distinct S: 20, timed apart as compile).
  Same model, data, initial parameters (sgdsde's fold_in(replica key, 0xFFFFFFFF)) and
  step keys as sgdsde, so both compute the same trajectories: the script checks the
  final parameters of a few configurations (float32 rounding: the sums differ in order).

- ``hand-written vmapped optax``: the same optax step written by hand for one program
  (masked at S_max like sgdsde, ``lax.scan`` + ``vmap`` over the grid, jitted): it
  separates what the one-program approach gains from what sgdsde adds or costs.

- ``sd.sweep.run_sweep`` (grouped by batch size: one program per S, no masked work, every
  configuration written to disk) and ``one jitted lax.scan per configuration`` (the optax
  step scanned over T steps, jitted once per S, called for each of the 400 configurations).
  Useful GFLOP/s (6 FLOPs per parameter per example: forward + backward, S examples a step,
  summed over the grid) are printed for each, beside the machine's measured float32 matmul
  rate (a jitted 1024² ``jnp.dot`` in the same run).

The sequential loop's cost does not depend on η, only on S: by default all 400 runs are
timed; with ``--etas k`` (default with --quick: 2) only k learning rates × all batch sizes
are, and the time of the full grid is extrapolated (× number of learning rates / k) —
said in the output. Compile time is
measured through ``jax.monitoring`` (benchmarks/_common.py) and reported apart.

Usage:
    python benchmarks/sweep.py [--steps T] [--etas k] [--repeats n] [--quick] [--no-docs]

--quick (5 × 5 grid, 50 steps) checks that everything works; it writes
benchmarks/results/sweep_quick.json and leaves docs/benchmarks.md alone. A full run writes
benchmarks/results/sweep.json and the ``sweep`` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import _common as C  # noqa: E402
import sgdsde as sd  # noqa: E402
import sgdsde.nn as snn  # noqa: E402
from sgdsde import sweep  # noqa: E402
from sgdsde.nn import data  # noqa: E402

NAME = "sweep"
DOC = C.ROOT / "docs" / "benchmarks.md"
HIDDEN = (64, 32)
INIT_TAG = 0xFFFFFFFF  # sgdsde.runner's fold_in tag for per-replica initial parameters


def grid_values(grid_size: int):
    steps = np.unique(np.round(np.linspace(1, 20, grid_size)).astype(int))
    return 0.01 * steps, 16 * steps


def make_optax_step(model, x, y, batch_size: int):
    """The standard jitted train step (static batch size; η in the optimiser state)."""
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    n = x.shape[0]

    @jax.jit
    def train_step(params, opt_state, replica_key, k):
        idx = jax.random.randint(jax.random.fold_in(replica_key, k), (batch_size,), 0, n)

        def loss_fn(p):
            logits = model.apply(p, x[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return tx, train_step


def make_vmapped_optax(model, x, y, max_batch_size: int, num_steps: int):
    """The hand-vmapped anchor: the same optax step, masked at S_max (weights 1/S on the
    first S of S_max iid indices, as sgdsde draws them), ``lax.scan`` over steps and
    ``vmap`` over the flattened grid, jitted: what a JAX user writes for a one-program
    sweep without sgdsde."""
    n = x.shape[0]
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)

    def one(params, learning_rate, batch_size, replica_key):
        opt_state = tx.init(params)
        opt_state.hyperparams["learning_rate"] = learning_rate

        def body(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(jax.random.fold_in(replica_key, k), (max_batch_size,), 0, n)
            w = (jnp.arange(max_batch_size) < batch_size) / batch_size.astype(jnp.float32)

            def loss_fn(p):
                logits = model.apply(p, x[idx])
                return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]))

            updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(body, (params, opt_state), jnp.arange(num_steps))[0][0]

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The machine's measured float32 matmul rate: 2n³ FLOPs per jitted jnp.dot of two n × n
    matrices, best of ``repeats`` warm calls (the ceiling to read the GFLOP/s below against)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    C.block(dot(a, a))
    best = min(_seconds(lambda: C.block(dot(a, a))) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_scan_run(model, x, y, batch_size: int, num_steps: int):
    """One configuration as one jitted ``lax.scan`` of the optax step (static S: one compile
    per batch size; η in the optimiser state): the plain-JAX way to run one configuration."""
    tx, _ = make_optax_step(model, x, y, batch_size)
    n = x.shape[0]

    @jax.jit
    def scan_run(params, learning_rate, replica_key):
        opt_state = tx.init(params)
        opt_state.hyperparams["learning_rate"] = learning_rate

        def body(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(jax.random.fold_in(replica_key, k), (batch_size,), 0, n)
            loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x[idx]), y[idx]).mean()
            updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(body, (params, opt_state), jnp.arange(num_steps))[0][0]

    return scan_run


def optax_run(tx, train_step, init_params, replica_key, learning_rate: float, num_steps: int):
    """One configuration: the Python loop over steps."""
    params = init_params
    opt_state = tx.init(params)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    for k in range(num_steps):
        params, opt_state = train_step(params, opt_state, replica_key, k)
    return params


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="SGD steps per configuration (default 200; 50 with --quick)")
    p.add_argument("--grid-size", type=int, default=None, help="n × n grid (default 20; 5 with --quick)")
    p.add_argument("--etas", type=int, default=None, help="time only this many learning rates (× all S) of the sequential loop and "
                   "extrapolate (default: all of them; 2 with --quick)")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats of the sgdsde.run program (after one compiling call)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-docs", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    steps = a.steps or (50 if a.quick else 200)
    grid_size = a.grid_size or (5 if a.quick else 20)
    began, machine = C.begin()
    key = jax.random.key(a.seed)
    splits = data.load("builtin", key=jax.random.fold_in(key, 0))
    problem = snn.classification_problem(snn.MLP(splits.train.num_classes, hidden=HIDDEN), splits.train)
    model = problem.info["model"]
    etas, sizes = grid_values(grid_size)
    hyper = sd.Hyper.grid(etas, sizes)
    configs = len(etas) * len(sizes)
    run_key = jax.random.fold_in(key, 1)
    stepper = sd.sgd("iid")
    init = problem.info["init_params"]
    C.log(f"{configs} configurations × {steps} steps; MLP{HIDDEN} ({problem.info['num_parameters']} parameters), N = {problem.num_examples}")

    replica_key = jax.random.fold_in(run_key, 0)  # replica 0 = sgdsde's replica key
    init_params = init(jax.random.fold_in(replica_key, INIT_TAG))
    x, y = jnp.asarray(splits.train.x), jnp.asarray(splits.train.y)

    # ---- one program: sgdsde.run, and the same by hand (vmapped optax), interleaved
    flat = hyper.flatten_grid()
    vmapped = make_vmapped_optax(model, x, y, int(sizes.max()), steps)
    timings = C.time_interleaved({
        "sgdsde": lambda: sd.run(run_key, stepper, problem, hyper, init, steps).state.params,
        "vmapped": lambda: vmapped(init_params, flat.learning_rate, flat.batch_size, replica_key),
    }, warmup=1, repeats=a.repeats)
    timing, hand = timings["sgdsde"], timings["vmapped"]
    sg_params = timing.result
    hand_diff = max(float(np.max(np.abs(np.asarray(u).reshape(np.shape(v)) - v))) for u, v in
                    zip(jax.tree_util.tree_leaves(hand.result), jax.tree_util.tree_leaves(
                        jax.tree_util.tree_map(lambda z: np.asarray(z)[:, :, 0].reshape((configs,) + z.shape[3:]), sg_params))))
    C.log(f"sgdsde.run: compile {timing.compile_seconds:.1f} s, execute best {timing.best:.2f} s; "
          f"hand-vmapped optax: compile {hand.compile_seconds:.1f} s, best {hand.best:.2f} s (max |Δθ| {hand_diff:.1e})")

    # ---- sgdsde.run, one program per batch size (no masking: each pays for its own S)
    def per_size_runs():
        return [sd.run(run_key, stepper, problem, sd.Hyper.grid(etas, int(s)), init, steps).state.params for s in sizes]

    by_size = C.time_call(per_size_runs, warmup=1, repeats=1)
    C.log(f"sgdsde.run per batch size ({len(sizes)} programs): compile {by_size.compile_seconds:.1f} s, "
          f"execute {by_size.best:.2f} s")

    # ---- the grouped resumable sweep (sd.sweep.run_sweep: one program per batch size, no
    # masked work, each configuration written to disk), and one jitted lax.scan per configuration
    endpoint = [sd.observers.endpoint()]
    grouped = C.time_call(lambda: sweep.run_sweep(tempfile.mkdtemp(), run_key, stepper, problem, hyper, init, steps,
                                                   observers=endpoint, progress=False)["endpoint"],
                          warmup=1, repeats=1)
    C.log(f"sd.sweep.run_sweep (grouped by batch size): compile {grouped.compile_seconds:.1f} s, execute {grouped.best:.2f} s")
    scans = {int(s): make_scan_run(model, x, y, int(s), steps) for s in sizes}

    def scan_runs():
        return [scans[int(s)](init_params, jnp.float32(eta), replica_key) for eta in etas for s in sizes]

    per_config_scan = C.time_call(scan_runs, warmup=1, repeats=1)
    C.log(f"{configs} jitted lax.scans: compile {per_config_scan.compile_seconds:.1f} s, execute {per_config_scan.best:.2f} s")
    rate = matmul_gflops()
    # useful work: forward + backward of an MLP ≈ 6 FLOPs per parameter per example, S examples a step
    useful = 6 * problem.info["num_parameters"] * steps * len(etas) * float(sizes.sum())
    gflops = {"matmul_peak_measured": rate}
    C.log(f"machine: jnp.dot {rate:.1f} GFLOP/s (float32, 1024²)")

    # ---- the sequential Flax + optax loop
    n_etas = a.etas if a.etas is not None else (2 if a.quick else len(etas))
    timed_etas = sorted(set(np.linspace(0, len(etas) - 1, min(max(n_etas, 1), len(etas))).round().astype(int)))
    extrapolated = len(timed_etas) < len(etas)
    seq_wall, seq_compile, per_size = 0.0, 0.0, {}
    checks = []
    for j, s in enumerate(sizes):
        tx, train_step = make_optax_step(model, x, y, int(s))
        for n_i, i in enumerate(timed_etas):
            with C.CompileMonitor() as cm:
                t0 = time.perf_counter()
                out = C.block(optax_run(tx, train_step, init_params, replica_key, float(etas[i]), steps))
                wall = time.perf_counter() - t0
            if n_i == 0:  # the first run of each S carries its compile: time it again warm
                seq_compile += cm.seconds
                t0 = time.perf_counter()
                out = C.block(optax_run(tx, train_step, init_params, replica_key, float(etas[i]), steps))
                wall = time.perf_counter() - t0
            seq_wall += wall
            per_size.setdefault(int(s), []).append(wall)
            if i in (timed_etas[0], timed_etas[-1]) and j in (0, len(sizes) // 2, len(sizes) - 1):
                mine = jax.tree_util.tree_map(lambda z: np.asarray(z)[i, j, 0], sg_params)
                diff = max(float(np.max(np.abs(np.asarray(u) - v))) for u, v in
                           zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(mine)))
                scale = max(float(np.max(np.abs(v))) for v in jax.tree_util.tree_leaves(mine))
                checks.append({"eta": float(etas[i]), "S": int(s), "max_abs_diff": diff, "max_abs_param": scale})
        C.log(f"optax loop S = {s}: {np.mean(per_size[int(s)]):.2f} s per configuration")
    timed_configs = len(timed_etas) * len(sizes)
    seq_total = seq_wall * configs / timed_configs
    ratio = seq_total / timing.median
    ratio_by_size = seq_total / by_size.median
    ok = all(c["max_abs_diff"] <= 1e-3 * max(c["max_abs_param"], 1.0) for c in checks)

    def row(label, t, seconds=None, compile_seconds=None):
        seconds = t.median if seconds is None else seconds
        return [label, configs, steps, C.fmt_seconds(seconds), "" if t is None else C.fmt_seconds(t.best),
                "" if t is None or t.first_call is None else C.fmt_seconds(t.first_call),
                C.fmt_seconds(t.compile_seconds if compile_seconds is None else compile_seconds),
                f"{configs * steps / seconds:.3g}", f"{seq_total / seconds:.2f}"]

    rows = [
        row("sd.sweep.run_sweep, grouped by batch size (unmasked, files written)", grouped),
        row(f"sgdsde.run, one program per batch size ({len(sizes)} programs of {len(etas)} η, unmasked)", by_size),
        row("sgdsde.run, one program masked at S_max", timing),
        row("hand-written: optax step vmapped over the grid (jit, scan, masked at S_max)", hand),
        row(f"one jitted lax.scan per configuration × {configs}", per_config_scan),
        row(f"Flax + optax loop × {configs}" + ("" if not extrapolated else f" (timed {timed_configs}, extrapolated)"),
            None, seconds=seq_total, compile_seconds=seq_compile),
    ]
    for name, seconds in (("sd.sweep.run_sweep grouped", grouped.median), ("sgdsde.run per batch size", by_size.median),
                          ("sgdsde.run masked one program", timing.median),
                          (f"{configs} jitted lax.scans", per_config_scan.median),
                          (f"Flax + optax loop x {configs}", seq_total)):
        gflops[name] = useful / seconds / 1e9
        print(f"useful GFLOP/s, {name}: {gflops[name]:.2f} ({100 * gflops[name] / rate:.1f}% of the measured matmul rate)")
    header = ["implementation", "configs", "steps", "time (median)", "(best)", "first call", "compile", "config-steps/s",
              "loop / this"]
    C.print_table(header, rows, title=f"(η, S) sweep, MLP{HIDDEN} on digits, sgd(iid)")
    ratios = {"loop_over_sweep_grouped": seq_total / grouped.median,
              "scans_over_sweep_grouped": per_config_scan.median / grouped.median,
              "loop_over_masked_one_program": ratio, "loop_over_per_batch_size": ratio_by_size,
              "vmapped_optax_over_masked_one_program": hand.median / timing.median,
              "useful_fraction_of_matmul_rate_sweep_grouped": gflops["sd.sweep.run_sweep grouped"] / rate}
    print(f"ratios: {ratios}; same trajectories: {ok} {checks}")
    results = {
        "config": {"steps": steps, "grid_size": grid_size, "configs": configs, "learning_rates": etas, "batch_sizes": sizes,
                   "model": f"MLP{HIDDEN}", "num_parameters": problem.info["num_parameters"], "n_train": problem.num_examples,
                   "sampling": "iid", "timed_sequential_configs": timed_configs, "extrapolated": extrapolated,
                   "repeats": a.repeats, "timing_statistic": "medians of repeats (interleaved for the one-program pair)"},
        "sgdsde_run": timing.as_dict(work=configs * steps),
        "optax_vmapped": {**hand.as_dict(work=configs * steps), "max_abs_diff_vs_sgdsde": hand_diff},
        "sgdsde_run_per_batch_size": by_size.as_dict(work=configs * steps),
        "examples_per_step": {"one_program_masked": configs * int(sizes.max()), "sequential": int(len(etas) * sizes.sum())},
        "optax_loop": {"timed_seconds": seq_wall, "seconds_full_grid": seq_total, "compile_s_all_batch_sizes": seq_compile,
                       "seconds_per_config_by_S": {k: float(np.mean(v)) for k, v in per_size.items()},
                       "seconds_per_step_by_S": {k: float(np.mean(v)) / steps for k, v in per_size.items()}},
        "sweep_grouped": grouped.as_dict(work=configs * steps),
        "jitted_scan_per_config": per_config_scan.as_dict(work=configs * steps),
        "ratios": ratios,
        "targets": {"loop_over_sweep_grouped": 2.0, "scans_over_sweep_grouped": 1.2},
        "useful_gflops": gflops,
        "checks": {"same_trajectories": ok, "configs": checks},
    }
    C.finish(NAME, results, machine, began=began, suffix="_quick" if a.quick else "",
             write_docs=not (a.quick or a.no_docs), render=lambda: _doc_block(results, machine, header, rows, a, steps),
             doc=DOC)
    return results


def _doc_block(results, machine, header, rows, a, steps) -> str:
    cfg, r, t = results["config"], results["ratios"], results["targets"]
    per = results["optax_loop"]["seconds_per_step_by_S"]
    sizes = sorted(per)
    g = results["useful_gflops"]

    def verdict(name):
        return "met" if r[name] >= t[name] else "not met"

    lead = (f"**Ratios** (time of the anchor / time of the grouped sweep, medians): the sequential Flax + optax loop "
            f"**{r['loop_over_sweep_grouped']:.2f}** (target ≥ {t['loop_over_sweep_grouped']:g}: "
            f"{verdict('loop_over_sweep_grouped')}), {cfg['configs']} jitted `lax.scan`s "
            f"**{r['scans_over_sweep_grouped']:.2f}** (target ≥ {t['scans_over_sweep_grouped']:g}: "
            f"{verdict('scans_over_sweep_grouped')}); useful work {g['sd.sweep.run_sweep grouped']:.2f} GFLOP/s, "
            f"{100 * r['useful_fraction_of_matmul_rate_sweep_grouped']:.1f} % of the machine's measured float32 matmul "
            f"rate ({g['matmul_peak_measured']:.1f} GFLOP/s, a jitted 1024² `jnp.dot`).")
    setup = (f"{cfg['configs']} configurations (η ∈ {{0.01 … 0.20}} × S ∈ {{16 … 320}}) × {steps} SGD steps, "
             f"MLP{HIDDEN} ({cfg['num_parameters']} parameters), N = {cfg['n_train']}, iid sampling, float32. "
             f"Examples per step: {results['examples_per_step']['one_program_masked']:,} in the masked one-program grid, "
             f"{results['examples_per_step']['sequential']:,} summed over the sequential runs (what the grouped sweep "
             "does)." + ("" if not cfg["extrapolated"] else f" The sequential time is extrapolated from "
                         f"{cfg['timed_sequential_configs']} timed configurations (all batch sizes; the cost of a run "
                         "does not depend on η)."))
    notes = ("Sequential loop, seconds per step by batch size: "
             + ", ".join(f"S = {s}: {per[s] * 1e3:.2f} ms" for s in sizes[:: max(len(sizes) // 5, 1)])
             + f". Checks: the same trajectories as sgdsde (same init, keys and indices; max |Δθ| over "
             f"{len(results['checks']['configs'])} configurations: "
             f"{max(c['max_abs_diff'] for c in results['checks']['configs']):.1e}): "
             f"{results['checks']['same_trajectories']}.")
    command = f"python benchmarks/sweep.py --steps {steps}" + (f" --etas {a.etas}" if a.etas is not None else "")
    return C.doc_block(NAME, command, results, machine, lead=lead, sections=[setup, (header, rows), notes])


if __name__ == "__main__":
    main()
