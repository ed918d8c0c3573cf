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
