#!/usr/bin/env bash
# The runs behind docs/FLAD.md's result: FSDD digits 10-shot (the target), full fine-tuning of the
# self-supervised SSAST-tiny, without auxiliary data and with FLAD over two auxiliary datasets (ESC-10's
# 10 classes, FSDD's speaker view of its training split), 3 seeds each (--repeats: seeds 0, 1, 2 draw other
# shots). Validation (10% of FSDD's training split) chooses each run's checkpoint; the test split is scored once.
#   START=runs/results/pretrain OUT=runs/flad bash scripts/flad-results.sh [baseline|exp3|ucb1 ...]
#   bash scripts/flad-results.sh table
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared/data}
out=${OUT:-runs/flad}
start=${START:-runs/results/pretrain}
epochs=${EPOCHS:-20}
repeats=${REPEATS:-3}
earshot="$(swift build $(bash scripts/build-flags.sh) --show-bin-path)/earshot"
common=(finetune --model ssast-tiny-frame --init-from "$start" --data "$shared/fsdd" --label-field label --shots 10
        --repeats "$repeats" --epochs "$epochs" --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8
        --mean=-6.8 --std 5.6)
aux=(--aux-data "$shared/esc10" --aux-data "$shared/fsdd:speaker")

if [ "${1:-}" = table ]; then
    # Test accuracy per draw (the epoch validation chose), then each arm's share of the auxiliary batches,
    # mean reward (gradient cosine) over the run and final probability, summed over the draws.
    echo "| run | test accuracy (mean ± std over draws) | per draw (chosen epoch) | arms: plays, mean reward, final p (per draw) |"
    echo "|---|---|---|---|"
    for name in baseline exp3 ucb1; do
        r="$out/$name/repeats.json"
        [ -f "$r" ] || continue
        python3 - "$out/$name" "$name" <<'PY'
import json, os, sys
root, name = sys.argv[1], sys.argv[2]
r = json.load(open(os.path.join(root, "repeats.json")))
draws = ", ".join(f"{d['test_accuracy']:.3f} ({d['best_epoch']})" for d in r["draws"])
arms = []
for i in range(len(r["draws"])):
    lines = [json.loads(l) for l in open(os.path.join(root, f"draw-{i}", "metrics.jsonl"))]
    lines = [l for l in lines if "flad_plays" in l]
    if not lines: continue
    cells = []
    for arm in lines[-1]["flad_arms"]:
        plays = sum(l["flad_plays"][arm] for l in lines)
        reward = sum(l["flad_plays"][arm] * (l["flad_mean_reward"][arm] or 0) for l in lines) / max(plays, 1)
        cells.append(f"{arm} {plays}, {reward:+.3f}, {lines[-1]['flad_probability'][arm]:.2f}")
    arms.append("; ".join(cells))
print(f"| {name} | {r['mean_test_accuracy']:.3f} ± {r['std_test_accuracy']:.3f} | {draws} | {' / '.join(arms) or '-'} |")
PY
    done
    exit 0
fi
[ -f "$start/best.safetensors" ] || { echo "no pretrained encoder at $start: run scripts/results.sh first (or set START)"; exit 1; }
mkdir -p "$out"
for name in "${@:-baseline exp3 ucb1}"; do
    for n in $name; do
        [ -f "$out/$n/repeats.json" ] && { echo "== $out/$n: done"; continue; }
        case $n in
            baseline) extra=() ;;
            exp3|ucb1) extra=("${aux[@]}" --bandit "$n") ;;
            *) echo "unknown run $n (baseline, exp3, ucb1)"; exit 1 ;;
        esac
        echo "== $out/$n"
        "$earshot" "${common[@]}" "${extra[@]}" --out "$out/$n" --overwrite 2>&1 | tr '\r' '\n' | grep -v "elapsed" > "$out/$n.log"
    done
done
