#!/usr/bin/env bash
# Runs the whole test suite in release mode (the numerics tests are slow in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
flags="$(bash scripts/build-flags.sh) -Xswiftc -enable-testing"
swift build --build-tests $flags
# OpenBLAS picks its kernels from a table of CPU models and falls back to SSE ones on models it does not know;
# run the tests on the kernels the CPU's features call for, as the CLI does (Sources/Engine/BLASCore.swift).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x .build/release/earshot ]; then
  core="$(.build/release/earshot doctor --coretype 2>/dev/null || true)"
  if [ -n "$core" ]; then export OPENBLAS_CORETYPE="$core"; fi
fi
swift test --skip-build --disable-swift-testing $flags "$@"
