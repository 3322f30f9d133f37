#!/usr/bin/env python3
"""Runs an `earshot bench` workload and the same workload in PyTorch alternately, several rounds, and
prints the medians side by side with ratios (the machine is noisy: single runs vary up to 2x).

Usage: $(../shared/tools/reference-venv.sh) tools/compare_bench.py [--rounds 3] [--earshot PATH] -- encoder --train ...
"""
import argparse
import json
import statistics
import subprocess
import sys
import os

here = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--earshot", default=os.path.join(here, "..", ".build", "release", "earshot"))
p.add_argument("args", nargs=argparse.REMAINDER)
a = p.parse_args()
args = [x for x in a.args if x != "--"]

ours, theirs = [], []
for _ in range(a.rounds):
    ours.append(json.loads(subprocess.run([a.earshot, "bench", *args], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]))
    theirs.append(json.loads(subprocess.run([sys.executable, os.path.join(here, "bench_torch.py"), *args], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]))

def med(rows, key):
    return statistics.median(r[key] for r in rows)

out = {"bench": args[0], "args": " ".join(args), "rounds": a.rounds}
for key in ["ms", "ms_per_step", "gflops", "items_per_s", "clips_per_s", "peak_rss_mb"]:
    if key in ours[0] and key in theirs[0]:
        out[f"earshot_{key}"] = round(med(ours, key), 2)
        out[f"torch_{key}"] = round(med(theirs, key), 2)
# The first throughput figure both sides print; higher is better except for times.
ratio_keys = [("gflops", True), ("items_per_s", True), ("clips_per_s", True), ("ms_per_step", False), ("ms", False)]
key, better_high = next(k for k in ratio_keys if k[0] in ours[0] and k[0] in theirs[0])
r = out[f"earshot_{key}"] / out[f"torch_{key}"]
out["speedup"] = round(r if better_high else 1 / r, 3)
# Each round's own ratio (the two runs back to back), so a set shows its spread as well as its median.
out["speedup_per_round"] = [round(o[key] / t[key] if better_high else t[key] / o[key], 3) for o, t in zip(ours, theirs)]
# Each side's raw figures, and its best against the other's best: on a shared host PyTorch gains more
# than Earshot in quiet moments, so the best-to-best ratio is the nearer guess for a dedicated machine.
out[f"earshot_{key}_per_round"] = [round(o[key], 2) for o in ours]
out[f"torch_{key}_per_round"] = [round(t[key], 2) for t in theirs]
pick = max if better_high else min
best = pick(o[key] for o in ours) / pick(t[key] for t in theirs)
out["speedup_best"] = round(best if better_high else 1 / best, 3)
if "earshot_peak_rss_mb" in out:
    out["memory_ratio"] = round(out["earshot_peak_rss_mb"] / out["torch_peak_rss_mb"], 3)
print(json.dumps(out))
