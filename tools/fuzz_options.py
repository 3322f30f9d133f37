#!/usr/bin/env python3
"""Every numeric option of the `earshot` commands at 0, -1, 10^12, nan and 1e30, looking for crashes.

For each command below, the options its --help lists (those taking a value, minus paths, names and
choices) are given each value in turn on top of a small working invocation; a signal, an exit code of
128 or more, "Fatal error" or a run past the time limit is reported. A refusal (exit 1 or 64) is the
expected outcome, as is a run that simply works. Standard library only:

    python3 tools/fuzz_options.py --earshot .build/release/earshot

Inputs are made here: a tone clip and a 12-clip two-class manifest, a tiny classifier trained on it;
the CLAP and PANNs commands use the repository's test fixtures. docs/ROBUSTNESS.md lists what it found.
"""
import argparse, math, os, re, shutil, struct, subprocess, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUES = ["0", "-1", "1000000000000", "nan", "1e30"]
# Options naming files, models, choices or free text: not numbers.
NOT_NUMERIC = {"--help", "--out", "--model", "--data", "--labels", "--init-from", "--init", "--base", "--tokenizer",
               "--test", "--label-field", "--labels-file", "--prompt", "--pooling", "--precision", "--kind", "--against",
               "--against-pooling", "--truth", "--pairs", "--votes", "--aux-data", "--aux-head", "--bandit", "--sampling",
               "--peft", "--adapter", "--adapter-placement", "--adapter-init", "--lora-targets", "--task", "--text-model",
               "--captions", "--keywords", "--cache", "--from", "--text-heads", "--split", "--like"}
# Options whose huge values only make a run long (epochs, repeats, minutes), not wrong.
LONG_RUNS = {"--epochs", "--repeats", "--time-budget"}


def write_wav(path, seconds, frequency, rate=16000):
    n = int(seconds * rate)
    data = b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * frequency * i / rate))) for i in range(n))
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    open(path, "wb").write(header + b"data" + struct.pack("<I", len(data)) + data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--earshot", default=os.path.join(ROOT, ".build/release/earshot"))
    ap.add_argument("--timeout", type=float, default=90)
    args = ap.parse_args()
    args.earshot = os.path.abspath(args.earshot)   # the commands run in a scratch folder (paths they make stay there)
    work = tempfile.mkdtemp(prefix="earshot-options-")
    clip = os.path.join(work, "clip.wav")
    write_wav(clip, 1.0, 440)
    data = os.path.join(work, "data")
    os.makedirs(data)
    with open(os.path.join(data, "manifest.csv"), "w") as f:
        f.write("path,label,split\n")
        for i in range(6):
            for label, hz in (("low", 300), ("high", 2500)):
                write_wav(os.path.join(data, f"{label}{i}.wav"), 0.5 + 0.1 * i, hz + 20 * i)
                f.write(f"{label}{i}.wav,{label},{'test' if i == 5 else 'train'}\n")
    manifest = os.path.join(data, "manifest.csv")
    model = os.path.join(work, "run")
    subprocess.run([args.earshot, "finetune", "--model", "ast-tiny", "--depth", "1", "--target-length", "64", "--epochs", "1",
                    "--data", manifest, "--out", model], check=True, capture_output=True, cwd=work)
    clap = os.path.join(ROOT, "Tests/CLAPTests/Fixtures/clap_tiny")
    out = lambda name: os.path.join(work, name)
    commands = {
        "classify": [clip, "--model", model],
        "embed": [clip, "--model", model, "--out", out("e.safetensors")],
        "evaluate": ["--model", model, "--data", manifest],
        "tag": [clip, "--model", os.path.join(ROOT, "Tests/ModelsTests/Fixtures/panns_cnn14_8k.pth")],
        "zeroshot": [clip, "--model", clap, "--labels", "dog,cat"],
        "probe": ["--model", "random:ast-tiny", "--data", manifest, "--no-cache"],
        "features": [clip, "--out", out("f.safetensors")],
        "dataset stats": [manifest],
        "dataset events": ["--data", manifest, "--split", "test", "--seconds", "10", "--out", out("events.wav")],
        "index build": [data, "--model", clap, "--out", out("index")],
        "pairs make": ["--from", "teacher", "--model", model, "--data", manifest, "--out", out("pairs.csv")],
        "pretrain": ["--model", "ssast-tiny-frame", "--depth", "1", "--target-length", "64", "--mask-patches", "8", "--data", manifest,
                     "--out", out("pre"), "--epochs", "1", "--overwrite"],
        "finetune": ["--model", "ast-tiny", "--depth", "1", "--target-length", "64", "--data", manifest,
                     "--out", out("ft"), "--epochs", "1", "--overwrite"],
    }
    # (subcommand words, working arguments, label); the same subcommand may appear in several forms.
    forms = [(name.split(), base, name) for name, base in commands.items()]
    forms.append((["pairs", "make"], ["--from", "snr", "--data", manifest, "--out", out("pairs-snr.csv"),
                                      "--audio-out", out("mixtures"), "--manifest", out("mixed.csv")], "pairs make --from snr"))
    # The parameter-efficient methods read their own options (rank, reduction, prefix and prompt counts).
    for method in ("lora", "adapter", "prefix", "prompt"):
        forms.append((["finetune"], ["--init-from", model, "--peft", method, "--data", manifest, "--out", out("peft-" + method),
                                     "--epochs", "1", "--overwrite"], f"finetune --peft {method}"))
    crashes = runs = 0
    for words, base, command in forms:
        # The invocation must work as it is, or every variation only meets the same refusal.
        plain = subprocess.run([args.earshot] + words + base, capture_output=True, cwd=work, text=True, timeout=args.timeout)
        if plain.returncode != 0:
            print(f"SETUP earshot {command} fails by itself: {(plain.stdout + plain.stderr).strip().splitlines()[-1:]}", flush=True)
            crashes += 1
            continue
        help_text = subprocess.run([args.earshot] + words + ["--help"], capture_output=True, cwd=work, text=True).stdout
        options = sorted(set(re.findall(r"(--[a-z][a-z0-9-]*) <", help_text)) - NOT_NUMERIC)
        for option in options:
            for value in VALUES:
                if option in LONG_RUNS and value in ("1000000000000", "1e30"):
                    continue
                runs += 1
                try:
                    r = subprocess.run([args.earshot] + words + base + [f"{option}={value}"], capture_output=True, cwd=work, text=True,
                                       timeout=args.timeout)
                    code, text = r.returncode, r.stdout + r.stderr
                except subprocess.TimeoutExpired:
                    code, text = "timeout", ""
                if code == "timeout" or code < 0 or code >= 128 or "Fatal error" in text:
                    crashes += 1
                    where = [l.strip() for l in text.splitlines() if "Fatal error" in l or " at /" in l][:2]
                    print(f"CRASH earshot {command} {option}={value}: exit {code}", *where, sep="\n  ", flush=True)
        print(f"{command}: {len(options)} options", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{runs} runs, {crashes} crashes")
    raise SystemExit(1 if crashes else 0)


if __name__ == "__main__":
    main()
