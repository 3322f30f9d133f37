#!/usr/bin/env python3
"""Mutation fuzzing of the `earshot` command line's readers: damaged checkpoints and audio.

Each round copies one seed file, damages it (truncation, one flipped bit, a burst of random bytes, a
zeroed run), runs the command that reads it and counts a *crash*: a signal, an exit code of 128 or more,
"Fatal error" in the output, or a run past the time limit. A named error (exit 1) is the expected outcome.
Crashing inputs are kept under --keep for a regression test. Standard library only (no torch), so it runs
wherever the binary runs:

    python3 tools/fuzz_inputs.py --earshot .build/release/earshot --rounds 150 --seed 1

Seeds are the repository's own fixtures (released-format .pth/.pt, Hugging Face folders, a CLAP
config) and audio it writes itself; `--model` is the classifier that classifies the damaged audio
(default: a tiny one trained here first). docs/ROBUSTNESS.md lists what it found.
"""
import argparse, math, os, random, shutil, struct, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "Tests/ModelsTests/Fixtures")
CLAP = os.path.join(ROOT, "Tests/CLAPTests/Fixtures")
# A real OGG/Vorbis recording, where ../shared is there.
ESC10_CLIP = os.path.join(ROOT, "../shared/data/esc10/audio/dog/1-100032-A.ogg")


def write_wav(path, seconds=1.0, rate=16000):
    n = int(seconds * rate)
    data = b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n))
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    open(path, "wb").write(header + b"data" + struct.pack("<I", len(data)) + data)


def damage(data, rng):
    d = bytearray(data)
    kind = rng.choice(["truncate", "flip", "burst", "zero"])
    if kind == "truncate":
        d = d[:rng.randrange(len(d))]
    elif kind == "flip":
        d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
    elif kind == "burst":
        for _ in range(rng.randrange(2, 20)):
            d[rng.randrange(len(d))] = rng.randrange(256)
    else:
        p, n = rng.randrange(len(d)), rng.randrange(1, 64)
        d[p:p + n] = bytes(len(d[p:p + n]))
    return bytes(d), kind


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--earshot", default=os.path.join(ROOT, ".build/release/earshot"))
    ap.add_argument("--rounds", type=int, default=100, help="damaged copies per seed file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--model", help="classifier for the audio targets (default: train a tiny one here)")
    ap.add_argument("--keep", default="fuzz-crashes", help="folder for crashing inputs")
    ap.add_argument("--only", help="comma-separated commands (zeroshot,tag,...): fuzz only the targets they read")
    args = ap.parse_args()
    args.earshot = os.path.abspath(args.earshot)   # the commands run in a scratch folder (paths they make stay there)
    work = tempfile.mkdtemp(prefix="earshot-fuzz-")
    clip = os.path.join(work, "clip.wav")
    write_wav(clip)
    model = os.path.abspath(args.model) if args.model else None
    if model is None:
        data = os.path.join(work, "data")
        os.makedirs(data)
        with open(os.path.join(data, "manifest.csv"), "w") as f:
            f.write("path,label\n")
            for i in range(6):
                for label in ("a", "b"):
                    write_wav(os.path.join(data, f"{label}{i}.wav"), seconds=0.5 + 0.1 * i)
                    f.write(f"{label}{i}.wav,{label}\n")
        model = os.path.join(work, "run")
        subprocess.run([args.earshot, "finetune", "--model", "ast-tiny", "--depth", "1", "--target-length", "64",
                        "--epochs", "1", "--data", data, "--out", model], check=True, capture_output=True, cwd=work)

    def folder_copy(src, name):
        dst = os.path.join(work, name)
        shutil.copytree(src, dst)
        return dst

    hf = folder_copy(os.path.join(MODELS, "hf_ast_tiny"), "hf")
    hf_bin = folder_copy(os.path.join(MODELS, "hf_ast_tiny_bin"), "hf_bin")
    clap = folder_copy(os.path.join(CLAP, "clap_tiny"), "clap")
    # The tiny Cnn14 read as a decision-level model (the file name says so, as the releases' do).
    dlm = os.path.join(work, "Cnn14_DecisionLevelMax_tiny.pth")
    shutil.copy(os.path.join(MODELS, "panns_cnn14_8k.pth"), dlm)
    # (seed file, where the damaged copy goes, the command that reads it)
    targets = [
        (os.path.join(MODELS, "ast_original.pth"), "m.pth", lambda p: ["classify", clip, "--model", p]),
        (os.path.join(MODELS, "panns_cnn14_8k.pth"), "m.pth", lambda p: ["tag", clip, "--model", p]),
        (os.path.join(MODELS, "ssamba_release.pth"), "m.pth", lambda p: ["embed", clip, "--out", os.path.join(work, "e.safetensors"), "--model", p]),
        (os.path.join(MODELS, "ssast_release_tiny.pth"), "m.pth", lambda p: ["embed", clip, "--out", os.path.join(work, "e.safetensors"), "--model", p]),
        (os.path.join(CLAP, "laion_tiny.pt"), "m.pt",
         lambda p: ["zeroshot", clip, "--labels", "dog,cat", "--tokenizer", os.path.join(CLAP, "clap_tiny"), "--model", p]),
        (os.path.join(MODELS, "hf_ast_tiny/model.safetensors"), os.path.join(hf, "model.safetensors"), lambda p: ["classify", clip, "--model", hf]),
        (os.path.join(MODELS, "hf_ast_tiny_bin/pytorch_model.bin"), os.path.join(hf_bin, "pytorch_model.bin"), lambda p: ["classify", clip, "--model", hf_bin]),
        (os.path.join(CLAP, "clap_tiny/config.json"), os.path.join(clap, "config.json"), lambda p: ["zeroshot", clip, "--labels", "dog,cat", "--model", clap]),
        (os.path.join(model, "best.safetensors"), "m.safetensors", lambda p: ["classify", clip, "--model", p]),
        (clip, "m.wav", lambda p: ["classify", p, "--model", model]),
        (os.path.join(CLAP, "clap_tiny/vocab.json"), os.path.join(clap, "vocab.json"), lambda p: ["zeroshot", clip, "--labels", "dog,cat", "--model", clap]),
        (os.path.join(CLAP, "clap_tiny/merges.txt"), os.path.join(clap, "merges.txt"), lambda p: ["zeroshot", clip, "--labels", "dog,cat", "--model", clap]),
        # Damaged audio through the streaming readers (decoded and resampled block by block): CLAP's clips,
        # a fused CLAP's streamed log-mel, and PANNs' frame-wise sound events.
        (clip, "z.wav", lambda p: ["zeroshot", p, "--labels", "dog,cat", "--model", clap]),
        (clip, "zf.wav", lambda p: ["zeroshot", p, "--labels", "dog,cat", "--model", os.path.join(CLAP, "clap_fused_tiny")]),
        (clip, "t.wav", lambda p: ["tag", p, "--frames", "--model", dlm]),
    ]
    if os.path.exists(ESC10_CLIP):
        targets += [(ESC10_CLIP, "o.ogg", lambda p: ["zeroshot", p, "--labels", "dog,cat", "--model", clap]),
                    (ESC10_CLIP, "o.ogg", lambda p: ["tag", p, "--frames", "--model", dlm])]
    if args.model is None:
        # Files of the run and data made above: a manifest as CSV and JSON Lines, the run's own settings and
        # history (read by a resume), and a search index's two files.
        csv_manifest = os.path.join(data, "manifest.csv")
        jsonl = os.path.join(work, "jsonl")
        os.makedirs(jsonl)
        with open(os.path.join(jsonl, "manifest.jsonl"), "w") as f:
            for line in open(csv_manifest).read().splitlines()[1:]:
                path, label = line.split(",")
                f.write('{"path": "%s", "label": "%s"}\n' % (os.path.join(data, path), label))
        index = os.path.join(work, "index")
        subprocess.run([args.earshot, "index", "build", data, "--model", clap, "--out", index], check=True, capture_output=True, cwd=work)
        rows = [f for f in os.listdir(index) if f.endswith(".safetensors")][0]
        for name in ("config.json", "metrics.jsonl"):
            shutil.copy(os.path.join(model, name), os.path.join(work, "run-" + name))
        targets += [
            (csv_manifest, csv_manifest, lambda p: ["dataset", "inspect", p]),
            (os.path.join(jsonl, "manifest.jsonl"), os.path.join(jsonl, "manifest.jsonl"), lambda p: ["dataset", "inspect", p]),
            (os.path.join(index, "index.json"), os.path.join(index, "index.json"), lambda p: ["search", index, "a tone", "--model", clap]),
            (os.path.join(index, rows), os.path.join(index, rows), lambda p: ["search", index, "a tone", "--model", clap]),
            (os.path.join(work, "run-config.json"), os.path.join(model, "config.json"),
             lambda p: ["finetune", "--resume", "--data", csv_manifest, "--out", model]),
            (os.path.join(work, "run-metrics.jsonl"), os.path.join(model, "metrics.jsonl"),
             lambda p: ["finetune", "--resume", "--data", csv_manifest, "--out", model]),
        ]
    if args.only:
        wanted = set(args.only.split(","))
        targets = [t for t in targets if t[2]("x")[0] in wanted]
    rng = random.Random(args.seed)
    crashes = runs = 0
    for seed_file, target, command in targets:
        original = open(seed_file, "rb").read()
        path = target if os.path.isabs(target) else os.path.join(work, target)
        for i in range(args.rounds):
            damaged, kind = damage(original, rng)
            open(path, "wb").write(damaged)
            runs += 1
            try:
                r = subprocess.run([args.earshot] + command(path), capture_output=True, cwd=work, timeout=args.timeout)
                code, out = r.returncode, (r.stdout + r.stderr).decode(errors="replace")
            except subprocess.TimeoutExpired:
                code, out = "timeout", ""
            if code == "timeout" or code < 0 or code >= 128 or "Fatal error" in out:
                crashes += 1
                os.makedirs(args.keep, exist_ok=True)
                keep = os.path.join(args.keep, f"{os.path.basename(seed_file)}-{args.seed}-{i}{os.path.splitext(path)[1]}")
                shutil.copy(path, keep)
                where = [l.strip() for l in out.splitlines() if "Fatal error" in l or " at /" in l][:2]
                print(f"CRASH {os.path.basename(seed_file)} ({kind}): exit {code}, kept {keep}", *where, sep="\n  ", flush=True)
        open(path, "wb").write(original)
        print(f"{os.path.basename(seed_file)}: {args.rounds} damaged copies read", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{runs} runs, {crashes} crashes")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
