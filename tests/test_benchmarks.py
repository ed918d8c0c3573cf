"""benchmarks/gpu.sh --cpu-smoke: every benchmark step of the accelerator script runs (at
tiny sizes, on the CPU) and writes its JSON with the machine and devices — so the script
is ready for the day a GPU is lent. Benchmarks whose anchor library ('.[bench]') is not
installed are skipped by the script, saying so."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stamps():
    watched = list((ROOT / "benchmarks" / "results").glob("*.json")) + [ROOT / "docs" / "benchmarks.md"]
    return {path: path.stat().st_mtime_ns for path in watched if path.exists()}


def test_gpu_script_cpu_smoke(tmp_path):
    before = _stamps()
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("SGDSDE_BENCH_RESULTS", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--cpu-smoke", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    devices = json.loads((tmp_path / "devices.json").read_text())
    assert devices["backend"] == "cpu" and devices["devices"]
    for name in ("sde_ensemble_quick", "sgd_ensemble_quick", "sweep_quick", "lyapunov_quick"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["machine"]["cpu_model"], name
    assert "skipped" in done.stdout or (tmp_path / "fokker_planck_quick.json").exists()
    # the redirected run left the committed results and docs/benchmarks.md alone
    assert _stamps() == before


def test_summary_reads_every_results_file_and_judges_each_target():
    """benchmarks/summary.py: one row per comparison from the committed results, each with
    its anchor, a ratio and a verdict that follows from the ratio and the target."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import summary
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = summary.summary_rows()
    for name in ("Fokker–Planck", "Euler–Maruyama", "Hessian", "sweep"):
        assert any(name in row[0] for row in rows), name
    for what, anchor, ratio, first, target, verdict, when in rows:
        assert anchor and ratio.endswith("×") and when[:4].isdigit(), what
        sign, bound = target.split()
        value = float(ratio[:-1])
        # the verdict is recomputed from the two-decimal ratio; equal to the bound only by rounding
        if abs(value - float(bound)) > 0.005:
            assert (verdict == "met") == (value >= float(bound) if sign == "≥" else value <= float(bound)), what


def test_time_interleaved_cold_first_calls_compile_shared_programs():
    """cold_first: each function's first call compiles what it runs even when an earlier
    function compiled the same program (JAX's caches cleared before it); the re-warming round
    is not recorded, and the timed calls compile nothing."""
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _common as C
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    shared = jax.jit(lambda x: jnp.sin(x) @ x.T)
    x = jnp.ones((64, 64))
    fns = {"a": lambda: shared(x).block_until_ready(), "b": lambda: shared(x).block_until_ready()}
    warm = C.time_interleaved(fns, warmup=1, repeats=2)
    assert warm["b"].warmup_compile[0] == 0  # a compiled the program b shares
    cold = C.time_interleaved(fns, warmup=1, repeats=2, cold_first=True)
    for t in cold.values():
        assert t.warmup_compile[0] > 0 and len(t.wall) == 2 and all(c == 0 for c in t.compile)
