#!/usr/bin/env bash
# Every benchmark at accelerator sizes, in one prepared run (≈ 8 minutes on one GPU),
# writing JSON (each with the machine and JAX devices it ran on) into one folder:
#
#   bash benchmarks/gpu.sh [--out DIR]        # on a machine with a GPU (jax[cuda12])
#   bash benchmarks/gpu.sh --cpu-smoke [--out DIR]   # tiny sizes on the CPU: checks that
#                                                    # every step runs (the test suite does this)
#
# Results go to DIR (default benchmarks/results/gpu, or a temporary folder with
# --cpu-smoke); docs/benchmarks.md is never rewritten by this script: copy the numbers
# into its GPU section by hand, naming the device (devices.json).
# A benchmark whose anchor library is not installed (fplanck / py-pde for Fokker–Planck,
# torch + pyhessian for curvature: pip install '.[bench]') is skipped with a line saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ "$PYTHON" = python3 ] && PYTHON=.venv/bin/python

smoke=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) smoke=1 ;;
    --out) out="$2"; shift ;;
    *) echo "gpu.sh: unknown option $1 (use --cpu-smoke, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$out" ]; then
  if [ $smoke = 1 ]; then out=$(mktemp -d); else out=benchmarks/results/gpu; fi
fi
mkdir -p "$out"
export SGDSDE_BENCH_RESULTS
SGDSDE_BENCH_RESULTS=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1
if [ $smoke = 1 ]; then export JAX_PLATFORMS=cpu; fi

"$PYTHON" - <<'PY'
import json, os, jax
devices = [{"platform": d.platform, "kind": d.device_kind, "id": d.id} for d in jax.devices()]
path = os.path.join(os.environ["SGDSDE_BENCH_RESULTS"], "devices.json")
json.dump({"backend": jax.default_backend(), "jax": jax.__version__, "devices": devices}, open(path, "w"), indent=2)
print("devices:", devices)
PY

has() { "$PYTHON" -c "import $1" 2>/dev/null; }
failed=0
bench() {  # bench NAME SECONDS ARGS...: one benchmark under a time limit; a failure is reported, the rest go on
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  local started=$SECONDS
  if timeout "$limit" "$PYTHON" "benchmarks/$name.py" "$@"; then
    echo "== $name: done in $((SECONDS - started)) s"
  else
    echo "== $name: FAILED or over $limit s (status $?)"; failed=1
  fi
}

if [ $smoke = 1 ]; then
  bench sde_ensemble 300 --quick --paths 64 --steps 10 --repeats 1 --no-vbt --scaling 64 --no-docs
  bench sgd_ensemble 300 --quick --replicas 32 --steps 10 --repeats 1 --min-time 0.01 --scaling 32 \
    --loop-replicas 2 --choice-replicas 32 --no-docs
  bench sweep 300 --quick --steps 5 --grid-size 2 --repeats 1 --no-docs
  bench lyapunov 300 --quick --repeats 1
  if has fplanck && has pde; then bench fokker_planck 300 --quick --repeats 1 --no-docs
  else  # the SciPy anchor part needs neither
    echo "== fokker_planck: 1-D/2-D anchor parts skipped (fplanck / py-pde not installed: pip install '.[bench]')"
    bench fokker_planck 300 --quick --parts anchor --anchor-2d 16 --anchor-3d "" --no-docs
  fi
  if has torch && has pyhessian; then bench curvature 300 --quick --repeats 1 --calibration-seeds 1 --rel-tol 1e-2 --no-docs
  else echo "== curvature: skipped (torch / pyhessian not installed: pip install '.[bench]')"; fi
else
  # accelerator sizes; the limits add up to the 8-minute budget
  bench sde_ensemble 120 --paths 1000000 --steps 1000 --repeats 3 --no-vbt --scaling 10000,100000,1000000 --no-docs
  bench sgd_ensemble 90 --replicas 100000 --repeats 3 --scaling 1000,10000,100000 --no-docs
  bench sweep 90 --steps 200 --grid-size 20 --repeats 2 --no-docs
  if has fplanck && has pde; then bench fokker_planck 90 --cells-2d 256 --repeats 2 --scipy-3d-max 32 --no-docs
  else bench fokker_planck 90 --parts anchor --scipy-3d-max 32 --no-docs; fi
  if has torch && has pyhessian; then bench curvature 90 --repeats 2 --no-docs
  else echo "== curvature: skipped (torch / pyhessian not installed)"; fi
fi
echo "results in $SGDSDE_BENCH_RESULTS"
exit $failed
