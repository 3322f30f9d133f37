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
# EARSHOT_AVX512 widens the GEMM micro-kernel to 16-float vectors (6 x 32 tiles in zmm registers).
# EARSHOT_WIDE_KERNEL=1 forces that layout on any CPU, to test it where no AVX-512 is at hand (it is
# correct everywhere, and slow without AVX-512: each vector then takes two registers).
case "$cpu" in skylake-avx512|cascadelake|cooperlake|icelake-server|icelake-client|tigerlake|sapphirerapids|znver4|znver5) wide=1 ;; *) wide=${EARSHOT_WIDE_KERNEL:-0} ;; esac
[ "$wide" = 1 ] && flags="$flags -Xswiftc -DEARSHOT_AVX512"
echo "$flags"
