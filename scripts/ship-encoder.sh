#!/usr/bin/env bash
# Ship a pretrained encoder (issue 25): convert a pretraining run's validation-chosen checkpoint
# (best.safetensors: held-out pretext loss, never a probe's test split) to float16 under pretrained/,
# probe the shipped file itself on the recipe's tasks with both poolings (the model's own, and the tokens'
# mean and std: `--pooling mean-std`), and print the lines its card needs. Before replacing a shipped encoder,
# also fine-tune from the candidate against scratch and rerun the demo (docs/PROBE.md, "Shipped encoders").
#
#   bash scripts/ship-encoder.sh runs/pretrain-corpus-ssast-tiny-frame [name]
#
# Replace a shipped encoder only when its probe table improves (docs/PROBE.md, "Shipped encoders").
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
run=$1; name=${2:-earshot-ssast-tiny}
earshot=${EARSHOT:-$repo/.build/release/earshot}
corpus=${EARSHOT_CORPUS:-$HOME/.cache/earshot-corpus}
shared=$(cd "${EARSHOT_SHARED_DATA:-$repo/../shared/data}" && pwd)
out=$repo/pretrained/$name.safetensors
[ -f "$run/best.safetensors" ] || { echo "ship-encoder.sh: no $run/best.safetensors" >&2; exit 1; }
"$earshot" convert "$run/best.safetensors" --out "$out"
# The drum task's kit folds (every kit tested once) when corpus.sh made them.
kits=(); [ -f "$corpus/tasks/drums-kits/metadata.csv" ] && kits=(--data "$corpus/tasks/drums-kits")
# probe_file POOLING: where the shipped file's probe with that pooling goes (the model's own unsuffixed).
probe_file() { if [ "$1" = model ]; then echo "$run/probe-shipped.jsonl"; else echo "$run/probe-shipped-$1.jsonl"; fi; }
for pooling in model mean-std; do
  probes=$(probe_file $pooling)
  if [ ! -s "$probes" ] || [ "$probes" -ot "$out" ]; then
    { "$earshot" probe --model "$out" --pooling $pooling --json --data "$shared/fsdd" --data "$corpus/tasks/esc10-fold1" \
          --data "$corpus/tasks/drums" "${kits[@]}"
      "$earshot" probe --model "$out" --pooling $pooling --json --data "$shared/fsdd" --label-field speaker
      "$earshot" probe --model "$out" --pooling $pooling --json --data "$shared/esc10"; } > "$probes.tmp"
    mv "$probes.tmp" "$probes"
  fi
done
echo "recipe commit: $(git -C "$repo" rev-parse --short HEAD) ($(jq -r .model "$run/config.json"), $(jq -s 'length' "$run/metrics.jsonl") epochs)"
echo "sha256: $(sha256sum "$out" | cut -d' ' -f1)"
for pooling in model mean-std; do
  echo "probe, $pooling pooling (logistic / kNN accuracy):"
  jq -r 'select(.dataset) | "  \(.dataset): \(.logistic.accuracy) / \(.knn.accuracy)"' "$(probe_file $pooling)"
done
