#!/usr/bin/env python3
"""Makes Tests/EngineTests/Fixtures/attention.json: PyTorch's scaled_dot_product_attention with a float
attn_mask (Earshot's `bias`) and a boolean key-padding attn_mask (Earshot's `keyLengths`), forward and
backward, for AttentionParityTests.

Usage: PY=$(bash ../shared/tools/reference-venv.sh); $PY tools/make_attention_fixtures.py
The loss is ½‖O‖², so the upstream gradient is O itself and need not be stored. Values are written with
6 significant digits (the tests compare at ~1e-5) to keep the file small; CI never runs this.
"""
import json
import os

import torch
import torch.nn.functional as F

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
g = torch.Generator().manual_seed(7)
B, H, NQ, NK, D, DV = 2, 2, 5, 6, 8, 4  # D != DV: the kernel handles both widths


def randn(*shape):
    return torch.randn(*shape, generator=g)


def t(x):
    # JSON has no infinities: -inf (a masked bias entry) is written as null.
    flat = x.detach().float().reshape(-1).tolist()
    return {"shape": list(x.shape), "data": [None if v == float("-inf") else float("%.6g" % v) for v in flat]}


def key_mask(lengths):
    # True where a key takes part, as scaled_dot_product_attention's boolean attn_mask; [B, 1, 1, Nk].
    return (torch.arange(NK)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


# Inputs rounded to what the fixture stores, so both sides start from the same numbers.
def rounded(x):
    return torch.tensor([float("%.6g" % v) for v in x.reshape(-1).tolist()]).reshape(x.shape)


q, k, v = rounded(randn(B, H, NQ, D)), rounded(randn(B, H, NK, D)), rounded(randn(B, H, NK, DV))
out = {"q": t(q), "k": t(k), "v": t(v)}
window_bias = rounded(randn(B, 1, NQ, NK))
window_bias[0, 0, 1, 2] = window_bias[0, 0, 3, 0] = window_bias[0, 0, 4, :] = float("-inf")
cases = {
    # Swin-style relative-position bias, shared by the batch; learned, so it gets a gradient.
    "bias": dict(bias=rounded(randn(H, NQ, NK)), lengths=None),
    # Right-padded keys, as padded BERT text.
    "mask": dict(bias=None, lengths=[6, 3]),
    # A per-item bias with -inf entries (a shifted-window mask; in item 0 row 4 masks every key), plus
    # padding that leaves item 1 no key at all. PyTorch >= 2.5 returns zeros for such rows (and zero
    # gradients), not NaN.
    "both": dict(bias=window_bias, lengths=[5, 0]),
}
for name, c in cases.items():
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    bias = c["bias"].clone().requires_grad_() if c["bias"] is not None else None
    mask = bias
    if c["lengths"] is not None:
        keep = key_mask(c["lengths"])
        mask = keep if bias is None else bias.masked_fill(~keep, float("-inf"))
    o = F.scaled_dot_product_attention(*leaves, attn_mask=mask)
    (0.5 * o.square().sum()).backward()
    assert torch.isfinite(o).all() and all(torch.isfinite(x.grad).all() for x in leaves)
    out[f"{name}.output"] = t(o)
    for part, x in zip("qkv", leaves):
        out[f"{name}.d{part}"] = t(x.grad)
    if bias is not None:
        out[f"{name}.bias"] = t(c["bias"])
        # -inf entries have gradient 0 in PyTorch's math path; finite everywhere.
        out[f"{name}.dbias"] = t(bias.grad)
    if c["lengths"] is not None:
        out[f"{name}.lengths"] = {"shape": [B], "data": [float(n) for n in c["lengths"]]}

path = os.path.join(root, "Tests/EngineTests/Fixtures/attention.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"), allow_nan=False)
print(path, os.path.getsize(path), "bytes", "torch", torch.__version__)
