"""`bench_torch.py cnn`: PANNs Cnn6/10/14 in PyTorch, the twin of `earshot bench cnn` (same shapes, log-mel
input [batch, frames, 64], clip scores; --train: BCE on the logits, backward, Adam). The network follows the
reference architecture (SYSTEMS.md section 7), written here; SpecAugment is off on both sides."""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, k, double, pool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, k, padding=k // 2, bias=False) if double else None
        self.bn2 = nn.BatchNorm2d(cout) if double else None
        self.pool = pool

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.conv2 is not None:
            x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, self.pool) if self.pool > 1 else x


class PANNs(nn.Module):
    def __init__(self, variant, classes):
        super().__init__()
        widths = [64, 128, 256, 512, 1024, 2048] if variant == "cnn14" else [64, 128, 256, 512]
        k, double = (5, False) if variant == "cnn6" else (3, True)
        self.bn0 = nn.BatchNorm2d(64)
        blocks, cin = [], 1
        for i, w in enumerate(widths):
            blocks.append(Block(cin, w, k, double, 1 if (variant == "cnn14" and i == 5) else 2))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.fc1 = nn.Linear(cin, cin)
        self.fc_audioset = nn.Linear(cin, classes)

    def forward(self, logmel):
        x = self.bn0(logmel.unsqueeze(1).transpose(1, 3)).transpose(1, 3)
        for b in self.blocks:
            x = F.dropout(b(x), 0.2, self.training)
        x = x.mean(dim=3)
        x = x.max(dim=2)[0] + x.mean(dim=2)
        x = F.relu(self.fc1(F.dropout(x, 0.5, self.training)))
        return self.fc_audioset(x)


def cnn_bench(a, median_time, peak_rss_mb):
    frames = 1 + int(a.seconds * 32000) // 320
    if a.onnx:
        # onnxruntime on the network `earshot bench cnn --onnx FILE` wrote (same variant, classes), clip scores.
        import numpy as np
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = a.threads, 1
        session = ort.InferenceSession(a.onnx, options, providers=["CPUExecutionProvider"])
        x = (np.random.RandomState(0).standard_normal([a.batch, frames, 64]) * 15 - 40).astype(np.float32)
        t = median_time(lambda: 1 / (1 + np.exp(-session.run(["logits"], {"features": x})[0])), a.iters, a.warmup)
        print(json.dumps({"bench": "cnn", "impl": "onnxruntime " + ort.__version__, "model": a.model, "mode": "inference", "precision": "fp32",
                          "seconds": a.seconds, "frames": frames, "batch": a.batch, "threads": a.threads, "ms_per_batch": t * 1e3,
                          "clips_per_s": a.batch / t, "peak_rss_mb": peak_rss_mb()}))
        return
    net = PANNs(a.model, a.labels)
    x = torch.randn(a.batch, frames, 64) * 15 - 40
    if a.train:
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        y = torch.zeros(a.batch, a.labels)
        for b in range(a.batch):
            y[b, (b * 37) % a.labels] = 1

        def step():
            loss = F.binary_cross_entropy_with_logits(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        t = median_time(step, a.iters, a.warmup)
    else:
        net.eval()
        # --precision bf16: PyTorch's CPU autocast, which runs convolutions and linear layers in bf16 (as
        # `earshot bench cnn --precision bf16` does its direct convolutions and linear layers).
        if a.precision == "int8":
            raise SystemExit("cnn: --precision int8 is not benchmarked (Earshot runs PANNs' convolutions fp32 at int8)")
        autocast = a.precision == "bf16"

        def infer():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                torch.sigmoid(net(x).float())
        t = median_time(infer, a.iters, a.warmup)
    print(json.dumps({"bench": "cnn", "impl": "torch", "model": a.model, "mode": "train" if a.train else "inference",
                      "precision": "fp32" if a.train else a.precision,
                      "seconds": a.seconds, "frames": frames, "batch": a.batch, "threads": a.threads,
                      "parameters": sum(p.numel() for p in net.parameters()), "ms_per_batch": t * 1e3,
                      "clips_per_s": a.batch / t, "peak_rss_mb": peak_rss_mb()}))
