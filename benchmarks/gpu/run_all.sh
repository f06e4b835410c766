#!/usr/bin/env bash
# benchmarks/gpu on one CUDA GPU: both shapes (135m, then 1b) in about 8 minutes, then a compact
# summary and the projected GPU-hours of one outer step of the paper config. No network; needs
# torch, transformers, peft and pydantic (soar.spec) beside this repo. See README.md here.
#
#   bash benchmarks/gpu/run_all.sh [OUTDIR]      # default: $OUT if set, else /tmp/soar-gpu-bench
#
# Writes per shape OUTDIR/<shape>.json (rewritten after every phase), .log (stdout) and .err
# (tracebacks), and OUTDIR/summary.txt: 7 files.
set -uo pipefail
cd "$(dirname "$0")/../.."

# 1. Python: $PYTHON, else the repo's virtualenv, else python3 (the GPU image's).
py=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

# 2. Wheels carried in .whl/ (pydantic where the image lacks it; README.md, "Wheels") go first
# on the path.
if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/soar-site .whl/*.whl || exit 2
  export PYTHONPATH="/tmp/soar-site:$PYTHONPATH"
fi
if ! "$py" -c "import pydantic, peft, transformers" 2>/dev/null; then
  echo "run_all.sh: pydantic, peft or transformers does not import; README.md, 'Wheels'" >&2
  exit 2
fi

# 3. Each shape in its own process under a time limit (seconds), so that a slow phase costs only
# its own shape's later phases; the JSON keeps every phase finished before the limit.
out=${1:-${OUT:-/tmp/soar-gpu-bench}}
mkdir -p "$out"
status=0
for run in 135m:170 1b:300; do
  shape=${run%:*}
  limit=${run#*:}
  echo "== $shape (at most $limit s) =="
  timeout -k 10 "$limit" "$py" benchmarks/gpu/throughput.py --model "$shape" \
    --json "$out/$shape.json" 2>"$out/$shape.err" | tee "$out/$shape.log"
  code=${PIPESTATUS[0]}
  if [ "$code" != 0 ]; then
    status=1
    echo "== $shape exited $code (124: time limit); last lines of $out/$shape.err:"
    tail -n 5 "$out/$shape.err"
  fi
done

# 4. The summary: what each shape measured, and the projection from each.
"$py" benchmarks/gpu/projection.py --measured "$out/135m.json" --measured "$out/1b.json" |
  tee "$out/summary.txt"
exit $status
