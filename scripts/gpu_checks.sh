#!/usr/bin/env bash
# Issue 5's GPU measurements in two device commands: `atelier bench train` at the xl shape (eager and
# compiled, each next to diffusers' DiT of the same shape) and the memory-capacity table at K = 256 and
# 1,024 with minutes of GPU training per model instead of the CPU pilot's.
#
#   scripts/gpu_checks.sh prepare     here, once: the compact text encoder and the wheels the GPU machine
#                                   lacks (diffusers), into .carry/ (ignored by git)
#   scripts/gpu_checks.sh run bench   there, as the device tool's command with carry [".carry"] and
#   scripts/gpu_checks.sh run memory  timeout_s 600: each part fits one command (about 5 minutes each on
#                                   an H100, so about 11 with the start: inside one 15-minute budget);
#                                   figures, logs and eval sheets go to $OUT (default runs/gpu-checks)
#   SMOKE=1 PYTHON=.venv/bin/python scripts/gpu_checks.sh run bench memory
#                                   here, the same steps at toy sizes on the CPU, before spending device time
#
# Each stage has its own time limit, so a stage that hangs or fails is reported and the next one runs.
# Tried with SMOKE=1 on a 2-core CPU (all three stages, 2 min 15 s); not yet run on a GPU, as no task
# has drawn one: estimates above, not measurements.
set -uo pipefail

carry=${CARRY:-.carry}
python=${PYTHON:-python3}

prepare() {
    set -e
    mkdir -p "$carry/wheels"
    .venv/bin/atelier text compact -o "$carry/text-encoder"
    .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$carry/wheels" diffusers==0.42.1 importlib_metadata==10.2.0
    du -sh "$carry"
}

stage() {  # stage NAME SECONDS COMMAND...: one measurement, its log kept, its failure reported
    local name=$1 seconds=$2
    shift 2
    echo "== $name (at most ${seconds} s)"
    local started=$SECONDS
    timeout "$seconds" "$@" 2>&1 | tee "$out/$name.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status after $((SECONDS - started)) s"
    echo "$name $status $((SECONDS - started))" >>"$out/stages.txt"
}

run() {
    for part in "$@"; do
        [[ $part == bench || $part == memory ]] || { echo "unknown part $part: bench or memory" >&2; exit 2; }
    done
    out=${OUT:-runs/gpu-checks}
    mkdir -p "$out"
    if ls "$carry"/wheels/*.whl >/dev/null 2>&1 && ! "$python" -c "import diffusers" 2>/dev/null; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$carry"/wheels/*.whl || exit 1
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    [ -d "$carry/text-encoder" ] && export ATELIER_TEXT_ENCODER=$carry/text-encoder
    if [ "${SMOKE:-0}" = 1 ]; then
        preset=tiny batch=2 latent=8 seconds=0.5 k="16 32" budget="--steps 3" mc_batch=4 threads=2
    else
        preset=xl batch=32 latent=32 seconds=20 k="256 1024" budget="--minutes 0.8 --steps 0" mc_batch=256 threads=8
    fi
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi: CPU only"
    "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    for part in "$@"; do
        case $part in
            bench)
                bench=("$python" -m atelier bench train --preset "$preset" --batch "$batch" --latent "$latent"
                       --seconds "$seconds" --threads "$threads")
                stage bench-eager 150 "${bench[@]}" --json "$out/bench-eager.json"
                stage bench-compiled 300 "${bench[@]}" --compile --json "$out/bench-compiled.json" ;;
            memory)
                # shellcheck disable=SC2086  # $k and $budget are word lists
                stage memory-capacity 420 "$python" -m atelier.bench.memory_capacity --k $k $budget --batch "$mc_batch" \
                    --workers 4 --threads "$threads" --output "$out/memory" --tokenizer atelier/weights/tokenizer
                cp "$out"/memory/memory_capacity.{json,md} "$out/" 2>/dev/null
                for sheet in "$out"/memory/k*/*/eval.png; do  # templates over answers, 64 entities each
                    model=$(dirname "$sheet")                # .../k1024/memory -> k1024-memory.png
                    [ -f "$sheet" ] && cp "$sheet" "$out/$(basename "$(dirname "$model")")-$(basename "$model").png"
                done
                rm -rf "$out/memory" ;;  # the model folders: too many files to bring back (8 at most)
        esac
    done
    cat "$out/stages.txt"
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; [ $# -gt 0 ] || set -- bench memory; run "$@" ;;
    *) echo "usage: scripts/gpu_checks.sh prepare | run [bench] [memory] (see the top of this file)" >&2; exit 2 ;;
esac
