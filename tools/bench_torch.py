#!/usr/bin/env python3
"""PyTorch side of `earshot bench`: the same workloads, the same JSON lines, for side-by-side ratios.

Usage: $(../shared/tools/reference-venv.sh) tools/bench_torch.py matmul --m 4096 --k 768 --n 3072
       $(../shared/tools/reference-venv.sh) tools/bench_torch.py encoder --dim 192 --depth 12 --heads 3 --tokens 1212 --batch 8 [--train]
       $(../shared/tools/reference-venv.sh) tools/bench_torch.py encoder --arch mamba --size tiny --tokens 2048 --batch 1 [--train]
       $(../shared/tools/reference-venv.sh) tools/bench_torch.py scan --batch 1 --length 2048 --din 384 --states 16 [--train]
       $(../shared/tools/reference-venv.sh) tools/bench_torch.py ssamba --onnx FILE --batch 1   (onnxruntime on `earshot bench ssamba --onnx FILE`)
       ... matmul|encoder|ast --precision bf16 (torch.autocast("cpu", dtype=torch.bfloat16)) or int8 (quantize_dynamic
       of the Linear layers, qint8), the twins of `earshot bench ... --precision`.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def median_time(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(iters, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reduced_precision(a, model):
    """`--precision`: the model to run and the context to run it in. bf16 is PyTorch's CPU autocast (linear
    layers and matmuls in bf16, fp32 accumulation); int8 is dynamic quantisation of the Linear layers (qint8
    weights per tensor, activations quantised per call), PyTorch's int8 inference recipe for transformers."""
    import contextlib
    if a.precision == "fp32":
        return model, contextlib.nullcontext
    if a.train:
        raise SystemExit("--precision applies to inference only (not --train)")
    if a.precision == "bf16":
        return model, lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    import warnings
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.ao.quantization's move to torchao
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8), contextlib.nullcontext


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Block(nn.Module):
    """timm's pre-LN ViT block (fused qkv, exact GELU, LayerNorm eps 1e-6), with PyTorch's fused SDPA."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(a.transpose(1, 2).reshape(B, N, C))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True):
    """Mamba's reference selective scan (mamba_ssm selective_scan_ref's formula and structure, written here
    in plain torch, real inputs only): u, delta, z [B, Din, L]; A [Din, N]; B, C [B, N, L]; D, delta_bias [Din].
    exp(delta*A) and delta*B*u are formed for every step up front, then a Python loop over L carries the
    [B, Din, N] state, as the reference does."""
    delta = delta + delta_bias[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    x = u.new_zeros((u.shape[0], A.shape[0], A.shape[1]))
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    ys = []
    for i in range(u.shape[2]):
        x = delta_a[:, :, i] * x + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)
    out = y + u * D[..., None]
    return out * F.silu(z)


class MambaV2Mixer(nn.Module):
    """Vim's bimamba-v2 mixer with if_divide_out, in plain torch (the CUDA-less mamba_ssm path drops the
    backward branch, see tools/make_ssamba_fixtures.py): both branches through selective_scan_ref, the
    backward one on explicit flips."""

    def __init__(self, dim, state=16, kernel=4, expand=2):
        super().__init__()
        self.inner, self.state, self.rank = expand * dim, state, -(-dim // 16)
        inner = self.inner
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        for suffix in ["", "_b"]:
            setattr(self, "conv1d" + suffix, nn.Conv1d(inner, inner, kernel, groups=inner, padding=kernel - 1))
            setattr(self, "x_proj" + suffix, nn.Linear(inner, self.rank + 2 * state, bias=False))
            dt = nn.Linear(self.rank, inner)
            with torch.no_grad():
                dt.bias.copy_(torch.log(torch.expm1(torch.empty(inner).uniform_(1e-3, 0.1))))
            setattr(self, "dt_proj" + suffix, dt)
            setattr(self, "A" + suffix + "_log", nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1)))
            setattr(self, "D" + suffix, nn.Parameter(torch.ones(inner)))
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def branch(self, x, z, suffix):
        conv, x_proj, dt_proj = (getattr(self, n + suffix) for n in ["conv1d", "x_proj", "dt_proj"])
        a_log, d = getattr(self, "A" + suffix + "_log"), getattr(self, "D" + suffix)
        length = x.shape[1]
        xc = F.silu(conv(x.transpose(1, 2))[..., :length])                       # [B, inner, L]
        dt, b, c = torch.split(x_proj(xc.transpose(1, 2)), [self.rank, self.state, self.state], dim=-1)
        delta = (dt @ dt_proj.weight.t()).transpose(1, 2)                          # bias and softplus in the scan
        return selective_scan_ref(xc, delta, -torch.exp(a_log), b.transpose(1, 2), c.transpose(1, 2), d,
                                  z.transpose(1, 2), dt_proj.bias, True).transpose(1, 2)

    def forward(self, u):
        x, z = self.in_proj(u).chunk(2, dim=-1)
        y_f = self.branch(x, z, "")
        y_b = self.branch(x.flip([1]), z.flip([1]), "_b")
        return self.out_proj((y_f + y_b.flip([1])) / 2)


class VimLayer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.mixer = MambaV2Mixer(dim)
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, h, r):
        r = h if r is None else r + h
        return self.mixer(self.norm(r)), r


class VimBlocks(nn.Module):
    """SSAMBA's encoder blocks (AMBAModel's VisionMamba): layers in pairs, the second on the flipped sequence,
    residuals summed, then norm_f on r + h and norm_f once more (every AMBAModel forward applies it again)."""

    def __init__(self, dim, depth):
        super().__init__()
        self.layers = nn.ModuleList([VimLayer(dim) for _ in range(depth)])
        self.norm_f = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, h):
        r = None
        for i in range(0, len(self.layers) - 1, 2):
            h_f, r_f = self.layers[i](h, r)
            h_b, r_b = self.layers[i + 1](h.flip([1]), None if r is None else r.flip([1]))
            h, r = h_f + h_b.flip([1]), r_f + r_b.flip([1])
        return self.norm_f(self.norm_f(r + h))


def scan_bench(a):
    """`earshot bench scan`'s twin: selective_scan_ref on the same operands in its own [B, Din, L] layout."""
    b, l, din, n = a.batch, a.length, a.din, a.states
    g = a.train
    x, z = torch.randn(b, din, l, requires_grad=g), torch.randn(b, din, l, requires_grad=g)
    delta = (torch.randn(b, din, l) * 0.1).requires_grad_(g)
    bias = torch.full((din,), -3.0, requires_grad=g)
    A = (-torch.arange(1, n + 1, dtype=torch.float32).repeat(din, 1)).requires_grad_(g)
    B, C = torch.randn(b, n, l, requires_grad=g), torch.randn(b, n, l, requires_grad=g)
    D = torch.ones(din, requires_grad=g)

    def run():
        y = selective_scan_ref(x, delta, A, B, C, D, z, bias, True)
        if g:
            y.backward(torch.ones_like(y))
    if g:
        t = median_time(run, a.iters, a.warmup)
    else:
        with torch.inference_mode():
            t = median_time(run, a.iters, a.warmup)
    print(json.dumps({"bench": "scan", "impl": "torch selective_scan_ref", "mode": "train" if g else "inference",
                      "batch": b, "length": l, "din": din, "states": n, "threads": a.threads, "ms_per_step": t * 1e3,
                      "tokens_per_s": b * l / t, "peak_rss_mb": peak_rss_mb()}))


def hf_ast(a):
    """transformers' ASTForAudioClassification at `a.size` on `a.frames` x 128 features, no dropout."""
    from transformers import ASTConfig, ASTForAudioClassification
    dims = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}[a.size]
    cfg = ASTConfig(hidden_size=dims[0], num_hidden_layers=12, num_attention_heads=dims[1], intermediate_size=4 * dims[0],
                    max_length=a.frames, num_mel_bins=128, num_labels=a.labels, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    return ASTForAudioClassification(cfg)


def htsat_bench(a):
    """transformers' ClapAudioModel (HTSAT; ClapAudioConfig's defaults are the released CLAPs' tiny tower) on
    [batch, 1, 1001, 64] log-mel: the pooled output, or a step of AdamW on its mean square. `earshot bench htsat`."""
    from transformers import ClapAudioConfig, ClapAudioModel
    cfg = ClapAudioConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0)
    if a.size == "base":
        cfg.patch_embeds_hidden_size, cfg.hidden_size, cfg.depths = 128, 1024, [2, 2, 12, 2]
    model = ClapAudioModel(cfg)
    x = torch.randn(a.batch, 1, 1001, 64) * 15 - 40
    if a.train:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            loss = model(input_features=x).pooler_output.square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        t = median_time(step, a.iters, a.warmup)
    else:
        model.eval()

        def infer():
            with torch.inference_mode():
                model(input_features=x)
        t = median_time(infer, a.iters, a.warmup)
    print(json.dumps({"bench": "htsat", "impl": "transformers", "size": a.size, "mode": "train" if a.train else "inference",
                      "batch": a.batch, "threads": a.threads, "parameters": sum(p.numel() for p in model.parameters()),
                      "ms_per_step": t * 1e3, "items_per_s": a.batch / t, "peak_rss_mb": peak_rss_mb()}))


def finetune_bench(a):
    """`earshot bench finetune`'s twin: one fine-tuning step (CE, Adam on the trainable parameters) of a
    transformers AST under a PETL_AST method written the reference's way (LoRA on query and value with
    inner width D/RR and scale 8/RR; a Pfeiffer parallel bottleneck adapter beside each FFN, with
    layernorm_after trainable), the final layernorm and the classifier trained with every method."""
    model = hf_ast(a)
    d = model.config.hidden_size
    inner = max(round(d / a.reduction_rate), 1)
    if a.peft != "full":
        for p_ in model.parameters():
            p_.requires_grad_(False)
        for p_ in model.classifier.parameters():
            p_.requires_grad_(True)
        if a.peft != "linear":
            for p_ in model.audio_spectrogram_transformer.layernorm.parameters():
                p_.requires_grad_(True)
    if a.peft == "bitfit":
        for n_, p_ in model.named_parameters():
            if n_.endswith(".bias"):
                p_.requires_grad_(True)

    class LoRA(torch.nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base, self.down, self.up = base, torch.nn.Linear(d, inner, bias=False), torch.nn.Linear(inner, d, bias=False)
            torch.nn.init.zeros_(self.down.weight)

        def forward(self, x):
            return self.base(x) + (8 / a.reduction_rate) * self.up(self.down(x))

    # transformers 5's AST layout: layers.i.attention.{q,v}_proj, layernorm_after, mlp (fc1, fc2; no residual).
    for layer in model.audio_spectrogram_transformer.layers:
        if a.peft == "lora":
            layer.attention.q_proj = LoRA(layer.attention.q_proj)
            layer.attention.v_proj = LoRA(layer.attention.v_proj)
        if a.peft == "adapter":
            adapter = torch.nn.Sequential(torch.nn.Linear(d, inner), torch.nn.GELU(), torch.nn.Linear(inner, d))
            layer.add_module("adapter", adapter)
            for p_ in layer.layernorm_after.parameters():
                p_.requires_grad_(True)
            saved = {}
            layer.layernorm_after.register_forward_hook(lambda m, i, o, s=saved: s.__setitem__("z", o))
            layer.mlp.register_forward_hook(lambda m, i, o, s=saved, ad=adapter: o + ad(s["z"]))
    x = torch.randn(a.batch, a.frames, 128)
    y = torch.arange(a.batch) % a.labels
    trainable = [p_ for p_ in model.parameters() if p_.requires_grad]
    opt = torch.optim.Adam(trainable, lr=1e-5)

    def step():
        loss = F.cross_entropy(model(x).logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t = median_time(step, a.iters, a.warmup)
    print(json.dumps({"bench": "finetune", "impl": "transformers", "peft": a.peft, "size": a.size, "frames": a.frames,
                      "batch": a.batch, "threads": a.threads, "trainable": sum(p_.numel() for p_ in trainable),
                      "parameters": sum(p_.numel() for p_ in model.parameters()), "ms_per_step": t * 1e3,
                      "items_per_s": a.batch / t, "peak_rss_mb": peak_rss_mb()}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bench", choices=["matmul", "encoder", "attention", "fbank", "ast", "htsat", "finetune", "scan", "cnn", "ssamba"])
    p.add_argument("--model", default="cnn14", choices=["cnn6", "cnn10", "cnn14"])
    p.add_argument("--arch", default="ast", choices=["ast", "mamba"])
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--din", type=int, default=384)
    p.add_argument("--states", type=int, default=16)
    p.add_argument("--peft", default="full", choices=["full", "linear", "bitfit", "lora", "adapter"])
    p.add_argument("--reduction-rate", type=int, default=64)
    p.add_argument("--size", default=None, help="ast/finetune: default tiny; encoder: sets --dim and --heads")
    p.add_argument("--frames", type=int, default=1024)
    p.add_argument("--labels", type=int, default=527)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--m", type=int, default=4096)
    p.add_argument("--k", type=int, default=768)
    p.add_argument("--n", type=int, default=3072)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--depth", type=int, default=None, help="encoder: default 12 (ast), 24 (mamba)")
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--tokens", type=int, default=1212)
    p.add_argument("--batch", type=int, default=None, help="default 8 (scan: 1)")
    p.add_argument("--train", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--onnx", default=None, help="ast, cnn, ssamba: run this ONNX model (from `earshot bench ast|cnn|ssamba --onnx FILE`) in onnxruntime instead")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"], help="matmul, encoder (ast), ast: inference precision")
    a = p.parse_args()
    if a.bench == "encoder" and a.size is not None:
        a.dim, a.heads = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}[a.size]
    a.size = a.size or "tiny"
    a.depth = a.depth or (24 if a.arch == "mamba" else 12)
    a.batch = a.batch or (1 if a.bench in ("scan", "ssamba") else 8)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    if a.bench == "matmul":
        x = torch.randn(a.m, a.k)
        layer, ctx = reduced_precision(a, nn.Linear(a.k, a.n, bias=False).eval())

        def run():
            with torch.inference_mode(), ctx():
                layer(x)
        t = median_time(run, a.iters, a.warmup)
        print(json.dumps({"bench": "matmul", "impl": "torch", "precision": a.precision, "m": a.m, "k": a.k, "n": a.n, "threads": a.threads,
                          "ms": t * 1e3, "gflops": 2 * a.m * a.k * a.n / t / 1e9}))
        return

    if a.bench == "ssamba" and not a.onnx:
        sys.exit("ssamba runs only in onnxruntime, on `earshot bench ssamba --onnx FILE`'s export (mamba_ssm's CPU path is not bidirectional)")
    if a.bench in ("ast", "ssamba") and a.onnx:
        # onnxruntime on the model `earshot bench ast|ssamba --onnx FILE` wrote (the same size, frames and labels).
        import numpy as np
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = a.threads, 1
        session = ort.InferenceSession(a.onnx, options, providers=["CPUExecutionProvider"])
        x = np.random.RandomState(0).standard_normal([a.batch, a.frames, 128]).astype(np.float32)
        t = median_time(lambda: session.run(["logits"], {"features": x}), a.iters, a.warmup)
        print(json.dumps({"bench": a.bench, "impl": "onnxruntime " + ort.__version__, "mode": "inference", "precision": "fp32",
                          "size": a.size, "frames": a.frames, "batch": a.batch, "threads": a.threads, "ms_per_step": t * 1e3,
                          "items_per_s": a.batch / t, "peak_rss_mb": peak_rss_mb()}))
        return

    if a.bench == "ast":
        model = hf_ast(a)
        x = torch.randn(a.batch, a.frames, 128)
        if a.train:
            opt = torch.optim.Adam(model.parameters(), lr=1e-5)
            y = torch.zeros(a.batch, a.labels)

            def step():
                loss = F.binary_cross_entropy_with_logits(model(x).logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            t = median_time(step, a.iters, a.warmup)
        else:
            model, ctx = reduced_precision(a, model.eval())

            def infer():
                with torch.inference_mode(), ctx():
                    model(x)
            t = median_time(infer, a.iters, a.warmup)
        print(json.dumps({"bench": "ast", "impl": "transformers", "mode": "train" if a.train else "inference",
                          "precision": a.precision, "size": a.size,
                          "frames": a.frames, "batch": a.batch, "threads": a.threads, "ms_per_step": t * 1e3,
                          "items_per_s": a.batch / t, "peak_rss_mb": peak_rss_mb()}))
        return

    if a.bench == "htsat":
        htsat_bench(a)
        return

    if a.bench == "finetune":
        finetune_bench(a)
        return

    if a.bench == "cnn":
        from bench_torch_cnn import cnn_bench
        cnn_bench(a, median_time, peak_rss_mb)
        return

    if a.bench == "scan":
        scan_bench(a)
        return

    if a.arch == "mamba":
        enc = VimBlocks(a.dim, a.depth)
        x = torch.randn(a.batch, a.tokens, a.dim)
        if a.train:
            opt = torch.optim.AdamW(enc.parameters(), lr=1e-4)

            def step():
                loss = enc(x).square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            t = median_time(step, a.iters, a.warmup)
        else:
            enc.eval()

            def infer():
                with torch.inference_mode():
                    enc(x)
            t = median_time(infer, a.iters, a.warmup)
        print(json.dumps({"bench": "encoder", "arch": "mamba", "impl": "torch (selective_scan_ref)",
                          "mode": "train" if a.train else "inference", "dim": a.dim, "depth": a.depth, "tokens": a.tokens,
                          "batch": a.batch, "threads": a.threads, "ms_per_step": t * 1e3, "items_per_s": a.batch / t,
                          "tokens_per_s": a.batch * a.tokens / t, "peak_rss_mb": peak_rss_mb()}))
        return

    if a.bench == "fbank":
        import torchaudio.compliance.kaldi as kaldi
        n = int(a.seconds * 16000)
        waves = [torch.randn(1, n) * 0.1 for _ in range(a.clips)]

        def run():
            for w in waves:
                kaldi.fbank(w, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                            num_mel_bins=128, dither=0.0, frame_shift=10)
        t = median_time(run, a.iters, a.warmup)
        print(json.dumps({"bench": "fbank", "impl": "torchaudio", "seconds": a.seconds, "clips": a.clips,
                          "threads": a.threads, "ms": t * 1e3, "clips_per_s": a.clips / t}))
        return

    if a.bench == "attention":
        qkv = torch.randn(a.batch, a.tokens, 3, a.heads, a.head_dim, requires_grad=a.train)

        def attn():
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
            if a.train:
                y.backward(torch.ones_like(y))
        if a.train:
            t = median_time(attn, a.iters, a.warmup)
        else:
            _, ctx = reduced_precision(a, None)   # bf16: SDPA under autocast (both products in bf16)
            with torch.inference_mode(), ctx():
                t = median_time(attn, a.iters, a.warmup)
        forward = 4.0 * a.batch * a.heads * a.tokens * a.tokens * a.head_dim
        flops = forward * 3.5 if a.train else forward
        print(json.dumps({"bench": "attention", "impl": "torch", "mode": "train" if a.train else "inference",
                          "precision": a.precision, "tokens": a.tokens, "heads": a.heads, "head_dim": a.head_dim, "batch": a.batch,
                          "threads": a.threads, "ms_per_step": t * 1e3, "gflops": flops / t / 1e9,
                          "peak_rss_mb": peak_rss_mb()}))
        return

    enc = nn.Sequential(*[Block(a.dim, a.heads) for _ in range(a.depth)], nn.LayerNorm(a.dim, eps=1e-6))
    x = torch.randn(a.batch, a.tokens, a.dim)
    if a.train:
        opt = torch.optim.AdamW(enc.parameters(), lr=1e-4)

        def step():
            loss = enc(x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        t = median_time(step, a.iters, a.warmup)
    else:
        enc, ctx = reduced_precision(a, enc.eval())

        def infer():
            with torch.inference_mode(), ctx():
                enc(x)
        t = median_time(infer, a.iters, a.warmup)
    per_token = 2.0 * (4 * a.dim * a.dim + 2 * a.dim * 4 * a.dim)
    attention = 2.0 * 2.0 * a.tokens * a.tokens * a.dim
    forward = a.depth * a.batch * (a.tokens * per_token + attention)
    flops = 3 * forward if a.train else forward
    print(json.dumps({"bench": "encoder", "impl": "torch", "mode": "train" if a.train else "inference",
                      "precision": a.precision, "dim": a.dim, "depth": a.depth, "heads": a.heads, "tokens": a.tokens, "batch": a.batch,
                      "threads": a.threads, "ms_per_step": t * 1e3, "items_per_s": a.batch / t,
                      "gflops": flops / t / 1e9, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
