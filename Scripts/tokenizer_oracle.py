#!/usr/bin/env python3
"""Compare `llama tokenize` against independent tokenizers on fresh random strings.

Oracles: `sentencepiece` with Meta's Llama 2 tokenizer.model (for the SentencePiece vocabulary),
and Hugging Face `tokenizers` built from each byte-level GGUF vocabulary's own tokens, merges and
pre-tokenizer (Llama 3, GPT-2, SmolLM2). Every run draws new strings unless --seed is given;
a failure prints the seed and the strings that differ, so it can be replayed.

    python3 Scripts/tokenizer_oracle.py --llama .build/release/llama [--count 300] [--seed N]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
import unicodedata

import gguf
import sentencepiece
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gguf_strings(reader, key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def hf_tokenizer_from_gguf(path):
    """A Hugging Face tokenizer made from the GGUF's vocabulary, merges and pre-tokenizer name."""
    reader = gguf.GGUFReader(path)
    tokens = gguf_strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in gguf_strings(reader, "tokenizer.ggml.merges")]
    pre = bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=(pre == "llama-bpe")))
    if pre == "llama-bpe":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    elif pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    elif pre == "gpt-2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        raise SystemExit(f"{path}: no oracle for pre-tokenizer {pre!r}")
    tok.decoder = decoders.ByteLevel()
    return tok


# --- random strings ---------------------------------------------------------------------------

WORDS = ["the", "Hello", "world", "don't", "I'LL", "we've", "it's", "THEY'RE", "x", "llama", "naïve",
         "café", "Straße", "über", "résumé", "ÉCOLE", "coöperate", "Ελληνικά", "Русский", "текст",
         "日本語", "中文字符", "한국어", "ไทย", "العربية", "עברית", "हिन्दी", "தமிழ்", "ḁ̷̛", "ﬁ", "Ⅻ", "²³", "½"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00a0", "\u3000", "\u2009", "\u200b", "\v", "\f"]
EMOJI = ["🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷", "😀", "❤️", "🔥🔥", "✅", "🧑🏿‍🚀"]
CODE = ["def f(x):\n    return x**2", "for (int i = 0; i < n; ++i) {", "}", "if a != b && c >= 3:",
        "#include <stdio.h>", "x = {'a': [1, 2.5e-3]}", "=> {}", "/* comment */", "\\n", "&&||", "::",
        "<html><body>", "SELECT * FROM t;", "$HOME/.cache", "'''", "\"\"\"", "1_000_000", "0xFF", "...", "—", "«»"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["’", "“", "”", "…", "·", "¿", "¡", "§", "°"]


def random_codepoint(rng):
    while True:
        cp = rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF), rng.randint(0x3000, 0xD7FF),
                         rng.randint(0xF900, 0xFFFD), rng.randint(0x1F300, 0x1FAFF)])
        ch = chr(cp)
        if unicodedata.category(ch) not in ("Cn", "Cs", "Co", "Cc"):
            return ch


def random_piece(rng):
    kind = rng.random()
    if kind < 0.30:
        return rng.choice(WORDS)
    if kind < 0.45:
        return rng.choice(SPACES)
    if kind < 0.55:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12))) + rng.choice(["", ".", ",", " ", "%"])
    if kind < 0.65:
        return rng.choice(PUNCT) * rng.randint(1, 3)
    if kind < 0.75:
        return rng.choice(CODE)
    if kind < 0.82:
        return rng.choice(EMOJI)
    return "".join(random_codepoint(rng) for _ in range(rng.randint(1, 4)))


def random_string(rng):
    n = rng.choice([1, 2, 3, 5, 8, 13, 30])
    return "".join(random_piece(rng) for _ in range(n))


# --- comparison -------------------------------------------------------------------------------

def ours(llama, model, texts):
    """Token ids from `llama tokenize --jsonl`, without BOS."""
    payload = "".join(json.dumps(t) + "\n" for t in texts)
    out = subprocess.run([llama, "tokenize", "-m", model, "--jsonl", "--no-bos"], input=payload.encode(),
                         capture_output=True, check=True)
    lines = out.stdout.decode().splitlines()
    assert len(lines) == len(texts), (len(lines), len(texts), out.stderr.decode())
    return [json.loads(line) for line in lines]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama", default=".build/release/llama")
    parser.add_argument("--fixtures", default=os.environ.get("LLAMA_FIXTURES") or os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"), "fixtures"))
    parser.add_argument("--default-model", default=None, help="SmolLM2 GGUF (default: the llama cache)")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else random.SystemRandom().randint(0, 2**32)
    rng = random.Random(seed)
    texts = [random_string(rng) for _ in range(args.count)]
    fx = args.fixtures
    smollm = args.default_model or os.path.join(
        os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"), "SmolLM2-135M-Instruct.Q4_1.gguf")

    spm = sentencepiece.SentencePieceProcessor(model_file=os.path.join(fx, "llama2-tokenizer/tokenizer.model"))
    cases = [
        ("llama-spm (sentencepiece)", os.path.join(fx, "llamacpp-vocab/ggml-vocab-llama-spm.gguf"),
         lambda t: spm.encode(t)),
    ]
    for name, path in [("llama-bpe (tokenizers)", os.path.join(fx, "llamacpp-vocab/ggml-vocab-llama-bpe.gguf")),
                       ("gpt-2 (tokenizers)", os.path.join(fx, "llamacpp-vocab/ggml-vocab-gpt-2.gguf")),
                       ("smollm2 (tokenizers)", smollm)]:
        hf = hf_tokenizer_from_gguf(path)
        cases.append((name, path, lambda t, hf=hf: hf.encode(t, add_special_tokens=False).ids))

    # Real text too: the whole WikiText-2 test split as one string (CRLF line ends kept).
    with open(os.path.join(fx, "text/wiki.txt"), encoding="utf-8", newline="") as f:
        wiki = f.read()

    print(f"tokenizer oracle: {len(texts)} random strings (seed {seed}) and wiki.txt whole")
    passed = failed = 0
    for name, path, oracle in cases:
        start = time.time()
        got = ours(args.llama, path, texts + [wiki])
        bad = [(t, g, oracle(t)) for t, g in zip(texts, got) if g != oracle(t)]
        wiki_ids = oracle(wiki)
        wiki_ok = got[-1] == wiki_ids
        passed += len(texts) - len(bad) + wiki_ok
        failed += len(bad) + (not wiki_ok)
        print(f"  {name:28s} {len(texts) - len(bad)}/{len(texts)} identical, wiki.txt "
              f"{'identical' if wiki_ok else 'DIFFERENT'} ({len(wiki_ids)} tokens)  ({time.time() - start:.1f}s)")
        for t, g, want in bad[:5]:
            print(f"    text {t!r}\n      ours   {g}\n      oracle {want}")
        if not wiki_ok:
            first = next((i for i, (a, b) in enumerate(zip(got[-1], wiki_ids)) if a != b), min(len(got[-1]), len(wiki_ids)))
            print(f"    wiki.txt first differs at token {first}: ours {got[-1][first:first + 5]} oracle {wiki_ids[first:first + 5]}")
    print(f"{passed} passed, {failed} failed")
    if failed:
        print(f"replay with --seed {seed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
