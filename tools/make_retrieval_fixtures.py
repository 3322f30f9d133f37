#!/usr/bin/env python3
"""Retrieval-metric fixtures (Tests/CLAPTests/Fixtures/retrieval_metrics.json) computed by LAION-CLAP's own
evaluation code, training/train.py of LAION-AI/CLAP, run unchanged through tools/laion_clap_src.py:

- `get_metrics` (one caption per clip: audio i <-> text i): R@1/5/10, mAP@10, mean and median rank for
  audio_to_text and text_to_audio, on 24 clips;
- `evaluate_clotho_audiocaps` (five captions per clip, Clotho/AudioCaps): the same names, text -> audio over
  the five passes, audio -> text with the best of the five captions and LAION's mAP@10 loop. Its inputs
  come through stand-ins for what it reads from a training run: a dataloader of one batch (the clips'
  five texts and a `__url__` naming the dataset), a model returning the fixed audio / text features and
  the logit scales, `args.tmodel = "transformer"` with a `clap_module.tokenize` that maps each text to its
  row, and no autocast.

Embeddings are random unit vectors in 3 dimensions (so ranks spread widely, and some clips' captions
rank out of caption order, where LAION's loop and the sorted definition of its docstring differ); the
similarity matrix audio @ text.T (logit scale 1) is stored as torch computed it, so the Swift test ranks
the same floats. Ties have probability zero with these draws.

Usage: /root/.cache/earshot-reference-venv/bin/python tools/make_retrieval_fixtures.py LAION_SRC
(LAION_SRC: LAION-AI/CLAP's src/laion_clap/clap_module). CI never runs this."""
import contextlib
import json
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import laion_clap_src

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
out_path = os.path.join(root, "Tests/CLAPTests/Fixtures/retrieval_metrics.json")
train = laion_clap_src.train_functions(sys.argv[1], ["get_metrics", "evaluate_clotho_audiocaps"])

torch.manual_seed(0)
clips, per_clip, dim = 24, 5, 3
audio = F.normalize(torch.randn(clips, dim), dim=-1)
# Captions near their clip (so recall is neither 0 nor 1) plus noise.
text = F.normalize(audio.repeat_interleave(per_clip, dim=0) + 0.9 * torch.randn(clips * per_clip, dim), dim=-1)
one = torch.tensor(1.0)


def scalars(m):
    return {k: float(v) for k, v in m.items() if k.startswith(("audio_to_text", "text_to_audio"))}


# get_metrics: one caption per clip, the first of each clip's five.
first = text[::per_clip].contiguous()
single = scalars(train["get_metrics"](audio_features=audio, text_features=first, logit_scale_a=one))

# evaluate_clotho_audiocaps through its stand-ins.
texts = [[f"clip {i} caption {j}" for j in range(per_clip)] for i in range(clips)]
row_of = {t: i * per_clip + j for i, ts in enumerate(texts) for j, t in enumerate(ts)}
sys.modules["clap_module"] = types.SimpleNamespace(tokenize=lambda ts: torch.tensor([row_of[t] for t in ts]))


def model(audios, tokens, device):
    if audios is None and tokens is None:
        return one, one
    if tokens is None:
        return audio[audios["index"]]
    return text[tokens]


batch = {"index": torch.arange(clips), "full_text": texts, "__url__": [f"/data/clotho/test/{i}.tar" for i in range(clips)]}
data = {"val": types.SimpleNamespace(dataloader=[batch])}
args = types.SimpleNamespace(tmodel="transformer")
five = train["evaluate_clotho_audiocaps"](model, data, 0, args, contextlib.nullcontext, "cpu")["clotho-test"]
five = scalars({k.split("/", 1)[1]: v for k, v in five.items()})

# How many clips' captions rank out of caption order among those in the top 10 (where LAION's loop and the
# sorted definition give different audio -> text mAP@10).
sim = audio @ text.t()
out_of_order = 0
for i in range(clips):
    ranking = torch.argsort(sim[i], descending=True)
    ranks = [int((ranking == i * per_clip + j).nonzero()) for j in range(per_clip)]
    top = [r for r in ranks if r < 10]
    out_of_order += top != sorted(top)

def floats32(t):   # 9 significant digits identify a float32 exactly
    return [float("%.9g" % v) for v in t.flatten().tolist()]


with open(out_path, "w") as f:
    json.dump({"clips": clips, "captions_per_clip": per_clip,
               "similarity_one_caption": floats32(audio @ first.t()),
               "similarity_five_captions": floats32(sim),
               "get_metrics": single, "evaluate_clotho_audiocaps": five,
               "clips_with_captions_out_of_order_in_top10": out_of_order}, f, indent=0)
print(json.dumps(single, indent=0), json.dumps(five, indent=0), "out of order:", out_of_order)
