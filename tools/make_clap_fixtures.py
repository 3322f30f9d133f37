#!/usr/bin/env python3
"""CLAP fixtures (Tests/CLAPTests/Fixtures) with transformers' ClapModel and ClapFeatureExtractor:

- clap_tiny/: a tiny random Hugging Face `ClapModel` folder (config.json, model.safetensors in float16
  as many hub folders are, and the tiny byte-level BPE of the text fixtures as vocab.json + merges.txt).
  Audio tower: HTSAT with spec_size 128, 32 mel bins (freq_ratio 4, so 512 frames fold into a
  128 x 128 image), patch 4 (32 x 32 patches), window 4, depths [2,2,2,2], widths 8..64, heads
  [2,2,4,4], MLP ratio 2 (to keep the file small): stage 1 has 8 x 8 windows and shifted blocks, stage 4 is 4 x 4 = one window, where HF
  (like the original) turns the shift off. Text tower: a RoBERTa of width 16, 2 layers.
  Weights are redrawn with a larger spread than the default init (and BatchNorm statistics, LayerNorm
  gains, relative-position tables and the two logit scales made non-trivial) so a wrong index shows.
- clap_outputs.safetensors: two waveforms (0.25 s and 0.45 s at 48 kHz, stored as float16 and used
  as those rounded values), the feature extractor's `input_features` for them (rand_trunc + repeatpad,
  Slaney mel, max_length_s 1 so 101 frames), the audio tower's pooled output, the audio and text
  embeddings (projected, L2-normalised), logits_per_audio / logits_per_text for three captions and
  their token ids, and the symmetric contrastive loss (`return_loss=True`) of the two clips against the
  first two captions.

Usage: /root/.cache/earshot-reference-venv/bin/python tools/make_clap_fixtures.py
CI never runs this."""
import json
import math
import os
import shutil

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fix = os.path.join(root, "Tests/CLAPTests/Fixtures")
bpe_dir = os.path.join(root, "Tests/TextTests/Fixtures/bpe_tiny")
folder = os.path.join(fix, "clap_tiny")
os.makedirs(folder, exist_ok=True)
torch.manual_seed(0)
np.random.seed(0)

bpe = Tokenizer.from_file(os.path.join(bpe_dir, "tokenizer.json"))
audio = ClapAudioConfig(spec_size=128, num_mel_bins=32, window_size=4, patch_size=4, patch_stride=[4, 4],
                        patch_embeds_hidden_size=8, depths=[2, 2, 2, 2], num_attention_heads=[2, 2, 4, 4],
                        hidden_size=64, mlp_ratio=2.0, hidden_dropout_prob=0.0, drop_path_rate=0.0)
text = ClapTextConfig(vocab_size=bpe.get_vocab_size(), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=80, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)
config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
model = ClapModel(config).eval()

with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("logit_scale_a"):
            p.fill_(math.log(10.0))
        elif name.endswith("logit_scale_t"):
            p.fill_(math.log(20.0))
        elif ("norm" in name or "LayerNorm" in name) and name.endswith("weight"):
            p.copy_(1 + 0.2 * torch.randn_like(p))
        elif "relative_position_bias_table" in name:
            p.normal_(0, 0.5)
        else:
            p.normal_(0, 0.3 if p.dim() > 1 else 0.1)
    bn = model.audio_model.audio_encoder.batch_norm
    bn.running_mean.copy_(torch.randn(32) * 5 - 40)
    bn.running_var.copy_(torch.rand(32) * 50 + 10)

# Weights as float16 (as hub folders often are); the reference runs in float32 on those rounded values.
model = model.half().float().eval()
model.half().save_pretrained(folder, safe_serialization=True)
model = model.float().eval()
for f in ["vocab.json", "merges.txt"]:
    shutil.copy(os.path.join(bpe_dir, f), os.path.join(folder, f))

# Waveforms: tones, a chirp and noise, rounded to float16 (what is stored is what is used).
sr = 48000
def clip(seconds, f0):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * (300 + 4000 * t) * t) + 0.05 * np.random.randn(len(t))
    return x.astype(np.float16).astype(np.float32)
waves = [clip(0.25, 440.0), clip(0.45, 1250.0)]
fe = ClapFeatureExtractor(feature_size=32, sampling_rate=sr, hop_length=480, max_length_s=1, fft_window_size=1024,
                          frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad")
feats = fe(waves, sampling_rate=sr, return_tensors="pt")["input_features"].float()   # [2, 1, 101, 32]
assert feats.shape == (2, 1, 101, 32), feats.shape

captions = ["A dog barking in the distance.", "rain", "Birds chirp and a siren wails"]
enc = [bpe.encode(c).ids for c in captions]
n = max(len(e) for e in enc)
ids = torch.tensor([e + [1] * (n - len(e)) for e in enc])
mask = torch.tensor([[1] * len(e) + [0] * (n - len(e)) for e in enc])

with torch.no_grad():
    pooled = model.audio_model(input_features=feats).pooler_output
    out = model(input_ids=ids, attention_mask=mask, input_features=feats)
    # The symmetric contrastive loss needs as many texts as clips: the first two captions.
    loss = model(input_ids=ids[:2], attention_mask=mask[:2], input_features=feats, return_loss=True).loss

save_file({
    "wave0": torch.from_numpy(waves[0]).half(), "wave1": torch.from_numpy(waves[1]).half(),
    "input_features": feats[:, 0].contiguous(),
    "audio_pooled": pooled.contiguous(),
    "audio_embeds": out.audio_embeds.contiguous(), "text_embeds": out.text_embeds.contiguous(),
    "logits_per_audio": out.logits_per_audio.contiguous(), "logits_per_text": out.logits_per_text.contiguous(),
    "loss_first_two_captions": loss.reshape(1).contiguous(),
    "input_ids": ids.to(torch.int64).contiguous(), "attention_mask": mask.to(torch.int64).contiguous(),
}, os.path.join(fix, "clap_outputs.safetensors"))
with open(os.path.join(fix, "clap_captions.json"), "w") as f:
    json.dump(captions, f, ensure_ascii=False, indent=0)
print("pooled", pooled.shape, "audio", out.audio_embeds.shape, "text", out.text_embeds.shape)
print("logits_per_audio", out.logits_per_audio, "loss", loss)
