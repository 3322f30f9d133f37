#!/usr/bin/env bash
# Self-supervised pretraining of SSAST-tiny (or SSAMBA-tiny: MODEL=ssamba-tiny-frame) on the corpus of
# scripts/corpus.sh (which also lists FSDD's training split and ESC-10 folds 2-5; never a test clip), in
# stages of STAGE epochs with `earshot probe` after each, so the run gives a curve of pretraining time
# against probe accuracy (docs/RESULTS.md, docs/PROBE.md "Corpus"). Resumable: run it again and it goes
# on from the last finished stage (earshot pretrain --resume) and probes only what is not probed yet.
#
#   bash scripts/corpus.sh                    # once: the corpus and the probe tasks
#   bash scripts/pretrain.sh                  # pretrain + probe after every stage (resumable)
#   bash scripts/pretrain.sh baselines        # the same probe tasks on logmel-stats and random:$MODEL
#   bash scripts/pretrain.sh table            # the curve: minutes of pretraining against probe accuracy
#   QUICK=1 ...                               # probes without the language task (quicker)
#   CLIP=1 ...                                # adds the clip-level contrastive term (two mixed views a clip)
#   POOLING=mean-std ...                      # probes the token mean and std (files *-mean-std.jsonl)
#   INIT=earshot-ssast-tiny ...               # continues pretraining from a run, checkpoint or shipped encoder
#
# The recipe's settings are environment variables (defaults in the block below). The run folder keeps
# what it started with (a resumed run ignores changed settings but EPOCHS).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
corpus=${EARSHOT_CORPUS:-$HOME/.cache/earshot-corpus}
shared=$(cd "${EARSHOT_SHARED_DATA:-$repo/../shared/data}" && pwd)
earshot=${EARSHOT:-$repo/.build/release/earshot}
DATA=${DATA:-$corpus/pretrain}  # the pretraining manifest
# Frame tokens: the untrained frame encoder is near logmel-stats on FSDD where the patch one is 36 points
# below (docs/RESULTS.md, "Pretraining on the corpus").
MODEL=${MODEL:-ssast-tiny-frame}
OUT=${OUT:-runs/pretrain-corpus-$MODEL}
EPOCHS=${EPOCHS:-12}          # total epochs
STAGE=${STAGE:-3}             # epochs between probes
BATCH=${BATCH:-16}
LR=${LR:-1e-4}
TARGET=${TARGET:-512}         # frames each clip is padded or cut to
CROP=${CROP:-128}             # frames of the random window pretrained on (a new one every epoch)
MASK=${MASK:-}                # masked patches; default: half the window's patches
GEN_WEIGHT=${GEN_WEIGHT:-}    # generative weight (default SSAST's 10)
TEMP=${TEMP:-}                # InfoNCE temperature (default 1)
DEPTH=${DEPTH:-}              # encoder depth override
CLIP=${CLIP:-}                # weight of the clip-level contrastive term between two views (default off)
CLIP_TEMP=${CLIP_TEMP:-}      # its temperature (default 0.1)
VIEW_MIX=${VIEW_MIX:-}        # largest share of another clip mixed into each view (default 0.4)
INIT=${INIT:-}                # a pretraining run, checkpoint or shipped encoder to continue from (default: scratch)
POOLING=${POOLING:-model}     # the probe's pooling: model, or mean-std (earshot probe --pooling)
# The FSDD + ESC-10 statistics of RESULTS.md (earshot dataset stats).
MEAN=${MEAN:--6.8}
STD=${STD:-5.6}

[ -x "$earshot" ] || { echo "pretrain.sh: no binary at $earshot (swift build \$(bash scripts/build-flags.sh) --product earshot, or EARSHOT=...)" >&2; exit 1; }
[ -f "$corpus/pretrain/metadata.csv" ] || { echo "pretrain.sh: no corpus at $corpus (bash scripts/corpus.sh)" >&2; exit 1; }
tasks=(--data "$shared/fsdd" --data "$corpus/tasks/esc10-fold1" --data "$corpus/tasks/drums")
# The drum clips again in four folds of whole kits (every kit tested once), where a corpus has them.
[ -f "$corpus/tasks/drums-kits/metadata.csv" ] && tasks+=(--data "$corpus/tasks/drums-kits")
# QUICK=1 leaves out the language task (2,781 clips of 2.7 s: most of the embedding time; logmel-stats is at 98%).
[ "${QUICK:-0}" = 1 ] || tasks+=(--data "$corpus/tasks/language")

# probe MODEL FILE [args]: the four label tasks and FSDD speakers, one JSON line per dataset, into FILE.
probe() {
  local m=$1 file=$2; shift 2
  [ -s "$file" ] && return 0
  { "$earshot" probe --model "$m" "$@" "${tasks[@]}" --json
    "$earshot" probe --model "$m" "$@" --data "$shared/fsdd" --label-field speaker --json; } > "$file.tmp"
  mv "$file.tmp" "$file"
}

suffix=""; [ "$POOLING" = model ] || suffix="-$POOLING"   # probe files of another pooling sit beside the default's

window_patches() {   # patches in a CROP-frame window: 8 frequency rows x CROP/16 for patches, CROP/2 frames
  case "$MODEL" in *-frame) echo $((CROP / 2)) ;; *) echo $((8 * (CROP / 16))) ;; esac
}

case "${1:-run}" in
run)
  mkdir -p "$OUT"
  mask=${MASK:-$(($(window_patches) / 2))}
  args=(--model "$MODEL" --data "$DATA" --out "$OUT" --batch-size "$BATCH" --lr "$LR" --target-length "$TARGET"
        --crop-frames "$CROP" --mask-patches "$mask" --mean="$MEAN" --std "$STD")
  [ -n "$GEN_WEIGHT" ] && args+=(--generative-weight "$GEN_WEIGHT")
  [ -n "$TEMP" ] && args+=(--nce-temperature "$TEMP")
  [ -n "$DEPTH" ] && args+=(--depth "$DEPTH")
  [ -n "$CLIP" ] && args+=(--clip-contrast "$CLIP")
  [ -n "$CLIP_TEMP" ] && args+=(--clip-temperature "$CLIP_TEMP")
  [ -n "$VIEW_MIX" ] && args+=(--view-mix "$VIEW_MIX")
  [ -n "$INIT" ] && args+=(--init-from "$INIT")
  for ((e = STAGE; e <= EPOCHS; e += STAGE)); do
    if [ ! -e "$OUT/stage-$e.done" ]; then
      resume=(); [ -e "$OUT/last.safetensors" ] && resume=(--resume)
      "$earshot" pretrain "${args[@]}" --epochs "$e" "${resume[@]}"
      cp "$OUT/best.safetensors" "$OUT/best-stage-$e.safetensors"
      touch "$OUT/stage-$e.done"
    fi
    probe "$OUT/best-stage-$e.safetensors" "$OUT/probe-stage-$e$suffix.jsonl" --pooling "$POOLING"
  done
  ;;
baselines)
  mkdir -p runs/probe-baselines
  probe logmel-stats runs/probe-baselines/logmel-stats.jsonl
  probe "random:$MODEL" "runs/probe-baselines/random-$MODEL-$CROP$suffix.jsonl" --frames "$CROP" --pooling "$POOLING"
  ;;
table)
  command -v jq >/dev/null || { echo "pretrain.sh: table needs jq (apt-get install jq)" >&2; exit 1; }
  # One row per probe file: "task logreg/kNN" cells in a fixed task order.
  row() {
    jq -r 'select(.dataset) | "\(.dataset)\t\(.logistic.accuracy)\t\(.knn.accuracy)"' "$1" |
      awk -F'\t' -v name="$2" '{ acc[$1] = sprintf("%.3f / %.3f", $2, $3) }
        END { printf "| %s |", name; n = split("fsdd|fsdd (speaker)|esc10-fold1|drums|drums-kits|language", t, "|")
              for (i = 1; i <= n; i++) printf " %s |", (t[i] in acc) ? acc[t[i]] : "-"; print "" }'
  }
  echo "| embedding | FSDD digits | FSDD speakers | ESC-10 fold 1 | drums | drums, kit folds | language |"
  echo "|---|---|---|---|---|---|---|"
  for f in runs/probe-baselines/*.jsonl; do [ -e "$f" ] && row "$f" "$(basename "$f" .jsonl)"; done
  for f in $(ls "$OUT"/probe-stage-*.jsonl 2>/dev/null | sort -V); do   # stage order: 2, 4, ..., 12
    e=$(basename "$f" .jsonl); e=${e#probe-stage-}; pooled=""
    case "$e" in *-mean-std) e=${e%-mean-std}; pooled=", mean-std" ;; esac
    minutes=$(jq -s --argjson e "$e" '[.[] | select(.epoch <= $e) | .train_seconds // 0] | add / 60 | floor' "$OUT/metrics.jsonl")
    row "$f" "$(basename "$OUT") epoch $e ($minutes min$pooled)"
  done
  ;;
*) echo "pretrain.sh: unknown command '$1' (run, baselines, table)" >&2; exit 1 ;;
esac
