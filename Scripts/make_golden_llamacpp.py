#!/usr/bin/env python3
"""Golden figures from llama.cpp itself (through `llama-cpp-python`, whose pip install builds
llama.cpp from source) for the default model, SmolLM2-135M-Instruct Q4_1:

- logits.json: llama.cpp's logits after each of the first 64 tokens of news.txt (teacher
  forcing), evaluated one token at a time as generation does: at every position the argmax, the
  log-sum-exp over the whole vocabulary, and the 32 largest logits with their ids. llama.cpp is
  run a second time with all 64 tokens in one batch; its logits then differ from its own
  one-at-a-time logits (its batched kernels sum in another order and 8-bit activation rounding
  amplifies that), and the file records by how much, and where the argmax changes: that spread
  is the tolerance the Swift tests hold swift-llama to.
- perplexity.json: perplexity over the first chunks of news.txt at n_ctx 512, computed from
  llama.cpp's logits exactly as llama.cpp's llama-perplexity does (non-overlapping chunks, BOS
  first where the vocabulary adds one, only the second half of each chunk scored), with the
  running estimate after every chunk.

llama.cpp runs with an F32 KV cache and without flash attention, so its attention is plain
float32 arithmetic; the weight products quantize activations to 8 bits as always.

    pip install llama-cpp-python   # builds llama.cpp; takes several minutes
    # or, with llama.cpp already built by Benchmarks/build_llamacpp.sh, only the bindings:
    #   CMAKE_ARGS=-DLLAMA_BUILD=OFF pip install llama-cpp-python==0.3.36 diskcache
    #   export LLAMA_CPP_LIB_PATH=.build-llamacpp/build/bin
    python3 Scripts/make_golden_llamacpp.py --model ~/.cache/swift-llama/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import math
import os

import llama_cpp
import numpy as np

GGML_TYPE_F32 = 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/swift-llama/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--fixtures", default=os.environ.get("LLAMA_FIXTURES") or os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"), "fixtures"))
    parser.add_argument("--out", default="Tests/LlamaTests/Golden")
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with open(os.path.join(args.fixtures, "text/news.txt"), "rb") as f:
        text = f.read()
    settings = dict(n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True, flash_attn=False,
                    type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, n_threads=args.threads,
                    n_threads_batch=args.threads, verbose=False)
    llm = llama_cpp.Llama(model_path=args.model, **settings)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
    tokens = llm.tokenize(text, add_bos=add_bos, special=False)
    meta = {"model": os.path.basename(args.model), "llama_cpp_python": llama_cpp.__version__,
            "settings": {k: v for k, v in settings.items() if k != "verbose"}}

    # Logits over 64 tokens: one token at a time (the reference), and in one batch.
    first = tokens[:64]
    sequential = llama_cpp.Llama(model_path=args.model, **{**settings, "n_batch": 1, "n_ubatch": 1})
    sequential.eval(first)
    logits = np.array(sequential.scores[:64], dtype=np.float64)
    llm.reset()
    llm.eval(first)
    batched = np.array(llm.scores[:64], dtype=np.float64)
    spread = float(max(np.abs(batched[i][np.argsort(-logits[i])[:32]] - logits[i][np.argsort(-logits[i])[:32]]).max()
                       for i in range(64)))
    rows = []
    for row in logits:
        top = np.argsort(-row)[:32]
        m = row.max()
        rows.append({"argmax": int(top[0]), "logsumexp": float(m + math.log(np.exp(row - m).sum())),
                     "top_ids": [int(i) for i in top], "top_logits": [float(row[i]) for i in top]})
    with open(os.path.join(args.out, "logits.json"), "w") as f:
        json.dump({**meta, "evaluation": "one token at a time (n_batch 1)", "tokens": first, "positions": rows,
                   "batched_argmax": [int(r.argmax()) for r in batched],
                   "batched_top32_max_abs_diff": spread}, f)

    # Perplexity, as llama-perplexity computes it.
    n_ctx = 512
    n_chunks = min(args.chunks, len(tokens) // n_ctx)
    nll = nll2 = 0.0
    count = 0
    running = []
    for c in range(n_chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        batch = list(chunk)
        if add_bos:
            batch[0] = llm.token_bos()
        llm.reset()
        llm.eval(batch)
        scores = np.array(llm.scores[:n_ctx], dtype=np.float64)
        for i in range(n_ctx // 2, n_ctx - 1):
            row = scores[i]
            m = row.max()
            logprob = row[chunk[i + 1]] - m - math.log(np.exp(row - m).sum())
            nll -= logprob
            nll2 += logprob * logprob
            count += 1
        running.append(math.exp(nll / count))
        print(f"[{c + 1}]{running[-1]:.4f}", flush=True)
    mean = nll / count
    variance = nll2 / count - mean * mean
    error = math.sqrt(variance / (count - 1)) * math.exp(mean) if variance > 0 else 0.0
    with open(os.path.join(args.out, "perplexity.json"), "w") as f:
        json.dump({**meta, "text": "news.txt", "n_ctx": n_ctx, "chunks": n_chunks, "token_count": len(tokens),
                   "running_ppl": running, "ppl": math.exp(mean), "ppl_error": error}, f, indent=1)
    print(f"Final estimate: PPL = {math.exp(mean):.4f} +/- {error:.5f}")


if __name__ == "__main__":
    main()
