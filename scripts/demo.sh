#!/usr/bin/env bash
# The main job: builds Earshot in release mode and runs the spoken-keyword pipeline on generated data
# (synthesis, SSAST pretraining, fine-tuning, evaluation, one classification) in runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
flags=$(bash scripts/build-flags.sh)
swift build $flags --product earshot
exec "$(swift build $flags --show-bin-path)/earshot" keywords "$@"
