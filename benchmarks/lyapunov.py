#!/usr/bin/env python
"""Benchmark: the O(d³) Lyapunov solvers of sgdsde.theory / sgdsde.pac_bayes against the
O(d⁶) Kronecker (vec) solve they replaced.

What is measured (issue 10, item 5), float64, CPU, median of ``repeats`` calls after one
warm-up call (JAX compile seconds split off by ``_common.time_call``):

- ``continuous_lyapunov(A, Q)``, A symmetric positive definite (eigenbasis path) and A
  non-normal (Bartels–Stewart, scipy's Schur-based ``solve_continuous_lyapunov``);
- ``sgd_stationary_cov(A, C, η, S)`` (iid SGD) and with ``momentum=0.9`` (heavy ball),
  symmetric A;
- ``pac_bayes.lyapunov_sigma(A, C, …)`` (the PAC-Bayes Σ);
- the old Kronecker solve, ``jnp.linalg.solve(A⊗I + I⊗A, vec Q)``, at small d only (its
  d² × d² matrix needs 8 d⁴ bytes: 20 GB at d = 225).

A has eigenvalues spread over [0.5, 2.5] (η λ_max = 0.5), C is a random full-rank
covariance. Each row also reports the relative residual ‖L(X) − Q‖_F / (Σ‖terms‖_F) of
the solve, in units of eps. The machine is shared: the load average (``uptime``) is
recorded with the results.

    python benchmarks/lyapunov.py [--quick] [--repeats 3]

--quick (d ≤ 200) checks that everything runs; it writes results/lyapunov_quick.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    ROOT,
    begin,
    fmt_seconds,
    log,
    markdown_table,
    print_table,
    time_call,
    update_doc_section,
    write_json,
)

from sgdsde import pac_bayes, theory  # noqa: E402

EPS = np.finfo(np.float64).eps
ETA, BATCH = 0.2, 8  # η λ_max = 0.2 · 2.5 = 0.5


def _problem(d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    lam = np.linspace(0.5, 2.5, d)
    a = (q * lam) @ q.T
    a = 0.5 * (a + a.T)
    v = np.eye(d) + 0.3 * rng.normal(size=(d, d)) / np.sqrt(d)  # non-normal A, same spectrum
    a_nonnormal = (q @ v) @ np.diag(lam) @ np.linalg.inv(q @ v)
    g = rng.normal(size=(d, d)) / np.sqrt(d)
    c = g @ g.T + 0.1 * np.eye(d)
    return a, a_nonnormal, c


def _residual(terms, x, q) -> float:
    """‖Σ c L X Rᵀ − Q‖_F / ((Σ |c| ‖L‖ ‖R‖) ‖X‖ + ‖Q‖), in units of eps."""
    norm = np.linalg.norm
    r = sum(c * (left @ x @ right.T) for c, left, right in terms) - q
    size = sum(abs(c) * norm(left) * norm(right) for c, left, right in terms) * norm(x) + norm(q)
    return float(norm(r) / size / EPS)


def _kron_solve(a, q):
    d = a.shape[0]
    eye = jnp.eye(d)
    k = jnp.kron(a, eye) + jnp.kron(eye, a)
    return jnp.linalg.solve(k, q.reshape(-1)).reshape(d, d)


_kron_jit = jax.jit(_kron_solve)


def _cases(d: int, a, a_nn, c, with_nonnormal: bool, with_kron: bool):
    """(name, function, equation terms, right side) for one d."""
    eye = np.eye(d)
    rhs = ETA / BATCH * c
    beta = 0.9
    k = ETA * beta / (1 - beta) ** 2
    heavy = [((1 + beta), a, eye), ((1 + beta), eye, a), (-ETA - 2 * k, a, a), (k, a @ a, eye), (k, eye, a @ a)]
    out = [
        ("continuous_lyapunov, symmetric A", lambda: theory.continuous_lyapunov(a, rhs),
         [(1.0, a, eye), (1.0, eye, a)], rhs),
        ("sgd_stationary_cov (iid)", lambda: theory.sgd_stationary_cov(a, c, ETA, BATCH),
         [(1.0, a, eye), (1.0, eye, a), (-ETA, a, a)], rhs),
        ("sgd_stationary_cov (momentum 0.9)", lambda: theory.sgd_stationary_cov(a, c, ETA, BATCH, momentum=beta),
         heavy, rhs * (1 + beta) / (1 - beta)),
        ("pac_bayes.lyapunov_sigma", lambda: pac_bayes.lyapunov_sigma(a, c, learning_rate=ETA, batch_size=BATCH),
         [(1.0, a, eye), (1.0, eye, a)], rhs),
    ]
    if with_nonnormal:
        out.append(("continuous_lyapunov, non-normal A", lambda: theory.continuous_lyapunov(a_nn, rhs),
                    [(1.0, a_nn, eye), (1.0, eye, a_nn)], rhs))
    if with_kron:
        out.append(("old Kronecker solve, symmetric A", lambda: _kron_jit(jnp.asarray(a), jnp.asarray(rhs)),
                    [(1.0, a, eye), (1.0, eye, a)], rhs))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="d ≤ 200, for checking")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case (default 3)")
    args = p.parse_args()
    began, machine = begin()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    sizes = [20, 50, 200] if args.quick else [20, 40, 60, 200, 500, 1000, 2000]
    nonnormal_max = 200 if args.quick else 1000  # Schur + trsyl: ~85 s at d = 2000 on this machine
    kron_max = 60  # 8 d⁴ bytes: 100 MB at d = 60
    rows, results = [], []
    for d in sizes:
        a, a_nn, c = _problem(d)
        for name, fn, terms, rhs in _cases(d, a, a_nn, c, d <= nonnormal_max, d <= kron_max):
            if d < 200 and not name.startswith(("old", "continuous_lyapunov, symmetric")):
                continue  # small d: only the pair compared with the Kronecker solve
            log(f"d = {d}: {name}")
            t = time_call(fn, warmup=1, repeats=args.repeats)
            resid = _residual(terms, np.asarray(t.result), rhs)
            results.append({"d": d, "solver": name, "residual_over_eps": resid, **t.as_dict()})
            rows.append([name, d, fmt_seconds(t.median), fmt_seconds(t.best), fmt_seconds(t.compile_seconds),
                         f"{resid:.3g}"])
    header = ["solver", "d", "median", "best", "compile (1st call)", "residual / eps"]
    print_table(header, rows, title=f"Lyapunov solvers, float64, {args.repeats} calls")
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    name = "lyapunov_quick" if args.quick else "lyapunov"
    path = write_json(name, {"uptime_before": uptime, "uptime_after": load_after, "repeats": args.repeats,
                             "eta": ETA, "batch_size": BATCH, "results": results,
                             "wall_s": time.perf_counter() - began}, machine=machine)
    log(f"wrote {path}")
    if not args.quick:
        text = (f"Measured on {machine['cpu_model']}, {machine['cpus_available']} cores, shared "
                f"(`uptime` before: `{uptime.split('load average:')[-1].strip()}`, after: "
                f"`{load_after.split('load average:')[-1].strip()}`); JAX {machine['jax']}, float64, "
                f"median and best (minimum) of {args.repeats} calls after one warm-up; the spread between "
                f"them is other jobs' load.\n\n" + markdown_table(header, rows))
        update_doc_section(ROOT / "docs" / "benchmarks.md", "lyapunov", text)


if __name__ == "__main__":
    main()
