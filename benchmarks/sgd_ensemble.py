#!/usr/bin/env python
"""Benchmark: throughput of an SGD ensemble, ``sgdsde.run`` against hand-written optax.

What is measured (issue 2): replica-steps per second of minibatch SGD on the 2-D double
well ``sgdsde.problems.double_well_2d`` (N examples, batch S, learning rate η), for the
"subset" (a fresh random S-subset each step) and "iid" (with replacement) samplings:

- ``sgdsde.run``: ``sd.run(key, sd.sgd(sampling), problem, sd.Hyper(η, S), θ0, T,
  replicas=R, observers=[sd.observers.endpoint()])``.
- ``optax per-replica loop``: ``optax.sgd(η)``; one jitted function runs ONE replica
  for T steps (``lax.scan`` over a step that draws the minibatch, takes the gradient of
  the batch-mean loss and applies the optax update); a Python loop calls it replica
  after replica. Its per-replica cost is constant (the loop does the same work for every
  replica), so it is timed on a subset of the replicas and converted to replica-steps/s.
- ``optax vmapped``: the same per-replica scan, ``vmap``-ed over the replicas by hand
  and jitted (what a JAX-savvy user writes): the honest anchor for vectorised speed.

Both anchors use the problem's own per-example loss and data, the same key derivation
as sgdsde (replica key fold_in(key, r), step key fold_in(replica key, k)) and the same
kind of minibatch draws (``jax.random.randint`` for iid; for subset the indices of the S
largest of N uniforms, the trick sgdsde used when this was written;
``jax.random.choice(replace=False)`` is timed as a variant). With iid (and with subset
while sgdsde draws subsets the same way) all three compute the same numbers: the script
checks the first step and the final parameters, and always compares final mean losses
statistically against anchor runs with an independent key.

Timing: each measurement is warmed up (compiled) first, then repeated; the implementations
compared with each other are timed interleaved in rounds (A B C A B C …) so that load
drift on a shared machine hits them alike; rates and ratios use the best (minimum)
execution time. JAX's trace/lower/compile seconds inside every
call are measured (``jax.monitoring``) and split off, so a call that compiles again is
still timed fairly; the compile seconds of the first call are reported separately. The
sgdsde.run timings reuse one stepper and one observer list (sgdsde caches the compiled
program per stepper/observer objects); whether a run written inline with new objects
compiles again is reported too, with the fixed cost of a warm call.

Usage:
    python benchmarks/sgd_ensemble.py [--replicas 10000] [--steps N] [--quick]
    python benchmarks/sgd_ensemble.py --sampler-grid [--quick]

--sampler-grid times only iid, subset and epoch sampling in sgdsde.run over N x S
(see :func:`sampler_grid`) and writes benchmarks/results/sgd_ensemble_samplers[_quick].json.

--quick runs a small version (< 30 s) to check that everything works; it writes
benchmarks/results/sgd_ensemble_quick.json and leaves docs/benchmarks.md alone. A full
run writes benchmarks/results/sgd_ensemble.json and the results block of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

import _common as C  # noqa: E402
import sgdsde as sd  # noqa: E402

NAME = "sgd_ensemble"
DOC = C.ROOT / "docs" / "benchmarks.md"
THETA0 = (-1.0, 0.5)  # start in the left well, off its axis
QUICK_STEPS = {"subset": 5, "iid": 30}  # --quick with R = 1000: each timing ~0.1–0.3 s


# ------------------------------------------------------------------ anchors
def optax_replica_fn(problem, sampling: str, num_steps: int, learning_rate: float, batch_size: int,
                     subset_draw: str = "topk"):
    """``run_one(key, r, params0, data) -> params after num_steps``: ONE replica of
    minibatch SGD with optax, its steps driven by ``lax.scan``. Replica r uses the key
    fold_in(key, r) and, at step k, fold_in(that key, k) (as sgdsde does)."""
    n = problem.num_examples
    per_example_loss = problem.per_example_loss
    optimizer = optax.sgd(learning_rate)

    def loss_fn(params, batch):
        return jnp.mean(jax.vmap(per_example_loss, in_axes=(None, 0))(params, batch))

    def draw(key):
        if sampling == "iid":
            return jax.random.randint(key, (batch_size,), 0, n)
        if subset_draw == "topk":  # a uniform random subset: the S largest of N uniforms
            return lax.top_k(jax.random.uniform(key, (n,)), batch_size)[1]
        return jax.random.choice(key, n, (batch_size,), replace=False)

    def run_one(key, r, params, data):
        key = jax.random.fold_in(key, r)

        def step(carry, k):
            params, opt_state = carry
            idx = draw(jax.random.fold_in(key, k))
            batch = jax.tree_util.tree_map(lambda x: x[idx], data)
            grads = jax.grad(loss_fn)(params, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = lax.scan(step, (params, optimizer.init(params)), jnp.arange(num_steps))
        return params

    return run_one


def optax_loop(problem, sampling, num_steps, lr, batch_size):
    """Per-replica anchor: ``loop(key, replicas) -> (replicas, d)`` calling a jitted
    one-replica function in a Python loop."""
    run_one = jax.jit(optax_replica_fn(problem, sampling, num_steps, lr, batch_size))

    def loop(key, p0, data, replicas):
        return jnp.stack([run_one(key, r, p0, data) for r in range(replicas)])

    return loop


def optax_vmapped(problem, sampling, num_steps, lr, batch_size, replicas, subset_draw="topk"):
    """Vectorised anchor: the same per-replica scan, vmapped over replicas and jitted."""
    run_one = optax_replica_fn(problem, sampling, num_steps, lr, batch_size, subset_draw)

    @jax.jit
    def run_all(key, p0, data):
        r = jnp.arange(replicas, dtype=jnp.uint32)
        return jax.vmap(run_one, in_axes=(None, 0, None, None))(key, r, p0, data)

    return run_all


# ------------------------------------------------------------------ helpers
def _steps_for(target_s: float, seconds_per_replica_step: float, replicas: int, lo: int, hi: int) -> int:
    """Steps so that one timing lasts ≥ target_s, rounded up to a multiple of 10 (≥ lo, ≤ hi)."""
    steps = math.ceil(target_s / max(seconds_per_replica_step * replicas, 1e-12))
    steps = 10 * math.ceil(steps / 10) if steps > 10 else steps
    return int(min(max(steps, lo), hi))


_LOSS_FNS: dict = {}


def _mean_loss(problem, params) -> tuple[float, float, int]:
    """Mean and standard error of the full-data loss over replicas (non-finite rows dropped)."""
    fn = _LOSS_FNS.setdefault(id(problem), jax.jit(jax.vmap(problem.loss)))
    losses = np.asarray(fn(jnp.asarray(np.asarray(params))))
    losses = losses[np.isfinite(losses)]
    return float(losses.mean()), float(losses.std(ddof=1) / math.sqrt(len(losses))), len(losses)


def _z(a, b) -> float:
    return (a[0] - b[0]) / math.sqrt(a[1] ** 2 + b[1] ** 2) if (a[1] or b[1]) else 0.0


_log = C.log


# ------------------------------------------------------------------ measurements
class Bench:
    def __init__(self, args):
        self.args = args
        self.key = jax.random.key(args.seed)
        self.problem = sd.problems.double_well_2d(key=jax.random.key(0), num_examples=args.num_examples)
        self.hyper = sd.Hyper(args.learning_rate, args.batch_size)
        self.theta0 = jnp.asarray(THETA0, jnp.float32)
        self.data = self.problem.data

    # ---- sgdsde.run
    def sgdsde_call(self, stepper, observers, replicas, steps):
        """One sgdsde.run call with the given stepper and observer objects (reused across
        calls, so sgdsde's cache of compiled programs is hit after the first call). It
        runs with ``progress=True, chunk_size=steps`` (one chunk, its progress line
        swallowed): run() then waits for the scan before anything else compiles, so when
        a call does compile, "wall − compile" is not shortened by compiles overlapping the
        asynchronously running scan."""

        def call():
            with contextlib.redirect_stderr(io.StringIO()):
                return sd.run(self.key, stepper, self.problem, self.hyper, self.theta0, steps,
                              replicas=replicas, observers=observers, chunk_size=max(steps, 1), progress=True)

        return call

    def prepare_sgdsde(self, sampling, replicas, steps=None, observers=None):
        """A warm sgdsde.run call (one stepper and one observer list, built once and reused).

        Without ``steps``, calibration calls (starting at --calibration-steps, growing the
        steps until a call's execution lasts ≥ min_time/2) pick them; the last one has the
        final steps and is the warm-up. Returns (call, steps, info, first-call Timing)."""
        a = self.args
        stepper = sd.sgd(sampling)
        obs = observers() if observers is not None else [sd.observers.endpoint()]
        info = {"method": "--steps" if a.steps else "fixed for --quick"}
        if steps is None:
            steps, attempts = a.calibration_steps, []
            while True:
                first = C.time_call(self.sgdsde_call(stepper, obs, replicas, steps), warmup=1, repeats=0)
                execute = first.warmup_wall[0] - first.warmup_compile[0]
                attempts.append({"steps": steps, "wall_s": first.warmup_wall[0],
                                 "compile_s": first.warmup_compile[0], "execute_s": execute})
                if execute >= 0.5 * a.min_time or steps >= a.max_steps or len(attempts) >= 4:
                    break
                steps = max(_steps_for(a.min_time, execute / (replicas * steps), replicas, a.min_steps,
                                       a.max_steps), 2 * steps)
                steps = min(steps, a.max_steps)
            info = {"method": "calibrated: steps grown until a call lasts >= min_time/2; the last "
                              "calibration call is the warm-up", "attempts": attempts}
        else:
            first = C.time_call(self.sgdsde_call(stepper, obs, replicas, steps), warmup=1, repeats=0)
        return self.sgdsde_call(stepper, obs, replicas, steps), steps, info, first

    def time_sgdsde(self, sampling, replicas, steps=None, observers=None):
        """prepare_sgdsde, then --repeats timed calls. Returns (timing, steps, info)."""
        call, steps, info, first = self.prepare_sgdsde(sampling, replicas, steps, observers)
        timing = C.time_call(call, warmup=0, repeats=self.args.repeats)
        timing.warmup_wall, timing.warmup_compile = first.warmup_wall, first.warmup_compile
        return timing, steps, info

    def fresh_objects_compile(self, sampling, replicas, steps) -> dict:
        """After warm runs: one sgdsde.run written inline, ``sd.run(key, sd.sgd(...), …,
        observers=[sd.observers.endpoint()])``, i.e. with new stepper and observer objects.
        Does it compile again?"""
        warm = self.time_sgdsde(sampling, replicas, steps)[0]
        call = lambda: sd.run(self.key, sd.sgd(sampling), self.problem, self.hyper, self.theta0, steps,
                              replicas=replicas, observers=[sd.observers.endpoint()])
        t = C.time_call(call, warmup=0, repeats=1)
        return {"sampling": sampling, "replicas": replicas, "steps": steps,
                "warm_call_compile_s": float(np.median(warm.compile)), "warm_call_wall_s": warm.best,
                "inline_call_compile_s": t.compile[0], "inline_call_wall_s": t.wall[0],
                "recompiles": t.compile[0] > 0.2}

    # ---- anchors (each returns a warm call and its first-call Timing)
    def prepare_vmapped(self, sampling, steps, replicas, subset_draw="topk"):
        a = self.args
        fn = optax_vmapped(self.problem, sampling, steps, a.learning_rate, a.batch_size, replicas, subset_draw)
        call = lambda: fn(self.key, self.theta0, self.data)
        return call, C.time_call(call, warmup=1, repeats=0), fn

    def prepare_loop(self, sampling, steps, replicas_total):
        """Per-replica loop on n replicas: first --loop-replicas, then as many as make one
        pass last ≥ min_time/2 (the cost per replica is constant)."""
        a = self.args
        loop = optax_loop(self.problem, sampling, steps, a.learning_rate, a.batch_size)
        n0 = n = min(a.loop_replicas, replicas_total)
        first = C.time_call(lambda: loop(self.key, self.theta0, self.data, n0), warmup=1, repeats=1)
        probe = first
        for _ in range(3):
            if probe.best >= 0.5 * a.min_time or n >= replicas_total:
                break
            n = min(replicas_total, math.ceil(1.2 * n * a.min_time / max(probe.best, 1e-9)))
            probe = C.time_call(lambda: loop(self.key, self.theta0, self.data, n), warmup=0, repeats=1)
        call = lambda: loop(self.key, self.theta0, self.data, n)
        info = {"probe_replicas": n0, "probe_s_per_replica": first.best / n0, "timed_replicas": n}
        return call, n, info, first

    def prepare_draws(self, sampling, steps, replicas):
        """The minibatch draws alone (key derivation + indices), as the anchors make them,
        for all replicas and steps: the sampler's share of a step."""
        a = self.args
        n, s = self.problem.num_examples, a.batch_size

        def draw(key):
            if sampling == "iid":
                return jax.random.randint(key, (s,), 0, n)
            return lax.top_k(jax.random.uniform(key, (n,)), s)[1]

        @jax.jit
        def draws(key):
            keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicas, dtype=jnp.uint32))

            def body(acc, k):
                idx = jax.vmap(lambda kr: draw(jax.random.fold_in(kr, k)))(keys)
                return acc + idx[:, 0], None  # keep the draws alive

            return lax.scan(body, jnp.zeros(replicas, jnp.int32), jnp.arange(steps))[0]

        call = lambda: draws(self.key)
        return call, C.time_call(call, warmup=1, repeats=0)

    # ---- checks
    def first_step_check(self, sampling, replicas=64) -> dict:
        """θ after one step, same keys: sgdsde's stepper (the function sgdsde.run scans,
        with sgdsde.run's key derivation) against the optax anchor's first step, and
        replica 0 against θ1 = θ0 − η · mean_b ∇l_{i_b}(θ0) written out by hand.

        iid: the indices are randint(step key) in both, so the numbers must agree. subset:
        they agree while sgdsde draws subsets by the same top-k-of-uniforms trick."""
        a = self.args
        stepper = sd.sgd(sampling)
        hyper = self.hyper.validate(self.problem.num_examples, 1)
        state0 = stepper.init(self.theta0, self.problem)
        anchor_one = optax_replica_fn(self.problem, sampling, 1, a.learning_rate, a.batch_size)

        @jax.jit
        def both(key, problem, theta0):
            r = jnp.arange(replicas, dtype=jnp.uint32)
            step_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), 0))(r)
            ours = jax.vmap(lambda k: stepper.step(k, state0, problem, hyper).params)(step_keys)
            theirs = jax.vmap(anchor_one, in_axes=(None, 0, None, None))(key, r, theta0, problem.data)
            k0 = step_keys[0]
            idx = (jax.random.randint(k0, (a.batch_size,), 0, a.num_examples) if sampling == "iid"
                   else lax.top_k(jax.random.uniform(k0, (a.num_examples,)), a.batch_size)[1])
            losses = lambda p: jax.vmap(problem.per_example_loss, (None, 0))(p, problem.data[idx])
            by_hand = theta0 - a.learning_rate * jax.grad(lambda p: jnp.mean(losses(p)))(theta0)
            return ours, theirs, by_hand

        ours, anchor, by_hand = (np.asarray(x) for x in both(self.key, self.problem, self.theta0))
        match = bool(np.allclose(ours, anchor, rtol=1e-5, atol=1e-6)
                     and np.allclose(ours[0], by_hand, rtol=1e-5, atol=1e-6))
        return {
            "replicas": replicas,
            "max_abs_diff_sgdsde_vs_optax": float(np.abs(ours - anchor).max()),
            "max_abs_diff_sgdsde_vs_by_hand_replica0": float(np.abs(ours[0] - by_hand).max()),
            "max_abs_step": float(np.abs(ours - np.asarray(self.theta0)).max()),
            "match": match,
            "match_required": sampling == "iid",
        }


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=None, help="replicas R (default 10000; 1000 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help="SGD steps per timing for the R-replica runs (default: chosen so a timing lasts ≥ --min-time)")
    p.add_argument("--quick", action="store_true", help="small and fast (< 30 s on a quiet machine), for checking")
    p.add_argument("--samplings", default="subset,iid", help="comma-separated (default subset,iid)")
    p.add_argument("--num-examples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; 1 with --quick)")
    p.add_argument("--min-time", type=float, default=None, help="target seconds per timing (default 2; 0.2 quick)")
    p.add_argument("--loop-replicas", type=int, default=20, help="replicas the per-replica loop is first timed on")
    p.add_argument("--choice-replicas", type=int, default=1000,
                   help="replicas for the jax.random.choice(replace=False) variant (slow; default 1000)")
    p.add_argument("--scaling", default=None, help="replica counts for the scaling table (default 100,1000,10000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--sampler-grid", action="store_true",
                   help="only the sampler grid: iid, subset, epoch over N x S (see sampler_grid)")
    a = p.parse_args(argv)
    a.replicas = a.replicas or (1000 if a.quick else 10000)
    a.repeats = a.repeats or (1 if a.quick else 5)
    a.min_time = a.min_time if a.min_time is not None else (0.2 if a.quick else 2.0)
    a.scaling = [int(x) for x in (a.scaling or ("100" if a.quick else "100,1000,10000")).split(",")]
    a.samplings = [s.strip() for s in a.samplings.split(",") if s.strip()]
    for s in a.samplings:
        if s not in ("subset", "iid"):
            p.error(f"--samplings: each must be 'subset' or 'iid', got {s!r}")
    a.calibration_steps = 10
    a.min_steps = 5 if a.quick else 10
    a.max_steps = 300 if a.quick else 20000
    return a


# ------------------------------------------------------------------ sampler grid
GRID_N, GRID_S = (256, 1000, 10000, 50000), (8, 32, 128, 512)
QUICK_GRID_N, QUICK_GRID_S = (256, 10000), (8, 32)


def sampler_grid(a) -> dict:
    """Replica-steps/s of ``sd.run`` with sd.sgd("iid" | "subset" | "epoch") on the 2-D double
    well, for every N x S of the grid with S <= N. At each point the three samplings are
    warmed up (compiled; compile seconds kept apart), then timed interleaved (iid subset
    epoch, iid subset epoch, ...) for --repeats rounds; rates and ratios use the median
    execution time. Steps per timing: chosen from iid's warm-up so an iid call lasts
    ~--min-time (the same steps for all three)."""
    began, machine = C.begin()
    R = a.replicas
    grid_n, grid_s = (QUICK_GRID_N, QUICK_GRID_S) if a.quick else (GRID_N, GRID_S)
    theta0 = jnp.asarray(THETA0, jnp.float32)
    key = jax.random.key(a.seed)
    steppers = {s: sd.sgd(s) for s in ("iid", "subset", "epoch")}
    observers = [sd.observers.endpoint()]
    points, rows = [], []
    for n in grid_n:
        problem = sd.problems.double_well_2d(key=jax.random.key(0), num_examples=n)
        for size in (s for s in grid_s if s <= n):
            hyper = sd.Hyper(a.learning_rate, size)

            def call(sampling, steps):
                return lambda: sd.run(key, steppers[sampling], problem, hyper, theta0, steps, replicas=R,
                                      observers=observers, chunk_size=steps)

            probe = C.time_call(call("iid", a.calibration_steps), warmup=1, repeats=1)
            steps = _steps_for(a.min_time, probe.best / (R * a.calibration_steps), R, a.min_steps, a.max_steps)
            calls = {s: call(s, steps) for s in steppers}
            firsts = {s: C.time_call(fn, warmup=1, repeats=0) for s, fn in calls.items()}
            _log(f"[grid] N={n} S={size}: {steps} steps, {a.repeats} interleaved rounds")
            timings = C.time_interleaved(calls, warmup=0, repeats=a.repeats)
            point = {"num_examples": n, "batch_size": size, "replicas": R, "steps": steps}
            for s, t in timings.items():
                t.warmup_wall, t.warmup_compile = firsts[s].warmup_wall, firsts[s].warmup_compile
                point[s] = {**t.as_dict(R * steps), "first_call_compile_s": firsts[s].warmup_compile[0]}
            rate = {s: point[s]["rate_median"] for s in steppers}
            point["cost_ratio_subset_over_iid"] = rate["iid"] / rate["subset"]
            point["cost_ratio_epoch_over_iid"] = rate["iid"] / rate["epoch"]
            points.append(point)
            rows.append([n, size, steps, *(C.fmt_rate(rate[s]) for s in steppers),
                         f"{point['cost_ratio_subset_over_iid']:.2f}", f"{point['cost_ratio_epoch_over_iid']:.2f}",
                         " / ".join(f"{firsts[s].warmup_compile[0]:.1f}" for s in steppers)])
            print(C.format_table(HEADER_GRID, rows[-1:]).splitlines()[-1], flush=True)
    print()
    C.print_table(HEADER_GRID, rows, title=f"sd.run replica-steps/s (median of {a.repeats} interleaved rounds), "
                                           f"R={R}, 2-D double well, eta={a.learning_rate}")
    print("  ratios = time per replica-step relative to iid (1 = as fast as iid).")
    results = {"config": {"replicas": R, "repeats": a.repeats, "min_time_s": a.min_time, "quick": a.quick,
                          "learning_rate": a.learning_rate, "grid_n": list(grid_n), "grid_s": list(grid_s),
                          "timing_statistic": "median execution time (wall - JAX compile) over interleaved rounds"},
               "points": points, "elapsed_s": time.perf_counter() - began}
    machine["load_average_1_5_15min_end"] = C.machine_info()["load_average_1_5_15min"]
    path = C.write_json(NAME + "_samplers" + ("_quick" if a.quick else ""), results, machine=machine)
    print(f"load average (1/5/15 min) at start {machine['load_average_1_5_15min']}, "
          f"at end {machine['load_average_1_5_15min_end']}")
    print(f"wrote {C.shown(path)} ({results['elapsed_s']:.0f} s)")
    return results


HEADER_GRID = ["N", "S", "steps", "iid /s", "subset /s", "epoch /s", "subset/iid", "epoch/iid",
               "compile s (iid/subset/epoch)"]


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.sampler_grid:
        return sampler_grid(a)
    began, machine = C.begin()
    bench = Bench(a)
    R = a.replicas
    results: dict = {"config": {
        "problem": f"sgdsde.problems.double_well_2d(num_examples={a.num_examples}) (barrier 1, width 1, "
                   "curvature 1, sigma2 1)",
        "theta0": list(THETA0), "replicas": R, "batch_size": a.batch_size, "learning_rate": a.learning_rate,
        "samplings": a.samplings, "repeats": a.repeats, "min_time_s": a.min_time, "quick": a.quick,
        "timing_statistic": "ratios and rates use the median execution time over the interleaved repeats; "
                            "JAX trace/lower/compile seconds inside a call are split off",
        "float": "float32",
    }, "samplings": {}, "scaling": [], "observers": []}
    rows, crow = [], []

    for sampling in a.samplings:
        _log(f"[{sampling}] sgdsde.run, R={R}: warm-up / choice of steps")
        fixed = a.steps or (QUICK_STEPS[sampling] if a.quick else None)
        sd_call, steps, calib, sd_first = bench.prepare_sgdsde(sampling, R, fixed)
        work = R * steps
        _log(f"[{sampling}] {steps} steps; warm-up of the anchors")
        calls = {"sgdsde": sd_call}
        firsts = {"sgdsde": sd_first}
        calls["vmapped"], firsts["vmapped"], vm_fn = bench.prepare_vmapped(sampling, steps, R)
        calls["loop"], n_loop, loop_info, firsts["loop"] = bench.prepare_loop(sampling, steps, R)
        r_ch = min(R, a.choice_replicas)
        if sampling == "subset" and not a.quick:
            calls["choice"], firsts["choice"], _ = bench.prepare_vmapped(sampling, steps, r_ch, subset_draw="choice")
        if not a.quick:
            calls["draws"], firsts["draws"] = bench.prepare_draws(sampling, steps, R)
        _log(f"[{sampling}] timing {', '.join(calls)} interleaved, {a.repeats} rounds")
        timings = C.time_interleaved(calls, warmup=0, repeats=a.repeats)
        for name, t in timings.items():
            t.warmup_wall, t.warmup_compile = firsts[name].warmup_wall, firsts[name].warmup_compile
        t_sd, t_vm, t_loop = timings["sgdsde"], timings["vmapped"], timings["loop"]
        t_ch, t_draw = timings.get("choice"), timings.get("draws")
        loop_info["timed_s_per_replica"] = t_loop.best / n_loop
        sd_end = np.asarray(t_sd.result["endpoint"])
        vm_end = np.asarray(t_vm.result)
        loop_end = np.asarray(t_loop.result)

        # ---- checks
        _log(f"[{sampling}] checks")
        first = bench.first_step_check(sampling)
        indep = np.asarray(vm_fn(jax.random.key(a.seed + 1000), bench.theta0, bench.data))
        losses = {
            "sgdsde.run": _mean_loss(bench.problem, sd_end),
            "optax vmapped (same keys)": _mean_loss(bench.problem, vm_end),
            "optax loop (same keys, first replicas)": _mean_loss(bench.problem, loop_end),
            "optax vmapped (independent key)": _mean_loss(bench.problem, indep),
        }
        if t_ch is not None:
            losses["optax vmapped choice(replace=False) (independent draws)"] = _mean_loss(
                bench.problem, np.asarray(t_ch.result))
        z_indep = {name: _z(losses["sgdsde.run"], v) for name, v in losses.items() if "independent" in name}
        diff_vm = float(np.nanmax(np.abs(sd_end - vm_end)))
        diff_loop = float(np.nanmax(np.abs(sd_end[:n_loop] - loop_end)))
        consistent = bool(all(abs(z) < 4 for z in z_indep.values()))
        same_numbers = first["match"] and diff_vm < 1e-3 and diff_loop < 1e-3
        checks = {
            "first_step": first,
            "final_params_max_abs_diff_vs_vmapped": diff_vm,
            "final_params_max_abs_diff_vs_loop": diff_loop,
            "final_params_fraction_within_1e-4_vs_vmapped": float(np.mean(np.all(np.abs(sd_end - vm_end) < 1e-4, -1))),
            "final_mean_loss": {k: {"mean": v[0], "stderr": v[1], "replicas": v[2]} for k, v in losses.items()},
            "z_sgdsde_vs_independent": z_indep,
            "statistically_consistent": consistent,
            "same_numbers_with_same_keys": same_numbers,
            "ok": consistent and (same_numbers or sampling != "iid"),
            "diverged_replicas_sgdsde": int(np.sum(t_sd.result.diverged)),
        }

        rate_sd = work / t_sd.median
        entry = {
            "steps": steps, "replicas": R, "step_choice": calib,
            "sgdsde_run": t_sd.as_dict(work),
            "optax_vmapped": t_vm.as_dict(work),
            "optax_loop": {**t_loop.as_dict(n_loop * steps), **loop_info,
                           "note": "per-replica cost is constant: timed on timed_replicas replicas, "
                                   "rate = timed_replicas*steps/time"},
            "ratios": {
                "sgdsde_over_optax_loop": rate_sd / (n_loop * steps / t_loop.median),
                "sgdsde_over_optax_vmapped": rate_sd / (work / t_vm.median),
            },
            "checks": checks,
        }
        if t_ch is not None:
            entry["optax_vmapped_choice"] = {**t_ch.as_dict(r_ch * steps), "replicas": r_ch}
            entry["ratios"]["sgdsde_over_optax_vmapped_choice"] = rate_sd / (r_ch * steps / t_ch.median)
        if t_draw is not None:
            entry["draws_alone"] = {**t_draw.as_dict(work),
                                    "fraction_of_sgdsde_step": t_draw.median / t_sd.median,
                                    "note": "key derivation + minibatch indices only, as in the anchors"}
        results["samplings"][sampling] = entry

        def row(label, timing, n, wk, one_call):
            rate = wk / timing.median
            return [label, sampling, n, steps, f"{rate_sd / rate:.2f}", C.fmt_seconds(timing.median),
                    C.fmt_rate(rate), C.fmt_rate(wk / timing.best), C.fmt_seconds(timing.compile_seconds),
                    C.fmt_seconds(one_call) if one_call else "—"]

        # "1st call incl. compile": the warm-up call, which compiles
        rows.append(row("sgdsde.run", t_sd, R, work, t_sd.warmup_wall[0]))
        rows.append(row("optax vmapped", t_vm, R, work, t_vm.warmup_wall[0]))
        if t_ch is not None:
            rows.append(row("optax vmapped, choice(replace=False)", t_ch, r_ch, r_ch * steps, t_ch.warmup_wall[0]))
        rows.append(row(f"optax per-replica loop (timed on {n_loop})", t_loop, n_loop, n_loop * steps, None))
        crow.append([sampling, f"{first['max_abs_diff_sgdsde_vs_optax']:.1e}", f"{diff_vm:.1e}", f"{diff_loop:.1e}",
                     f"{losses['sgdsde.run'][0]:.4f} ± {losses['sgdsde.run'][1]:.4f}",
                     ", ".join(f"{z:+.2f}" for z in z_indep.values()), "ok" if checks["ok"] else "MISMATCH"])
        _log(f"[{sampling}] sgdsde.run {C.fmt_rate(rate_sd)} replica-steps/s; ratios "
             + ", ".join(f"{k} {v:.2f}" for k, v in entry["ratios"].items()))

    header = ["implementation", "sampling", "replicas", "steps", "sgdsde.run ×", "time (median)",
              "replica-steps/s", "(best)", "compile", "1st call incl. compile"]
    check_header = ["sampling", "1st step max Δθ vs optax", "final max Δθ vs vmapped", "final max Δθ vs loop",
                    "final mean loss (sgdsde.run)", "z vs independent runs", "check"]
    print()
    C.print_table(header, rows, title=f"SGD ensemble, 2-D double well, N={a.num_examples}, S={a.batch_size}, "
                                      f"η={a.learning_rate}, R={R}")
    print("  'sgdsde.run ×' = sgdsde.run replica-steps/s divided by that row's (> 1: sgdsde.run is faster).")
    print("  Per-replica loop: its cost per replica is constant, so it is timed on the first replicas only.")
    print("  Every implementation is warmed up (compiled) first; 'compile' = JAX trace+lower+compile seconds"
          " of the first call.")
    for sampling, e in results["samplings"].items():
        if "draws_alone" in e:
            print(f"  {sampling}: the minibatch draws alone take {100 * e['draws_alone']['fraction_of_sgdsde_step']:.0f}% "
                  f"of sgdsde.run's time ({C.fmt_seconds(e['draws_alone']['execute_best_s'])}).")
    print()
    C.print_table(check_header, crow,
                  title="Same computation? (same keys → same numbers; independent keys → same law, |z| < 4)")

    # ---- scaling (--quick: subset only, whose program compiles fastest, to stay within budget)
    srows = []
    for sampling in (a.samplings[:1] if a.quick else a.samplings):
        head = results["samplings"][sampling]
        for r in a.scaling:
            if r == R:
                d, steps_r = head["sgdsde_run"], head["steps"]
            else:
                if a.quick:  # no calibration call: extrapolate from the headline run
                    per = head["sgdsde_run"]["execute_best_s"] / (R * head["steps"])
                    steps_r = _steps_for(a.min_time, per, r, a.min_steps, a.max_steps)
                else:
                    steps_r = None
                _log(f"[scaling] {sampling} R={r}")
                t, steps_r, _ = bench.time_sgdsde(sampling, r, steps_r)
                d = t.as_dict(r * steps_r)
            res = {"sampling": sampling, "replicas": r, "steps": steps_r,
                   **{k: d[k] for k in ("execute_best_s", "execute_median_s", "compile_s", "rate_best", "rate_median")}}
            results["scaling"].append(res)
            srows.append([sampling, r, steps_r, C.fmt_seconds(res["execute_best_s"]), C.fmt_rate(res["rate_best"]),
                          C.fmt_rate(res["rate_median"]), C.fmt_seconds(res["compile_s"])])
    scaling_header = ["sampling", "replicas", "steps", "time (best)", "replica-steps/s", "(median)", "compile"]
    print()
    C.print_table(scaling_header, srows, title="Scaling of sgdsde.run with the number of replicas")

    # ---- observers and fixed cost per call (iid: the cheaper step, so they show most)
    obs_sampling = a.samplings[0] if a.quick or "iid" not in a.samplings else "iid"
    head = results["samplings"][obs_sampling]
    steps_o = head["steps"]
    variants = {"endpoint()": lambda: [sd.observers.endpoint()],
                "endpoint(), moments(burn_in=T/2)": lambda: [sd.observers.endpoint(),
                                                             sd.observers.moments(burn_in=steps_o // 2)],
                "loss_curve(every=T/10)": lambda: [sd.observers.loss_curve(every=max(steps_o // 10, 1))]}
    if a.quick:
        variants.pop("loss_curve(every=T/10)")
    orows, ocalls, ofirsts = [], {}, {}
    for label, factory in variants.items():
        _log(f"[observers] warm-up: {label}")
        ocalls[label], _, _, ofirsts[label] = bench.prepare_sgdsde(obs_sampling, R, steps_o, observers=factory)
    _log(f"[observers] timing {len(ocalls)} observer sets interleaved, {a.repeats} rounds")
    otimings = C.time_interleaved(ocalls, warmup=0, repeats=a.repeats)
    base = R * steps_o / otimings["endpoint()"].median
    for label, t in otimings.items():
        t.warmup_wall, t.warmup_compile = ofirsts[label].warmup_wall, ofirsts[label].warmup_compile
        d = t.as_dict(R * steps_o)
        res = {"observers": label, "sampling": obs_sampling, "replicas": R, "steps": steps_o,
               **{k: d[k] for k in ("execute_best_s", "compile_s", "rate_best", "rate_median")}}
        res["relative_to_endpoint"] = res["rate_median"] / base
        results["observers"].append(res)
        orows.append([label, obs_sampling, R, steps_o, C.fmt_rate(res["rate_median"]),
                      f"{res['relative_to_endpoint']:.2f}", C.fmt_seconds(res["compile_s"])])
    obs_header = ["observers", "sampling", "replicas", "steps", "replica-steps/s", "vs endpoint()", "compile"]
    print()
    C.print_table(obs_header, orows, title="Observer cost in sgdsde.run")
    if not a.quick:
        _log("[overhead] sgdsde.run with num_steps=1")
        d = bench.time_sgdsde(obs_sampling, R, 1)[0].as_dict(R)
        results["sgdsde_run_per_call_overhead"] = {
            "sampling": obs_sampling, "replicas": R, "num_steps": 1, "execute_best_s": d["execute_best_s"],
            "execute_median_s": d["execute_median_s"], "compile_s": d["compile_s"],
            "note": "seconds of a warm 1-step sgdsde.run: the fixed cost per call outside the scan "
                    "(validation, replica keys, initial states, observers' start/finish, conversion to NumPy)"}
        o = results["sgdsde_run_per_call_overhead"]
        print(f"sgdsde.run fixed cost of a warm call ({obs_sampling}, R={R}, num_steps=1): "
              f"{C.fmt_seconds(o['execute_best_s'])} (median {C.fmt_seconds(o['execute_median_s'])})")
        _log("[compile cache] sgdsde.run written inline (new stepper and observer objects)")
        fresh = bench.fresh_objects_compile(obs_sampling, R, steps_o)
        results["sgdsde_run_inline_objects"] = fresh
        print(f"sgdsde.run written inline, sd.run(key, sd.sgd(...), ..., observers=[sd.observers.endpoint()]): "
              f"compiles {C.fmt_seconds(fresh['inline_call_compile_s'])} per call "
              f"(warm call with reused objects: {C.fmt_seconds(fresh['warm_call_compile_s'])})"
              + ("  -> recompiles every call" if fresh["recompiles"] else ""))

    tables = {"main": (header, rows), "checks": (check_header, crow), "scaling": (scaling_header, srows),
              "observers": (obs_header, orows)}
    C.finish(NAME, results, machine, began=began, suffix="_quick" if a.quick else "",
             write_docs=not (a.quick or a.no_docs), render=lambda: _doc_block(results, machine, tables, a))
    return results


def _doc_block(results, machine, tables, a) -> str:
    cfg = results["config"]
    args = f"--replicas {cfg['replicas']}" + (f" --steps {a.steps}" if a.steps else "")
    lead = "**Ratios** (sgdsde.run rate / anchor rate, medians of interleaved rounds): " + "; ".join(
        f"{sampling}: optax vmapped (the strongest anchor) **{e['ratios']['sgdsde_over_optax_vmapped']:.2f}×**, "
        f"optax per-replica loop {e['ratios']['sgdsde_over_optax_loop']:.2f}×"
        for sampling, e in results["samplings"].items()) + "."
    lines = [C.markdown_table(*tables["main"]), ""]
    for sampling, e in results["samplings"].items():
        if "draws_alone" in e:
            lines.append(f"- {sampling}: the minibatch draws alone (key derivation + indices) take "
                         f"{100 * e['draws_alone']['fraction_of_sgdsde_step']:.0f}% of sgdsde.run's time.")
    if "sgdsde_run_per_call_overhead" in results:
        o = results["sgdsde_run_per_call_overhead"]
        lines.append(f"- Fixed cost of a warm `sgdsde.run` call ({o['sampling']}, R = {o['replicas']}, "
                     f"1 step): {C.fmt_seconds(o['execute_best_s'])}.")
    if "sgdsde_run_inline_objects" in results:
        f = results["sgdsde_run_inline_objects"]
        lines.append(f"- `sgdsde.run` written inline (`sd.run(key, sd.sgd(...), …, observers=[sd.observers.endpoint()])`, "
                     f"new stepper and observer objects each call) compiles "
                     f"{C.fmt_seconds(f['inline_call_compile_s'])} per call; reusing the objects, "
                     f"{C.fmt_seconds(f['warm_call_compile_s'])}.")
    sections = ["\n".join(lines).strip(),
                "Checks (same keys give the same numbers; independent keys give the same law, |z| < 4):",
                tables["checks"], "Scaling of `sgdsde.run` with the number of replicas:", tables["scaling"],
                "Observer cost:", tables["observers"]]
    return C.doc_block(NAME, f"python benchmarks/sgd_ensemble.py {args}", results, machine, lead=lead,
                       sections=sections, gpu_note="")


if __name__ == "__main__":
    main()
