#!/usr/bin/env bash
# The runs behind docs/RESULTS.md's parameter-efficient transfer table (issue 21): every `--peft` method on
# FSDD digits and on ESC-10 fold 1, starting from the self-supervised SSAST-tiny of scripts/results.sh, and
# few-shot draws (k = 1, 5, 10 clips per class, 5 seeds each) on FSDD digits for a few methods.
# Validation chooses each run's checkpoint; the test split is scored once (metrics.jsonl's last line).
# About 100 minutes on 2 cores; finished runs (a `done` marker) are skipped, interrupted ones resume.
#   START=runs/results/pretrain OUT=runs/peft bash scripts/peft-results.sh
#   bash scripts/peft-results.sh table      # the markdown table from finished runs
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared/data}
out=${OUT:-runs/peft}
start=${START:-runs/results/pretrain}
fsdd_epochs=${FSDD_EPOCHS:-8}
esc_epochs=${ESC_EPOCHS:-15}
shot_epochs=${SHOT_EPOCHS:-20}   # few-shot folders are named for it (shots<k>-<method>-e<epochs>)
flags=$(bash scripts/build-flags.sh)
earshot="$(swift build $flags --show-bin-path)/earshot"
norm=(--mean=-6.8 --std 5.6)    # as scripts/results.sh

# name: --peft and its options; the learning rates are PETL_AST's (hparams/train.yaml: adapters, LoRA, BitFit
# and mixtures 5e-3, prompts and prefixes 1e-2, linear 1e-3), full fine-tuning as scripts/results.sh.
methods=(
    "full|"
    "linear|--peft linear"
    "bitfit|--peft bitfit"
    "adapter|--peft adapter"
    "adapter-standard|--peft adapter --adapter-init standard"
    "conformer|--peft conformer"
    "lora|--peft lora"
    "moa-dense|--peft moa"
    "moa-soft|--peft moa --mixture soft"
    "prefix|--peft prefix"
    "prompt|--peft prompt"
)
lr_for() {  # lr_for <name> <full-fine-tuning lr>
    case $1 in full) echo "$2";; linear) echo 1e-3;; prefix|prompt) echo 1e-2;; *) echo 5e-3;; esac
}

if [ "${1:-}" = table ]; then
    set +e +o pipefail   # unfinished runs leave cells empty
    # One row per method: trainable share (from the log), test accuracy per dataset, step time and peak memory
    # of the FSDD run (metrics.jsonl: the median epoch's ms per step, the run's peak), few-shot mean ± std where run.
    last() { tail -1 "$1/metrics.jsonl" | grep -o "\"$2\":[0-9.e-]*" | cut -d: -f2 | awk '{printf "%.3f", $1}'; }
    median() { grep -o "\"$2\":[0-9.e-]*" "$1/metrics.jsonl" | cut -d: -f2 | sort -g | awk '{v[NR]=$1} END {if (NR) printf "%.0f", v[int((NR+1)/2)]}'; }
    field() { grep -o "\"$2\":[0-9.e-]*" "$1/metrics.jsonl" | tail -1 | cut -d: -f2 | cut -d. -f1; }
    echo "| method | trainable | FSDD digits test acc. | ESC-10 fold 1 test acc. | FSDD ms/step (median epoch) | peak RSS (MB) | FSDD 1-shot | 5-shot | 10-shot |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for entry in "${methods[@]}"; do
        name=${entry%%|*}
        f="$out/fsdd-$name" e="$out/esc10-$name"
        share=$(grep -o "trainable ([0-9.]*%)" "$f.log" 2>/dev/null | head -1 | grep -o "[0-9.]*%")
        row="| $name | ${share:-100%} | $( [ -f "$f/done" ] && last "$f" test_accuracy) | $( [ -f "$e/done" ] && last "$e" test_accuracy)"
        row+=" | $( [ -f "$f/done" ] && median "$f" train_ms_per_step) | $( [ -f "$f/done" ] && field "$f" peak_rss_mb)"
        for k in 1 5 10; do
            r="$out/shots$k-$name-e$shot_epochs/repeats.json"
            m=$(grep -o '"mean_test_accuracy" *: *[0-9.e-]*' "$r" 2>/dev/null | grep -o '[0-9.e-]*$')
            sd=$(grep -o '"std_test_accuracy" *: *[0-9.e-]*' "$r" 2>/dev/null | grep -o '[0-9.e-]*$')
            row+=" | $( [ -n "$m" ] && awk -v m="$m" -v s="$sd" 'BEGIN {printf "%.3f ± %.3f", m, s}')"
        done
        echo "$row |"
    done
    exit 0
fi

[ -f "$start/best.safetensors" ] || [ -f "$start/last.safetensors" ] || { echo "no pretrained encoder at $start: run scripts/results.sh first (or set START)"; exit 1; }
swift build $flags --product earshot >/dev/null
mkdir -p "$out"
source scripts/lib.sh   # stage

for entry in "${methods[@]}"; do
    name=${entry%%|*}; read -r -a opts <<< "${entry#*|}"
    stage "$out/fsdd-$name" finetune --model ssast-tiny-frame --init-from "$start" "${opts[@]}" --data "$shared/fsdd" \
        --label-field label --epochs "$fsdd_epochs" --batch-size 16 --lr "$(lr_for "$name" 5e-4)" --target-length 64 \
        --freqm 12 --timem 8 "${norm[@]}"
done
for entry in "${methods[@]}"; do
    name=${entry%%|*}; read -r -a opts <<< "${entry#*|}"
    stage "$out/esc10-$name" finetune --model ssast-tiny-frame --init-from "$start" "${opts[@]}" --data "$shared/esc10" \
        --test 1 --epochs "$esc_epochs" --batch-size 16 --lr "$(lr_for "$name" 1e-4)" --target-length 256 \
        --freqm 24 --timem 48 --mixup 0.5 "${norm[@]}"
done
# Few-shot: k clips per class drawn from FSDD's training split, 5 seeds; validation is the rest of it.
for k in 1 5 10; do
    for entry in "${methods[@]}"; do
        name=${entry%%|*}; read -r -a opts <<< "${entry#*|}"
        case " ${SHOT_METHODS:-full linear adapter-standard lora} " in *" $name "*) ;; *) continue;; esac
        stage "$out/shots$k-$name-e$shot_epochs" finetune --model ssast-tiny-frame --init-from "$start" "${opts[@]}" --data "$shared/fsdd" \
            --label-field label --shots "$k" --repeats 5 --epochs "$shot_epochs" --batch-size "$(( k < 2 ? 8 : 16 ))" \
            --lr "$(lr_for "$name" 5e-4)" --target-length 64 --freqm 12 --timem 8 "${norm[@]}"
    done
done
