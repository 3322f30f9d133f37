#!/usr/bin/env bash
# Runs the whole test suite in release mode (the numerics tests are slow in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
flags="$(bash scripts/build-flags.sh) -Xswiftc -enable-testing"
swift build --build-tests $flags
swift test --skip-build --disable-swift-testing $flags "$@"
