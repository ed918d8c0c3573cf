#!/usr/bin/env python
"""Benchmark: the cost of the SDE reference on a network — SVAG(ℓ) against Euler–Maruyama
with the empirical gradient covariance, as the data set grows.

What is measured: seconds per **SGD-step equivalent** (the work that advances the model
by one SGD step of time, docs/theory.md §2, §8) on an MLP classifier, float32, R replicas,
``sgdsde.run`` with the endpoint observer, for N training examples:

- ``svag(ℓ)``: ℓ calls per SGD step, each one minibatch gradient over 2S examples (two
  batches of S; ℓ = 1 is SGD, one batch): cost ∝ ℓ·S, independent of N;
- ``euler_maruyama(noise.empirical(finite_n=True), dt)``: 1/dt calls per SGD step, each a
  full-batch gradient and one exact draw ξ ~ N(0, C(θ)) (one weighted gradient over all
  N examples): cost ∝ N/dt. Timed at dt = 1 (Gaussian SGD); the weak error of EM at
  dt = 1/ℓ and of SVAG(ℓ) are both O(η/ℓ), so EM's cost at dt = 1/ℓ is reported as ℓ
  times its per-call cost.

Data: synthetic MNIST-shaped examples (28 × 28 × 1 in [0, 1], 10 random classes; the
cost does not depend on the values), N = 1,000 … 60,000. Model: MLP 784-32-10 (25,450
parameters) by default.

Timing: every implementation and N is warmed up (compiled) first; then the
implementations at one N are timed interleaved in rounds (A B C … A B C …) and the
**median** of the repeats' execution time is used (JAX's compile seconds inside a call
are measured and split off, ``_common.time_interleaved``).

Usage:
    python benchmarks/svag_cost.py [--sizes 1000,4000,15000,60000] [--ells 1,4,16]
                                   [--replicas 8] [--repeats 5] [--quick]

--quick (seconds, on the CPU) checks that everything runs and writes
benchmarks/results/svag_cost_quick.json; a full run writes benchmarks/results/svag_cost.json
(``SGDSDE_BENCH_RESULTS`` redirects both).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import sgdsde as sd  # noqa: E402
from sgdsde.nn import MLP, classification_problem  # noqa: E402
from sgdsde.nn.data import make_dataset  # noqa: E402

NAME = "svag_cost"
MNIST_SHAPE = (28, 28, 1)


def synthetic_mnist(num_examples: int, seed: int = 0):
    """N MNIST-shaped images, uniform in [0, 1], with uniformly random labels 0…9."""
    rng = np.random.default_rng(seed)
    x = rng.random((num_examples,) + MNIST_SHAPE, dtype=np.float32)
    return make_dataset(x, rng.integers(0, 10, num_examples), 10, name=f"synthetic MNIST-shaped, N = {num_examples}")


def _runner(stepper, problem, hyper, params, calls: int, replicas: int):
    """A call of sd.run with fixed arguments (the observer object built once: the
    compiled program is reused across calls)."""
    observers = [sd.observers.endpoint()]
    key = jax.random.key(1)
    return lambda: sd.run(key, stepper, problem, hyper, params, calls, replicas=replicas,
                          observers=observers)["endpoint"]


def measure(a) -> dict:
    rows = []
    hyper = sd.Hyper(a.learning_rate, a.batch_size)
    for n in a.sizes:
        problem = classification_problem(MLP(10, hidden=tuple(a.hidden)), synthetic_mnist(n, a.seed))
        params = problem.info["init_params"](jax.random.key(0))
        steppers = {f"svag({ell})": (sd.svag(ell, "subset"), ell, a.svag_steps * ell) for ell in a.ells}
        steppers["em(empirical, dt=1)"] = (sd.euler_maruyama(sd.noise.empirical(finite_n=True), 1.0), 1, a.em_calls)
        fns = {name: _runner(stepper, problem, hyper, params, calls, a.replicas)
               for name, (stepper, _, calls) in steppers.items()}
        C.log(f"N = {n}: {', '.join(fns)} ({problem.info['num_parameters']:,} parameters, R = {a.replicas})")
        timings = C.time_interleaved(fns, warmup=1, repeats=a.repeats)
        em_call = timings["em(empirical, dt=1)"].median / a.em_calls
        for name, (stepper, calls_per_step, calls) in steppers.items():
            timing = timings[name]
            per_call = timing.median / calls
            row = {"num_examples": n, "stepper": name, "calls": calls, "calls_per_sgd_step": calls_per_step,
                   "seconds_per_call_median": per_call, "seconds_per_sgd_step_median": per_call * calls_per_step,
                   "timing": timing.as_dict(work=calls * a.replicas)}
            if name.startswith("svag"):
                ell = calls_per_step
                row["em_same_order_seconds_per_sgd_step"] = em_call * ell  # EM at dt = 1/ℓ
                row["em_over_svag"] = em_call * ell / (per_call * ell)
            rows.append(row)
            C.log(f"  {name:<22} {C.fmt_seconds(per_call)} per call, {C.fmt_seconds(per_call * calls_per_step)} "
                  f"per SGD step (compile {C.fmt_seconds(timing.compile_seconds)})")
    return {"rows": rows}


def _table(rows) -> tuple[list, list]:
    header = ["N", "stepper", "calls/SGD step", "s per call", "s per SGD step", "EM at dt=1/ℓ / SVAG(ℓ)"]
    body = [[r["num_examples"], r["stepper"], r["calls_per_sgd_step"], f"{r['seconds_per_call_median']:.3g}",
             f"{r['seconds_per_sgd_step_median']:.3g}",
             f"{r['em_over_svag']:.3g}" if "em_over_svag" in r else ""] for r in rows]
    return header, body


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="comma-separated N (default 1000,4000,15000,60000)")
    p.add_argument("--ells", default=None, help="comma-separated ℓ (default 1,4,16)")
    p.add_argument("--replicas", type=int, default=None, help="replicas R (default 8; 2 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 2 with --quick)")
    p.add_argument("--svag-steps", type=int, default=None, help="SGD steps per SVAG timing (default 64; 4 quick)")
    p.add_argument("--em-calls", type=int, default=None, help="EM calls per timing (default 16; 2 quick)")
    p.add_argument("--hidden", default="32", help="MLP hidden widths, comma-separated (default 32)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for checking")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    a = p.parse_args(argv)
    ints = lambda text: [int(v) for v in text.split(",")]
    a.sizes = ints(a.sizes or ("500,2000" if a.quick else "1000,4000,15000,60000"))
    a.ells = ints(a.ells or ("1,4" if a.quick else "1,4,16"))
    a.hidden = ints(a.hidden)
    a.replicas = a.replicas or (2 if a.quick else 8)
    a.repeats = a.repeats or (2 if a.quick else 5)
    a.svag_steps = a.svag_steps or (4 if a.quick else 64)
    a.em_calls = a.em_calls or (2 if a.quick else 16)
    if min(a.sizes) < a.batch_size or min(a.ells) < 1 or a.replicas < 1 or a.repeats < 1:
        p.error("need N ≥ batch size, ℓ ≥ 1, replicas ≥ 1, repeats ≥ 1")
    began, machine = C.begin()
    results = measure(a)
    header, body = _table(results["rows"])
    C.print_table(header, body, title="SVAG(ℓ) vs Euler–Maruyama with the empirical covariance: cost per SGD step "
                                      "(medians of interleaved repeats, compile apart)")
    results = {"config": {k: v for k, v in vars(a).items()}, **results}
    suffix = "_quick" if a.quick else ""
    C.finish(NAME, results, machine, began=began, suffix=suffix, write_docs=not (a.quick or a.no_docs),
             render=lambda: _doc_block(results, machine, (header, body)))
    return results


def _doc_block(results: dict, machine: dict, table) -> str:
    cfg, rows = results["config"], results["rows"]
    largest = max(cfg["sizes"])
    at_largest = [r for r in rows if r["num_examples"] == largest and "em_over_svag" in r]
    lead = "**EM with the empirical covariance at dt = 1/ℓ, over SVAG(ℓ)** (same weak order in 1/ℓ), per SGD step at " \
           f"N = {largest:,}: " + ", ".join(f"{r['stepper']} {r['em_over_svag']:.3g}×" for r in at_largest) + "."
    setup = (f"MLP 784-{'-'.join(map(str, cfg['hidden']))}-10 on synthetic MNIST-shaped data, S = {cfg['batch_size']}, "
             f"η = {cfg['learning_rate']}, R = {cfg['replicas']} replicas, float32; seconds per SGD-step equivalent "
             f"(ℓ calls of SVAG(ℓ), 1/dt calls of EM), medians of {cfg['repeats']} interleaved repeats, compile apart. "
             "SVAG's cost is independent of N; EM's grows like N (a full pass per call).")
    return C.doc_block(NAME, "python benchmarks/svag_cost.py", results, machine, lead=lead, sections=[setup, table])


if __name__ == "__main__":
    main()
