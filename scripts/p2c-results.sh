#!/usr/bin/env bash
# The runs behind docs/AUXILIARY.md's results (issue 24): FSDD digits with 200 training clips (a seeded draw)
# and their synthetic SNR mixtures (20 dB and 0 dB over another digit's clip), fine-tuned from the
# self-supervised SSAST-tiny of scripts/results.sh three ways on the same manifest: labels only, labels plus P2C
# preferences (the high-SNR mixture of a clip preferred), labels plus a speaker head. Validation (10% of the
# training clips) chooses each run's checkpoint; the official test split (300 clips) is scored once.
#   START=runs/results/pretrain OUT=runs/p2c bash scripts/p2c-results.sh
# SETTING=fsdd10: FSDD 10-shot (10 training clips per digit, a draw per seed) and their SNR mixtures, from the
# shipped encoder, three arms on each draw's manifest: labels only, + P2C SNR pairs, + P2C teacher pairs
# (TEACHER: an Earshot classifier, by default the shipped encoder fine-tuned on the whole FSDD training split,
# so that arm uses more labels than ten a class: a stronger model's judgments, as P2C's model-generated
# preferences are).
#   SETTING=fsdd10 TEACHER=runs/results/fsdd-digits-shipped/best.safetensors OUT=runs/p2c-10shot bash scripts/p2c-results.sh
# SETTING=fsddfull: the whole FSDD training split and MIX (default 500) of its clips' SNR mixtures, from the shipped
# encoder, labels only against + P2C SNR pairs (+ teacher pairs with TEACHER=...), EPOCHS (8), SEEDS ("0 1").
#   SETTING=fsddfull OUT=runs/p2c-full bash scripts/p2c-results.sh
# SETTING=esc10: ESC-10 with fold 5 as the test fold, folds 1-4 and MIX (default 160) of their clips' SNR mixtures
# (20 and 0 dB over another class's clip), from the shipped encoder, no mixup (it cannot go with pairs, so no arm uses
# it): labels only, + P2C SNR pairs, + P2C teacher pairs from a CLAP scored zero-shot (CLAP: an Earshot-trained CLAP
# folder that never trained on fold 5, KEYWORDS its label,keyword CSV), EPOCHS (15), SEEDS ("0 1").
#   SETTING=esc10 CLAP=runs/clap-k2c/run/clap KEYWORDS=runs/clap-k2c/keywords.csv OUT=runs/p2c-esc10 bash scripts/p2c-results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared/data}
setting=${SETTING:-fsdd200}
out=${OUT:-runs/p2c}
source scripts/lib.sh
earshot=$(earshot_binary)   # EARSHOT: a binary to use instead of building one
mkdir -p "$out"

summary() {  # summary <arm>...: mean ± population std over the seeds' test lines, one table row per arm
    python3 - "$out" "$@" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
for name in sys.argv[2:]:
    accs, f1s, eces = [], [], []
    for d in sorted(glob.glob(f'{out}/{name}-seed*')):
        if not os.path.isdir(d) or not os.path.exists(f'{d}/done'): continue
        lines = [json.loads(l) for l in open(f'{d}/metrics.jsonl')]
        t = [l for l in lines if l.get('split') == 'test'][-1]
        accs.append(t['test_accuracy']); f1s.append(t['test_macro_f1']); eces.append(t['test_ece'])
    if accs:
        sd = lambda v: statistics.pstdev(v) if len(v) > 1 else 0
        print(f"| {name} | {len(accs)} | {statistics.mean(accs):.3f} ± {sd(accs):.3f} | {statistics.mean(f1s):.3f} ± {sd(f1s):.3f} | {statistics.mean(eces):.3f} ± {sd(eces):.3f} | {' '.join(f'{a:.3f}' for a in accs)} |")
PY
}

run_arms() {  # run_arms <finetune options...>: each arm of $arms ("name|its options") for each seed of SEEDS, then the table
    for seed in ${SEEDS:-0 1}; do
        for entry in "${arms[@]}"; do
            name=${entry%%|*}; read -r -a opts <<< "${entry#*|}"
            dir="$out/$name-seed$seed"
            [ -f "$dir/done" ] && continue
            nice "$earshot" finetune "$@" --seed "$seed" "${opts[@]}" --out "$dir" --overwrite > "$dir.log" 2>&1
            touch "$dir/done"
        done
    done
    echo "| arm | seeds | test accuracy | test macro F1 | test ECE | per seed |"
    summary "${arms[@]%%|*}"
}

if [ "$setting" = fsdd10 ]; then
    start=${START:-earshot-ssast-tiny}
    teacher=${TEACHER:?SETTING=fsdd10 needs TEACHER=<an FSDD digit classifier, best.safetensors>}
    epochs=${EPOCHS:-30}
    for seed in ${SEEDS:-0 1 2}; do
        draw="$out/draw$seed"
        mkdir -p "$draw"
        if [ ! -f "$draw/mixed.csv" ]; then
            # Ten training clips a digit (this seed's draw) and the whole test split, absolute paths.
            python3 - "$shared/fsdd" "$seed" "$draw/fs10.csv" <<'PY'
import csv, os, random, sys
root, seed, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = list(csv.DictReader(open(f'{root}/metadata.csv')))
rng = random.Random(seed)
keep = [r for r in rows if r['split'] == 'test']
for digit in sorted({r['digit'] for r in rows}):
    keep += rng.sample([r for r in rows if r['split'] == 'train' and r['digit'] == digit], 10)
with open(dest, 'w', newline='') as f:
    w = csv.writer(f); w.writerow(['path', 'label', 'speaker', 'fold', 'split'])
    for r in keep: w.writerow([os.path.abspath(os.path.join(root, r['path'])), r['digit'], r['speaker'], '', r['split']])
PY
            "$earshot" pairs make --from snr --data "$draw/fs10.csv" --out "$draw/snr-pairs.csv" --audio-out "$draw/mixed" \
                --manifest "$draw/mixed.csv.tmp" --seed "$seed"
            mv "$draw/mixed.csv.tmp" "$draw/mixed.csv"
        fi
        [ -f "$draw/teacher-pairs.csv" ] || "$earshot" pairs make --from teacher --model "$teacher" --data "$draw/mixed.csv" \
            --out "$draw/teacher-pairs.csv" --seed "$seed"
        common=(--model ssast-tiny-frame --init-from "$start" --data "$draw/mixed.csv" --epochs "$epochs" --batch-size 16 --lr 5e-4
                --target-length 64 --freqm 12 --timem 8 --mean=-6.8 --std 5.6 --seed "$seed")
        for entry in "base|" "p2c-snr|--pairs $draw/snr-pairs.csv" "p2c-teacher|--pairs $draw/teacher-pairs.csv"; do
            name=${entry%%|*}; read -r -a opts <<< "${entry#*|}"
            dir="$out/$name-seed$seed"
            [ -f "$dir/done" ] && continue
            "$earshot" finetune "${common[@]}" "${opts[@]}" --out "$dir" --overwrite > "$dir.log" 2>&1
            touch "$dir/done"
        done
    done
    echo "| arm | seeds | test accuracy | test macro F1 | test ECE | per seed |"
    summary base p2c-snr p2c-teacher
    exit 0
fi
if [ "$setting" = fsddfull ]; then
    # The whole FSDD training split, MIX of its clips (a seeded draw) mixed at 20 and 0 dB over another digit's
    # clip, from the shipped encoder: labels only against + P2C SNR pairs (and + P2C teacher pairs when TEACHER
    # names a classifier), the same manifest for every arm.
    start=${START:-earshot-ssast-tiny}
    epochs=${EPOCHS:-8}
    if [ ! -f "$out/all.csv" ]; then
        "$earshot" pairs make --from snr --data "$shared/fsdd" --out "$out/snr-pairs.csv" --audio-out "$out/mixed" \
            --manifest "$out/all.csv.tmp" --max-clips "${MIX:-500}" --seed 7
        mv "$out/all.csv.tmp" "$out/all.csv"
    fi
    arms=("base|" "p2c-snr|--pairs $out/snr-pairs.csv")
    if [ -n "${TEACHER:-}" ]; then
        [ -f "$out/teacher-pairs.csv" ] || "$earshot" pairs make --from teacher --model "$TEACHER" --data "$out/all.csv" \
            --out "$out/teacher-pairs.csv" --seed 7
        arms+=("p2c-teacher|--pairs $out/teacher-pairs.csv")
    fi
    run_arms --model ssast-tiny-frame --init-from "$start" --data "$out/all.csv" --epochs "$epochs" \
        --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8 --mean=-6.8 --std 5.6
    exit 0
fi
if [ "$setting" = esc10 ]; then
    start=${START:-earshot-ssast-tiny}
    epochs=${EPOCHS:-15}
    if [ ! -f "$out/all.csv" ]; then
        "$earshot" pairs make --from snr --data "$shared/esc10" --exclude-split 5 --out "$out/snr-pairs.csv" \
            --audio-out "$out/mixed" --manifest "$out/all.csv.tmp" --max-clips "${MIX:-160}" --seed 7
        mv "$out/all.csv.tmp" "$out/all.csv"
    fi
    arms=("base|" "p2c-snr|--pairs $out/snr-pairs.csv")
    if [ -n "${CLAP:-}" ]; then
        keywords=(); [ -n "${KEYWORDS:-}" ] && keywords=(--keywords "$KEYWORDS")
        [ -f "$out/teacher-pairs.csv" ] || "$earshot" pairs make --from teacher --clap --model "$CLAP" "${keywords[@]}" \
            --data "$out/all.csv" --exclude-split 5 --out "$out/teacher-pairs.csv" --seed 7
        arms+=("p2c-teacher|--pairs $out/teacher-pairs.csv")
    fi
    run_arms --model ssast-tiny-frame --init-from "$start" --data "$out/all.csv" --test 5 --epochs "$epochs" \
        --batch-size 16 --lr 1e-4 --target-length 256 --freqm 24 --timem 48 --mean=-6.8 --std 5.6
    exit 0
fi
start=${START:-runs/results/pretrain}
epochs=${EPOCHS:-5}
seeds=${SEEDS:-"0 1"}

# 200 training clips, each mixed at 20 and 0 dB: pairs and a manifest of every FSDD clip and the mixtures,
# cut to the test split, the 200 sources and their mixtures.
if [ ! -f "$out/fs200.csv" ]; then
    "$earshot" pairs make --from snr --data "$shared/fsdd" --out "$out/snr-pairs.csv" --audio-out "$out/mixed" \
        --manifest "$out/all.csv" --max-clips 200 --seed 7
    python3 - "$out" <<'PY'
import csv, os, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f'{out}/all.csv')))
mixed = [r for r in rows if '/mixed/' in r['path']]
stems = {os.path.basename(r['path']).rsplit('-', 1)[0] for r in mixed}
keep = [r for r in rows if r['split'] == 'test' or '/mixed/' in r['path']
        or os.path.splitext(os.path.basename(r['path']))[0] in stems]
with open(f'{out}/fs200.csv', 'w', newline='') as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys())); w.writeheader(); w.writerows(keep)
PY
fi
common=(--model ssast-tiny-frame --init-from "$start" --data "$out/fs200.csv" --epochs "$epochs" --batch-size 16 --lr 5e-4
        --target-length 64 --freqm 12 --timem 8 --mean=-6.8 --std 5.6)
for seed in $seeds; do
    for entry in "base|" "p2c-snr|--pairs $out/snr-pairs.csv" "aux-speaker|--aux-head speaker:0.3"; do
        name=${entry%%|*}; read -r -a opts <<< "${entry#*|}"
        dir="$out/$name-seed$seed"
        [ -f "$dir/done" ] && continue
        nice "$earshot" finetune "${common[@]}" "${opts[@]}" --seed "$seed" --out "$dir" --overwrite > "$dir.log" 2>&1
        touch "$dir/done"
    done
done
summary base p2c-snr aux-speaker
