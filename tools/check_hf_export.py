#!/usr/bin/env python3
"""Checks a Hugging Face folder written by `earshot export --format hf` in transformers itself: loads it with
AutoFeatureExtractor + ASTForAudioClassification.from_pretrained (no Earshot code), scores clips, and compares
the scores with `earshot classify --json` of the model the folder was exported from.

Usage (the reference venv: ../shared/tools/reference-venv.sh):
  earshot export RUN --format hf --out /tmp/hf
  $PY tools/check_hf_export.py --folder /tmp/hf --earshot .build/release/earshot --model RUN clip1.wav clip2.wav ...

Clips at another rate are resampled with soxr's HQ recipe (libsoxr, as Earshot). Clips should be no longer than the model's input: `earshot classify` averages windows over a longer clip, the
transformers feature extractor cuts it. Prints one JSON line per clip and a summary with the largest score
difference; exits 1 when the top class differs or a score differs by more than --tolerance.
"""
import argparse
import json
import subprocess
import sys

import numpy as np
import soundfile
import soxr
import torch
from transformers import ASTForAudioClassification, AutoFeatureExtractor

p = argparse.ArgumentParser()
p.add_argument("--folder", required=True)
p.add_argument("--earshot", required=True)
p.add_argument("--model", required=True, help="what the folder was exported from (earshot classify --model)")
p.add_argument("--tolerance", type=float, default=1e-4)
p.add_argument("clips", nargs="+")
a = p.parse_args()

extractor = AutoFeatureExtractor.from_pretrained(a.folder)
model = ASTForAudioClassification.from_pretrained(a.folder).eval()
multi = model.config.problem_type == "multi_label_classification"
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

out = subprocess.run([a.earshot, "classify", "--model", a.model, "--json", "--top", str(len(labels)), *a.clips],
                     capture_output=True, text=True, check=True).stdout
ours = {}
for line in out.splitlines():
    row = json.loads(line)
    if "file" in row:
        ours[row["file"]] = dict(zip(row["labels"], row["scores"]))

worst, mismatched = 0.0, 0
for clip in a.clips:
    audio, rate = soundfile.read(clip, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != extractor.sampling_rate:   # the extractor does not resample; libsoxr's HQ recipe, as Earshot's
        audio = soxr.resample(audio, rate, extractor.sampling_rate, quality="HQ").astype(np.float32)
        rate = extractor.sampling_rate
    inputs = extractor(audio, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    scores = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
    theirs = {labels[i]: float(s) for i, s in enumerate(scores)}
    mine = next((v for k, v in ours.items() if k.endswith(clip) or clip.endswith(k)), None)
    if mine is None:
        raise SystemExit(f"{clip}: earshot printed no scores for it")
    diff = max(abs(theirs[k] - mine[k]) for k in labels)
    top_t, top_o = max(theirs, key=theirs.get), max(mine, key=mine.get)
    worst = max(worst, diff)
    mismatched += top_t != top_o
    print(json.dumps({"clip": clip, "transformers_top": top_t, "earshot_top": top_o, "max_score_difference": diff}))
print(json.dumps({"clips": len(a.clips), "max_score_difference": worst, "top_class_mismatches": mismatched,
                  "problem_type": model.config.problem_type}))
sys.exit(1 if mismatched or worst > a.tolerance else 0)
