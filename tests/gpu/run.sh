#!/usr/bin/env bash
# The GPU checks in one run, for a machine lent for minutes: the CUDA tests, then the benchmarks (accuracy beside
# speed), then the study on the GPU. Each step has its own time limit, so one that hangs costs only its own share.
#
#     tests/gpu/run.sh [LOGDIR]          # logs in LOGDIR (default $OUT, else ./gpu-logs); a summary at the end
#     DEVICE=cpu MAX_STEP=30 tests/gpu/run.sh /tmp/dry   # a dry run here: each step starts (or says why not)
#
# Steps run in order of worth; once DEADLINE seconds (default 520) have passed, the rest are skipped, so the
# summary prints inside a lease's call.
#
# A machine without a package index: wheels in .gpu/whl are installed (to /tmp/site) where the stream's packages
# are missing; fetched clips in .gpu/fersr/footage are used (FERSR_HOME=.gpu/fersr). The repository runs from its
# checkout (PYTHONPATH), not installed.
set -u
LOG=${1:-${OUT:-gpu-logs}}
mkdir -p "$LOG"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
DEADLINE=${DEADLINE:-520}
if ! $PY -c "import av, kornia, spandrel, spandrel_extra_arches" 2>/dev/null && ls .gpu/whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -d .gpu/fersr ] && export FERSR_HOME=$PWD/.gpu/fersr
SCRATCH=$(mktemp -d)

# step LOGFILE SECONDS COMMAND...: run COMMAND under a time limit, appending its output to LOGFILE
step() {
    local log=$LOG/$1 limit=$2 start=$SECONDS left=$((DEADLINE - SECONDS))
    shift 2
    if [ "$left" -lt 15 ]; then echo "=== skipped (deadline): $*" | tee -a "$log"; return; fi
    [ "$left" -lt "$limit" ] && limit=$left
    [ -n "${MAX_STEP:-}" ] && [ "$MAX_STEP" -lt "$limit" ] && limit=$MAX_STEP
    echo "=== $* (limit ${limit}s)" | tee -a "$log"
    timeout -k 5 "$limit" "$@" >>"$log" 2>&1
    echo "=== rc $? after $((SECONDS - start))s: $*" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv; nproc
  $PY -c 'import torch, torchvision, av, cv2; print("torch", torch.__version__, "cuda", torch.version.cuda,
          "torchvision", torchvision.__version__, "av", av.__version__, "cv2", cv2.__version__)'; } >"$LOG/env.log" 2>&1
cat "$LOG/env.log"

step tests.log 120 $PY -m pytest -q -p no:cacheprovider -o addopts= tests/gpu -rs
step stream.log 60 $PY -m fersr_stream.bench --device $DEVICE --repeat 1
step stream.log 45 $PY -m fersr_stream.bench --device $DEVICE --repeat 1 --clip megamind
$PY -c "from fersr_stream.testing import random_weights as r; r.save_gfpgan('$SCRATCH/gfpgan.pth')"
step stream.log 60 $PY -m fersr_stream.bench --device $DEVICE --repeat 1 --faces 4 --simulate-lr 16 --enhancer gfpgan \
    --set enhance.weights="$SCRATCH/gfpgan.pth"
step gpu.log 100 $PY -m fersr_stream.bench.gpu --repeat 1
step train.log 80 $PY -m training.cli run --config smoke --device $DEVICE --out "$SCRATCH/runs" --quiet
step train.log 50 $PY -m training.bench --set device=$DEVICE
step train.log 60 $PY -m training.bench --plan-cell --set device=$DEVICE
step train.log 40 $PY -m training.cli synth "$SCRATCH/kdef" --people 70
step train.log 120 $PY -m training.cli plan --config kdef_three_phase --data "$SCRATCH/kdef" --device $DEVICE \
    --out "$SCRATCH/runs" --quiet
# the separate runs start one CUDA process per source: 4 of them took over 80 s on an H200 with 16 cores
step sources.log 150 $PY -m fersr_stream.bench.sources --device $DEVICE --counts 1,4 --frames 150

echo "=== summary"
grep -hE "^=== rc|passed|failed|error" "$LOG/tests.log" | tail -8
grep -hE "^clip:|^pipeline:|ratio pipeline / CPU|^faces the pipeline" "$LOG/stream.log"
grep -hE "^device:|faces/s|ours / loop|^detection|^decode|fp16 vs" "$LOG/gpu.log" | cut -c1-300
grep -hE "^ *[0-9]+ +|shared|recall" "$LOG/sources.log" | tail -12
grep -hE "^=== rc|estimate|measured|accuracy|whole cell|processes|GPUs|workers|grid|training cells" "$LOG/train.log" \
    | tail -25
