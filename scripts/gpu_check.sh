#!/usr/bin/env bash
# The GPU checks, on a machine with one NVIDIA GPU, Python 3.12 and torch already installed, and NO package
# registry (only what the tree carries). Two steps:
#
#   bash scripts/gpu_check.sh prepare   # here, with the registry and .venv-modern (make setup STACK=modern):
#                                       # writes .gpu-carry/: the wheels that machine lacks + detectron2's sdist
#   bash scripts/gpu_check.sh           # there, from the repository root, with .gpu-carry/ carried along
#
# There it installs the carried wheels into /tmp/site (no registry, no dependencies resolved), builds detectron2
# from the carried source distribution against the torch it finds, and runs, each with its time:
#   d2debug env; the GPU tests (tests/test_gpu.py: reference on cuda:0 == DefaultPredictor on cuda:0 for boxes,
#   masks and keypoints, fp16, CPU vs GPU, batched == unbatched audit, the stage page on cuda:0, the Doctor's damage
#   on the GPU, an audit under torchrun on nccl) and the CPU parity tests on that stack; a bench row on the GPU.
# The log goes to $OUT/gpu_check.log (or ./gpu_check.log); the summary is printed last. Each step has a time
# limit, all together under 10 minutes (one device command), so a run always ends with its summary.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
# What the GPU machine's image lacks of d2debug's and detectron2's run-time needs (its package list: torch,
# numpy, pandas, pillow, opencv, matplotlib, pyarrow, pytest, safetensors... are there).
MISSING=(streamlit altair jsonschema jsonschema-specifications referencing rpds-py pydeck python-multipart starlette
         uvicorn watchdog websockets itsdangerous fvcore iopath yacs termcolor omegaconf hydra-core
         antlr4-python3-runtime pycocotools tzdata)

if [ "${1:-}" = prepare ]; then
  set -e
  py=.venv-modern/bin/python
  [ -x "$py" ] || { echo "error: $py not found; run 'make setup STACK=modern' first" >&2; exit 1; }
  rm -rf "$CARRY"; mkdir -p "$CARRY"
  pins=()
  for name in "${MISSING[@]}"; do
    pin=$(grep -i "^${name}==" stacks/modern.txt || true)
    [ -n "$pin" ] || { echo "error: $name is not in stacks/modern.txt" >&2; exit 1; }
    pins+=("$pin")
  done
  # Built by this Python 3.12 on x86-64 Linux: the wheels the GPU machine's Python 3.12 takes.
  PIP_CONSTRAINT=$PWD/stacks/modern.txt "$py" -m pip wheel --quiet --no-deps -w "$CARRY" "${pins[@]}"
  sdist=$(grep -v '^#' stacks/modern-detectron2.txt)
  "$py" -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: -d "$CARRY" "$sdist"
  ls "$CARRY" | sed 's/^/  /'
  du -sh "$CARRY"
  echo "prepared: carry $CARRY to the GPU machine and run: bash scripts/gpu_check.sh"
  exit 0
fi

OUTDIR=${OUT:-$PWD}
LOG=$OUTDIR/gpu_check.log
: > "$LOG"
PY=${PYTHON:-python3}
SUMMARY=()
step() {  # step NAME SECONDS COMMAND...: run it (at most SECONDS), log it, time it, remember the outcome
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name: $*" | tee -a "$LOG"
  timeout "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  SUMMARY+=("$(printf '%-28s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - t0))")")
  tail -n 15 "$LOG" | sed 's/^/  | /'
  return $rc
}

[ -d "$CARRY" ] || { echo "error: $CARRY/ not found: run 'bash scripts/gpu_check.sh prepare' where the registry is, and carry it" >&2; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step install 45 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/*.whl || exit 1
step build_detectron2 45 "$PY" scripts/build_detectron2.py "$CARRY"/pb1-detectron2-*.tar.gz /tmp/d2wheel || exit 1
step install_detectron2 30 "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site /tmp/d2wheel/*.whl || exit 1
step nvidia_smi 15 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step env 30 "$PY" -m d2debug env
step gpu_tests 200 "$PY" -m pytest -q -ra -p no:cacheprovider tests/test_gpu.py
step cpu_parity 90 "$PY" -m pytest -q -ra -p no:cacheprovider tests/test_parity.py tests/test_stages.py
step bench_gpu 105 "$PY" -m d2debug bench --device cuda --models demo,r50 --rows predictor,reference,toggle,audit \
  --limit 3 --repeats 3 --audit-repeats 1 --audit-limit 3 --markdown
echo
echo "== gpu_check summary ($(date -u +%FT%TZ)); full log: $LOG"
printf '%s\n' "${SUMMARY[@]}"
grep -E "passed|failed|skipped|error" "$LOG" | grep -E "^[0-9]+ |=+ .* in [0-9.]+s" | tail -n 4
