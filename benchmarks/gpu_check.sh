#!/usr/bin/env bash
# The one prepared GPU check: run it once whenever a GPU machine is lent, then commit
# benchmarks/results/gpu.md. It finishes in under 8 minutes on one GPU with nothing but this
# repository and what pip can install (the GPU machine may have no network at all: every install is
# tried with a short timeout and may fail without stopping the check).
#
#   bash benchmarks/gpu_prepare.sh          # here, before: copies data and pytest into .gpu/ (ignored by git)
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run  # on a CPU: every step that needs no CUDA, tiny sizes, /tmp output
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=""; OUT=benchmarks/results/gpu.md
if [ "${1:-}" = "--dry-run" ]; then DRY="--dry-run"; OUT=/tmp/echorec_gpu_check_dry.md; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d .gpu/site ] && export PYTHONPATH="$PYTHONPATH:$PWD/.gpu/site"   # pytest, when the machine lacks it
PY=${PYTHON:-python3}
start=$(date +%s)

echo "== 1. install (optional: mamba-ssm, never required)"
if [ -z "$DRY" ]; then
  $PY -c "import triton" 2>/dev/null || timeout 90 $PY -m pip install -q --retries 0 --timeout 10 triton || echo "triton: not installable here"
  $PY -c "import mamba_ssm" 2>/dev/null || timeout 120 $PY -m pip install -q --retries 0 --timeout 10 --no-build-isolation mamba-ssm \
    || echo "mamba-ssm: not installable here (the check compares triton with the reference only)"
else
  echo "(dry run: nothing installed)"
fi

echo "== 2. CUDA-marked tests"
if [ -z "$DRY" ]; then
  timeout 240 $PY -m pytest -m cuda -p no:cacheprovider -o addopts="" -q tests 2>&1 | tail -15
else
  echo "(dry run: the CUDA tests skip without a GPU; collecting them only)"
  timeout 120 $PY -m pytest -m cuda -p no:cacheprovider -o addopts="" -q --collect-only tests 2>&1 | tail -3
fi

echo "== 3. figures -> $OUT"
timeout $(( 480 - ($(date +%s) - start) )) $PY benchmarks/gpu_check.py $DRY --out "$OUT"
rc=$?
echo "gpu_check: rc $rc, $(( $(date +%s) - start )) s"
exit $rc
