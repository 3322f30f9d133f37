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

- laion_fused_tiny.pt + laion_fused_outputs.safetensors (with LAION_SRC): a fused LAION-CLAP checkpoint as
  `630k-audioset-fusion-best.pt` is laid out (`{"state_dict": {"module.…": …}}`, float16): LAION's own
  `HTSAT_Swin_Transformer(enable_fusion=True, fusion_type="aff_2d")` (htsat.py, feature_fusion.py's AFF): spec
  256 and 64 mel bins as above, patch 8 (32 x 32 patches, so the stored shifted-window masks stay small;
  `mel_conv2d` 8 x 24 gives 3 x 10 local columns, zero-padded to 32), window 8, depths [2, 2], widths 8 and 16,
  AFF 8 -> 2 -> 8, an AudioSet head of 4 classes, `patch_embed.mel_conv2d`, `patch_embed.fusion_model.{local,global}_att`), a
  1-layer RoBERTa, projections, MLP transforms, `position_ids`. Outputs from the same two clips, waveform in,
  through LAION's hook path (int16 round trip, training/data.py's `get_audio_features` with "fusion" and
  "repeatpad", HTK log-mel by torchaudio, the global view by torchvision's Resize: antialiased bilinear),
  LAION's crop starts recorded: the pooled `embedding`, the audio embeddings, the global-view-only
  embeddings, every 40th frame of `mel_fusion` and `longer`.

Usage: /root/.cache/earshot-reference-venv/bin/python tools/make_clap_fusion_fixtures.py [LAION_SRC]
where LAION_SRC is LAION-AI/CLAP's src/laion_clap/clap_module (tools/laion_clap_src.py runs its code) and
torchlibrosa and torchaudio are installed. CI never runs this."""
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
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


# ---- LAION-CLAP's own fused HTSAT, front end and checkpoint layout (with LAION_SRC) ----
if len(sys.argv) > 1:
    import types
    import torch.nn as nn
    from transformers import RobertaConfig, RobertaModel
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import laion_clap_src
    htsat = laion_clap_src.htsat(sys.argv[1])
    data = laion_clap_src.data_functions(sys.argv[1], ["get_mel", "get_audio_features", "int16_to_float32", "float32_to_int16"])
    torch.manual_seed(2)
    np.random.seed(2)
    # window_size/hop_size here only size the torchlibrosa STFT kernels htsat.py builds (and a .pt stores),
    # unused on the fused path; kept small (64) so the fixture stays small. The front end below is the
    # released one (audio_cfg: 1024-point STFT, hop 480, 64 HTK mel bins 50-14000 Hz).
    cfg = types.SimpleNamespace(mel_bins=64, window_size=64, hop_size=480, sample_rate=48000, fmin=50, fmax=14000, class_num=4)
    audio_cfg = {"sample_rate": 48000, "window_size": 1024, "hop_size": 480, "mel_bins": 64, "fmin": 50, "fmax": 14000}
    audio_branch = htsat.HTSAT_Swin_Transformer(spec_size=256, patch_size=8, patch_stride=(8, 8), num_classes=4, embed_dim=8,
                                                depths=[2, 2], num_heads=[2, 2], window_size=8, mlp_ratio=2.0,
                                                drop_path_rate=0.0, config=cfg, enable_fusion=True, fusion_type="aff_2d").eval()
    text_branch = RobertaModel(RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=8, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=16, max_position_embeddings=80,
                                             type_vocab_size=1, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0)).eval()
    audio_projection = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    text_projection = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
    modules = {"audio_branch": audio_branch, "text_branch": text_branch, "audio_projection": audio_projection,
               "text_projection": text_projection}
    with torch.no_grad():
        for name, m in modules.items():
            for k, p in m.named_parameters():
                if ("norm" in k or "LayerNorm" in k or "att." in k) and k.endswith("weight") and p.dim() == 1:
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                elif "relative_position_bias_table" in k:
                    p.normal_(0, 0.5)
                else:
                    p.normal_(0, 0.3 if p.dim() > 1 else 0.1)
        audio_branch.bn0.running_mean.copy_(torch.randn(64) * 5 - 40)
        audio_branch.bn0.running_var.copy_(torch.rand(64) * 50 + 10)
        for m in audio_branch.patch_embed.fusion_model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.5)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
        for m in modules.values():
            m.half().float()   # what is stored (float16) is what LAION runs on, statistics included
    state = {f"module.{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    for name in ["audio_transform", "text_transform"]:   # LAION's MLPLayers([16, 16, 16])
        mlp = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.1))
        state.update({f"module.{name}.sequential.{k}": v for k, v in mlp.state_dict().items()})
    state["module.logit_scale_a"] = torch.tensor(math.log(10.0)).half().float()
    state["module.logit_scale_t"] = torch.tensor(math.log(20.0)).half().float()
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80).expand((1, -1))
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    torch.save({"state_dict": half, "epoch": 45}, os.path.join(fix, "laion_fused_tiny.pt"))

    # LAION's hook (get_audio_embedding_from_data): int16 round trip, get_audio_features(480000, "fusion",
    # "repeatpad"), then model.get_audio_embedding: encode_audio(...)["embedding"] -> projection -> normalize.
    # get_audio_features draws the crop starts with np.random.choice (recorded) and, for a longer clip, calls
    # np.random.integers, which numpy's legacy module lacks (LAION-AI/CLAP issue 182): randint stands in.
    drawn = []
    choice = np.random.choice
    def recording_choice(a, *args, **kwargs):
        v = choice(a, *args, **kwargs)
        drawn.append(int(v))
        return v
    np.random.choice = recording_choice
    np.random.integers = np.random.randint
    samples = []
    for w in waves:
        x = torch.from_numpy(data["int16_to_float32"](data["float32_to_int16"](w))).float()
        samples.append(data["get_audio_features"]({}, x, 480000, data_truncating="fusion", data_filling="repeatpad", audio_cfg=audio_cfg))
    np.random.choice = choice
    del np.random.integers
    assert len(drawn) == 3, drawn
    batch = {k: torch.cat([d[k].unsqueeze(0) for d in samples], dim=0) for k in ["mel_fusion", "longer"]}
    assert batch["longer"].flatten().tolist() == [False, True], batch["longer"]

    def embed(inputs):
        with torch.no_grad():
            e = audio_branch({k: v.clone() for k, v in inputs.items()}, device="cpu")["embedding"]
            return e, F.normalize(audio_projection(e), dim=-1)
    laion_pooled, laion_embeds = embed(batch)
    # Neither clip longer: LAION's eval path takes the global view alone.
    _, global_only = embed({"mel_fusion": batch["mel_fusion"], "longer": torch.zeros_like(batch["longer"])})
    save_file({
        "features_every_40th_frame": batch["mel_fusion"][:, :, ::40, :].contiguous(),
        "longer": batch["longer"].to(torch.int64).flatten().contiguous(),
        "crop_starts": torch.tensor(drawn, dtype=torch.int64),
        "audio_embedding": laion_pooled.contiguous(),
        "audio_embeds": laion_embeds.contiguous(),
        "audio_embeds_global_only": global_only.contiguous(),
    }, os.path.join(fix, "laion_fused_outputs.safetensors"))
    print("LAION fused: keys", len(state), "crop starts", drawn, "embeds", laion_embeds[:, :4])
    print("LAION fused: fusion moves the long clip's embedding by", (laion_embeds[1] - global_only[1]).abs().max().item())
