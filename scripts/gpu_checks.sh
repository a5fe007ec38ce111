#!/usr/bin/env bash
# The GPU runs of a session lent a device machine (one H200, 16 cores, torch 2.11, Python 3.12, no package
# registry, no internet; the working tree travels with at most 64 MiB of named ignored paths, and only files
# written under $OUT come back: at most 8, each at most 16 MiB). Two jobs, in separate device commands:
#
# 1. train (issue 22): continue training the shipped default model (atelier/weights/default) for MINUTES on
#    the GPU, pack it, score it on the image suite there, and bring back the packed model as one archive,
#    with its evaluation, loss curve, sample grid, log and summary. The run ends with the row for the "GPU
#    runs" table of docs/models/default.md, ready to paste. One command, at most 9 minutes.
# 2. run bench | run memory (issue 5): `atelier bench train` at the xl shape (eager and compiled, each next
#    to diffusers' DiT of the same shape) and the memory-capacity table at K = 256 and 1,024 with minutes of
#    GPU training per model instead of the CPU pilot's; each part about 5 minutes, one command each.
#
# A 15-minute device budget holds the machine's start (minutes) and one train command; the benchmarks need
# another session, or a shorter train run first (MINUTES=1: about 4 minutes in all, leaving room for one
# benchmark part on the still-warm machine).
#
#   scripts/gpu_checks.sh prepare        here, once: the compact text encoder (.carry/text-encoder) and the
#                                        wheels the GPU machine lacks for train (PyWavelets and
#                                        invisible-watermark: .carry/wheels); prints what will travel
#                                        (tracked tree + carried folders) and fails above 60 MiB
#   scripts/gpu_checks.sh prepare bench  the same, and diffusers for the benchmarks (.carry/wheels-bench)
#
#   scripts/gpu_checks.sh train          there: the device tool's command, with carry [".carry/text-encoder",
#                                        ".carry/wheels"] (or [".carry"] when `prepare bench` was not run)
#                                        and timeout_s 600 (the script keeps itself to DEADLINE = 540 s and
#                                        brings back a model even when cut short)
#   scripts/gpu_checks.sh run bench      there, with carry [".carry/text-encoder", ".carry/wheels-bench"]
#   scripts/gpu_checks.sh run memory     and timeout_s 600; figures, logs and eval sheets go to $OUT
#
#   TOY=1 PYTHON=.venv/bin/python OUT=/tmp/toy-out scripts/gpu_checks.sh train
#                                        here, the whole train run at toy size on the CPU (3 steps of
#                                        batch 4, 6 evaluation prompts; 20 s on 2 cores); what
#                                        tests/test_gpu_script.py runs
#   SMOKE=1 PYTHON=.venv/bin/python scripts/gpu_checks.sh run bench memory
#                                        here, the benchmarks' steps at toy sizes on the CPU
#
# train's settings (environment variables):
#   MINUTES=5         training time; 5 leaves the rest of the 540 s to start-up, packing and the evaluation
#                     (about 2.5 minutes, estimated: not yet run on a GPU). The trainer stops at the budget,
#                     writes its last checkpoint and exports the EMA weights itself
#   FROM_SCRATCH=1    train the preset from scratch instead of from atelier/weights/default (when the recipe
#                     changed the architecture); the packed model gets the shipped model's sampling defaults
#   PRESET=tiny       the preset (with --init it must be the shipped model's)
#   BATCH=256 WORKERS=12 THREADS=4
#                     the device flags: global batch, data-loading processes, torch CPU threads. BATCH
#                     replaces the recipe's (32 for tiny, sized for the CPU): a 6M-parameter model fills
#                     an H200 only at large batches
#   CHECKPOINT_EVERY=500
#                     steps between checkpoints (samples, loss curve, EMA weights a cut-off run is packed from)
#   SEED              training data seed (default: the trainer's); a new one shows the model new world samples
#   DEADLINE=540      seconds the whole command may take; training, generation and scoring are each bounded
#                     by what is left, so a slow stage is cut and the rest still runs
#   TRAIN_TIMEOUT     a hard limit in seconds for the training command (default MINUTES plus 90 s, within the
#                     deadline); a run it cuts, or a TERM to the script, is packed from its latest checkpoint
#   EVAL_PROMPTS=0    prompts scored (0: all 648 of the image suite; N: N spread over every category)
#   OUT, WORK         where the results go (default runs/gpu-train, must be empty) and the run's scratch
#                     folder (default a new temporary folder, removed at the end unless given)
# The learning recipe (lr, schedule, warm-up, EMA) is not set here: it is the trainer's default for the preset
# (atelier/train/recipes.py); summary.json records what the run used.
#
# What comes back under $OUT (6 files; the archive is split into 15 MiB parts if it outgrows 16 MiB):
#   model.tar.gz   the packed model as `default/` (fp16): `tar -xzf model.tar.gz -C atelier/weights` after
#                  `rm -r atelier/weights/default` ships it, if its score and FD beat the shipped one's
#   eval.json      `atelier eval --suite images` of it (-n 1, its sampling defaults)
#   loss.png       the run's loss curve; samples.png the last checkpoint's sample grid (EMA weights)
#   run.log        everything printed; summary.json the figures, stage timings and the table row
#
# The images are generated by scripts/gpu_run.py on the GPU, many prompts a batch, at the seeds and in the
# layout `atelier eval --model` uses (which samples on the CPU, one prompt at a time), then scored by
# `atelier eval --suite images DIR`.
#
# Each stage has its own time limit, so a stage that hangs or fails is reported and the next one runs.
# Tried here on a 2-core CPU (train with TOY=1, and cut short by TRAIN_TIMEOUT and by a TERM; the benchmarks
# with SMOKE=1 before train was added); not yet run on a GPU, as no task has drawn one: the GPU timings above
# are estimates, not measurements.
set -uo pipefail

carry=${CARRY:-.carry}
python=${PYTHON:-python3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} TQDM_MININTERVAL=${TQDM_MININTERVAL:-10}
MiB=$((1 << 20))
LIMIT_MIB=${LIMIT_MIB:-60}   # tracked tree + carried folders, of the 64 MiB the device tool carries
FILE_LIMIT=$((16 * MiB))
PART_MIB=${PART_MIB:-15}

tree_bytes() {  # what travels without being named: tracked files and untracked ones git does not ignore
    git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
        awk '{s += $1} END {print s + 0}'
}

prepare() {
    set -e
    local bench=${1:-}
    [ -z "$bench" ] || [ "$bench" = bench ] || { echo "unknown prepare target $bench: bench or nothing" >&2; exit 2; }
    local venv=.venv/bin/python
    mkdir -p "$carry"
    if [ ! -f "$carry/text-encoder/config.json" ]; then
        .venv/bin/atelier text compact -o "$carry/text-encoder"
    fi
    # the copy must be the encoder the shipped model was trained with, or --init refuses it there
    "$venv" - "$carry/text-encoder" <<'EOF'
import sys
from atelier.bundle import read_index
from atelier.text.encoder import TextEncoder
from atelier.weights import shipped
have, want = TextEncoder.load(sys.argv[1]).fingerprint, read_index(shipped("default"))["text_encoder"]["fingerprint"]
if have != want:
    sys.exit(f"error: {sys.argv[1]} has fingerprint {have}, the shipped model's encoder {want}; delete it and rerun")
print(f"text encoder {sys.argv[1]}: fingerprint {have}, the shipped model's")
EOF
    # The versions this checkout is tested with, as Python 3.12 manylinux wheels for the GPU machine.
    local pywavelets
    pywavelets=$("$venv" -c 'import importlib.metadata as m; print(m.version("PyWavelets"))')
    download "$carry/wheels" "PyWavelets==$pywavelets" invisible-watermark==0.2.0
    # pip's offline install there, rehearsed for the GPU machine's Python (nothing is installed here)
    "$venv" -m pip install -q --dry-run --ignore-installed --no-index --find-links "$carry/wheels" --no-deps \
        --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --target /tmp/atelier-dry-run PyWavelets invisible-watermark
    if [ -n "$bench" ]; then
        download "$carry/wheels-bench" diffusers==0.42.1 importlib_metadata==10.2.0
    fi
    local tree
    tree=$(tree_bytes)
    set +e
    report_size "train" "$tree" "$carry/text-encoder" "$carry/wheels" || exit 1
    if [ -d "$carry/wheels-bench" ]; then
        report_size "run bench|memory" "$tree" "$carry/text-encoder" "$carry/wheels-bench" || exit 1
    fi
}

download() {  # download DIR REQUIREMENT...: Python 3.12 x86-64 wheels, without their dependencies
    local dir=$1
    shift
    mkdir -p "$dir"
    .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$dir" "$@"
}

report_size() {  # report_size WHAT TREE_BYTES CARRIED...: what travels for a command; fails above LIMIT_MIB
    local what=$1 tree=$2
    shift 2
    local carried
    carried=$(du -sb "$@" | awk '{s += $1} END {print s + 0}')
    local total=$((tree + carried))
    awk -v w="$what" -v t="$tree" -v c="$carried" -v s="$total" -v m="$MiB" 'BEGIN {
        printf "%s travels %.1f MiB: tracked tree %.1f MiB + carried %.1f MiB\n", w, s / m, t / m, c / m }'
    du -sh "$@"
    if [ "$total" -gt $((LIMIT_MIB * MiB)) ]; then
        echo "ERROR: $what would carry more than $LIMIT_MIB MiB (the device tool takes 64 MiB in all)" >&2
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------------- train

step() {  # step NAME SECONDS COMMAND...: one stage of train, bounded, its status recorded and returned
    local name=$1 seconds=$2
    shift 2
    [ "$seconds" -ge 5 ] || seconds=5
    echo "== $name (at most ${seconds} s; $((deadline - SECONDS)) s of the run left)"
    local started=$SECONDS
    current="$name $started"
    timeout --kill-after=10 "$seconds" "$@" &   # in the background, so that a TERM trap runs at once
    child=$!
    wait "$child"
    local status=$?
    child= current=
    echo "== $name: exit $status after $((SECONDS - started)) s"
    echo "$name $status $((SECONDS - started))" >>"$work/stages.txt"
    return "$status"
}

left() {  # left RESERVE: seconds to the deadline, less RESERVE
    echo $((deadline - SECONDS - $1))
}

upto() {  # upto SECONDS RESERVE: SECONDS, or less if the deadline less RESERVE comes first
    local room=$((deadline - SECONDS - $2))
    echo $(($1 < room ? $1 : room))
}

bring_model() {  # the packed model as $out/model.tar.gz: the run's own export, else its latest checkpoint's EMA
    [ -z "$packed" ] || return 0
    local source=
    if [ -f "$run/model/model_index.json" ]; then
        source=$run/model
    elif compgen -G "$run/checkpoints/step-*" >/dev/null; then
        echo "training did not export its model: packing the EMA weights of its latest checkpoint"
        step export-checkpoint "$(upto 120 5)" "$python" scripts/gpu_run.py export-checkpoint "$run" "$work/model-cut" &&
            source=$work/model-cut
    fi
    if [ -z "$source" ]; then
        echo "no model to bring back: training left no checkpoint"
        return 1
    fi
    step pack "$(upto 120 5)" "$python" -m atelier model pack "$source" -o "$work/default" || return 1
    if [ -n "$from_scratch" ]; then
        "$python" scripts/gpu_run.py defaults "$work/default" atelier/weights/default
    fi
    tar -czf "$out/model.tar.gz" -C "$work" default || return 1
    local size
    size=$(stat -c %s "$out/model.tar.gz")
    if [ "$size" -gt "$FILE_LIMIT" ]; then   # more than one file may carry: parts, joined with cat
        split -b "${PART_MIB}M" -d -a 1 "$out/model.tar.gz" "$out/model.tar.gz.part" && rm "$out/model.tar.gz"
        echo "the archive is $((size / MiB)) MiB: split into $(ls "$out"/model.tar.gz.part* | wc -l) parts;" \
             "cat model.tar.gz.part* > model.tar.gz"
    fi
    packed=1
    echo "packed model: hash $("$python" scripts/gpu_run.py hash "$work/default"), archive $((size / 1024)) KiB"
}

bring_figures() {  # the loss curve and the latest sample grid
    [ -f "$run/loss.png" ] && cp "$run/loss.png" "$out/loss.png"
    local grid
    grid=$(compgen -G "$run/samples/step-*.png" | sort | tail -n 1)
    [ -n "$grid" ] && cp "$grid" "$out/samples.png"
    return 0
}

summarise() {
    [ -z "$summarised" ] || return 0
    summarised=1
    local before=atelier/weights/default
    [ -z "$from_scratch" ] || before=scratch
    "$python" scripts/gpu_run.py summary --output "$out/summary.json" --mode "$mode" --before "$before" \
        --model "$work/default" --run "$run" --eval "$out/eval.json" --stages "$work/stages.txt"
    echo "== $(find "$out" -type f | wc -l) files in $out after $SECONDS s:"
    ls -l "$out"
    local count too_big
    count=$(find "$out" -type f | wc -l)
    too_big=$(find "$out" -type f -size +$((FILE_LIMIT / 1024))k)
    [ "$count" -le 8 ] || echo "ERROR: $count files in $out: only 8 come back"
    [ -z "$too_big" ] || echo "ERROR: larger than 16 MiB, will not come back: $too_big"
}

interrupted() {  # TERM or INT: stop the stage, bring back what there is
    local name started
    echo "== $1 after $SECONDS s: stopping the current stage and bringing back what there is"
    if [ -n "${child:-}" ]; then
        kill -TERM "$child" 2>/dev/null
        wait "$child"
        read -r name started <<<"$current"
        echo "$name 143 $((SECONDS - started))" >>"$work/stages.txt"
        child= current=
    fi
    deadline=$((SECONDS + 60))
    bring_figures
    bring_model
    summarise
    exit 143
}

train_body() {
    trap 'interrupted TERM' TERM
    trap 'interrupted INT' INT
    echo "== train: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), mode $mode, commit $(git rev-parse --short HEAD 2>/dev/null ||
        echo unknown), deadline ${deadline} s, scratch folder $work"
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi: CPU only"
    "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

    # the wheels the GPU machine lacks (the watermark's; the suite's 64 px images carry none, so a failure
    # here is reported and the run goes on)
    local need=()
    "$python" -c "import pywt" 2>/dev/null || need+=(PyWavelets)
    "$python" -c "import imwatermark" 2>/dev/null || need+=(invisible-watermark)
    if [ ${#need[@]} -gt 0 ]; then
        if "$python" -m pip install -q --no-index --find-links "$carry/wheels" --no-deps --no-compile \
            --no-cache-dir --target "$work/site" "${need[@]}"; then
            export PYTHONPATH=$PYTHONPATH:$work/site
            echo "installed ${need[*]} from $carry/wheels"
        else
            echo "WARNING: could not install ${need[*]} from $carry/wheels (run scripts/gpu_checks.sh prepare here" \
                 "and carry .carry/wheels); images of 256 px and more cannot be watermarked"
        fi
    fi
    if [ -f "$carry/text-encoder/config.json" ]; then
        ATELIER_TEXT_ENCODER=$(cd "$carry/text-encoder" && pwd)
        export ATELIER_TEXT_ENCODER
        echo "text encoder: the compact copy $ATELIER_TEXT_ENCODER"
    fi

    local preset=${PRESET:-tiny} budget batch workers threads every extra=() eval_prompts train_limit eval_threads
    if [ "$mode" = toy ]; then
        budget=(--steps "${STEPS:-3}") batch=${BATCH:-4} workers=${WORKERS:-0} threads=${THREADS:-1}
        eval_threads=$threads
        every=${CHECKPOINT_EVERY:-2} extra=(--sample-steps 2) eval_prompts=${EVAL_PROMPTS:-6}
        train_limit=${TRAIN_TIMEOUT:-$(left 200)}
    else
        local minutes=${MINUTES:-5} room
        room=$(left $((EVAL_RESERVE + PACK_RESERVE + 40)))   # the trainer's start-up and last save: 40 s
        if awk -v m="$minutes" -v r="$room" 'BEGIN {exit !(m * 60 > r)}'; then
            minutes=$(awk -v r="$room" 'BEGIN {printf "%.2f", (r > 60 ? r : 60) / 60}')
            echo "WARNING: MINUTES=${MINUTES:-5} does not fit before the deadline with the evaluation: $minutes"
        fi
        budget=(--minutes "$minutes") batch=${BATCH:-256} workers=${WORKERS:-12} threads=${THREADS:-4}
        every=${CHECKPOINT_EVERY:-500} eval_prompts=${EVAL_PROMPTS:-0} eval_threads=$(nproc)
        train_limit=${TRAIN_TIMEOUT:-$(awk -v m="$minutes" -v l="$(left $((EVAL_RESERVE + PACK_RESERVE)))" \
            'BEGIN {t = int(m * 60) + 90; print (t < l ? t : l)}')}
    fi
    local init=(--init atelier/weights/default)
    [ -z "$from_scratch" ] || init=()
    step train "$train_limit" "$python" -m atelier train model --preset "$preset" "${init[@]}" "${budget[@]}" \
        --batch "$batch" --workers "$workers" --threads "$threads" --checkpoint-every "$every" \
        ${SEED:+--seed "$SEED"} "${extra[@]}" -o "$run"
    if [ $? -ne 0 ] && [ -z "$from_scratch" ] && ! compgen -G "$run/checkpoints/step-*" >/dev/null; then
        echo "training failed before its first checkpoint; if the recipe changed the preset's architecture," \
             "atelier/weights/default cannot start it: run again with FROM_SCRATCH=1"
    fi
    bring_figures
    bring_model

    # the evaluation: samples on the GPU, then the oracle's scores and the Frechet distance on the CPU
    if [ -n "$packed" ]; then
        local partial=()
        [ "$eval_prompts" = 0 ] || partial=(--partial)
        step generate "$(left "$SCORE_RESERVE")" "$python" scripts/gpu_run.py generate "$work/default" \
            "$work/samples" -n 1 --limit "$eval_prompts" --threads "$eval_threads" || partial=(--partial)
        if compgen -G "$work/samples/*/0.png" >/dev/null; then
            step score "$(left 10)" "$python" -m atelier eval --suite images "$work/samples" "${partial[@]}" \
                --json "$out/eval.json"
        fi
    fi
    summarise
    [ -n "$packed" ]
}

train() {
    mode=normal
    [ "${TOY:-0}" != 1 ] || mode=toy
    deadline=${DEADLINE:-540}
    [ "$mode" = normal ] || deadline=${DEADLINE:-900}
    # Seconds kept for what follows training (estimates for the GPU machine, with margin): packing 20,
    # generation about 30, scoring and the Frechet distance about 90 (the reference's 2,592 renders
    # take a minute on one core)
    PACK_RESERVE=${PACK_RESERVE:-20} EVAL_RESERVE=${EVAL_RESERVE:-130} SCORE_RESERVE=${SCORE_RESERVE:-100}
    from_scratch=
    [ "${FROM_SCRATCH:-0}" != 1 ] || from_scratch=1
    out=${OUT:-runs/gpu-train}
    if [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
        echo "error: $out already holds files; give OUT an empty or new folder" >&2
        exit 2
    fi
    mkdir -p "$out"
    auto_work=
    if [ -n "${WORK:-}" ]; then
        work=$WORK
        if [ -d "$work" ] && [ -n "$(ls -A "$work")" ]; then
            echo "error: $work already holds files; give WORK an empty or new folder" >&2
            exit 2
        fi
        mkdir -p "$work"
    else
        work=$(mktemp -d "${TMPDIR:-/tmp}/atelier-gpu-train.XXXXXX") auto_work=1
    fi
    run=$work/run packed= summarised= child= current=
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    [ "$mode" = normal ] || export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    # everything printed goes to $out/run.log too; tee ignores TERM, so that the log keeps the rescue's lines
    exec 5> >(trap '' TERM INT; exec tee -a "$out/run.log")
    tee_pid=$!
    trap finish_log EXIT
    train_body >&5 2>&1
    exit $?
}

finish_log() {  # at exit: let tee write the last lines; remove a scratch folder the script made
    exec >/dev/null 2>&1 5>&-
    wait "$tee_pid"
    [ -z "$auto_work" ] || rm -rf "$work"
}

# -------------------------------------------------------------------------------- run bench | run memory

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
    if ls "$carry"/wheels-bench/*.whl >/dev/null 2>&1 && ! "$python" -c "import diffusers" 2>/dev/null; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$carry"/wheels-bench/*.whl || exit 1
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
    prepare) shift; prepare "$@" ;;
    train) [ $# -eq 1 ] || { echo "train takes no arguments; its settings are environment variables" >&2; exit 2; }
           train ;;
    run) shift; [ $# -gt 0 ] || set -- bench memory; run "$@" ;;
    *) echo "usage: scripts/gpu_checks.sh prepare | run [bench] [memory] | train | prepare bench (see the top of this file)" >&2
       exit 2 ;;
esac
