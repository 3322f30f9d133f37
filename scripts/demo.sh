#!/usr/bin/env bash
# The main job: builds Earshot in release mode and runs the end-to-end demo on generated data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
flags=$(bash scripts/build-flags.sh)
swift build $flags --product earshot
exec "$(swift build $flags --show-bin-path)/earshot" demo "$@"
