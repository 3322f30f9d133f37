#!/usr/bin/env bash
# The first CLAP run of docs/CLAP.md ("A first run"): FSDD (a subset) + ESC-10 with keyword-to-caption,
# five classes held out of training and scored zero-shot at the end: scripts/clap-results.sh on those two sets.
#   bash scripts/clap-fsdd-esc10.sh OUT MINILM_FOLDER [START] [extra earshot options]
# START: the audio tower's start (that run used a 6-epoch FSDD + ESC-10 pretraining: scripts/results.sh's
# runs/results-v19/pretrain). CAPTIONS=raw as in clap-results.sh.
set -euo pipefail
SETS="fsdd esc10" HOLDOUT=8,9,rooster,sea_waves,sneezing exec bash "$(dirname "$0")/clap-results.sh" "$@"
