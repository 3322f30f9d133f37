#!/usr/bin/env python3
"""A base-size AST release stand-in, to check the loaders at full scale (not a fixture: 700 MB).
Random weights with the released shapes and keys (AudioSet: 768 wide, 12 blocks, strides 10, 527 classes),
saved as a transformers folder (`hf/`) and as an original-style `audioset_10_10_0.4593.pth`, plus a 10 s
waveform (`clip.wav`) and the features and logits transformers gives for it (`ref.safetensors`).
Usage: $(../shared/tools/reference-venv.sh) tools/make_base_release.py OUT_DIR, then
EARSHOT_BASE_RELEASE=OUT_DIR bash scripts/test.sh --filter BaseReleaseCheck"""
import os
import sys

import soundfile
import torch
from safetensors.torch import load_file, save_file
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from ast_keys import to_original

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(3)
model = ASTForAudioClassification(ASTConfig(num_labels=527, max_length=1024)).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if "layernorm" in name or "position" in name or "token" in name:
            p.add_(torch.randn_like(p) * 0.2)
model.save_pretrained(os.path.join(out, "hf"), safe_serialization=True)
extractor = ASTFeatureExtractor()  # AudioSet's statistics, 1024 frames
extractor.save_pretrained(os.path.join(out, "hf"))

n = 16000 * 10
t = torch.arange(n, dtype=torch.float64) / 16000
wave = (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(n, dtype=torch.float64)).float()
soundfile.write(os.path.join(out, "clip.wav"), wave.numpy(), 16000, subtype="FLOAT")
features = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt")["input_values"]
with torch.no_grad():
    logits = model(features).logits
save_file({"features": features.contiguous(), "logits": logits.contiguous()}, os.path.join(out, "ref.safetensors"))
state = load_file(os.path.join(out, "hf", "model.safetensors"))
torch.save(to_original(state, 12, 768), os.path.join(out, "audioset_10_10_0.4593.pth"))
print("top 5", logits[0].topk(5).indices.tolist())
