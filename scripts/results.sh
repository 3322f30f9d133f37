#!/usr/bin/env bash
# The runs behind docs/RESULTS.md: SSAST-tiny (frame-based) on FSDD digits, FSDD speakers and ESC-10,
# trained from scratch and fine-tuned after self-supervised pretraining on all the audio in ../shared.
# Takes about eleven hours on 2 cores (ESC_FOLDS=1, SEEDS="" and FEW_SHOT_SEEDS="": about three and a half). Finished stages (a `done` marker) are skipped, and
# every run resumes after a kill (--resume), so re-running picks up where it stopped.
#   SHARED=../shared/data OUT=runs/results ESC_FRAMES=256 ESC_FOLDS=1 bash scripts/results.sh
# Starts: scratch, `pretrained` (the 6-epoch pretraining below) and `shipped` (the encoder committed under
# pretrained/, earshot-ssast-tiny: pretrained on the corpus of scripts/corpus.sh). MAIN_ONLY=1 stops after
# the main table (those three starts on FSDD digits, speakers and ESC-10).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared/data}
out=${OUT:-runs/results}
esc_frames=${ESC_FRAMES:-256}   # AST's ESC-50 recipe uses 512 (5 s); 256 halves the cost
esc_folds=${ESC_FOLDS:-5}       # 5 = the full cross-validation protocol (--cross-validate); 1 = fold 1 only
source scripts/lib.sh
earshot=$(earshot_binary)   # EARSHOT: a binary to use instead of building one
norm=(--mean=-6.8 --std 5.6)    # `earshot dataset stats` on both sets, padded clips included
mkdir -p "$out"

stage "$out/pretrain" pretrain --model ssast-tiny-frame --data "$shared/fsdd" --data "$shared/esc10" \
    --epochs 6 --batch-size 16 --lr 1e-4 --target-length 64 --mask-patches 16 "${norm[@]}"

for task in digits speaker; do
    field=label epochs=14; [ $task = speaker ] && field=speaker epochs=8
    for init in scratch pretrained shipped; do
        from=(); [ $init = pretrained ] && from=(--init-from "$out/pretrain"); [ $init = shipped ] && from=(--init-from earshot-ssast-tiny)
        stage "$out/fsdd-$task-$init" finetune --model ssast-tiny-frame "${from[@]}" --data "$shared/fsdd" --label-field $field \
            --epochs $epochs --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8 "${norm[@]}"
    done
done

for init in scratch pretrained shipped; do
    # A pretrained encoder keeps more of its pretraining at lr 1e-4 (fold 1: 66.2% against 61.3% at 5e-4).
    from=() lr=5e-4; [ $init = pretrained ] && from=(--init-from "$out/pretrain") lr=1e-4
    [ $init = shipped ] && from=(--init-from earshot-ssast-tiny) lr=1e-4
    if [ "$esc_folds" = 5 ]; then split=(--cross-validate); else split=(--test 1); fi
    # Mixup 0.5 and a long decay: 60 epochs, x0.92 a epoch from 30 (5-fold 82.0% pretrained and 75.5% from
    # scratch at the best epoch, 78.3 / 71.3% at the last; 71.0% from scratch for 20 epochs decaying from 10).
    stage "$out/esc10-$init" finetune --model ssast-tiny-frame "${from[@]}" --data "$shared/esc10" "${split[@]}" \
        --epochs 60 --batch-size 16 --lr "$lr" --lr-decay-start 30 --lr-decay 0.92 --target-length "$esc_frames" \
        --freqm 24 --timem 48 --mixup 0.5 "${norm[@]}"
done
# The 16-epoch pretraining: the 6-epoch run continued (its schedule does not depend on the total).
[ "${MAIN_ONLY:-0}" = 1 ] && { echo "main table's runs under $out"; exit 0; }
if [ ! -d "$out/pretrain16" ]; then cp -r "$out/pretrain" "$out/pretrain16"; rm -f "$out/pretrain16/done"; fi
stage "$out/pretrain16" pretrain --model ssast-tiny-frame --data "$shared/fsdd" --data "$shared/esc10" \
    --epochs 16 --batch-size 16 --lr 1e-4 --target-length 64 --mask-patches 16 "${norm[@]}"

# FSDD over three seeds (speakers at lr 1e-4, digits at 5e-4) for every start, and ESC-10's five folds with the
# 16-epoch pretraining: the runs behind "Against the targets" (about three hours; SEEDS="" skips FSDD).
for seed in ${SEEDS-0 1 2}; do
    for init in scratch pretrain pretrain16; do
        from=(); [ $init != scratch ] && from=(--init-from "$out/$init")
        stage "$out/seeds-speaker-$init-s$seed" finetune --model ssast-tiny-frame "${from[@]}" --data "$shared/fsdd" \
            --label-field speaker --seed "$seed" --epochs 8 --batch-size 16 --lr 1e-4 --target-length 64 --freqm 12 --timem 8 "${norm[@]}"
        # Seed 0's digits runs from scratch and from the 6-epoch pretraining are the main table's.
        [ "$seed" = 0 ] && [ $init != pretrain16 ] && continue
        stage "$out/seeds-digits-$init-s$seed" finetune --model ssast-tiny-frame "${from[@]}" --data "$shared/fsdd" \
            --label-field label --seed "$seed" --epochs 14 --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8 "${norm[@]}"
    done
done
if [ "$esc_folds" = 5 ]; then split=(--cross-validate); else split=(--test 1); fi
stage "$out/esc10-pretrain16" finetune --model ssast-tiny-frame --init-from "$out/pretrain16" --data "$shared/esc10" "${split[@]}" \
    --epochs 60 --batch-size 16 --lr 1e-4 --lr-decay-start 30 --lr-decay 0.92 --target-length "$esc_frames" \
    --freqm 24 --timem 48 --mixup 0.5 "${norm[@]}"

# The 32-epoch pretraining: the 16-epoch run continued (few-shot at lr 1e-4 below, and ESC-10 folds 1-2).
if [ ! -d "$out/pretrain32" ]; then cp -r "$out/pretrain16" "$out/pretrain32"; rm -f "$out/pretrain32/done"; fi
stage "$out/pretrain32" pretrain --model ssast-tiny-frame --data "$shared/fsdd" --data "$shared/esc10" \
    --epochs 32 --batch-size 16 --lr 1e-4 --target-length 64 --mask-patches 16 "${norm[@]}"
for fold in 1 2; do
    stage "$out/esc10-pretrain32-fold$fold" finetune --model ssast-tiny-frame --init-from "$out/pretrain32" --data "$shared/esc10" \
        --test $fold --epochs 60 --batch-size 16 --lr 1e-4 --lr-decay-start 30 --lr-decay 0.92 --target-length "$esc_frames" \
        --freqm 24 --timem 48 --mixup 0.5 "${norm[@]}"
done

# Few-shot FSDD: 10 training clips per class (a draw per seed), every start at both learning rates
# (about 2.5 min a run; FEW_SHOT_SEEDS="" skips them).
for task in label speaker; do
    for seed in ${FEW_SHOT_SEEDS-0 1 2}; do
        for lr in 1e-4 5e-4; do
            for init in scratch pretrain pretrain16 pretrain32; do
                [ $init = pretrain32 ] && [ $lr != 1e-4 ] && continue   # the 32-epoch one at lr 1e-4 only
                from=(); [ $init != scratch ] && from=(--init-from "$out/$init")
                stage "$out/few-$task-$init-lr$lr-s$seed" finetune --model ssast-tiny-frame "${from[@]}" --data "$shared/fsdd" \
                    --label-field $task --shots 10 --seed "$seed" --epochs 60 --batch-size 16 --lr $lr --lr-decay-start 30 \
                    --lr-decay 0.92 --target-length 64 --freqm 12 --timem 8 "${norm[@]}"
            done
        done
    done
done
echo "results under $out (metrics.jsonl per run; kfold.json for cross-validation)"
