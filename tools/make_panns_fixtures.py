#!/usr/bin/env python3
"""PANNs parity fixtures: small random Cnn14, Cnn10 and Cnn6 built here in PyTorch after the architecture described in
../shared/reference/SYSTEMS.md section 7 (qiuqiangkong/audioset_tagging_cnn, pytorch/models.py; not imported, not
copied), with the reference's key names, and their outputs in eval mode.

Usage: PY=$(bash ../shared/tools/reference-venv.sh); $PY tools/make_panns_fixtures.py   (CI never runs this.)

Writes Tests/ModelsTests/Fixtures/:
  - panns_cnn14_8k.pth: torch.save({'iteration': 7, 'model': state_dict}) as the released checkpoints are, with the
    torchlibrosa front end's frozen buffers (spectrogram_extractor.stft.conv_{real,imag}.weight [129, 1, 256],
    logmel_extractor.melW [129, 64]) for Cnn14_8k's front end (8 kHz, window 256, hop 80, 64 mel, 50-4000 Hz) and
    conv blocks of widths 4, 8, 8, 16, 16, 32 (the released 64...2048 would be 300 MB), fc1 32, 5 classes;
  - panns_cnn14_8k_outputs.safetensors: `waveform` [2, 12000] (1.5 s), `logmel` [2, 151, 64] (after the front end,
    before bn0), `clipwise` [2, 5] and `embedding` [2, 32] of Cnn14, and with the same weights read as
    Cnn14_DecisionLevelMax: `dlm_clipwise` [2, 5], `dlm_framewise` [2, 151, 5];
  - panns_cnn10.safetensors, panns_cnn6.safetensors: reference keys (no front-end buffers), `logmel` input
    [2, 96, 64], `clipwise`, `embedding`.
BatchNorm running statistics and affine parameters are random so eval mode depends on them.

Architecture (eval mode; dropout is the identity): x = logmel [B, 1, T, 64]; bn0 = BatchNorm2d(64) applied over the mel
axis (x.transpose(1, 3), bn0, transpose back); ConvBlock = conv3x3(pad 1, no bias) BN ReLU conv3x3 BN ReLU then
avg_pool2d(pool); ConvBlock5x5 (Cnn6) = conv5x5(pad 2, no bias) BN ReLU then avg_pool2d; pools 2x2, Cnn14's sixth 1x1.
Clip head: x = mean over freq; x = max_t x + mean_t x; h = relu(fc1 x); clipwise = sigmoid(fc_audioset h);
embedding = h. DecisionLevelMax: x = mean over freq; x = max_pool1d(x, 3, 1, 1) + avg_pool1d(x, 3, 1, 1);
h_t = relu(fc1 x_t); seg = sigmoid(fc_audioset h_t); clipwise = max_t seg; framewise = seg repeated 32x along time,
then padded to T with its last frame.
Front end (torchlibrosa Spectrogram + LogmelFilterBank): reflect-pad n_fft/2 both sides, conv1d with
conv_real[k, 0, n] = cos(2 pi k n / N) w[n] and conv_imag = -sin(2 pi k n / N) w[n] (w periodic Hann) at stride hop,
power real^2 + imag^2, mel = power @ melW (librosa.filters.mel(sr, n_fft, 64, fmin, fmax).T, Slaney), then
10 log10(max(mel, 1e-10)) (ref 1.0, no top_db).
"""
import os

import librosa
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fix = os.path.join(root, "Tests/ModelsTests/Fixtures")
os.makedirs(fix, exist_ok=True)
torch.manual_seed(0)

SR, N_FFT, HOP, MELS, FMIN, FMAX = 8000, 256, 80, 64, 50, 4000  # Cnn14_8k's front end
CLASSES, EMB = 5, 32


class Block(nn.Module):
    def __init__(self, cin, cout, k, double):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        if double:
            self.conv2 = nn.Conv2d(cout, cout, k, padding=k // 2, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
        self.double = double

    def forward(self, x, pool):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.double:
            x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool)


class CNN(nn.Module):
    def __init__(self, widths, k, double, last_pool_one):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(MELS)
        cin = 1
        for i, w in enumerate(widths):
            setattr(self, f"conv_block{i + 1}", Block(cin, w, k, double))
            cin = w
        self.n, self.last_pool_one = len(widths), last_pool_one
        self.fc1 = nn.Linear(cin, EMB)
        self.fc_audioset = nn.Linear(EMB, CLASSES)

    def trunk(self, logmel):  # logmel [B, T, M]
        x = logmel.unsqueeze(1).transpose(1, 3)
        x = self.bn0(x).transpose(1, 3)
        for i in range(self.n):
            pool = (1, 1) if (self.last_pool_one and i == self.n - 1) else (2, 2)
            x = getattr(self, f"conv_block{i + 1}")(x, pool)
        return x.mean(dim=3)  # [B, C, T']

    def forward(self, logmel):
        x = self.trunk(logmel)
        x = x.max(dim=2)[0] + x.mean(dim=2)
        h = F.relu(self.fc1(x))
        return torch.sigmoid(self.fc_audioset(h)), h

    def decision_level_max(self, logmel, ratio=32):
        frames = logmel.shape[1]
        x = self.trunk(logmel)
        x = F.max_pool1d(x, 3, 1, 1) + F.avg_pool1d(x, 3, 1, 1)
        h = F.relu(self.fc1(x.transpose(1, 2)))
        seg = torch.sigmoid(self.fc_audioset(h))  # [B, T', K]
        clip = seg.max(dim=1)[0]
        up = seg[:, :, None, :].repeat(1, 1, ratio, 1).reshape(seg.shape[0], -1, seg.shape[2])
        up = torch.cat([up, up[:, -1:, :].repeat(1, frames - up.shape[1], 1)], dim=1)
        return clip, up


def randomise(model, logmel):
    """Random weights and BN statistics; bn0's running statistics are the input's own per mel bin (as a trained
    bn0's are, roughly) and fc_audioset is scaled down, so that outputs stay away from 0 and 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bn0.weight") or ".bn" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif "bn" in name:
                p.copy_(0.2 * torch.randn_like(p))
            elif p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) * (2.0 / fan_in) ** 0.5)
            else:
                p.copy_(0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
            elif name.endswith("num_batches_tracked"):
                b.fill_(100)
        model.bn0.running_mean.copy_(logmel.mean(dim=(0, 1)))
        model.bn0.running_var.copy_(logmel.var(dim=(0, 1)) * (1 + 0.2 * torch.rand(MELS)))
        model.fc_audioset.weight.mul_(0.15)
    return model.eval()


# Front end buffers as torchlibrosa builds them.
n = np.arange(N_FFT)
k = np.arange(N_FFT // 2 + 1)
window = librosa.filters.get_window("hann", N_FFT, fftbins=True)
angle = 2 * np.pi * np.outer(k, n) / N_FFT
conv_real = torch.tensor((np.cos(angle) * window)[:, None, :], dtype=torch.float32)
conv_imag = torch.tensor((-np.sin(angle) * window)[:, None, :], dtype=torch.float32)
melW = torch.tensor(librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=MELS, fmin=FMIN, fmax=FMAX).T, dtype=torch.float32)


def front_end(wave):
    x = F.pad(wave[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
    re, im = F.conv1d(x, conv_real, stride=HOP), F.conv1d(x, conv_imag, stride=HOP)  # [B, 129, T]
    power = (re ** 2 + im ** 2).transpose(1, 2)
    return 10 * torch.log10(torch.clamp(power @ melW, min=1e-10))


# Clip: a chirp plus noise, two clips, 1.5 s at 8 kHz.
t = torch.arange(12000) / SR
wave = torch.stack([0.3 * torch.sin(2 * np.pi * (200 + 600 * t) * t) + 0.05 * torch.randn(12000),
                    0.2 * torch.randn(12000)])
with torch.no_grad():
    logmel = front_end(wave)
    # The same through torch.stft, to be sure the conv front end is the usual STFT.
    spec = torch.stft(wave, N_FFT, HOP, window=torch.tensor(window, dtype=torch.float32), center=True,
                      pad_mode="reflect", return_complex=True).abs() ** 2
    assert torch.allclose(10 * torch.log10(torch.clamp(spec.transpose(1, 2) @ melW, min=1e-10)), logmel, atol=1e-3)

cnn14 = randomise(CNN([4, 8, 8, 16, 16, 32], 3, True, True), logmel)
with torch.no_grad():
    clip, emb = cnn14(logmel)
    dlm_clip, dlm_frames = cnn14.decision_level_max(logmel)
state = {k: v.clone() for k, v in cnn14.state_dict().items()}
state["spectrogram_extractor.stft.conv_real.weight"] = conv_real
state["spectrogram_extractor.stft.conv_imag.weight"] = conv_imag
state["logmel_extractor.melW"] = melW
torch.save({"iteration": 7, "model": state}, os.path.join(fix, "panns_cnn14_8k.pth"))
save_file({"waveform": wave.contiguous(), "logmel": logmel.contiguous(), "clipwise": clip, "embedding": emb,
           "dlm_clipwise": dlm_clip, "dlm_framewise": dlm_frames.contiguous()},
          os.path.join(fix, "panns_cnn14_8k_outputs.safetensors"), metadata={"sample_rate": str(SR)})
print("cnn14", clip.tolist(), dlm_frames.shape)

for name, model in (("cnn10", CNN([4, 8, 8, 16], 3, True, False)), ("cnn6", CNN([4, 8, 8, 16], 5, False, False))):
    x = torch.randn(2, 96, MELS) * 10 - 40
    randomise(model, x)
    with torch.no_grad():
        clip, emb = model(x)
    out = {k: v.clone().float().contiguous() for k, v in model.state_dict().items()}
    out.update({"logmel": x, "clipwise": clip, "embedding": emb})
    save_file(out, os.path.join(fix, f"panns_{name}.safetensors"))
    print(name, clip.tolist())
for f in sorted(os.listdir(fix)):
    if f.startswith("panns"):
        print(f, os.path.getsize(os.path.join(fix, f)))
