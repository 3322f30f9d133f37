#!/usr/bin/env python3
"""PETL_AST parity fixtures: a tiny random HF ASTModel with (a) a Pfeiffer parallel bottleneck adapter at the FFN and
(b) LoRA on Wq and Wv, each with the reference's 'ALL' classification head, plus logits, loss and the gradients of
the tensors the reference trains.

Usage: PY=$(bash ../shared/tools/reference-venv.sh); $PY tools/make_peft_fixtures.py   (CI never runs this.)

Writes Tests/ModelsTests/Fixtures/peft_adapter.safetensors, peft_lora.safetensors, peft_conformer.safetensors and
peft_prefix.safetensors (in that order; the first two do not depend on the last two), then peft_prompt.safetensors
(deep prompt tuning; its prompts come from their own generator, seed PROMPT_SEED, so it changes none of the others),
then peft_dmoa.safetensors and peft_smoa.safetensors (Dense-MoA and Soft-MoA at their default place, Pfeiffer beside
the attention, reading LN1 h; their own generator, seed MOA_SEED). In src/MoA.py that output is added after the
attention AND again in the FFN sum (its moa_output variable is still set there); the fixtures follow it.
Each holds:
  - every ASTModel tensor under its Hugging Face checkpoint key (no `audio_spectrogram_transformer.` prefix),
    e.g. `embeddings.cls_token`, `encoder.layer.0.attention.attention.query.weight`, `layernorm.weight`;
  - the method tensors: `adapter.<i>.{down,up}.{weight,bias}` or `lora.<i>.{q,v}.{down,up}.weight`
    (down [r, hidden], up [hidden, r], PyTorch Linear layout, no LoRA bias);
    conformer: `conformer.<i>.pw1.{weight [2r, hidden, 1], bias [2r]}`, `conformer.<i>.dw.{weight [r, 1, 31], bias [r]}`,
    `conformer.<i>.bn.{weight,bias} [r]`, `conformer.<i>.pw2.{weight [hidden, r, 1], bias [hidden]}` (PyTorch Conv1d
    layout) plus `conformer.<i>.bn.{running_mean,running_var}` [r] AFTER the one train-mode forward (they start at
    0 and 1; update with momentum 0.1 and the unbiased batch variance; not trainable, no grad);
    prefix: `prefix.<i>.{key,value}` [1, P, hidden];
    mixtures: `dmoa.<i>.router.{weight [E, hidden], bias [E]}`, `smoa.<i>.slot_params` [hidden, E, S] and
    `{dmoa,smoa}.<i>.experts.<e>.{down,up}.{weight,bias}` (bottleneck adapters, N(0, 0.1^2));
    prompt: `prompt.<i>` [1, N, hidden], the prompts in the N slots fed to layer i (prompt.0 = the reference's
    prompt_embeddings, prompt.<i> for i >= 1 = deep_prompt_embeddings[i - 1]);
  - `head.weight` [C, hidden], `head.bias` [C]; `input` [2, 48, 32]; `targets` [2] (float32 class ids);
    `logits` [2, C]; `loss` [1] (mean cross-entropy);
  - `grad.<key>` for every trainable key: adapter: adapter.*, encoder.layer.<i>.layernorm_after.*, layernorm.*, head.*;
    LoRA: lora.*, layernorm.*, head.*; mixtures: {dmoa,smoa}.*, encoder.layer.<i>.layernorm_before.*, layernorm.*,
    head.*; conformer: conformer.* (not the running stats), encoder.layer.<i>.layernorm_after.*,
    layernorm.*, head.*; prefix: prefix.*, layernorm.*, head.*; prompt: prompt.*, layernorm.*, head.*.
The configuration is in the safetensors metadata (strings).

The method math is re-implemented here (the reference repository is not imported); it follows
src/AST_adapters.py (ASTLayer_adapter.forward, Bottleneck_adapter, Conformer_adapter), src/AST_LoRA.py
(ASTSelfAttention_LoRA) and src/AST_prompt_tuning.py (ASTSelfAttention_PT; PromptAST), all written against transformers
4.28.
Conformer adapter (Pfeiffer, parallel, at the FFN: out = h1 + F(LN2 h1) + Ad(LN2 h1)), Ad(u) on u [B, N, D]:
transpose to [B, D, N]; pw1 Conv1d(D, 2r, 1); GLU over channels (first half * sigmoid(second half)); depthwise
Conv1d(r, r, 31, groups r, padding 'same' = 15 each side); BatchNorm1d(r) in TRAIN mode (batch mean/biased variance
over B and N, eps 1e-5, momentum 0.1); SiLU; pw2 Conv1d(r, D, 1); transpose back. All convs have biases (PyTorch
default, the reference does not pass bias=False). The reference's LayerNorm (`out = self.lnorm(x); out =
x.transpose(...)`) is computed and discarded, so no LayerNorm is applied here and its (unused) parameters are not stored.
Prefix tuning: per layer P learned key and P learned value tokens [1, P, D], inserted AFTER the key/value projections
(directly in the projected K/V space, no projection or bias applied to them) right after the CLS position:
K = [k_cls, key_tokens, k_1..]; the D-wide tokens are split into heads like any projected key (head h sees columns
h*dh..(h+1)*dh); queries and the output length are unchanged.
Deep prompt tuning (PromptAST, DEEP=True, the reference default; FINAL_OUTPUT 'ALL'; prompt dropout 0; prompt_proj is
an identity): e = HF embeddings = [cls, dist, patches] + position_embeddings; the distillation token (with its
position embedding) is DROPPED and the N prompts take its place with NO position embedding:
h0 = [e_cls, prompt.0, e_patches] (length 1 + N + P). Before each layer i >= 1 the N prompt slots (rows 1..N) of the
previous layer's output are overwritten by prompt.<i>; layer 0 sees prompt.0. So L layers have L prompt tensors.
The final layernorm is applied to all 1 + N + P tokens and the head takes their mean (cls and prompts included).
Shallow (DEEP=False, not in the fixture) = prompt.0 only, the slots then flow through the encoder unchanged.
Init U(-a, a) as the prefix (same a), prompt.0 drawn first, then all deep prompts as one [L-1, N, hidden] tensor. Deliberate departures from the reference, to make the fixture informative:
  - adapter and LoRA weights are N(0, 0.1^2) instead of the reference's zero init (adapter: all weights and biases 0;
    LoRA: down 0, up kaiming_uniform), so outputs and gradients depend on them;
  - conformer conv weights and biases are N(0, 0.1^2), BN weight 1 + N(0, 0.1^2), BN bias N(0, 0.1^2) (the reference
    uses PyTorch's default conv init and BN weight 1, bias 0); prefix tokens use the reference's own init,
    U(-a, a) with a = sqrt(6 / (3 * 16 * 16 + hidden)); both drawn from their own generator (seed CONF_SEED);
  - (prompt tuning uses the reference's own init, drawn from its own generator, seed PROMPT_SEED);
  - the base model is random (not the AudioSet checkpoint) and its position embeddings are random too; in the
    reference they do not match the checkpoint for max_length != 1024, so they are re-initialised to zeros and frozen.
The functional forward is checked against transformers' own ASTModel (eager attention, dropout 0; for prompts: its
embeddings, layers and layernorm called one by one as PromptAST.forward_deep_prompt does): with LoRA merged
into Wq/Wv, with the adapter (bottleneck: functional; conformer: torch.nn Conv1d/BatchNorm1d modules in train mode)
added by a forward hook on each layer's MLP, and with the prefix inserted by a registered attention function on the
per-head K/V; gradients (and the BN running stats) are checked the same way.
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
CONF_SEED = 1  # generator for the conformer and prefix tensors (drawn after the first two fixtures are written)
KERNEL = 31  # reference default (--kernel_size 31)
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # torch.nn.BatchNorm1d defaults, as in the reference
PREFIX = 3  # P tokens per layer for keys and for values (reference: --prompt_len_pt 24 -> 12 + 12)
PREFIX_BOUND = (6.0 / (3 * PATCH * PATCH + HIDDEN)) ** 0.5  # ASTSelfAttention_PT: uniform(-val, val)
PROMPT_SEED = 2  # generator for the deep prompts (drawn after the first four fixtures are written)
PROMPTS = 3  # N prompt tokens per layer (reference: --prompt_len_prompt 25)
PROMPT_BOUND = PREFIX_BOUND  # PromptAST: the same uniform(-val, val) bound
MOA_SEED = 3  # generator for the mixtures of adapters (drawn after the first five fixtures are written)
EXPERTS, SLOTS = 3, 2  # reference defaults: --num_adapters 7, --num_slots 1 (more slots exercise the softmaxes)

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


def conformer_adapter(W, i, u, stats):
    """Conformer_adapter.forward without its discarded LayerNorm; BatchNorm in train mode (batch statistics)."""
    P = f"conformer.{i}."
    t = F.conv1d(u.transpose(1, 2), W[P + "pw1.weight"], W[P + "pw1.bias"])  # [B, 2r, N]
    t = t[:, :r] * torch.sigmoid(t[:, r:])  # GLU(dim=1)
    t = F.conv1d(t, W[P + "dw.weight"], W[P + "dw.bias"], padding=KERNEL // 2, groups=r)  # 'same'
    mean = t.mean(dim=(0, 2))
    var = ((t - mean[None, :, None]) ** 2).mean(dim=(0, 2))  # biased, used to normalise
    t = (t - mean[None, :, None]) / torch.sqrt(var[None, :, None] + BN_EPS) * W[P + "bn.weight"][None, :, None] \
        + W[P + "bn.bias"][None, :, None]
    n = t.shape[0] * t.shape[2]
    stats[P + "bn.running_mean"] = (BN_MOMENTUM * mean).detach()  # from running_mean = 0
    stats[P + "bn.running_var"] = ((1 - BN_MOMENTUM) * 1.0 + BN_MOMENTUM * var * n / (n - 1)).detach()  # from 1
    t = F.conv1d(F.silu(t), W[P + "pw2.weight"], W[P + "pw2.bias"])  # [B, D, N]
    return t.transpose(1, 2)


def expert(W, P, u):
    """Bottleneck_adapter: up(GELU(down u)), both with biases."""
    return F.linear(F.gelu(lin(W, P + "down", u)), W[P + "up.weight"], W[P + "up.bias"])


def dense_moa(W, i, u):
    """MoA + Router (src/MoA.py): softmax(router u) per token weighs every expert's output."""
    probs = torch.softmax(lin(W, f"dmoa.{i}.router", u), dim=-1)  # [B, N, E]
    outs = torch.stack([expert(W, f"dmoa.{i}.experts.{e}.", u) for e in range(EXPERTS)], dim=-1)  # [B, N, D, E]
    return (probs[:, :, None, :] * outs).sum(-1)


def soft_moa(W, i, u):
    """SoftMoA (src/MoA.py, NORMALIZE False, the reference default): dispatch = softmax of u·Phi over the tokens,
    combine = softmax over all E*P slots; slots = dispatch^T u; out = combine . expert(slots)."""
    b, m, _ = u.shape
    logits = torch.einsum("bmd,dnp->bmnp", u, W[f"smoa.{i}.slot_params"])
    dispatch = torch.softmax(logits, dim=1)
    combine = torch.softmax(logits.reshape(b, m, -1), dim=2).reshape(b, m, EXPERTS, SLOTS)
    slots = torch.einsum("bmd,bmnp->bnpd", u, dispatch)
    ys = torch.stack([expert(W, f"smoa.{i}.experts.{e}.", slots[:, e]) for e in range(EXPERTS)], dim=1)
    return torch.einsum("bnpd,bmnp->bmd", ys, combine)


MOA = {"dmoa": dense_moa, "smoa": soft_moa}


def forward(W, method, stats=None):
    """Functional AST forward on HF-keyed tensors W plus the method's tensors; returns logits [B, C]."""
    B = x.shape[0]
    # Patch embedding: HF transposes [B, T, F] to [B, 1, F, T], so patches are frequency-major.
    p = F.conv2d(x.unsqueeze(1).transpose(2, 3), W["embeddings.patch_embeddings.projection.weight"],
                 W["embeddings.patch_embeddings.projection.bias"], stride=(STRIDE, STRIDE))
    p = p.flatten(2).transpose(1, 2)
    h = torch.cat([W["embeddings.cls_token"].expand(B, -1, -1), W["embeddings.distillation_token"].expand(B, -1, -1),
                   p], dim=1) + W["embeddings.position_embeddings"]
    if method == "prompt":  # PromptAST.incorporate_prompt: the distillation token is dropped, no position embedding
        h = torch.cat([h[:, :1], W["prompt.0"].expand(B, -1, -1), h[:, 2:]], dim=1)
    dh = HIDDEN // HEADS
    for i in range(LAYERS):
        L = f"encoder.layer.{i}"
        if method == "prompt" and i > 0:  # forward_deep_prompt: the N prompt slots are overwritten before layer i
            h = torch.cat([h[:, :1], W[f"prompt.{i}"].expand(B, -1, -1), h[:, 1 + PROMPTS:]], dim=1)
        a = ln(W, L + ".layernorm_before", h)
        q = lin(W, L + ".attention.attention.query", a)
        k = lin(W, L + ".attention.attention.key", a)
        v = lin(W, L + ".attention.attention.value", a)
        if method == "lora":  # ASTSelfAttention_LoRA: q += s * up(down(a)), v += s * up(down(a)), a = LN1(h)
            q = q + SCALE * F.linear(F.linear(a, W[f"lora.{i}.q.down.weight"]), W[f"lora.{i}.q.up.weight"])
            v = v + SCALE * F.linear(F.linear(a, W[f"lora.{i}.v.down.weight"]), W[f"lora.{i}.v.up.weight"])
        if method == "prefix":  # ASTSelfAttention_PT: after the projections, right after the CLS position
            k = torch.cat([k[:, :1], W[f"prefix.{i}.key"].expand(B, -1, -1), k[:, 1:]], dim=1)
            v = torch.cat([v[:, :1], W[f"prefix.{i}.value"].expand(B, -1, -1), v[:, 1:]], dim=1)
        q, k, v = (t.view(B, -1, HEADS, dh).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(B, -1, HIDDEN)
        h = h + lin(W, L + ".attention.output.dense", ctx)  # h1 = h + A(LN1 h)
        if method in MOA:  # ASTLayer_(Soft)MoA, Pfeiffer at 'MHSA' (the default): h1 = h + A(LN1 h) + M(LN1 h) ...
            moa = MOA[method](W, i, a)
            h = h + moa
        u = ln(W, L + ".layernorm_after", h)  # LN2 h1
        ffn = lin(W, L + ".output.dense", F.gelu(lin(W, L + ".intermediate.dense", u)))
        if method == "adapter":  # Pfeiffer, parallel, apply_residual False: h1 + F(LN2 h1) + Ad(LN2 h1)
            ad = F.linear(F.gelu(lin(W, f"adapter.{i}.down", u)), W[f"adapter.{i}.up.weight"], W[f"adapter.{i}.up.bias"])
            h = h + ffn + ad
        elif method == "conformer":  # same placement, Conformer_adapter as Ad
            h = h + ffn + conformer_adapter(W, i, u, stats)
        elif method in MOA:  # ... and the same M(LN1 h) again: moa_output is still set when the FFN sum reads it
            h = h + ffn + moa
        else:
            h = h + ffn
    h = ln(W, "layernorm", h)
    return F.linear(h.mean(dim=1), W["head.weight"], W["head.bias"])  # final_output 'ALL': mean over all tokens


def prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """eager_attention_forward with the layer's prefix spliced into the per-head K/V [B, H, N, dh] after position 0."""
    assert attention_mask is None or not attention_mask.is_floating_point() and attention_mask.all(), attention_mask
    B, H, _, dh = key.shape
    pk, pv = (t.view(1, -1, H, dh).transpose(1, 2).expand(B, -1, -1, -1) for t in module.prefix_kv)
    key = torch.cat([key[:, :, :1], pk, key[:, :, 1:]], dim=2)
    value = torch.cat([value[:, :, :1], pv, value[:, :, 1:]], dim=2)
    w = torch.softmax(torch.matmul(query, key.transpose(2, 3)) * scaling, dim=-1)
    return torch.matmul(w, value).transpose(1, 2).contiguous(), w


def hf_check(method, W, logits, grads, stats=None):
    """Same numbers from transformers' ASTModel: LoRA merged into Wq/Wv (exact: no LoRA bias), the adapter added
    to each layer's MLP output by a forward hook (the MLP input is LN2 h1, its output F(LN2 h1)), or the prefix
    spliced in by a registered attention function."""
    m = ASTModel(config).eval()
    m.config._attn_implementation = "eager"
    m.load_state_dict(model.state_dict())
    if method == "prefix":
        from transformers import AttentionInterface
        AttentionInterface.register("peft_prefix_eager", prefix_attention)
        m.config._attn_implementation = "peft_prefix_eager"
    hooks, params, mods = [], {}, {}
    for i, layer in enumerate(m.layers):
        if method == "prefix":
            ps = {k: W[k].detach().clone().requires_grad_(True) for k in (f"prefix.{i}.key", f"prefix.{i}.value")}
            params.update(ps)
            layer.attention.prefix_kv = (ps[f"prefix.{i}.key"], ps[f"prefix.{i}.value"])
        elif method == "conformer":
            P = f"conformer.{i}."
            pw1 = torch.nn.Conv1d(HIDDEN, 2 * r, 1)
            dw = torch.nn.Conv1d(r, r, KERNEL, groups=r, padding="same")
            bn = torch.nn.BatchNorm1d(r, eps=BN_EPS, momentum=BN_MOMENTUM).train()
            pw2 = torch.nn.Conv1d(r, HIDDEN, 1)
            seq = torch.nn.Sequential(pw1, torch.nn.GLU(dim=1), dw, bn, torch.nn.SiLU(), pw2)
            with torch.no_grad():
                for name, mod in (("pw1", pw1), ("dw", dw), ("bn", bn), ("pw2", pw2)):
                    mod.weight.copy_(W[P + name + ".weight"])
                    mod.bias.copy_(W[P + name + ".bias"])
                    params[P + name + ".weight"], params[P + name + ".bias"] = mod.weight, mod.bias
            mods[i] = bn

            def hook(mod, inp, out, seq=seq):
                return out + seq(inp[0].transpose(1, 2)).transpose(1, 2)
            hooks.append(layer.mlp.register_forward_hook(hook))
        elif method == "prompt":  # prompts are spliced in between the layers below
            continue
        elif method in MOA:  # the mixture of LN1 h joins the attention output and, once more, the MLP output
            ps = {k: W[k].detach().clone().requires_grad_(True) for k in W if k.startswith(f"{method}.{i}.")}
            params.update(ps)
            saved = {}

            def attn_hook(mod, inp, out, i=i, ps=ps, saved=saved):
                saved["m"] = MOA[method](ps, i, inp[0])
                return (out[0] + saved["m"],) + tuple(out[1:])

            def mlp_hook(mod, inp, out, saved=saved):
                return out + saved["m"]
            hooks.append(layer.attention.register_forward_hook(attn_hook))
            hooks.append(layer.mlp.register_forward_hook(mlp_hook))
        elif method == "lora":
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
    if method == "prompt":  # PromptAST.incorporate_prompt + forward_deep_prompt on transformers' modules
        params = {k: W[k].detach().clone().requires_grad_(True) for k in W if k.startswith("prompt.")}
        e = m.embeddings(x)
        B = e.shape[0]
        h = torch.cat((e[:, :1, :], params["prompt.0"].expand(B, -1, -1), e[:, 2:, :]), dim=1)
        for i, layer in enumerate(m.layers):
            if i > 0:
                h = torch.cat((h[:, :1, :], params[f"prompt.{i}"].expand(B, -1, -1), h[:, (1 + PROMPTS):, :]), dim=1)
            h = layer(h)
        out = F.linear(m.layernorm(h).mean(dim=1), hw, hb)
        assert m.embeddings.distillation_token.grad is None
    else:
        out = F.linear(m(x).last_hidden_state.mean(dim=1), hw, hb)
    torch.testing.assert_close(out, logits, rtol=1e-5, atol=1e-5)
    F.cross_entropy(out, targets).backward()
    torch.testing.assert_close(hw.grad, grads["head.weight"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(m.layernorm.weight.grad, grads["layernorm.weight"], rtol=1e-4, atol=1e-6)
    if method == "prompt":  # the dropped distillation token (and its position embedding row) must not matter
        assert m.embeddings.distillation_token.grad.abs().max() == 0
        assert m.embeddings.position_embeddings.grad[:, 1].abs().max() == 0
    for k, p in params.items():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-4, atol=1e-6)
    for i, bn in mods.items():
        torch.testing.assert_close(bn.running_mean, stats[f"conformer.{i}.bn.running_mean"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, stats[f"conformer.{i}.bn.running_var"], rtol=1e-5, atol=1e-6)
    for i, layer in enumerate(m.layers):
        if method in MOA:
            torch.testing.assert_close(layer.layernorm_before.bias.grad, grads[f"encoder.layer.{i}.layernorm_before.bias"],
                                       rtol=1e-4, atol=1e-6)
        if method in ("adapter", "conformer"):
            torch.testing.assert_close(layer.layernorm_after.bias.grad, grads[f"encoder.layer.{i}.layernorm_after.bias"],
                                       rtol=1e-4, atol=1e-6)
    for hk in hooks:
        hk.remove()


def build(method, extra):
    W = {k: v.clone() for k, v in {**base, **extra, **head}.items()}
    if method in ("adapter", "conformer"):  # AST_adapter: adapters + every LN2 + final layernorm + head
        trainable = [k for k in W if k.startswith(method + ".") or ".layernorm_after." in k]
    elif method in MOA:  # AST_(Soft)MoA at 'MHSA': the mixtures + every LN1 + final layernorm + head
        trainable = [k for k in W if k.startswith(method + ".") or ".layernorm_before." in k]
    else:  # AST_LoRA: lora_{down,up}_{q,v}; AST_Prefix_tuning: key/value tokens; + final layernorm + head
        trainable = [k for k in W if k.startswith(method + ".")]
    trainable += ["layernorm.weight", "layernorm.bias", "head.weight", "head.bias"]
    for k in trainable:
        W[k].requires_grad_(True)
    stats = {}
    logits = forward(W, method, stats)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    grads = {k: W[k].grad.detach().clone() for k in trainable}
    assert all(g.abs().max() > 0 for g in grads.values()), [k for k, g in grads.items() if g.abs().max() == 0]
    hf_check(method, {k: v.detach() for k, v in W.items()}, logits.detach(), grads, stats)

    out = {k: v.detach().contiguous() for k, v in W.items()}
    out.update({k: v.contiguous() for k, v in stats.items()})
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
    elif method == "conformer":
        meta.update({"adapter_type": "Pfeiffer", "adapter_conf": "parallel", "adapter_block": "conformer",
                     "apply_residual": "False", "kernel_size": str(KERNEL), "padding": "same (15 each side)",
                     "conv_bias": "True", "glu": "first half * sigmoid(second half), channel dim",
                     "adapter_activation": "silu", "adapter_layernorm": "none (reference computes and discards it)",
                     "bn_mode": "train (batch mean, biased variance over B and N)", "bn_eps": repr(BN_EPS),
                     "bn_momentum": repr(BN_MOMENTUM), "bn_running_init": "mean 0, var 1",
                     "bn_running_update": "(1 - momentum) * old + momentum * batch (unbiased variance)",
                     "init": "conv weights/biases N(0, 0.1^2), bn weight 1 + N(0, 0.1^2), bn bias N(0, 0.1^2)"})
    elif method == "prefix":
        meta.update({"prefix_tokens": str(PREFIX), "prefix_position": "after CLS (index 1) in K and V",
                     "prefix_space": "after the key/value projections (no projection, no bias)",
                     "prefix_heads": "D-wide tokens split into heads like projected keys",
                     "init": f"uniform(-a, a), a = sqrt(6 / (3*16*16 + hidden)) = {PREFIX_BOUND!r}"})
    elif method == "prompt":
        meta.update({"prompt_tokens": str(PROMPTS), "prompt_deep": "True",
                     "prompt_sequence": "[cls, prompt.<i> (N), patches]: HF embeddings (position embeddings added to "
                                        "[cls, dist, patches]), then the distillation token row is dropped and the N "
                                        "prompts inserted at rows 1..N with no position embedding",
                     "prompt_layers": "prompt.0 is fed to layer 0; before each layer i >= 1 rows 1..N of the hidden "
                                      "states are overwritten by prompt.<i> (L layers -> L prompt tensors)",
                     "prompt_shallow": "DEEP=False would use prompt.0 only (rows 1..N flow through the encoder)",
                     "prompt_pooling": "final layernorm on all 1 + N + P tokens, head on their mean",
                     "prompt_dropout": "0", "prompt_proj": "identity", "prompt_seed": str(PROMPT_SEED),
                     "init": f"uniform(-a, a), a = sqrt(6 / (3*16*16 + hidden)) = {PROMPT_BOUND!r}; prompt.0 "
                             f"[1, N, hidden] drawn first, then prompt.1..L-1 as one [L-1, N, hidden] tensor"})
    elif method in MOA:
        meta.update({"adapter_type": "Pfeiffer", "location": "MHSA (reads LN1 h)", "adapter_module": "bottleneck",
                     "experts": str(EXPERTS), "moa_output": "added after the attention AND again at the FFN sum "
                     "(the reference's moa_output variable is still set there)",
                     "init": "experts N(0, 0.1^2); dense router N(0, 0.1^2); soft slot_params [D, E, P] xavier normal"})
        if method == "smoa":
            meta.update({"slots": str(SLOTS), "normalize": "False", "dispatch": "softmax over tokens",
                         "combine": "softmax over all E*P slots, slot index e*P + p"})
    else:
        meta.update({"lora_alpha": str(ALPHA), "lora_scale": repr(SCALE), "lora_targets": "query,value"})
    path = os.path.join(fix, f"peft_{method}.safetensors")
    save_file(out, path, metadata=meta)
    print(f"{method}: loss {loss.item():.6f}  max|logit| {logits.abs().max().item():.6f}  "
          f"logits {logits.detach().tolist()}  {os.path.getsize(path)} bytes")
    return out


build("adapter", adapter)
build("lora", lora)

g = torch.Generator().manual_seed(CONF_SEED)


def randn(*shape):
    return torch.randn(*shape, generator=g)


conformer = {}
for i in range(LAYERS):
    P = f"conformer.{i}."
    conformer[P + "pw1.weight"] = METHOD_STD * randn(2 * r, HIDDEN, 1)
    conformer[P + "pw1.bias"] = METHOD_STD * randn(2 * r)
    conformer[P + "dw.weight"] = METHOD_STD * randn(r, 1, KERNEL)
    conformer[P + "dw.bias"] = METHOD_STD * randn(r)
    conformer[P + "bn.weight"] = 1.0 + METHOD_STD * randn(r)
    conformer[P + "bn.bias"] = METHOD_STD * randn(r)
    conformer[P + "pw2.weight"] = METHOD_STD * randn(HIDDEN, r, 1)
    conformer[P + "pw2.bias"] = METHOD_STD * randn(HIDDEN)
prefix = {}
for i in range(LAYERS):
    for kv in ("key", "value"):
        prefix[f"prefix.{i}.{kv}"] = (2 * torch.rand(1, PREFIX, HIDDEN, generator=g) - 1) * PREFIX_BOUND
build("conformer", conformer)
out = build("prefix", prefix)
with torch.no_grad():  # how much the prefix moves the logits (sanity: it must matter)
    bare = forward({k: v for k, v in out.items()}, "none")
print(f"prefix: max|logits - logits without prefix| {(out['logits'] - bare).abs().max().item():.6f}")

gp = torch.Generator().manual_seed(PROMPT_SEED)
prompt = {"prompt.0": (2 * torch.rand(1, PROMPTS, HIDDEN, generator=gp) - 1) * PROMPT_BOUND}  # prompt_embeddings
deep = (2 * torch.rand(LAYERS - 1, PROMPTS, HIDDEN, generator=gp) - 1) * PROMPT_BOUND  # deep_prompt_embeddings
for i in range(1, LAYERS):
    prompt[f"prompt.{i}"] = deep[i - 1:i].clone()
out = build("prompt", prompt)
with torch.no_grad():  # how much the deep prompts move the logits (sanity: they must matter)
    shallow = {**out, **{f"prompt.{i}": out[f"prompt.{i}"] * 0 for i in range(1, LAYERS)}}
print(f"prompt: max|logits - logits with zero deep prompts| "
      f"{(out['logits'] - forward(shallow, 'prompt')).abs().max().item():.6f}")

gm = torch.Generator().manual_seed(MOA_SEED)


def expert_tensors(P):
    return {P + "down.weight": METHOD_STD * torch.randn(r, HIDDEN, generator=gm),
            P + "down.bias": METHOD_STD * torch.randn(r, generator=gm),
            P + "up.weight": METHOD_STD * torch.randn(HIDDEN, r, generator=gm),
            P + "up.bias": METHOD_STD * torch.randn(HIDDEN, generator=gm)}


dmoa, smoa = {}, {}
for i in range(LAYERS):
    dmoa[f"dmoa.{i}.router.weight"] = METHOD_STD * torch.randn(EXPERTS, HIDDEN, generator=gm)
    dmoa[f"dmoa.{i}.router.bias"] = METHOD_STD * torch.randn(EXPERTS, generator=gm)
    for e in range(EXPERTS):
        dmoa.update(expert_tensors(f"dmoa.{i}.experts.{e}."))
for i in range(LAYERS):
    phi = torch.empty(HIDDEN, EXPERTS, SLOTS)
    torch.nn.init.xavier_normal_(phi, generator=gm)
    smoa[f"smoa.{i}.slot_params"] = phi
    for e in range(EXPERTS):
        smoa.update(expert_tensors(f"smoa.{i}.experts.{e}."))
build("dmoa", dmoa)
build("smoa", smoa)
