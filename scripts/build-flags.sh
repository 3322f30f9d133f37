#!/usr/bin/env bash
# Prints the swift build flags for this CPU. The engine's SIMD kernels need a target CPU to compile
# to vector FMA instead of scalar libm calls (docs/ENGINE.md), and unsafeFlags cannot live in
# Package.swift for a package others depend on, so the scripts pass them. Override with EARSHOT_CPU.
flags="-c release"
cpu="${EARSHOT_CPU:-}"
if [ -z "$cpu" ]; then
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx512bw /proc/cpuinfo; then cpu=skylake-avx512
  elif grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo; then cpu=haswell
  fi
fi
# EARSHOT_FMA lets the micro-kernels use fused multiply-add (every CPU named above has it).
[ -n "$cpu" ] && [ "$cpu" != "generic" ] && flags="$flags -Xswiftc -target-cpu -Xswiftc $cpu -Xswiftc -DEARSHOT_FMA"
echo "$flags"
