#!/usr/bin/env bash
# Installs the Debian packages Earshot builds against, only those missing. Needs root (or sudo).
set -euo pipefail
packages=(libopenblas-dev libdnnl-dev libsndfile1-dev libsoxr-dev libfftw3-dev espeak-ng pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift 6 is required on PATH (https://swift.org/install)" >&2; exit 1; }
