#!/usr/bin/env python3
"""PETL_AST parity fixtures: a tiny random HF ASTModel with (a) a Pfeiffer parallel bottleneck adapter at the FFN and
(b) LoRA on Wq and Wv, each with the reference's 'ALL' classification head, plus logits, loss and the gradients of
the tensors the reference trains.

Usage: PY=$(bash ../shared/tools/reference-venv.sh); $PY tools/make_peft_fixtures.py   (CI never runs this.)

Writes Tests/ModelsTests/Fixtures/peft_adapter.safetensors and peft_lora.safetensors. Each holds:
  - every ASTModel tensor under its Hugging Face checkpoint key (no `audio_spectrogram_transformer.` prefix),
    e.g. `embeddings.cls_token`, `encoder.layer.0.attention.attention.query.weight`, `layernorm.weight`;
  - the method tensors: `adapter.<i>.{down,up}.{weight,bias}` or `lora.<i>.{q,v}.{down,up}.weight`
    (down [r, hidden], up [hidden, r], PyTorch Linear layout, no LoRA bias);
  - `head.weight` [C, hidden], `head.bias` [C]; `input` [2, 48, 32]; `targets` [2] (float32 class ids);
    `logits` [2, C]; `loss` [1] (mean cross-entropy);
  - `grad.<key>` for every trainable key: adapter: adapter.*, encoder.layer.<i>.layernorm_after.*, layernorm.*, head.*;
    LoRA: lora.*, layernorm.*, head.*.
The configuration is in the safetensors metadata (strings).

The method math is re-implemented here (the reference repository is not imported); it follows
src/AST_adapters.py (ASTLayer_adapter.forward, Bottleneck_adapter) and src/AST_LoRA.py (ASTSelfAttention_LoRA),
both written against transformers 4.28. Deliberate departures from the reference, to make the fixture informative:
  - adapter and LoRA weights are N(0, 0.1^2) instead of the reference's zero init (adapter: all weights and biases 0;
    LoRA: down 0, up kaiming_uniform), so outputs and gradients depend on them;
  - the base model is random (not the AudioSet checkpoint) and its position embeddings are random too; in the
    reference they do not match the checkpoint for max_length != 1024, so they are re-initialised to zeros and frozen.
The functional forward is checked against transformers' own ASTModel (eager attention, dropout 0): with LoRA merged
into Wq/Wv, and with the adapter added by a forward hook on each layer's MLP; gradients are checked the same way.
"""
import json
import os
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import ASTConfig, ASTModel

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fix = os.path.join(root, "Tests/ModelsTests/Fixtures")
os.makedirs(fix, exist_ok=True)

SEED = 0
HIDDEN, LAYERS, HEADS, INTER = 32, 2, 4, 64
MELS, LENGTH, PATCH, STRIDE = 32, 48, 16, 10
EPS = 1e-12  # ASTConfig default, which is also what MIT/ast-finetuned-audioset-10-10-0.4593 uses
NUM_CLASSES = 3
RR = 8  # reduction rate: inner dim = round(hidden / RR) for both methods
ALPHA = 4  # LoRA: scale = alpha / RR (the reference's "rank" argument is really a reduction rate)
TARGETS = [0, 2]
METHOD_STD = 0.1

torch.manual_seed(SEED)

config = ASTConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=INTER,
                   num_mel_bins=MELS, max_length=LENGTH, patch_size=PATCH, frequency_stride=STRIDE,
                   time_stride=STRIDE, layer_norm_eps=EPS, hidden_act="gelu", hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, attn_implementation="eager")
model = ASTModel(config).eval()
model.config._attn_implementation = "eager"

# Random base weights with O(1) activations (HF's 0.02 init makes attention near-uniform at this width).
with torch.no_grad():
    for name, p in model.named_parameters():
        if "layernorm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        elif p.dim() >= 2 and "token" not in name and "position" not in name:
            fan_in = p[0].numel()
            p.copy_(torch.randn_like(p) / fan_in ** 0.5)
        else:  # biases, layernorm biases, cls/dist tokens, position embeddings
            p.copy_(0.2 * torch.randn_like(p))

# Base tensors under the HF checkpoint keys: let transformers write them (it maps its module names back).
with tempfile.TemporaryDirectory() as tmp:
    model.save_pretrained(tmp, safe_serialization=True)
    base = load_file(os.path.join(tmp, "model.safetensors"))
assert "encoder.layer.0.attention.attention.query.weight" in base and "embeddings.cls_token" in base, sorted(base)
base = {k: v.float().contiguous() for k, v in base.items()}

r = round(HIDDEN / RR)
x = torch.randn(2, LENGTH, MELS)
targets = torch.tensor(TARGETS)
head = {"head.weight": torch.randn(NUM_CLASSES, HIDDEN) / HIDDEN ** 0.5, "head.bias": 0.2 * torch.randn(NUM_CLASSES)}
adapter = {}
for i in range(LAYERS):
    adapter[f"adapter.{i}.down.weight"] = METHOD_STD * torch.randn(r, HIDDEN)
    adapter[f"adapter.{i}.down.bias"] = METHOD_STD * torch.randn(r)
    adapter[f"adapter.{i}.up.weight"] = METHOD_STD * torch.randn(HIDDEN, r)
    adapter[f"adapter.{i}.up.bias"] = METHOD_STD * torch.randn(HIDDEN)
lora = {}
for i in range(LAYERS):
    for m in ("q", "v"):
        lora[f"lora.{i}.{m}.down.weight"] = METHOD_STD * torch.randn(r, HIDDEN)
        lora[f"lora.{i}.{m}.up.weight"] = METHOD_STD * torch.randn(HIDDEN, r)
SCALE = ALPHA / RR


def ln(W, prefix, h):
    return F.layer_norm(h, (HIDDEN,), W[prefix + ".weight"], W[prefix + ".bias"], eps=EPS)


def lin(W, prefix, h):
    return F.linear(h, W[prefix + ".weight"], W.get(prefix + ".bias"))


def forward(W, method):
    """Functional AST forward on HF-keyed tensors W plus the method's tensors; returns logits [B, C]."""
    B = x.shape[0]
    # Patch embedding: HF transposes [B, T, F] to [B, 1, F, T], so patches are frequency-major.
    p = F.conv2d(x.unsqueeze(1).transpose(2, 3), W["embeddings.patch_embeddings.projection.weight"],
                 W["embeddings.patch_embeddings.projection.bias"], stride=(STRIDE, STRIDE))
    p = p.flatten(2).transpose(1, 2)
    h = torch.cat([W["embeddings.cls_token"].expand(B, -1, -1), W["embeddings.distillation_token"].expand(B, -1, -1),
                   p], dim=1) + W["embeddings.position_embeddings"]
    dh = HIDDEN // HEADS
    for i in range(LAYERS):
        L = f"encoder.layer.{i}"
        a = ln(W, L + ".layernorm_before", h)
        q = lin(W, L + ".attention.attention.query", a)
        k = lin(W, L + ".attention.attention.key", a)
        v = lin(W, L + ".attention.attention.value", a)
        if method == "lora":  # ASTSelfAttention_LoRA: q += s * up(down(a)), v += s * up(down(a)), a = LN1(h)
            q = q + SCALE * F.linear(F.linear(a, W[f"lora.{i}.q.down.weight"]), W[f"lora.{i}.q.up.weight"])
            v = v + SCALE * F.linear(F.linear(a, W[f"lora.{i}.v.down.weight"]), W[f"lora.{i}.v.up.weight"])
        q, k, v = (t.view(B, -1, HEADS, dh).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(B, -1, HIDDEN)
        h = h + lin(W, L + ".attention.output.dense", ctx)  # h1 = h + A(LN1 h)
        u = ln(W, L + ".layernorm_after", h)  # LN2 h1
        ffn = lin(W, L + ".output.dense", F.gelu(lin(W, L + ".intermediate.dense", u)))
        if method == "adapter":  # Pfeiffer, parallel, apply_residual False: h1 + F(LN2 h1) + Ad(LN2 h1)
            ad = F.linear(F.gelu(lin(W, f"adapter.{i}.down", u)), W[f"adapter.{i}.up.weight"], W[f"adapter.{i}.up.bias"])
            h = h + ffn + ad
        else:
            h = h + ffn
    h = ln(W, "layernorm", h)
    return F.linear(h.mean(dim=1), W["head.weight"], W["head.bias"])  # final_output 'ALL': mean over all tokens


def hf_check(method, W, logits, grads):
    """Same numbers from transformers' ASTModel: LoRA merged into Wq/Wv (exact: no LoRA bias), or the adapter added
    to each layer's MLP output by a forward hook (the MLP input is LN2 h1, its output F(LN2 h1))."""
    m = ASTModel(config).eval()
    m.config._attn_implementation = "eager"
    m.load_state_dict(model.state_dict())
    hooks, params = [], {}
    for i, layer in enumerate(m.layers):
        if method == "lora":
            with torch.no_grad():
                for name, proj in (("q", layer.attention.q_proj), ("v", layer.attention.v_proj)):
                    proj.weight += SCALE * W[f"lora.{i}.{name}.up.weight"] @ W[f"lora.{i}.{name}.down.weight"]
        else:
            ps = {k: W[k].detach().clone().requires_grad_(True) for k in W if k.startswith(f"adapter.{i}.")}
            params.update(ps)

            def hook(mod, inp, out, i=i, ps=ps):
                d = F.gelu(F.linear(inp[0], ps[f"adapter.{i}.down.weight"], ps[f"adapter.{i}.down.bias"]))
                return out + F.linear(d, ps[f"adapter.{i}.up.weight"], ps[f"adapter.{i}.up.bias"])
            hooks.append(layer.mlp.register_forward_hook(hook))
    hw = W["head.weight"].detach().clone().requires_grad_(True)
    hb = W["head.bias"].detach().clone().requires_grad_(True)
    out = F.linear(m(x).last_hidden_state.mean(dim=1), hw, hb)
    torch.testing.assert_close(out, logits, rtol=1e-5, atol=1e-5)
    F.cross_entropy(out, targets).backward()
    torch.testing.assert_close(hw.grad, grads["head.weight"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(m.layernorm.weight.grad, grads["layernorm.weight"], rtol=1e-4, atol=1e-6)
    for k, p in params.items():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-4, atol=1e-6)
    for i, layer in enumerate(m.layers):
        if method == "adapter":
            torch.testing.assert_close(layer.layernorm_after.bias.grad, grads[f"encoder.layer.{i}.layernorm_after.bias"],
                                       rtol=1e-4, atol=1e-6)
    for hk in hooks:
        hk.remove()


def build(method, extra):
    W = {k: v.clone() for k, v in {**base, **extra, **head}.items()}
    if method == "adapter":  # AST_adapter: adapters + every LN2 + final layernorm + head
        trainable = [k for k in W if k.startswith("adapter.") or ".layernorm_after." in k]
    else:  # AST_LoRA: lora_{down,up}_{q,v} + final layernorm + head
        trainable = [k for k in W if k.startswith("lora.")]
    trainable += ["layernorm.weight", "layernorm.bias", "head.weight", "head.bias"]
    for k in trainable:
        W[k].requires_grad_(True)
    logits = forward(W, method)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    grads = {k: W[k].grad.detach().clone() for k in trainable}
    assert all(g.abs().max() > 0 for g in grads.values()), [k for k, g in grads.items() if g.abs().max() == 0]
    hf_check(method, {k: v.detach() for k, v in W.items()}, logits.detach(), grads)

    out = {k: v.detach().contiguous() for k, v in W.items()}
    out["input"] = x
    out["targets"] = targets.float()
    out["logits"] = logits.detach()
    out["loss"] = loss.detach().reshape(1)
    out.update({f"grad.{k}": g.contiguous() for k, g in grads.items()})
    meta = {"method": method, "hidden_size": str(HIDDEN), "num_hidden_layers": str(LAYERS),
            "num_attention_heads": str(HEADS), "intermediate_size": str(INTER), "num_mel_bins": str(MELS),
            "max_length": str(LENGTH), "patch_size": str(PATCH), "frequency_stride": str(STRIDE),
            "time_stride": str(STRIDE), "layer_norm_eps": repr(EPS), "hidden_act": "gelu (erf)",
            "num_classes": str(NUM_CLASSES), "reduction_rate": str(RR), "inner_dim": str(r), "pooling": "ALL",
            "targets": ",".join(map(str, TARGETS)), "loss": "cross_entropy mean", "seed": str(SEED),
            "trainable": json.dumps(trainable)}
    if method == "adapter":
        meta.update({"adapter_type": "Pfeiffer", "adapter_conf": "parallel", "adapter_block": "bottleneck",
                     "apply_residual": "False", "adapter_activation": "gelu (erf)"})
    else:
        meta.update({"lora_alpha": str(ALPHA), "lora_scale": repr(SCALE), "lora_targets": "query,value"})
    path = os.path.join(fix, f"peft_{method}.safetensors")
    save_file(out, path, metadata=meta)
    print(f"{method}: loss {loss.item():.6f}  max|logit| {logits.abs().max().item():.6f}  "
          f"logits {logits.detach().tolist()}  {os.path.getsize(path)} bytes")
    return out


build("adapter", adapter)
build("lora", lora)
