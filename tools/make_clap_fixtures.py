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

- laion_tiny.pt + laion_outputs.safetensors (with LAION_SRC): a LAION-CLAP checkpoint as
  `{"state_dict": {"module.…": …}, "epoch": …}` whose audio branch is LAION's own
  `HTSAT_Swin_Transformer` (htsat.py, run here from LAION_SRC: spec 128, 32 mel bins, patch and stride 8,
  window 4, depths [2,2] (grids 16 and 8, both shifted), widths 8 and 16, an AudioSet head of 4 classes, a 64-point STFT so its frozen
  extractor kernels stay small), a tiny transformers RobertaModel as `text_branch`, Sequential
  projections, MLPLayers transforms, float16 weights; the outputs are LAION's `get_audio_embedding`
  and `get_text_embedding` (model.py) on the HF fixture's features and captions.

Usage: /root/.cache/earshot-reference-venv/bin/python tools/make_clap_fixtures.py [LAION_SRC]
where LAION_SRC holds htsat.py and feature_fusion.py of LAION-AI/CLAP (src/laion_clap/clap_module)
and torchlibrosa is installed. CI never runs this."""
import json
import math
import os
import shutil
import sys
import types

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


# ---- LAION-CLAP's own HTSAT and checkpoint layout ----
if len(sys.argv) > 1:
    import torch.nn as nn
    from transformers import RobertaConfig, RobertaModel
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import laion_clap_src
    htsat = laion_clap_src.htsat(sys.argv[1])
    torch.manual_seed(1)
    cfg = types.SimpleNamespace(mel_bins=32, window_size=64, hop_size=32, sample_rate=48000, fmin=50, fmax=14000, class_num=4)
    audio_branch = htsat.HTSAT_Swin_Transformer(spec_size=128, patch_size=8, patch_stride=(8, 8), num_classes=4, embed_dim=8,
                                                depths=[2, 2], num_heads=[2, 2], window_size=4, mlp_ratio=2.0,
                                                drop_path_rate=0.0, config=cfg).eval()
    text_branch = RobertaModel(RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=8, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=16, max_position_embeddings=80,
                                             type_vocab_size=1, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0)).eval()
    audio_projection = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    text_projection = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
    def mlp_layers():   # LAION's MLPLayers([16, 16, 16]): Linear, ReLU, Dropout, Linear, ReLU, Dropout
        return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.1))
    modules = {"audio_branch": audio_branch, "text_branch": text_branch, "audio_projection": audio_projection,
               "text_projection": text_projection}
    with torch.no_grad():
        for name, m in modules.items():
            for k, p in m.named_parameters():
                if ("norm" in k or "LayerNorm" in k) and k.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                elif "relative_position_bias_table" in k:
                    p.normal_(0, 0.5)
                else:
                    p.normal_(0, 0.3 if p.dim() > 1 else 0.1)
            m.half().float()
        audio_branch.bn0.running_mean.copy_(torch.randn(32) * 5 - 40)
        audio_branch.bn0.running_var.copy_(torch.rand(32) * 50 + 10)
        audio_branch.half().float()   # the statistics too: what is stored is what LAION runs on
    state = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            state[f"module.{name}.{k}"] = v
    transforms = {"audio_transform": mlp_layers(), "text_transform": mlp_layers()}
    for name, m in transforms.items():
        for k, v in m.state_dict().items():
            state[f"module.{name}.sequential.{k}"] = v
    state["module.logit_scale_a"] = torch.tensor(math.log(10.0)).half().float()
    state["module.logit_scale_t"] = torch.tensor(math.log(20.0)).half().float()
    # Older transformers kept this buffer; LAION's loader deletes it, so must ours.
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80).expand((1, -1))
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    torch.save({"state_dict": half, "epoch": 45}, os.path.join(fix, "laion_tiny.pt"))

    with torch.no_grad():
        x = feats.transpose(1, 3)                # model.py / htsat.py forward, from the log-mel on
        x = audio_branch.bn0(x).transpose(1, 3)
        emb = audio_branch.forward_features(audio_branch.reshape_wav2img(x))["embedding"]
        audio_embeds = torch.nn.functional.normalize(audio_projection(emb), dim=-1)
        pooled = text_branch(input_ids=ids, attention_mask=mask).pooler_output
        text_embeds = torch.nn.functional.normalize(text_projection(pooled), dim=-1)
    save_file({"audio_embedding": emb.contiguous(), "audio_embeds": audio_embeds.contiguous(),
               "text_embeds": text_embeds.contiguous()}, os.path.join(fix, "laion_outputs.safetensors"))
    print("LAION: keys", len(state), "audio", audio_embeds.shape, "text", text_embeds.shape)
