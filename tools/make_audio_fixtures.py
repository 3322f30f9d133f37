#!/usr/bin/env python3
"""Makes the audio front-end parity fixtures with torchaudio/librosa on real clips from ../shared/data
and on edge cases. Usage: $(../shared/tools/reference-venv.sh) tools/make_audio_fixtures.py
(needs `pip install soxr` in that environment for the resampled cases).
Writes Tests/AudioTests/Fixtures/frontend.safetensors. CI never runs this; the output is committed."""
import math
import os

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.transforms as T
from safetensors.torch import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
shared = os.path.join(root, "..", "shared", "data")
out = {}


def fbank(wave, sr, bins=128, dtype=np.float32):
    w = torch.from_numpy(np.asarray(wave, dtype=dtype)).unsqueeze(0)
    return kaldi.fbank(w, htk_compat=True, sample_frequency=sr, use_energy=False, window_type="hanning",
                       num_mel_bins=bins, dither=0.0, frame_shift=10)


def synth(n, sr):
    # Computed in float64 then rounded to float32, the same in Swift (Tests/AudioTests).
    i = np.arange(n, dtype=np.float64)
    x = 0.5 * np.sin(2 * math.pi * 440 * i / sr) + 0.25 * np.sin(2 * math.pi * 3000.5 * i / sr + 0.3)
    return x.astype(np.float32)


# 1. Pure front end on a generated 16 kHz waveform, silence and a clipped square wave. These run
# torchaudio in float64 on the float32 samples: on pure tones torchaudio's own float32 path is off
# by up to 0.0044 (log units) in near-empty bins, so float64 is the reference that can hold 1e-3.
f64 = np.float64
out["fbank.synth"] = fbank(synth(16000, 16000), 16000, dtype=f64)
out["fbank.silence"] = fbank(np.zeros(8000, np.float32), 16000, dtype=f64)
square = np.where(np.sin(2 * math.pi * 200 * np.arange(12000) / 16000) >= 0, 1.0, -1.0).astype(np.float32)
out["fbank.square"] = fbank(square, 16000, dtype=f64)

# 2. A real FSDD recording (8 kHz WAV) at its own rate, and resampled to 16 kHz with soxr HQ.
wav, sr = sf.read(os.path.join(shared, "fsdd/recordings/0_george_0.wav"), dtype="float32")
out["fbank.fsdd_8k"] = fbank(wav, sr)
out["fbank.fsdd_16k"] = fbank(soxr.resample(wav, sr, 16000, quality="HQ"), 16000)

# 3. A real ESC-10 clip (44.1 kHz OGG/Vorbis) resampled to 16 kHz, and the PANNs / CLAP log-mels.
ogg, sr = sf.read(os.path.join(shared, "esc10/audio/dog/1-100032-A.ogg"), dtype="float32")
if ogg.ndim > 1:
    ogg = ogg.mean(axis=1)
out["fbank.esc_16k"] = fbank(soxr.resample(ogg, sr, 16000, quality="HQ"), 16000)
w32 = soxr.resample(ogg, sr, 32000, quality="HQ")
S = librosa.feature.melspectrogram(y=w32, sr=32000, n_fft=1024, hop_length=320, win_length=1024, window="hann",
                                   center=True, pad_mode="reflect", power=2.0, n_mels=64, fmin=50, fmax=14000)
out["logmel.panns_esc"] = torch.from_numpy(10 * np.log10(np.maximum(S, 1e-10))).T.contiguous()
w48 = soxr.resample(ogg, sr, 48000, quality="HQ")
mel = T.MelSpectrogram(sample_rate=48000, n_fft=1024, win_length=1024, hop_length=480, center=True, pad_mode="reflect",
                       power=2.0, norm=None, onesided=True, n_mels=64, f_min=50, f_max=14000)
M = mel(torch.from_numpy(w48))
out["logmel.clap_fusion_esc"] = (10 * torch.log10(torch.clamp(M, min=1e-10))).T.contiguous()
# The synthetic wave through the PANNs log-mel (no decoder or resampler involved).
S = librosa.feature.melspectrogram(y=synth(32000, 32000).astype(np.float64), sr=32000, n_fft=1024, hop_length=320, win_length=1024,
                                   window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=64, fmin=50, fmax=14000)
out["logmel.panns_synth"] = torch.from_numpy(10 * np.log10(np.maximum(S, 1e-10))).T.contiguous()

# 4. Resampler parity on its own: a chirp, 44.1 kHz -> 16 kHz.
t = np.arange(4410) / 44100.0
chirp = (0.8 * np.sin(2 * math.pi * (100 * t + 20000 * t * t))).astype(np.float32)
out["resample.chirp_in"] = torch.from_numpy(chirp)
out["resample.chirp_16k"] = torch.from_numpy(soxr.resample(chirp, 44100, 16000, quality="HQ").astype(np.float32))

out = {k: (v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v))).float().contiguous() for k, v in out.items()}
os.makedirs(os.path.join(root, "Tests/AudioTests/Fixtures"), exist_ok=True)
save_file(out, os.path.join(root, "Tests/AudioTests/Fixtures/frontend.safetensors"),
          metadata={"torch": torch.__version__, "librosa": librosa.__version__, "soxr": soxr.__version__})
print({k: tuple(v.shape) for k, v in out.items()})
