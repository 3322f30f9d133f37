#!/usr/bin/env python3
"""AST parity fixtures with PyPI transformers: a tiny random ASTForAudioClassification saved in the
Hugging Face format, its logits, logits after adapting it to other clip lengths the way the original
AST code adapts positional embeddings, and the same weights as an original-style `.pth` state dict.
Usage: $(../shared/tools/reference-venv.sh) tools/make_ast_fixtures.py  (CI never runs this.)"""
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import ASTConfig, ASTForAudioClassification

from ast_keys import to_original

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fix = os.path.join(root, "Tests/ModelsTests/Fixtures")
os.makedirs(fix, exist_ok=True)
torch.manual_seed(0)



def tiny_ast(**shape):
    """A 2-block, 32-wide random ASTForAudioClassification with its norms, positions and tokens
    perturbed away from their initial values (so a missing or swapped one shows in the logits)."""
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=16,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **shape)
    m = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "layernorm" in name or "position" in name or "token" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return config, m


cfg, model = tiny_ast(frequency_stride=10, time_stride=10, max_length=100, num_mel_bins=48, num_labels=5)
model.save_pretrained(os.path.join(fix, "hf_ast_tiny"), safe_serialization=True)
# The same folder as older transformers saved it (and many hub repos still hold): pytorch_model.bin, a
# torch.save of the state dict under the hub names.
os.makedirs(os.path.join(fix, "hf_ast_tiny_bin"), exist_ok=True)
shutil.copy(os.path.join(fix, "hf_ast_tiny", "config.json"), os.path.join(fix, "hf_ast_tiny_bin", "config.json"))
torch.save(load_file(os.path.join(fix, "hf_ast_tiny", "model.safetensors")), os.path.join(fix, "hf_ast_tiny_bin", "pytorch_model.bin"))

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
# transformers 5 renames layers in memory but saves the classic hub names; start from the saved file.
orig = to_original(load_file(os.path.join(fix, "hf_ast_tiny/model.safetensors")), cfg.num_hidden_layers, 32)
torch.save(orig, os.path.join(fix, "ast_original.pth"))
print(sorted(orig)[:6], len(orig))


# SSAST pretext tasks, written after ssast:src/models/ast_models.py (mpc / mpg) on timm-style blocks.
class Block(torch.nn.Module):
    def __init__(self, dim, heads, hidden=None):
        super().__init__()
        self.heads = heads
        hidden = hidden or 4 * dim
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.attn = torch.nn.Module()
        self.attn.qkv = torch.nn.Linear(dim, 3 * dim)
        self.attn.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.mlp = torch.nn.Module()
        self.mlp.fc1 = torch.nn.Linear(dim, hidden)
        self.mlp.fc2 = torch.nn.Linear(hidden, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        a = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (C // self.heads) ** -0.5).softmax(-1) @ qkv[2]
        x = x + self.attn.proj(a.transpose(1, 2).reshape(B, N, C))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class SSASTRef(torch.nn.Module):
    def __init__(self, dim=32, depth=2, heads=4, fdim=32, tdim=64, fshape=16, tshape=16):
        super().__init__()
        self.fshape, self.tshape = fshape, tshape
        n = (fdim // fshape) * (tdim // tshape)
        self.v = torch.nn.Module()
        self.v.cls_token = torch.nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.v.dist_token = torch.nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.v.pos_embed = torch.nn.Parameter(torch.randn(1, n + 2, dim) * 0.02)
        self.v.patch_embed = torch.nn.Module()
        self.v.patch_embed.proj = torch.nn.Conv2d(1, dim, (fshape, tshape), (fshape, tshape))
        self.v.blocks = torch.nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.v.norm = torch.nn.LayerNorm(dim, eps=1e-6)
        self.cpredlayer = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, 256))
        self.gpredlayer = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, 256))
        self.mask_embed = torch.nn.Parameter(torch.zeros(1, 1, dim))
        torch.nn.init.xavier_normal_(self.mask_embed)
        self.p_input_fdim = torch.nn.Parameter(torch.tensor(fdim), requires_grad=False)
        self.p_input_tdim = torch.nn.Parameter(torch.tensor(tdim), requires_grad=False)
        self.unfold = torch.nn.Unfold(kernel_size=(fshape, tshape), stride=(fshape, tshape))

    def hidden(self, x, mask_index):
        x = x.unsqueeze(1).transpose(2, 3)
        input = self.unfold(x).transpose(1, 2)
        B = x.shape[0]
        x = self.v.patch_embed.proj(x).flatten(2).transpose(1, 2)
        mask_dense = torch.ones_like(x)
        for i in range(B):
            mask_dense[i, mask_index[i], :] = 0
        x = x * mask_dense + (1 - mask_dense) * self.mask_embed.expand(B, x.shape[1], -1)
        x = torch.cat((self.v.cls_token.expand(B, -1, -1), self.v.dist_token.expand(B, -1, -1), x), dim=1) + self.v.pos_embed
        for blk in self.v.blocks:
            x = blk(x)
        return self.v.norm(x), input

    def mpc(self, x, mask_index):
        h, input = self.hidden(x, mask_index)
        B, M = len(mask_index), len(mask_index[0])
        nce, correct = torch.tensor(0.0), torch.tensor(0.0)
        for i in range(B):
            pred = self.cpredlayer(h[i, torch.tensor(mask_index[i]) + 2])
            target = input[i, mask_index[i]]
            total = torch.mm(target, torch.transpose(pred, 0, 1))
            correct += torch.sum(torch.eq(torch.argmax(F.softmax(total, dim=0), dim=0), torch.arange(0, M)))
            nce += torch.sum(torch.diag(F.log_softmax(total, dim=-1)))
        return nce / (-1.0 * B * M), correct / (B * M)

    def mpg(self, x, mask_index):
        h, input = self.hidden(x, mask_index)
        pred = torch.stack([self.gpredlayer(h[i, torch.tensor(mask_index[i]) + 2]) for i in range(len(mask_index))])
        target = torch.stack([input[i, mask_index[i]] for i in range(len(mask_index))])
        return torch.mean((pred - target) ** 2)


torch.manual_seed(7)
ref = SSASTRef()
with torch.no_grad():
    for name, p in ref.named_parameters():
        if "norm" in name:
            p.add_(torch.randn_like(p) * 0.2)
x = torch.randn(2, 64, 32)
masks = [[1, 3, 6], [0, 5, 7]]
nce, acc = ref.mpc(x, masks)
mse = ref.mpg(x, masks)
nce.backward()
ss = {k: v.detach().float().contiguous() for k, v in ref.state_dict().items()}
ss["input"] = x
ss["nce"], ss["acc"], ss["mse"] = nce.detach().reshape(1), acc.reshape(1), mse.detach().reshape(1)
ss["targets"] = ref.unfold(x.unsqueeze(1).transpose(2, 3)).transpose(1, 2).contiguous()
ss["grad.mask_embed"] = ref.mask_embed.grad
ss["grad.v.patch_embed.proj.weight"] = ref.v.patch_embed.proj.weight.grad
save_file(ss, os.path.join(fix, "ssast_parity.safetensors"))
print("ssast", nce.item(), acc.item(), mse.item())

# An SSAST release as the repository publishes it (SSAST-Tiny-Patch-400.pth and its siblings): the
# DataParallel state dict of a tiny-width model (one block here), the pretraining input size kept as
# integer tensors; and what SSAST's fine-tuning forward (ft_avgtok) makes of an unmasked input: the
# mean of the final-normed patch tokens.
torch.manual_seed(5)
rel = SSASTRef(dim=192, depth=1, heads=3, fdim=128, tdim=64)
with torch.no_grad():
    for name, p in rel.named_parameters():
        if "norm" in name or "pos_embed" in name:
            p.add_(torch.randn_like(p) * 0.2)
torch.save({"module." + k: v for k, v in rel.state_dict().items()}, os.path.join(fix, "ssast_release_tiny.pth"))
rx = torch.randn(1, 64, 128)
with torch.no_grad():
    h = rel.v.patch_embed.proj(rx.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
    h = torch.cat([rel.v.cls_token, rel.v.dist_token, h], dim=1) + rel.v.pos_embed
    for blk in rel.v.blocks:
        h = blk(h)
    emb = rel.v.norm(h)[:, 2:].mean(dim=1)
save_file({"input": rx, "embedding": emb}, os.path.join(fix, "ssast_release.safetensors"))

# Released-classifier fixtures: a tiny AST with strides 12 saved three ways (a Hugging Face folder with
# its feature extractor's config, an original .pth named after its strides as AST names its releases,
# a class list in AST's class_labels_indices.csv format), and the logits the HF feature extractor and
# model give on a generated waveform.
from transformers import ASTFeatureExtractor  # noqa: E402

torch.manual_seed(11)
names = ["Speech", "Dog bark", "Music, classical"]
rcfg, rmodel = tiny_ast(frequency_stride=12, time_stride=12, max_length=112, num_mel_bins=40,
                        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                        problem_type="single_label_classification")
with torch.no_grad():
    rmodel.classifier.dense.weight.mul_(40)  # logits of order 1, so a parity slip shows
hf_dir = os.path.join(fix, "hf_ast_release")
rmodel.save_pretrained(hf_dir, safe_serialization=True)
extractor = ASTFeatureExtractor(num_mel_bins=40, max_length=112, mean=-5.5, std=3.25)
extractor.save_pretrained(hf_dir)
n = 16000 * 3 // 2
t = torch.arange(n, dtype=torch.float64) / 16000
wave = (0.3 * torch.sin(2 * torch.pi * 440 * t) * torch.exp(-t) + 0.05 * torch.randn(n, dtype=torch.float64)).float()
feats = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt")["input_values"]
with torch.no_grad():
    rlogits = rmodel(feats).logits
rsd = load_file(os.path.join(hf_dir, "model.safetensors"))
release_pth = to_original(rsd, rcfg.num_hidden_layers, 32)
torch.save(release_pth, os.path.join(fix, "tiny_12_12_0.5000.pth"))


def ast_reference(state, x, stride, heads):
    """ASTModel.forward of the original repository (ast_models.py) on an original state dict: patch conv,
    [cls, dist, patches] + pos_embed, timm blocks (LayerNorm eps 1e-6), final norm, (x[:,0] + x[:,1]) / 2,
    mlp_head = LayerNorm (PyTorch's default eps 1e-5) + Linear."""
    sd = {k[len("module."):]: v for k, v in state.items()}
    dim = sd["v.cls_token"].shape[-1]
    h = F.conv2d(x.unsqueeze(1).transpose(2, 3), sd["v.patch_embed.proj.weight"], sd["v.patch_embed.proj.bias"], stride=stride)
    h = h.flatten(2).transpose(1, 2)
    h = torch.cat([sd["v.cls_token"].expand(x.shape[0], -1, -1), sd["v.dist_token"].expand(x.shape[0], -1, -1), h], dim=1)
    h = h + sd["v.pos_embed"]
    depth = len({k.split(".")[2] for k in sd if k.startswith("v.blocks.")})
    for i in range(depth):
        blk = Block(dim, heads, sd[f"v.blocks.{i}.mlp.fc1.weight"].shape[0])
        blk.load_state_dict({k[len(f"v.blocks.{i}."):]: v for k, v in sd.items() if k.startswith(f"v.blocks.{i}.")})
        h = blk(h)
    h = F.layer_norm(h, (dim,), sd["v.norm.weight"], sd["v.norm.bias"], eps=1e-6)
    pooled = (h[:, 0] + h[:, 1]) / 2
    pooled = F.layer_norm(pooled, (dim,), sd["mlp_head.0.weight"], sd["mlp_head.0.bias"], eps=1e-5)
    return F.linear(pooled, sd["mlp_head.1.weight"], sd["mlp_head.1.bias"])


with torch.no_grad():
    reference_logits = ast_reference(release_pth, feats, (12, 12), 4)
save_file({"wave": wave, "features": feats.contiguous(), "logits": rlogits.contiguous(),
           "reference_logits": reference_logits.contiguous()}, os.path.join(fix, "ast_release.safetensors"))
with open(os.path.join(fix, "release_class_labels_indices.csv"), "w") as f:
    f.write("index,mid,display_name\n" + "".join(f'{i},/m/{i:04d},"{n}"\n' for i, n in enumerate(names)))
print("release", feats.shape, rlogits, reference_logits)
