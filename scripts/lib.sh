# Sourced (from the repository root) by the results scripts: the earshot binary, and resumable stages.

# earshot_binary: $EARSHOT when set, else the release build, built now with the host's flags.
earshot_binary() {
    if [ -n "${EARSHOT:-}" ]; then echo "$EARSHOT"; return; fi
    local flags; flags=$(bash scripts/build-flags.sh)
    swift build $flags --product earshot >/dev/null
    echo "$(swift build $flags --show-bin-path)/earshot"
}

# stage <folder> <command...>: runs `$earshot <command...> --out <folder>` into <folder>.log, skipped once the
# folder has its `done` marker (set only when the run succeeds), resumed (--resume) when the folder exists from an
# interrupted or failed run.
stage() {
    local dir=$1; shift
    if [ -f "$dir/done" ]; then echo "== $dir: done"; return; fi
    echo "== $dir"
    "$earshot" "$@" --out "$dir" $( [ -d "$dir" ] && echo --resume ) 2>&1 | tr '\r' '\n' | grep -v "elapsed" | tee "$dir.log"
    local status=${PIPESTATUS[0]}
    # A failed run is not done: the next call resumes it (and a script under `set -e` stops here).
    if [ "$status" -ne 0 ]; then echo "== $dir: failed (exit $status), see $dir.log" >&2; return "$status"; fi
    touch "$dir/done"
}
