#!/usr/bin/env python3
"""Runs ONNX models written by `earshot export` in onnxruntime, beside the reference where there is one.

Usage (CI never runs this):
  PY=$(bash ../shared/tools/reference-venv.sh); $PY -m pip install onnxruntime onnx
  # one export, checked against the Hugging Face model it came from:
  .build/release/earshot export Tests/ModelsTests/Fixtures/hf_ast_release --out /tmp/hf.onnx
  $PY tools/check_onnx_export.py /tmp/hf.onnx --hf Tests/ModelsTests/Fixtures/hf_ast_release
  # the committed fixture (Tests/ModelsTests/Fixtures/onnx_export.safetensors): the test writes its exports,
  # this script runs them in onnxruntime and records the outputs and each export's hash:
  EARSHOT_ONNX_FIXTURES=/tmp/onnx swift test ... --filter ONNXExportTests
  # (CLAPTests' CLAPONNXExportTests likewise: /tmp/onnx/{clap_audio,clap_audio_full,clap_zeroshot,swin_conformer_adapters,swin_moa_echo,clap_text,text_bert_mean}.onnx
  #  --clap Tests/CLAPTests/Fixtures/clap_tiny --fixture Tests/CLAPTests/Fixtures/onnx_clap.safetensors)
  F=Tests/ModelsTests/Fixtures; $PY tools/check_onnx_export.py /tmp/onnx/{hf_ast,ssast_patch,panns_cnn14,panns_cnn14_dlm,panns_cnn6,ssamba,ssamba_conformer,ssamba_moa_dense}.onnx \
      /tmp/onnx/ssast_{houlsby_conformer,adapter_before,moa_dense_echo,moa_soft_mlp,prefix,prompt_deep}.onnx \
      --hf $F/hf_ast_release --reference panns_cnn14=$F/panns_cnn14_8k_outputs.safetensors:logmel:clipwise:embedding \
      --reference panns_cnn14_dlm=$F/panns_cnn14_8k_outputs.safetensors:logmel:dlm_clipwise::dlm_framewise \
      --reference panns_cnn6=$F/panns_cnn6.safetensors:logmel:clipwise:embedding \
      --reference ssamba=$F/ssamba_outputs.safetensors:input:logits=logits:embedding --fixture $F/onnx_export.safetensors

For every model: onnx.checker (full check, shapes inferred), then onnxruntime on seeded features [2, frames, bins]
(numpy seed 0, standard normal). With --hf, transformers' ASTForAudioClassification on the same features gives the
logits the first model's must equal (the reference: the export is only as good as this agreement). --fixture
writes, per model named by its file stem, `<stem>.input`, `<stem>.logits`, `<stem>.embedding` from onnxruntime and
the metadata `<stem>.hash`: the FNV-1a 64 hash of the export written without its metadata (ONNXExportTests
re-exports and compares, so a changed exporter must be checked here again before its fixture is renewed).
"""
import argparse
import pathlib
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort


def fnv1a(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def varint(data: bytes, at: int):
    value, shift = 0, 0
    while True:
        b = data[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, at


def without_metadata(path: pathlib.Path) -> bytes:
    """The ModelProto's bytes before its first metadata_props field (14): Earshot writes the metadata last."""
    data = path.read_bytes()
    at = 0
    while at < len(data):
        key, after = varint(data, at)
        field, wire = key >> 3, key & 7
        if field == 14:
            return data[:at]
        if wire == 0:
            _, at = varint(data, after)
        elif wire == 2:
            length, start = varint(data, after)
            at = start + length
        else:
            sys.exit(f"{path}: unexpected wire type {wire} at the top level")
    return data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("onnx", nargs="+", type=pathlib.Path)
    p.add_argument("--hf", type=pathlib.Path, help="Hugging Face AST folder the first model was exported from")
    p.add_argument("--fixture", type=pathlib.Path, help="safetensors file of inputs and onnxruntime outputs to write")
    p.add_argument("--clap", type=pathlib.Path, help="Hugging Face ClapModel folder the models named clap* were exported from: "
                   "their L2-normalised embedding must equal transformers' get_audio_features")
    p.add_argument("--reference", action="append", default=[], metavar="STEM=FILE:INPUT:PROBS[:EMBEDDING[:FRAMEWISE]]",
                   help="run the model named STEM on INPUT from the safetensors FILE (outputs of the reference PyTorch code, "
                        "e.g. tools/make_panns_fixtures.py's) and require sigmoid(logits) = PROBS and embedding = EMBEDDING within 1e-4; "
                        "PROBS written logits=KEY compares the logits themselves with KEY; FRAMEWISE: the frame-wise probabilities "
                        "(a decision-level PANNs' framewise output; EMBEDDING may be empty)")
    p.add_argument("--audio", type=pathlib.Path, help="a clip to classify with the first model: features made by torchaudio "
                   "as its metadata's pipeline says (a Kaldi-fbank pipeline), the first window of the model's frames")
    a = p.parse_args()
    if a.audio:
        classify(a.onnx[0], a.audio)
    tensors, meta = {}, {}
    for i, path in enumerate(a.onnx):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        props = {e.key: e.value for e in model.metadata_props}
        if model.graph.input[0].name == "input_ids":
            check_text(path, model, a, tensors, meta)
            continue
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
        references = dict(r.split("=", 1) for r in a.reference)
        if path.stem in references:
            from safetensors.numpy import load_file
            file, input_key, probs_key, *rest = references[path.stem].split(":")
            embedding_key = [rest[0]] if rest and rest[0] else []
            framewise_key = rest[1] if len(rest) > 1 else None
            ref = load_file(file)
            x = ref[input_key]
        else:
            dims = [d if d > 0 else 100 for d in dims]   # a free frames axis (PANNs): 100 frames
            x = np.random.RandomState(0).standard_normal([2] + dims).astype(np.float32)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        logits, embedding, *extra = session.run(["logits", "embedding"] + [n for n in names if n == "framewise"], {"features": x})
        framewise = extra[0] if extra else None
        print(f"{path.name}: {props.get('architecture')} input {list(x.shape)}, logits {list(logits.shape)}, embedding {list(embedding.shape)}, "
              f"{len(model.graph.node)} nodes")
        if a.clap and path.stem.startswith("clap"):
            import torch
            from transformers import ClapModel
            ref = ClapModel.from_pretrained(str(a.clap)).float().eval()
            with torch.no_grad():
                out = ref.get_audio_features(input_features=torch.from_numpy(x)[:, None])
            expected = (out.pooler_output if hasattr(out, "pooler_output") else out).numpy()
            expected = expected / np.linalg.norm(expected, axis=-1, keepdims=True)
            ours = embedding / np.linalg.norm(embedding, axis=-1, keepdims=True)
            diff = float(np.abs(expected - ours).max())
            print(f"  transformers ClapModel.get_audio_features against onnxruntime (normalised): max |difference| {diff:.2e}")
            if props.get("architecture") == "clap-zeroshot":
                # The captions the labels became, through transformers' tokenizer and text tower: logits_per_audio.
                import json
                from transformers import AutoTokenizer
                labels, templates = json.loads(props["classes"]), json.loads(props["templates"])
                tokenizer = AutoTokenizer.from_pretrained(str(a.clap))
                text = []
                for t in templates:
                    captions = [t.replace("{label}", l) if "{label}" in t else t.replace("{}", l) for l in labels]
                    tokens = tokenizer(captions, padding=True, return_tensors="pt")
                    with torch.no_grad():
                        out = ref.get_text_features(**tokens)
                    e = (out.pooler_output if hasattr(out, "pooler_output") else out)
                    text.append(torch.nn.functional.normalize(e, dim=-1))
                t = torch.nn.functional.normalize(sum(text), dim=-1) if len(text) > 1 else text[0]
                expected_logits = (torch.from_numpy(expected) @ t.T * ref.logit_scale_a.exp()).detach().numpy()
                ldiff = float(np.abs(expected_logits - logits).max())
                print(f"  transformers zero-shot logits (captions {templates}) against onnxruntime: max |difference| {ldiff:.2e}")
                diff = max(diff, ldiff)
            meta[f"{path.stem}.transformers_max_abs_diff"] = f"{diff:.3e}"
            if diff > 1e-4:
                sys.exit(f"{path}: the export differs from transformers by {diff}")
        if path.stem in references:
            if probs_key.startswith("logits="):
                diffs = [float(np.abs(logits - ref[probs_key[len("logits="):]]).max())]
            else:
                diffs = [float(np.abs(1 / (1 + np.exp(-logits)) - ref[probs_key]).max())]
            if embedding_key:
                diffs.append(float(np.abs(embedding - ref[embedding_key[0]]).max()))
            if framewise_key:
                if framewise is None:
                    sys.exit(f"{path}: no framewise output to compare with {framewise_key}")
                diffs.append(float(np.abs(framewise - ref[framewise_key]).max()))
            print(f"  the reference ({file}) against onnxruntime: max |difference| " + ", ".join(f"{d:.2e}" for d in diffs))
            meta[f"{path.stem}.reference_max_abs_diff"] = f"{max(diffs):.3e}"
            if max(diffs) > 1e-4:
                sys.exit(f"{path}: the export differs from the reference by {max(diffs)}")
        if i == 0 and a.hf:
            import torch
            from transformers import ASTForAudioClassification
            ref = ASTForAudioClassification.from_pretrained(str(a.hf)).eval()
            with torch.no_grad():
                expected = ref(torch.from_numpy(x)).logits.numpy()
            diff = float(np.abs(expected - logits).max())
            print(f"  transformers ASTForAudioClassification against onnxruntime: max |difference| {diff:.2e}")
            meta[f"{path.stem}.transformers_max_abs_diff"] = f"{diff:.3e}"
            if diff > 1e-4:
                sys.exit(f"{path}: the export differs from transformers by {diff}")
        tensors[f"{path.stem}.input"] = x
        tensors[f"{path.stem}.logits"] = logits
        tensors[f"{path.stem}.embedding"] = embedding
        if framewise is not None:
            tensors[f"{path.stem}.framewise"] = framewise
        meta[f"{path.stem}.hash"] = fnv1a(without_metadata(path))
        # Constants the exporter computes (a zero-shot model's caption embeddings): the test rebuilds the
        # export from these, so its hash does not depend on the host's rounding.
        for init in model.graph.initializer:
            if init.name == "label_embeddings":
                tensors[f"{path.stem}.label_embeddings"] = onnx.numpy_helper.to_array(init).T.copy()
    if a.fixture:
        from safetensors.numpy import save_file
        save_file(tensors, str(a.fixture), metadata=meta)
        print(f"wrote {a.fixture}: {sorted(meta.items())}")


CAPTIONS = ["a dog barking", "rain falling on a window", "the siren of an ambulance passing by in the street"]


def check_text(path: pathlib.Path, model, a, tensors, meta):
    """A CLAP text export (`earshot export <clap> --text`): captions of three lengths through the --clap folder's
    tokenizer (right-padded), onnxruntime's unit text embeddings against transformers' get_text_features, normalised."""
    import torch
    from transformers import AutoTokenizer, ClapModel
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if not path.stem.startswith("clap"):
        # Not from a ClapModel folder (a BERT text tower): seeded ids, right-padded with 0, of three lengths.
        vocab = next(i.dims[0] for i in model.graph.initializer if i.name.endswith("word_embeddings.weight"))
        lengths = [4, 9, 6]
        ids = np.zeros([3, max(lengths)], np.int64)
        mask = np.zeros_like(ids)
        rng = np.random.RandomState(0)
        for r, n in enumerate(lengths):
            ids[r, :n], mask[r, :n] = rng.randint(1, vocab, n), 1
        (ours,) = session.run(["text_embedding"], {"input_ids": ids, "attention_mask": mask})
        print(f"{path.name}: text input {list(ids.shape)} (lengths {lengths}), {len(model.graph.node)} nodes")
        tensors[f"{path.stem}.input_ids"], tensors[f"{path.stem}.attention_mask"] = ids, mask
        tensors[f"{path.stem}.text_embedding"] = ours
        meta[f"{path.stem}.hash"] = fnv1a(without_metadata(path))
        return
    if not a.clap:
        sys.exit(f"{path}: a text export is checked with --clap, the ClapModel folder it came from")
    tokens = AutoTokenizer.from_pretrained(str(a.clap))(CAPTIONS, padding=True, return_tensors="np")
    ids, mask = tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64)
    (ours,) = session.run(["text_embedding"], {"input_ids": ids, "attention_mask": mask})
    ref = ClapModel.from_pretrained(str(a.clap)).float().eval()
    with torch.no_grad():
        out = ref.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    expected = (out.pooler_output if hasattr(out, "pooler_output") else out).numpy()
    expected = expected / np.linalg.norm(expected, axis=-1, keepdims=True)
    diff = float(np.abs(expected - ours).max())
    print(f"{path.name}: clap-text input {list(ids.shape)} (lengths {mask.sum(1).tolist()}), {len(model.graph.node)} nodes")
    print(f"  transformers ClapModel.get_text_features against onnxruntime (normalised): max |difference| {diff:.2e}")
    if diff > 1e-4:
        sys.exit(f"{path}: the export differs from transformers by {diff}")
    meta[f"{path.stem}.transformers_max_abs_diff"] = f"{diff:.3e}"
    tensors[f"{path.stem}.input_ids"] = ids
    tensors[f"{path.stem}.attention_mask"] = mask
    tensors[f"{path.stem}.text_embedding"] = ours
    meta[f"{path.stem}.hash"] = fnv1a(without_metadata(path))


def classify(path: pathlib.Path, audio: pathlib.Path):
    """What a user of the export does: features as the metadata's pipeline says, the graph, the scores."""
    import json
    import torch
    import torchaudio
    props = {e.key: e.value for e in onnx.load(str(path)).metadata_props}
    pipeline, classes = json.loads(props["pipeline"]), json.loads(props["classes"])
    kind = pipeline["kind"]
    if "kaldiFbank" not in kind:
        sys.exit(f"{path}: --audio makes Kaldi-fbank features only; this model reads {kind}")
    fbank = kind["kaldiFbank"]["_0"]
    import soundfile
    data, rate = soundfile.read(str(audio), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(1))[None]
    if rate != fbank["sampleRate"]:
        wave = torchaudio.functional.resample(wave, rate, fbank["sampleRate"])
    x = torchaudio.compliance.kaldi.fbank(wave - wave.mean(), htk_compat=True, sample_frequency=fbank["sampleRate"], use_energy=False,
                                          window_type="hanning", num_mel_bins=fbank["numMelBins"], dither=0.0, frame_shift=10)
    frames = pipeline["targetFrames"]
    x = torch.nn.functional.pad(x, (0, 0, 0, max(0, frames - x.shape[0])))[:frames]
    if pipeline.get("mean") is not None:
        x = (x - pipeline["mean"]) / (2 * pipeline["std"])
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"features": x[None].numpy()})[0][0]
    scores = 1 / (1 + np.exp(-logits)) if props.get("multi_label") == "true" else np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    top = np.argsort(-scores)[:3]
    print(f"{audio}: " + ", ".join(f"{classes[i]} {scores[i]:.3f}" for i in top))


if __name__ == "__main__":
    main()
