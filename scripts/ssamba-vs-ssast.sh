#!/usr/bin/env bash
# SSAMBA-tiny against SSAST-tiny with the same pretraining budget (docs/RESULTS.md, "SSAMBA against SSAST"):
# both frame-based, pretrained with the corpus recipe of scripts/pretrain.sh (same data, same settings) for
# the same minutes of training (`earshot pretrain --time-budget`), probed, then fine-tuned on FSDD digits and
# ESC-10 (fold 1 as test) with the recipe of the shipped-encoder rows of scripts/results.sh; the validation
# split chooses each checkpoint, the test split is scored once.
#
#   bash scripts/corpus.sh                                  # once: the corpus
#   OUT=runs/ssamba-vs-ssast bash scripts/ssamba-vs-ssast.sh
#   BUDGET=26.6                 # minutes of pretraining for each model (run on a quiet machine: it is wall time)
#   SSAST_INIT=<checkpoint>     # reuse an SSAST pretraining of that budget instead of running one
#   EARSHOT=<binary>            # a built earshot (default: build one)
# Every stage resumes after a kill and is skipped once done, so re-running picks up where it stopped.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
corpus=${EARSHOT_CORPUS:-$HOME/.cache/earshot-corpus}
shared=$(cd "${EARSHOT_SHARED_DATA:-$repo/../shared/data}" && pwd)
out=${OUT:-runs/ssamba-vs-ssast}
budget=${BUDGET:-26.6}
source scripts/lib.sh   # earshot_binary, stage
earshot=$(earshot_binary)
[ -f "$corpus/pretrain/metadata.csv" ] || { echo "ssamba-vs-ssast.sh: no corpus at $corpus (bash scripts/corpus.sh)" >&2; exit 1; }
norm=(--mean=-6.8 --std 5.6)   # the FSDD + ESC-10 statistics every recipe here uses
mkdir -p "$out"

# The corpus recipe (scripts/pretrain.sh): 512-frame clips, random 128-frame windows, half the 64 frame
# tokens masked, batch 16, lr 1e-4; --epochs is only a cap, the budget ends the run.
pretrain() {  # pretrain <model> <folder>
    stage "$2" pretrain --model "$1" --data "$corpus/pretrain" --epochs 100 --time-budget "$budget" --batch-size 16 --lr 1e-4 \
        --target-length 512 --crop-frames 128 --mask-patches 32 "${norm[@]}"
}
pretrain ssamba-tiny-frame "$out/pretrain-ssamba"
if [ -n "${SSAST_INIT:-}" ]; then ssast_init=$SSAST_INIT; else
    pretrain ssast-tiny-frame "$out/pretrain-ssast"; ssast_init=$out/pretrain-ssast
fi
ssamba_init=$out/pretrain-ssamba

probe() {  # probe <encoder> <file> [args]: the pretraining recipe's quick probe tasks (scripts/pretrain.sh QUICK=1)
    local m=$1 file=$2; shift 2
    [ -s "$file" ] && return 0
    { "$earshot" probe --model "$m" "$@" --data "$shared/fsdd" --data "$corpus/tasks/esc10-fold1" --data "$corpus/tasks/drums" --json
      "$earshot" probe --model "$m" "$@" --data "$shared/fsdd" --label-field speaker --json; } > "$file.tmp"
    mv "$file.tmp" "$file"
}
probe "$ssamba_init" "$out/probe-ssamba.jsonl"
probe "$ssast_init" "$out/probe-ssast.jsonl"
probe random:ssamba-tiny-frame "$out/probe-random-ssamba.jsonl" --frames 128   # the untrained control

for arch in ssamba ssast; do
    init=$ssamba_init; [ $arch = ssast ] && init=$ssast_init
    stage "$out/fsdd-digits-$arch" finetune --model $arch-tiny-frame --init-from "$init" --data "$shared/fsdd" \
        --epochs 14 --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8 "${norm[@]}"
done
# The control: SSAMBA-tiny from scratch on FSDD digits (SSAST-tiny's from-scratch rows: scripts/results.sh).
stage "$out/fsdd-digits-ssamba-scratch" finetune --model ssamba-tiny-frame --data "$shared/fsdd" \
    --epochs 14 --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8 "${norm[@]}"
for arch in ssamba ssast; do
    init=$ssamba_init; [ $arch = ssast ] && init=$ssast_init
    stage "$out/esc10-$arch" finetune --model $arch-tiny-frame --init-from "$init" --data "$shared/esc10" --test 1 \
        --epochs 60 --batch-size 16 --lr 1e-4 --lr-decay-start 30 --lr-decay 0.92 --target-length 256 \
        --freqm 24 --timem 48 --mixup 0.5 "${norm[@]}"
done
echo "results under $out: probe-*.jsonl, */metrics.jsonl (test_* lines: scored once on the validation-chosen epoch)"
