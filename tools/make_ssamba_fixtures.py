#!/usr/bin/env python3
"""SSAMBA parity fixtures: a small random SSAMBA encoder and classifier written here in plain PyTorch after the
architecture in ../shared/reference/SYSTEMS.md section 4 (SiavashShams/ssamba src/models/both_models.py `AMBAModel`
on hustvl/Vim vim/models_mamba.py `VisionMamba` and mamba-1p1p1 mamba_simple.py `Mamba` with bimamba_type "v2";
neither imported nor copied), with the reference's key names, and its outputs in eval mode.

mamba_ssm is not imported on purpose: its CPU path (no CUDA kernel) silently runs a unidirectional scan and drops
the v2 backward branch, so it cannot serve as the reference here. The scan below is the per-step recurrence
(selective_scan_ref's formula), the backward branches and the backward layers of each pair run on explicit flips.

Usage: /root/.cache/earshot-reference-venv/bin/python tools/make_ssamba_fixtures.py   (CI never runs this.)

Writes Tests/ModelsTests/Fixtures/:
  - ssamba_release.pth: torch.save of a DataParallel state dict as the released amba_*.pth are: `module.v.*`
    (patch_embed.proj, cls_token, pos_embed, layers.{0..3}.{norm,mixer.*}, norm_f, and Vim's unused `head`),
    `module.cpredlayer.*`, `module.gpredlayer.*`, `module.mask_embed`, `module.p_input_fdim` (32) and
    `module.p_input_tdim` (80) as int64 scalars. Width 24, depth 4 (two pairs), d_state 4, d_conv 4, expand 2,
    dt_rank 2, 16x16 patches at stride 16 on 32 bins x 80 frames (2 x 5 patches, 11 tokens).
  - ssamba_outputs.safetensors: `input` [2, 80, 32] (features [B, T, F]), `tokens` [2, 11, 24] (after norm_f twice),
    `embedding` [2, 24] (mean of tokens[1:], ft_avgtok), `logits` [2, 5], and the head `mlp_head.{0,1}.*`.

Forward (eval: every drop path is the identity), for x [B, T, F]:
  p = patch_embed.proj(x.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2); h = [cls, p] + pos_embed; r = None
  pair i: (h_f, r_f) = L[2i](h, r); (h_b, r_b) = L[2i+1](flip(h), flip(r)); h = h_f + flip(h_b); r = r_f + flip(r_b)
  layer: r = h if r is None else r + h; return mixer(norm(r)), r
  end: tokens = norm_f(norm_f(r + h))
  mixer(u): [x, z] = in_proj(u); y_f = branch(x, z); y_b = branch_b(flip x, flip z); out_proj((y_f + flip(y_b)) / 2)
  branch: x' = silu(causal depthwise conv1d_k(x)); [dt, B, C] = x_proj(x'); delta = softplus(dt_proj(dt));
          h_t = exp(delta_t A) h_{t-1} + delta_t B_t x'_t; y_t = C_t . h_t + D x'_t; y = y * silu(z); A = -exp(A_log)
Computed in float64 from the float32 weights, saved as float32.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fix = os.path.join(root, "Tests/ModelsTests/Fixtures")
os.makedirs(fix, exist_ok=True)
torch.manual_seed(0)

D, DEPTH, N, K, EXPAND = 24, 4, 4, 4, 2
RANK = math.ceil(D / 16)
INNER = EXPAND * D
FDIM, TDIM, PATCH = 32, 80, 16
LABELS = 5
EPS = 1e-5


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_proj = nn.Linear(D, 2 * INNER, bias=False)
        for suffix in ["", "_b"]:
            setattr(self, "conv1d" + suffix, nn.Conv1d(INNER, INNER, K, groups=INNER, padding=K - 1, bias=True))
            setattr(self, "x_proj" + suffix, nn.Linear(INNER, RANK + 2 * N, bias=False))
            setattr(self, "dt_proj" + suffix, nn.Linear(RANK, INNER, bias=True))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(INNER, 1))
        self.D = nn.Parameter(torch.ones(INNER))
        self.A_b_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(INNER, 1))
        self.D_b = nn.Parameter(torch.ones(INNER))
        self.out_proj = nn.Linear(INNER, D, bias=False)

    def branch(self, x, z, suffix):
        conv, x_proj, dt_proj = (getattr(self, n + suffix) for n in ["conv1d", "x_proj", "dt_proj"])
        a_log, d = (self.A_log, self.D) if suffix == "" else (self.A_b_log, self.D_b)
        length = x.shape[1]
        xc = F.silu(conv(x.transpose(1, 2))[..., :length]).transpose(1, 2)      # [B, L, inner]
        dt, b, c = torch.split(x_proj(xc), [RANK, N, N], dim=-1)
        delta = F.softplus(dt_proj(dt))
        a = -torch.exp(a_log)                                                     # [inner, N]
        h = torch.zeros(x.shape[0], INNER, N, dtype=x.dtype)
        ys = []
        for t in range(length):
            h = torch.exp(delta[:, t, :, None] * a) * h + delta[:, t, :, None] * b[:, t, None, :] * xc[:, t, :, None]
            ys.append((h * c[:, t, None, :]).sum(-1) + d * xc[:, t])
        return torch.stack(ys, dim=1) * F.silu(z)

    def forward(self, u):
        x, z = self.in_proj(u).chunk(2, dim=-1)
        y_f = self.branch(x, z, "")
        y_b = self.branch(x.flip([1]), z.flip([1]), "_b")
        return self.out_proj((y_f + y_b.flip([1])) / 2)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.mixer = Mixer()
        self.norm = nn.LayerNorm(D, eps=EPS)

    def forward(self, h, r):
        r = h if r is None else r + h
        return self.mixer(self.norm(r)), r


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(1, D, kernel_size=(PATCH, PATCH), stride=(PATCH, PATCH))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = PatchEmbed()
        patches = (FDIM // PATCH) * (TDIM // PATCH)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, patches + 1, D) * 0.5)
        self.layers = nn.ModuleList([Layer() for _ in range(DEPTH)])
        self.norm_f = nn.LayerNorm(D, eps=EPS)
        self.head = nn.Linear(D, 10)   # Vim's ImageNet head: in every release, used by nothing

    def forward(self, x):
        p = self.patch_embed.proj(x.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), p], dim=1) + self.pos_embed
        r = None
        for i in range(DEPTH // 2):
            h_f, r_f = self.layers[2 * i](h, r)
            h_b, r_b = self.layers[2 * i + 1](h.flip([1]), None if r is None else r.flip([1]))
            h, r = h_f + h_b.flip([1]), r_f + r_b.flip([1])
        return self.norm_f(self.norm_f(r + h))


class Pretraining(nn.Module):
    def __init__(self):
        super().__init__()
        self.v = Encoder()
        self.cpredlayer = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, PATCH * PATCH))
        self.gpredlayer = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, PATCH * PATCH))
        self.mask_embed = nn.Parameter(torch.randn(1, 1, D) * 0.2)


model = Pretraining()
head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, LABELS))
with torch.no_grad():
    # Initial A_log, D and norms are the same in every channel and the dt biases tiny: perturb every one of them
    # so a channel or branch mix-up, a swapped norm or a dropped bias cannot hide.
    for name, p in list(model.v.named_parameters()) + list(head.named_parameters()):
        if name.endswith("A_log") or name.endswith("A_b_log") or name.endswith(".D") or name.endswith(".D_b"):
            p.add_(0.3 * torch.randn_like(p))
        elif "dt_proj" in name and name.endswith("bias"):
            p.copy_(torch.log(torch.expm1(torch.empty_like(p).uniform_(0.02, 0.3))) + 0.1 * torch.randn_like(p))
        elif "norm" in name or name.startswith("0."):
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))

x = torch.randn(2, TDIM, FDIM)
with torch.no_grad():
    v64 = Encoder().double()
    v64.load_state_dict({k: t.double() for k, t in model.v.state_dict().items()})
    head64 = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, LABELS)).double()
    head64.load_state_dict({k: t.double() for k, t in head.state_dict().items()})
    tokens = v64(x.double())
    embedding = tokens[:, 1:].mean(dim=1)
    logits = head64(embedding)

state = {"module." + k: t.detach().clone() for k, t in model.state_dict().items()}
state["module.p_input_fdim"] = torch.tensor(FDIM)
state["module.p_input_tdim"] = torch.tensor(TDIM)
torch.save(state, os.path.join(fix, "ssamba_release.pth"))
out = {"input": x, "tokens": tokens.float(), "embedding": embedding.float(), "logits": logits.float()}
for k, t in head.state_dict().items():
    out["mlp_head." + k] = t.detach().clone()
save_file({k: t.contiguous() for k, t in out.items()}, os.path.join(fix, "ssamba_outputs.safetensors"))
print({k: tuple(t.shape) for k, t in out.items()})
print("tokens[0, :3, :4]", tokens[0, :3, :4])
