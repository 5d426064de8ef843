#!/usr/bin/env python3
"""Golden figures from llama.cpp for every architecture, on the files
`Scripts/make_arch_variants.py` makes (SmolLM2's trained weights carried into each layout).

For each file, llama.cpp's own llama-perplexity (built from the llama-cpp-python sdist by
Benchmarks/build_llamacpp.sh, default settings, 2 threads) runs over the first chunks of
news.txt and saves its log-probabilities (--kl-divergence-base). From that file this script
keeps, per scored token: the token, and the 32 most likely tokens with llama.cpp's
log-probabilities. It also keeps llama.cpp's perplexity, and llama.cpp's KL divergence against
itself when run with `-ub 32 -t 1` instead of its defaults, and with flash attention off: the
yardsticks of float error the Swift test holds swift-llama to.

The trained Gemma 3 270M Q4_K_M file (Scripts/fetch_gemma3.py) is measured the same way, as
"gemma3-270m", over 2 chunks of 512.

    Benchmarks/build_llamacpp.sh && python3 Scripts/make_arch_variants.py && python3 Scripts/fetch_gemma3.py
    python3 Scripts/make_golden_architectures.py
"""
import argparse
import json
import os
import re
import struct
import subprocess
import tempfile

import numpy as np

VARIANTS = ["llama31", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "smollm3", "nemo", "yarn", "linear"]


def read_logits_file(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"_logits_"
        n_ctx, n_vocab, n_chunk = struct.unpack("<iii", f.read(12))
        tokens = np.frombuffer(f.read(4 * n_ctx * n_chunk), dtype=np.int32)
        nv = 2 * ((n_vocab + 1) // 2) + 4
        rows = n_ctx - 1 - n_ctx // 2
        data = np.frombuffer(f.read(), dtype=np.uint16).reshape(n_chunk * rows, nv)
    header = data[:, :4].copy().view(np.float32)  # scale, min_log_prob
    q = data[:, 4:4 + n_vocab].astype(np.float32)
    logp = q * header[:, :1] + header[:, 1:2]
    return n_ctx, n_vocab, n_chunk, tokens, logp


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r.stdout + r.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=".build-llamacpp/build/bin")
    parser.add_argument("--variants", default=".build/arch-variants")
    parser.add_argument("--fixtures", default=os.environ.get("LLAMA_FIXTURES") or os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"), "fixtures"))
    parser.add_argument("--out", default="Tests/LlamaTests/Golden/architectures.json")
    parser.add_argument("--ctx", type=int, default=256)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--top", type=int, default=32)
    parser.add_argument("--gemma", default=os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"),
                                                        "gemma-3-270m-q4_k_m.gguf"))
    args = parser.parse_args()
    text = os.path.join(args.fixtures, "text/news.txt")
    perplexity = os.path.join(args.bin, "llama-perplexity")
    golden = {"llama_cpp_python": os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36"), "ctx": args.ctx,
              "chunks": args.chunks, "text": "text/news.txt", "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(v, os.path.join(args.variants, f"smollm2-{v}.gguf"), args.ctx, args.chunks) for v in VARIANTS]
        runs.append(("gemma3-270m", args.gemma, 512, 2))
        for variant, model, ctx, chunks in runs:
            base = os.path.join(tmp, f"{variant}.bin")
            out = run([perplexity, "-m", model, "-f", text, "-c", str(ctx), "--chunks", str(chunks),
                       "-t", "2", "--kl-divergence-base", base])
            ppl = float(re.search(r"Final estimate: PPL = ([0-9.]+)", out).group(1))
            # llama.cpp against itself with another batch split and thread count.
            out = run([perplexity, "-m", model, "-c", str(ctx), "-ub", "32", "-t", "1",
                       "--kl-divergence-base", base, "--kl-divergence"])
            self_kld = float(re.search(r"Mean\s+KLD:\s+([0-9.eE+-]+)", out).group(1))
            self_ppl = float(re.search(r"Mean PPL\(Q\)\s+:\s+([0-9.eE+-]+)", out).group(1))
            same_top = float(re.search(r"Same top p:\s+([0-9.]+)", out).group(1)) / 100
            # And without flash attention (llama.cpp's CPU default is on; its own non-FA path differs
            # from it by float error too, and is the path swift-llama's attention resembles).
            out = run([perplexity, "-m", model, "-c", str(ctx), "-fa", "off", "-t", "2",
                       "--kl-divergence-base", base, "--kl-divergence"])
            fa_off_ppl = float(re.search(r"Mean PPL\(Q\)\s+:\s+([0-9.eE+-]+)", out).group(1))
            fa_off_kld = float(re.search(r"Mean\s+KLD:\s+([0-9.eE+-]+)", out).group(1))
            n_ctx, n_vocab, n_chunk, tokens, logp = read_logits_file(base)
            rows = []
            for r in range(logp.shape[0]):
                top = np.argsort(-logp[r])[:args.top]
                rows.append({"ids": top.tolist(), "logprobs": [round(float(x), 5) for x in logp[r][top]]})
            golden["models"][variant] = {
                "ctx": ctx, "chunks": chunks, "perplexity": ppl, "self_perplexity": self_ppl, "self_kld": self_kld,
                "fa_off_perplexity": fa_off_ppl, "fa_off_kld": fa_off_kld, "self_same_top": same_top,
                "vocab": n_vocab, "tokens": tokens.tolist(), "rows": rows}
            print(f"{variant}: PPL {ppl}, llama.cpp -ub 32 -t 1 vs default: KLD {self_kld}, same top {same_top}; "
                  f"-fa off: PPL {fa_off_ppl}, KLD {fa_off_kld}")
    with open(args.out, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    # A small base file in llama.cpp's own format, for the reader's test: tiny260K, 2 chunks of 64.
    run([perplexity, "-m", os.path.join(args.fixtures, "tiny260K/tiny260K.gguf"), "-f", text, "-c", "64",
         "--chunks", "2", "-t", "2", "--kl-divergence-base", os.path.join(os.path.dirname(args.out), "tiny260K-llamacpp.kld")])


if __name__ == "__main__":
    main()
