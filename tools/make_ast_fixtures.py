#!/usr/bin/env python3
"""AST parity fixtures with PyPI transformers: a tiny random ASTForAudioClassification saved in the
Hugging Face format, its logits, logits after adapting it to other clip lengths the way the original
AST code adapts positional embeddings, and the same weights as an original-style `.pth` state dict.
Usage: $(../shared/tools/reference-venv.sh) tools/make_ast_fixtures.py  (CI never runs this.)"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import ASTConfig, ASTForAudioClassification

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fix = os.path.join(root, "Tests/ModelsTests/Fixtures")
os.makedirs(fix, exist_ok=True)
torch.manual_seed(0)

cfg = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=16,
                frequency_stride=10, time_stride=10, max_length=100, num_mel_bins=48, num_labels=5,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
model = ASTForAudioClassification(cfg).eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if "layernorm" in name or "position" in name or "token" in name:
            p.add_(torch.randn_like(p) * 0.2)
model.save_pretrained(os.path.join(fix, "hf_ast_tiny"), safe_serialization=True)

out = {}
x = torch.randn(2, 100, 48)
with torch.no_grad():
    out["input"] = x
    out["logits"] = model(x).logits


def adapt(pos, fs, ts, f, t):
    """ast_models.py's cut/interpolate (L133-146), with the grid centres computed, not hardcoded."""
    d = pos.shape[-1]
    tokens, grid = pos[:, :2], pos[:, 2:].transpose(1, 2).reshape(1, d, fs, ts)
    if t < ts:
        grid = grid[:, :, :, ts // 2 - t // 2: ts // 2 - t // 2 + t]
    elif t > ts:
        grid = F.interpolate(grid, size=(fs, t), mode="bilinear")
    if f < fs:
        grid = grid[:, :, fs // 2 - f // 2: fs // 2 - f // 2 + f, :]
    elif f > fs:
        grid = F.interpolate(grid, size=(f, t), mode="bilinear")
    return torch.cat([tokens, grid.reshape(1, d, f * t).transpose(1, 2)], dim=1)


fs, ts = 4, 9  # (48-16)//10+1, (100-16)//10+1
for length in [150, 60]:
    c2 = ASTConfig(**{**cfg.to_dict(), "max_length": length})
    m2 = ASTForAudioClassification(c2).eval()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    t = (length - 16) // 10 + 1
    key = "audio_spectrogram_transformer.embeddings.position_embeddings"
    sd[key] = adapt(sd[key], fs, ts, fs, t)
    m2.load_state_dict(sd)
    xx = torch.randn(2, length, 48)
    with torch.no_grad():
        out[f"input_{length}"] = xx
        out[f"logits_{length}"] = m2(xx).logits

pos = torch.randn(1, 2 + 4 * 9, 8)
out["pos"] = pos
for f, t in [(3, 12), (5, 6), (2, 4), (6, 11)]:
    out[f"pos_{f}x{t}"] = adapt(pos, 4, 9, f, t)
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(fix, "ast_parity.safetensors"))

# The same weights under the original repository's keys, as the released .pth files store them.
rename = {
    "embeddings.cls_token": "v.cls_token", "embeddings.distillation_token": "v.dist_token",
    "embeddings.position_embeddings": "v.pos_embed", "embeddings.patch_embeddings.projection": "v.patch_embed.proj",
    "layernorm": "v.norm",
}
orig = {}
# transformers 5 renames layers in memory but saves the classic hub names; start from the saved file.
sd = load_file(os.path.join(fix, "hf_ast_tiny/model.safetensors"))
P = "audio_spectrogram_transformer."
for k, v in sd.items():
    if k.startswith(P + "encoder.layer."):
        i, rest = k[len(P + "encoder.layer."):].split(".", 1)
        if rest.startswith("attention.attention."):
            continue
        m = {"attention.output.dense": "attn.proj", "layernorm_before": "norm1", "layernorm_after": "norm2",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
        stem, kind = rest.rsplit(".", 1)
        orig[f"module.v.blocks.{i}.{m[stem]}.{kind}"] = v
    elif k.startswith(P):
        stem, kind = k[len(P):].rsplit(".", 1) if not k.endswith("token") and not k.endswith("embeddings") else (k[len(P):], None)
        orig["module." + rename[stem] + (f".{kind}" if kind else "")] = v
    else:
        orig["module." + k.replace("classifier.layernorm", "mlp_head.0").replace("classifier.dense", "mlp_head.1")] = v
for i in range(cfg.num_hidden_layers):
    a = P + f"encoder.layer.{i}.attention.attention."
    for kind in ["weight", "bias"]:
        orig[f"module.v.blocks.{i}.attn.qkv.{kind}"] = torch.cat([sd[a + f"query.{kind}"], sd[a + f"key.{kind}"], sd[a + f"value.{kind}"]])
orig["module.v.head.weight"] = torch.zeros(7, 32)  # timm's unused ImageNet heads ride along in the releases
orig["module.v.head.bias"] = torch.zeros(7)
torch.save(orig, os.path.join(fix, "ast_original.pth"))
print(sorted(orig)[:6], len(orig))
