#!/usr/bin/env python3
"""Tokenizer speed: all of wiki.txt as one text, swift-llama beside Hugging Face `tokenizers`.

Both tokenize the same 1.3 MB string with the same vocabulary (each GGUF's tokens and merges; the
`tokenizers` model is built from the GGUF exactly as Scripts/tokenizer_oracle.py builds it), single
threaded, best of --runs. swift-llama's figure is the process time of `llama tokenize --jsonl`
less the time the same command takes on an empty text (start-up and vocabulary load).

    python3 Benchmarks/tokenize_wiki.py [--llama .build/release/llama] [--runs 5]
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Scripts"))
from tokenizer_oracle import hf_tokenizer_from_gguf  # noqa: E402


def best_of(runs, fn):
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama", default=".build/release/llama")
    parser.add_argument("--fixtures", default=os.environ.get("LLAMA_FIXTURES") or os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"), "fixtures"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    fx = args.fixtures
    with open(os.path.join(fx, "text/wiki.txt"), encoding="utf-8", newline="") as f:
        wiki = f.read()
    size_mb = len(wiki.encode()) / 1e6
    smollm = os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"),
                          "SmolLM2-135M-Instruct.Q4_1.gguf")
    vocabularies = [("Llama 3 (llama-bpe)", os.path.join(fx, "llamacpp-vocab/ggml-vocab-llama-bpe.gguf")),
                    ("SmolLM2 (smollm)", smollm),
                    ("GPT-2 (gpt-2)", os.path.join(fx, "llamacpp-vocab/ggml-vocab-gpt-2.gguf"))]

    def run_ours(model, text):
        out = subprocess.run([args.llama, "tokenize", "-m", model, "--jsonl", "--no-bos"],
                             input=(json.dumps(text) + "\n").encode(), capture_output=True, check=True)
        return json.loads(out.stdout)

    print(f"wiki.txt: {size_mb:.2f} MB, best of {args.runs} runs, 1 thread\n")
    print("| vocabulary | tokens | swift-llama encode | swift-llama load | tokenizers encode | ratio (tokenizers time / ours) | same ids |")
    print("|---|---:|---:|---:|---:|---:|:---:|")
    for name, path in vocabularies:
        hf = hf_tokenizer_from_gguf(path)
        hf_time, hf_ids = best_of(args.runs, lambda: hf.encode(wiki, add_special_tokens=False).ids)
        load, _ = best_of(args.runs, lambda: run_ours(path, ""))
        total, ids = best_of(args.runs, lambda: run_ours(path, wiki))
        encode = max(total - load, 1e-9)
        print(f"| {name} | {len(ids)} | {encode:.3f} s ({size_mb / encode:.1f} MB/s) | {load:.3f} s "
              f"| {hf_time:.3f} s ({size_mb / hf_time:.1f} MB/s) | {hf_time / encode:.2f}x | {'yes' if ids == hf_ids else 'NO'} |")


if __name__ == "__main__":
    main()
