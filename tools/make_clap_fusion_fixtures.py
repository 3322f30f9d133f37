#!/usr/bin/env python3
"""Fused CLAP fixtures (Tests/CLAPTests/Fixtures/clap_fused_tiny, clap_fused_outputs.safetensors) with
transformers' ClapModel (enable_fusion=True, the AFF 2-d block) and ClapFeatureExtractor(truncation="fusion").

- clap_fused_tiny/: a tiny random fused `ClapModel` folder (float16 weights, the tiny BPE of the text
  fixtures). HTSAT at the released front end's sizes where they matter for fusion: 64 mel bins,
  spec_size 256 (freq_ratio 4: the 1001-frame chunks of 10 s stretch to 1024 and fold into 256 x 256),
  patch 4 (64 x 64 patches), window 8, depths [2, 2], widths 8 and 16, heads [2, 2], MLP ratio 2;
  `mel_conv2d` (4 x 12, stride 4 x 12) gives 64 x 21 local patches per crop, three side by side = 63
  columns, zero-padded to 64; AFF with aff_block_r 4 (8 -> 2 -> 8 channels). Weights, BatchNorm
  statistics (bn0 and AFF's four) and LayerNorm gains redrawn wide so a wrong index shows.
- clap_fused_outputs.safetensors: two clips at 48 kHz, made by a formula both sides compute (two
  tones and a chirp in float64, rounded to float16) so no waveform is stored: 2.5 s (shorter than 10 s:
  repeat-padded, its mel four times, is_longer false) and 13.7 s (longer: HTK log-mel of the whole clip,
  1371 frames; global view = bilinear resize to 1001 frames; three 1001-frame crops from the front,
  middle and back thirds of the valid starts, the starts the extractor drew recorded as `crop_starts`).
  Stored: every 40th frame of the extractor's `input_features` [2, 4, 26, 64], `is_longer`, the audio
  tower's pooled output and the audio embeddings (projected, L2-normalised) of the batch.

Usage: /root/.cache/earshot-reference-venv/bin/python tools/make_clap_fusion_fixtures.py. CI never runs this."""
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
folder = os.path.join(fix, "clap_fused_tiny")
os.makedirs(folder, exist_ok=True)
torch.manual_seed(1)
np.random.seed(1)

bpe = Tokenizer.from_file(os.path.join(bpe_dir, "tokenizer.json"))
audio = ClapAudioConfig(spec_size=256, num_mel_bins=64, window_size=8, patch_size=4, patch_stride=[4, 4],
                        patch_embeds_hidden_size=8, depths=[2, 2], num_attention_heads=[2, 2], hidden_size=16,
                        mlp_ratio=2.0, hidden_dropout_prob=0.0, drop_path_rate=0.0, enable_fusion=True, aff_block_r=4)
text = ClapTextConfig(vocab_size=bpe.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=80, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)
config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
model = ClapModel(config).eval()

with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("logit_scale_a") or name.endswith("logit_scale_t"):
            p.fill_(math.log(10.0))
        elif ("norm" in name or "LayerNorm" in name or "att." in name) and name.endswith("weight") and p.dim() == 1:
            p.copy_(1 + 0.2 * torch.randn_like(p))
        elif "relative_position_bias_table" in name:
            p.normal_(0, 0.5)
        else:
            p.normal_(0, 0.3 if p.dim() > 1 else 0.1)
    enc = model.audio_model.audio_encoder
    enc.batch_norm.running_mean.copy_(torch.randn(64) * 5 - 40)
    enc.batch_norm.running_var.copy_(torch.rand(64) * 50 + 10)
    for m in enc.patch_embed.fusion_model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.5)
            m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)

model = model.half().float().eval()
model.half().save_pretrained(folder, safe_serialization=True)
model = model.float().eval()
for f in ["vocab.json", "merges.txt"]:
    shutil.copy(os.path.join(bpe_dir, f), os.path.join(folder, f))

# The clips (Tests/CLAPTests/FusionTests.swift computes the same formula).
sr = 48000
def clip(seconds, f0):
    t = np.arange(int(round(seconds * sr)), dtype=np.float64) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t) * np.sin(2 * np.pi * 0.25 * t)
    return x.astype(np.float16).astype(np.float32)
waves = [clip(2.5, 440.0), clip(13.7, 1250.0)]

# Record the crop starts the extractor draws (np.random.choice over each third of the valid starts).
drawn = []
choice = np.random.choice
def recording_choice(a, *args, **kwargs):
    v = choice(a, *args, **kwargs)
    drawn.append(int(v))
    return v
np.random.choice = recording_choice
fe = ClapFeatureExtractor(feature_size=64, sampling_rate=sr, hop_length=480, max_length_s=10, fft_window_size=1024,
                          frequency_min=50, frequency_max=14000, truncation="fusion", padding="repeatpad")
out = fe(waves, sampling_rate=sr, return_tensors="pt")
np.random.choice = choice
feats = out["input_features"].float()   # [2, 4, 1001, 64]
is_longer = out["is_longer"]
assert feats.shape == (2, 4, 1001, 64), feats.shape
assert is_longer.flatten().tolist() == [False, True], is_longer
assert len(drawn) == 3, drawn

with torch.no_grad():
    pooled = model.audio_model(input_features=feats, is_longer=is_longer).pooler_output
    embeds = model.get_audio_features(input_features=feats, is_longer=is_longer)
    if not torch.is_tensor(embeds):
        embeds = embeds.pooler_output
    # Without the long clip's fusion (is_longer all false): the global view alone.
    unfused = model.get_audio_features(input_features=feats, is_longer=torch.zeros_like(is_longer))
    if not torch.is_tensor(unfused):
        unfused = unfused.pooler_output

save_file({
    "features_every_40th_frame": feats[:, :, ::40, :].contiguous(),
    "is_longer": is_longer.to(torch.int64).flatten().contiguous(),
    "crop_starts": torch.tensor(drawn, dtype=torch.int64),
    "audio_pooled": pooled.contiguous(),
    "audio_embeds": embeds.contiguous(),
    "audio_embeds_global_only": unfused.contiguous(),
}, os.path.join(fix, "clap_fused_outputs.safetensors"))
print("crop starts", drawn, "pooled", pooled.shape, "embeds", embeds[:, :4])
print("fusion moves the long clip's embedding by", (embeds[1] - unfused[1]).abs().max().item())
