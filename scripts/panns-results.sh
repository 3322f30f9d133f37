#!/usr/bin/env bash
# The runs behind docs/RESULTS.md's "PANNs trained from scratch" rows (issue 23): Cnn6 from random weights on
# FSDD digits (the official split of metadata.csv) and on ESC-10 (fold 1 as the test fold). Validation (10%
# of the training clips) chooses each run's checkpoint; the test split is scored once (metrics.jsonl's last line).
# Runs are short on purpose (a 2-core host shared with other sessions): few epochs, 1 s inputs and 40 training
# clips per class (FSDD; the official test split whole), 1.28 s random crops of ESC-10's 5 s clips. Finished runs (a `done` marker) are skipped.
#   OUT=runs/panns bash scripts/panns-results.sh [fsdd|esc10|table]   (no argument: both, one after the other)
# MODEL=cnn10 trains Cnn10 instead of Cnn6; ESC_FOLDS="1 2 3 4 5" runs every ESC-10 fold as the test fold in turn.
# FROM=<run folder> starts the ESC-10 runs from that run's weights instead of random ones (transfer: the encoder
# kept, a new head for ESC-10's classes), into esc10-fold<k>-from-<run's name>; e.g. FROM=runs/panns-cnn10/fsdd.
# EARSHOT names the binary (default: a copy of the release build under $OUT/bin, so rebuilds leave runs alone).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared/data}
out=${OUT:-runs/panns}
model=${MODEL:-cnn6}
fsdd_epochs=${FSDD_EPOCHS:-4}
esc_epochs=${ESC_EPOCHS:-5}
esc_folds=${ESC_FOLDS:-1}      # ESC-10 test folds, one run each ("1 2 3 4 5" for the whole protocol)
fsdd_shots=${FSDD_SHOTS-40}    # training clips per class drawn from FSDD's training split (all: FSDD_SHOTS=, set and empty)
mkdir -p "$out/bin"
if [ -z "${EARSHOT:-}" ]; then
    if [ ! -x "$out/bin/earshot" ]; then
        swift build $(bash scripts/build-flags.sh) --product earshot >/dev/null
        cp "$(swift build $(bash scripts/build-flags.sh) --show-bin-path)/earshot" "$out/bin/earshot"
    fi
    EARSHOT=$out/bin/earshot
fi

if [ "${1:-}" = table ]; then
    echo "| model | data | epochs | input | chosen epoch (validation acc.) | test accuracy | test macro F1 | test clips |"
    echo "|---|---|---|---|---|---|---|---|"
    for run in "$out"/*/; do
        run=${run%/}; [ -f "$run/done" ] || continue
        last=$(tail -1 "$run/metrics.jsonl")
        get() { echo "$last" | grep -o "\"$1\":[0-9.e-]*" | head -1 | cut -d: -f2; }
        epoch=$(get scored_once_on_epoch)
        val=$(grep "\"epoch\":$epoch[,}]" "$run/metrics.jsonl" | grep -o '"validation_accuracy":[0-9.e-]*' | head -1 | cut -d: -f2)
        printf "| %s | %s | %s | %s | %s (%.3f) | %.3f | %.3f | %s |\n" "$model" "$(basename "$run")" "$(cat "$run/epochs")" \
            "$(cat "$run/input")" "$epoch" "${val:-nan}" "$(get test_accuracy)" "$(get test_macro_f1)" "$(get test_clips)"
    done
    exit 0
fi

run() {  # run <folder> <epochs> <input description> <finetune options...>
    local dir=$1 epochs=$2 input=$3; shift 3
    if [ -f "$dir/done" ]; then echo "== $dir: done"; return; fi
    echo "== $dir"
    nice -n 10 "$EARSHOT" finetune --model "$model" --epochs "$epochs" --seed 0 "$@" --out "$dir" --overwrite 2>&1 \
        | tr '\r' '\n' | grep --line-buffered -v "elapsed" | tee "$dir.log"
    echo "$epochs" > "$dir/epochs"; echo "$input" > "$dir/input"; touch "$dir/done"
}

stage=${1:-all}
if [ "$stage" = fsdd ] || [ "$stage" = all ]; then
    # The command that stayed at chance before the fix (docs/PANNS.md), with fewer epochs.
    run "$out/fsdd${fsdd_shots:+-shots$fsdd_shots}" "$fsdd_epochs" "1 s (100 frames)" --data "$shared/fsdd" --label-field label --batch-size 32 --lr 1e-3 \
        --target-length 100 ${fsdd_shots:+--shots "$fsdd_shots"}
fi
if [ "$stage" = esc10 ] || [ "$stage" = all ]; then
    from=(); suffix=""
    [ -n "${FROM:-}" ] && from=(--init-from "$FROM") suffix="-from-$(basename "$FROM")"
    for fold in $esc_folds; do
        run "$out/esc10-fold$fold$suffix" "$esc_epochs" "1.28 s crops of 5 s" --data "$shared/esc10" --test "$fold" --batch-size 16 \
            --lr 1e-3 --target-length 501 --crop-frames 128 "${from[@]}"
    done
fi
