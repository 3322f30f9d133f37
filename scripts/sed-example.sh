#!/usr/bin/env bash
# Sound event detection with known event times (docs/PANNS.md, "Sound event example"):
# 1. a small frame-scoring PANNs (Cnn6 with the decision-level max head) is trained from scratch on four
#    ESC-10 classes, folds 1-4 (validation drawn from them, test fold 5 scored once);
# 2. a 60 s recording is made from fold 5's clips of those classes, placed at known times over -60 dBFS noise;
# 3. `earshot tag --frames --truth` detects the events and scores onsets, offsets, misses and false alarms.
# Nothing here is committed audio: the recording and its truth CSV are generated into $WORK.
# Usage: scripts/sed-example.sh [work folder] (env: EPOCHS, CROP, DATA, EARSHOT)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/sed-example}
DATA=${DATA:-../shared/data/esc10}
EPOCHS=${EPOCHS:-10}
CROP=${CROP:-160}
EARSHOT=${EARSHOT:-.build/release/earshot}
CLASSES="dog rooster crying_baby sneezing"
[ -x "$EARSHOT" ] || swift build $(bash scripts/build-flags.sh) --product earshot
[ -f "$DATA/metadata.csv" ] || { echo "sed-example: $DATA/metadata.csv not found (ESC-10)" >&2; exit 1; }
mkdir -p "$WORK"
data=$(cd "$DATA" && pwd)

# The four classes' clips, absolute paths, ESC-10's folds kept.
awk -F, -v base="$data" -v keep="$CLASSES" 'BEGIN { n = split(keep, k, " "); for (i = 1; i <= n; i++) want[k[i]] = 1 }
  NR == 1 { print; next } ($2 in want) { $1 = base "/" $1; print }' OFS=, "$data/metadata.csv" > "$WORK/esc4.csv"

"$EARSHOT" finetune --model cnn6-dlm --data "$WORK/esc4.csv" --test 5 --epochs "$EPOCHS" --batch-size 16 --lr 1e-3 \
  --lr-decay-start 6 --crop-frames "$CROP" --target-length 501 --seed 0 --out "$WORK/cnn6-dlm" --overwrite

"$EARSHOT" dataset events --data "$WORK/esc4.csv" --split 5 --seconds 60 --seed 0 --out "$WORK/recording.wav"

for threshold in 0.3 0.5; do
  echo "== threshold $threshold"
  "$EARSHOT" tag "$WORK/recording.wav" --model "$WORK/cnn6-dlm" --frames --threshold "$threshold" --min-duration 0.2 \
    --truth "$WORK/recording.csv" | tee "$WORK/tag-$threshold.txt"
done
