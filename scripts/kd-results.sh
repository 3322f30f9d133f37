#!/usr/bin/env bash
# The runs behind docs/AUXILIARY.md's knowledge-distillation table: FSDD digits from the shipped encoder
# (earshot-ssast-tiny), ten labelled training clips per digit (a draw per seed) and three arms on the same draw:
#   labels     the 100 labelled clips alone;
#   distilled  the same clips, their labels plus the teacher's scores (finetune --teacher, α = KD_WEIGHT, T = KD_TEMPERATURE);
#   semi       the same labelled clips plus every other training clip *without* its label, which trains on the
#              teacher's scores alone (semi-supervised distillation over a transfer set).
# The teacher is the shipped encoder fine-tuned on the whole FSDD training split (made here unless TEACHER names one):
# a stronger model's judgments. Each draw's manifest fixes a validation split (270 training clips, the same for the
# three arms, never trained on) that chooses each run's checkpoint; the official test split (300 clips), never seen by
# teacher or students, is scored once per run.
#   OUT=runs/kd bash scripts/kd-results.sh            # ~45 min on 2 cores (5 draws)
#   OUT=runs/kd bash scripts/kd-results.sh table      # the table of the runs done
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared/data}
out=${OUT:-runs/kd}
epochs=${EPOCHS:-20}
seeds=${SEEDS:-"0 1 2 3 4"}
source scripts/lib.sh
earshot=$(earshot_binary)   # EARSHOT: a binary to use instead of building one
mkdir -p "$out"
common=(--init-from earshot-ssast-tiny --batch-size 16 --lr 5e-4 --target-length 64 --freqm 12 --timem 8)

table() {
    python3 - "$out" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
print("| arm | seeds | test accuracy | test macro F1 | per seed |")
print("|---|---|---|---|---|")
for name in ["labels", "distilled", "semi"]:
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
    "$earshot" finetune "${common[@]}" --data "$shared/fsdd" --epochs "${TEACHER_EPOCHS:-5}" --out "$teacher" --overwrite > "$teacher.log" 2>&1
    touch "$teacher/done"
fi
for seed in $seeds; do
    draw="$out/draw-seed$seed"
    if [ ! -f "$draw/semi.csv" ]; then
        mkdir -p "$draw"
        python3 - "$shared/fsdd" "$draw" "$seed" <<'PY'
import csv, os, random, sys
root, draw, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = list(csv.DictReader(open(f'{root}/metadata.csv')))
rng = random.Random(seed)
train = [r for r in rows if r['split'] == 'train']
rng.shuffle(train)
validation, pool = train[:270], train[270:]
labelled = [r for d in sorted({r['digit'] for r in pool}) for r in [x for x in pool if x['digit'] == d][:10]]
chosen = {r['path'] for r in labelled}
def write(name, extra):
    with open(f'{draw}/{name}', 'w', newline='') as f:
        w = csv.writer(f); w.writerow(['path', 'label', 'speaker', 'split'])
        for r, split, label in ([(r, 'test', r['digit']) for r in rows if r['split'] == 'test'] + [(r, 'validation', r['digit']) for r in validation]
                                + [(r, 'train', r['digit']) for r in labelled] + extra):
            w.writerow([os.path.abspath(os.path.join(root, r['path'])), label, r['speaker'], split])
write('shots.csv', [])
write('semi.csv', [(r, 'train', '') for r in pool if r['path'] not in chosen])
PY
    fi
    for entry in "labels|shots.csv|" \
                 "distilled|shots.csv|--teacher $teacher --kd-weight ${KD_WEIGHT:-0.5} --kd-temperature ${KD_TEMPERATURE:-2}" \
                 "semi|semi.csv|--teacher $teacher --kd-weight ${KD_WEIGHT:-0.5} --kd-temperature ${KD_TEMPERATURE:-2} --epochs ${SEMI_EPOCHS:-5}"; do
        IFS='|' read -r name manifest rest <<< "$entry"
        read -r -a opts <<< "$rest"
        dir="$out/$name-seed$seed"
        [ -f "$dir/done" ] && continue
        "$earshot" finetune "${common[@]}" --data "$draw/$manifest" --epochs "$epochs" --seed "$seed" "${opts[@]}" --out "$dir" --overwrite > "$dir.log" 2>&1
        touch "$dir/done"
    done
done
table
