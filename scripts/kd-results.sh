#!/usr/bin/env bash
# The runs behind docs/AUXILIARY.md's knowledge-distillation table: FSDD digits, 10 training clips per digit (a draw
# per seed), fine-tuned from the shipped encoder (earshot-ssast-tiny) with labels only, and with the labels plus a
# teacher's scores on those same clips (finetune --teacher, α = KD_WEIGHT, T = KD_TEMPERATURE). The teacher is the
# shipped encoder fine-tuned on the whole FSDD training split (made here unless TEACHER names one), so the distilled
# arm gets a stronger model's judgments of its ten clips a class, never another clip. Validation (10% of the training
# clips) chooses each run's checkpoint; the official test split (300 clips), never seen by teacher or students, is
# scored once per run.
#   OUT=runs/kd bash scripts/kd-results.sh            # ~45 min on 2 cores
#   OUT=runs/kd bash scripts/kd-results.sh table      # the table of the runs done
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared/data}
out=${OUT:-runs/kd}
epochs=${EPOCHS:-20}
seeds=${SEEDS:-"0 1 2"}
source scripts/lib.sh
earshot=$(earshot_binary)   # EARSHOT: a binary to use instead of building one
mkdir -p "$out"
common=(--init-from earshot-ssast-tiny --data "$shared/fsdd" --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8)

table() {
    python3 - "$out" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
print("| arm | seeds | test accuracy | test macro F1 | per seed |")
print("|---|---|---|---|---|")
for name in ["labels", "distilled"]:
    accs, f1s = [], []
    for d in sorted(glob.glob(f'{out}/{name}-seed*')):
        if not os.path.exists(f'{d}/done'): continue
        t = [r for r in map(json.loads, open(f'{d}/metrics.jsonl')) if r.get('split') == 'test'][-1]
        accs.append(t['test_accuracy']); f1s.append(t['test_macro_f1'])
    if accs:
        sd = lambda v: statistics.pstdev(v) if len(v) > 1 else 0
        print(f"| {name} | {len(accs)} | {statistics.mean(accs):.3f} ± {sd(accs):.3f} | {statistics.mean(f1s):.3f} ± {sd(f1s):.3f} | {' '.join(f'{a:.3f}' for a in accs)} |")
PY
}
if [ "${1:-}" = table ]; then table; exit 0; fi

teacher=${TEACHER:-$out/teacher}
if [ -z "${TEACHER:-}" ] && [ ! -f "$teacher/done" ]; then
    "$earshot" finetune "${common[@]}" --epochs "${TEACHER_EPOCHS:-5}" --out "$teacher" --overwrite > "$teacher.log" 2>&1
    touch "$teacher/done"
fi
for seed in $seeds; do
    for entry in "labels|" "distilled|--teacher $teacher --kd-weight ${KD_WEIGHT:-0.5} --kd-temperature ${KD_TEMPERATURE:-2}"; do
        name=${entry%%|*}; read -r -a opts <<< "${entry#*|}"
        dir="$out/$name-seed$seed"
        [ -f "$dir/done" ] && continue
        "$earshot" finetune "${common[@]}" --shots 10 --epochs "$epochs" --seed "$seed" "${opts[@]}" --out "$dir" --overwrite > "$dir.log" 2>&1
        touch "$dir/done"
    done
done
table
