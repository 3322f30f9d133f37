#!/usr/bin/env python3
"""Makes the reference fixtures for Earshot's engine and NN parity tests with PyPI torch.

Usage: $(../shared/tools/reference-venv.sh) tools/make_fixtures.py
Writes Tests/EngineTests/Fixtures/ops.json (forward results of single ops and optimizer steps) and
Tests/NNTests/Fixtures/vit_small.safetensors (a small pre-LN ViT: parameters, input, logits, loss and
every parameter's gradient). CI never runs this; the outputs are committed.
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def t(x):
    # Shortest repr that round-trips through float32 keeps the JSON small and the values exact.
    flat = x.detach().float().reshape(-1).numpy()
    return {"shape": list(x.shape), "data": [float(str(v)) for v in flat]}


ops = {}
g = torch.Generator().manual_seed(1)


def randn(*shape):
    return torch.randn(*shape, generator=g)


# Elementwise activations
x = randn(4, 37) * 3
ops["act.input"] = t(x)
ops["act.gelu"] = t(F.gelu(x))
ops["act.gelu_tanh"] = t(F.gelu(x, approximate="tanh"))
ops["act.sigmoid"] = t(torch.sigmoid(x))
ops["act.tanh"] = t(torch.tanh(x))
ops["act.silu"] = t(F.silu(x))
ops["act.softplus"] = t(F.softplus(x))
ops["act.exp"] = t(torch.exp(x))
ops["act.softmax"] = t(F.softmax(x, dim=-1))
ops["act.log_softmax"] = t(F.log_softmax(x, dim=0))

# Normalisation
x = randn(3, 5, 16)
w, b = randn(16), randn(16)
ops["ln.input"], ops["ln.weight"], ops["ln.bias"] = t(x), t(w), t(b)
ops["ln.output"] = t(F.layer_norm(x, (16,), w, b, eps=1e-6))
x = randn(4, 3, 5, 2)
bn = nn.BatchNorm2d(3)
with torch.no_grad():
    bn.weight.copy_(randn(3)); bn.bias.copy_(randn(3))
ops["bn.input"], ops["bn.weight"], ops["bn.bias"] = t(x), t(bn.weight), t(bn.bias)
ops["bn.train_output"] = t(bn(x))
ops["bn.running_mean"], ops["bn.running_var"] = t(bn.running_mean), t(bn.running_var)
bn.eval()
ops["bn.eval_output"] = t(bn(x))

# Convolution and pooling
x = randn(2, 4, 9, 11)
w = randn(6, 2, 3, 2)
b = randn(6)
ops["conv2d.input"], ops["conv2d.weight"], ops["conv2d.bias"] = t(x), t(w), t(b)
ops["conv2d.output"] = t(F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2))
x1 = randn(2, 3, 20)
w1 = randn(3, 1, 5)
ops["conv1d.input"], ops["conv1d.weight"] = t(x1), t(w1)
ops["conv1d.output"] = t(F.conv1d(x1, w1, None, stride=2, padding=2, groups=3))
ops["pool.max"] = t(F.max_pool2d(x, (3, 2), (2, 2), (1, 1)))
ops["pool.avg"] = t(F.avg_pool2d(x, (3, 3), (2, 3), (1, 1)))
ops["pool.adaptive_avg"] = t(F.adaptive_avg_pool2d(x, (4, 5)))
ops["pool.adaptive_max"] = t(F.adaptive_max_pool2d(x, (3, 7)))

# Interpolation (AST positional-embedding adaptation and CLAP use these)
x = randn(1, 3, 6, 7)
ops["interp.input"] = t(x)
for mode in ["bilinear", "bicubic"]:
    for ac in [False, True]:
        for size in [(9, 4), (3, 13)]:
            key = f"interp.{mode}.{int(ac)}.{size[0]}x{size[1]}"
            ops[key] = t(F.interpolate(x, size=size, mode=mode, align_corners=ac))

# Attention
# Head dims of 16 take the engine's register-tiled path; a value dim of 8 takes the BLAS fallback.
q, k, v, v8 = randn(1, 2, 70, 16), randn(1, 2, 300, 16), randn(1, 2, 300, 16), randn(1, 2, 300, 8)
ops["sdpa.q"], ops["sdpa.k"], ops["sdpa.v"], ops["sdpa.v8"] = t(q), t(k), t(v), t(v8)
ops["sdpa.output"] = t(F.scaled_dot_product_attention(q, k, v))
ops["sdpa.output8"] = t(F.scaled_dot_product_attention(q, k, v8))

# Losses
logits = randn(6, 5)
targets = torch.tensor([0, 4, 2, 1, 3, 3])
ops["loss.logits"] = t(logits)
ops["loss.ce"] = t(F.cross_entropy(logits, targets).reshape(1))
ops["loss.ce_smooth"] = t(F.cross_entropy(logits, targets, label_smoothing=0.2).reshape(1))
y = (randn(6, 5) > 0).float()
ops["loss.bce_targets"] = t(y)
ops["loss.bce"] = t(F.binary_cross_entropy_with_logits(logits, y).reshape(1))

# Optimizers: three steps with fixed gradients
p0 = randn(7)
grads = [randn(7) for _ in range(3)]
ops["optim.p0"] = t(p0)
for i, gr in enumerate(grads):
    ops[f"optim.grad{i}"] = t(gr)


def run(make):
    p = nn.Parameter(p0.clone())
    opt = make([p])
    for gr in grads:
        opt.zero_grad()
        p.grad = gr.clone()
        opt.step()
    return t(p)


ops["optim.sgd"] = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01))
ops["optim.sgd_nesterov"] = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True))
ops["optim.adam"] = run(lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.95, 0.999), weight_decay=0.1))
ops["optim.adamw"] = run(lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1))
ops["optim.adamw_amsgrad"] = run(lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1, amsgrad=True))

os.makedirs(os.path.join(root, "Tests/EngineTests/Fixtures"), exist_ok=True)
with open(os.path.join(root, "Tests/EngineTests/Fixtures/ops.json"), "w") as f:
    json.dump(ops, f)


# A small pre-LN ViT written the way timm writes it (fused qkv, exact GELU, eps 1e-6, cls pooling).
class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, c, dim, p):
        super().__init__()
        self.proj = nn.Conv2d(c, dim, p, p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, c=1, img=(8, 12), p=4, dim=32, depth=2, heads=4, classes=5):
        super().__init__()
        n = (img[0] // p) * (img[1] // p)
        self.patch_embed = PatchEmbed(c, dim, p)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


torch.manual_seed(3)
model = ViT()
# Random (not default) LayerNorm affine parameters, so the test sees them used.
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.add_(torch.randn_like(m.weight) * 0.1)
            m.bias.add_(torch.randn_like(m.bias) * 0.1)
x = torch.randn(3, 1, 8, 12)
labels = torch.tensor([1, 4, 0])
logits = model(x)
loss = F.cross_entropy(logits, labels)
loss.backward()
out = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
out["input"] = x
out["labels"] = labels.float()
out["logits"] = logits.detach()
out["loss"] = loss.detach().reshape(1)
for k, p in model.named_parameters():
    out["grad." + k] = p.grad.detach().contiguous()
os.makedirs(os.path.join(root, "Tests/NNTests/Fixtures"), exist_ok=True)
save_file(out, os.path.join(root, "Tests/NNTests/Fixtures/vit_small.safetensors"), metadata={"torch": torch.__version__})
print("wrote fixtures with torch", torch.__version__)

# PyTorch .pth checkpoints for the restricted unpickler: a real state_dict (OrderedDict with
# _metadata, int64 num_batches_tracked), a half tensor, a non-contiguous view, and a pickle that
# would run code if loaded naively.
torch.manual_seed(5)
net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
net(torch.randn(6, 4))
state = net.state_dict()
state["extra.half"] = torch.randn(2, 3).half()
state["extra.view"] = torch.arange(12.0).reshape(3, 4).t()[1:]  # shares storage, strided
state["extra.tail"] = torch.arange(20.0).reshape(4, 5)[1:3]  # contiguous, at an offset into its storage (as split qkv thirds are)
torch.save(state, os.path.join(root, "Tests/NNTests/Fixtures/torch_state.pth"))
save_file({k: v.float().contiguous() for k, v in state.items()}, os.path.join(root, "Tests/NNTests/Fixtures/torch_state.safetensors"))
torch.save({"model": {"w": torch.ones(2)}, "epoch": 3}, os.path.join(root, "Tests/NNTests/Fixtures/torch_wrapped.pth"))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


torch.save({"w": torch.ones(1), "evil": Evil()}, os.path.join(root, "Tests/NNTests/Fixtures/malicious.pth"))
