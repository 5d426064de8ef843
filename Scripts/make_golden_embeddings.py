#!/usr/bin/env python3
"""Golden embeddings from llama.cpp itself (through `llama-cpp-python`) for the default model,
SmolLM2-135M-Instruct Q4_1: for a few texts, the token ids llama.cpp feeds and the embedding it
returns with mean pooling (the hidden states after the output norm, averaged over the tokens),
scaled to unit length as llama-server's /v1/embeddings does.

    pip install llama-cpp-python   # builds llama.cpp; takes several minutes
    python3 Scripts/make_golden_embeddings.py --model ~/.cache/swift-llama/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import os

import llama_cpp
import numpy as np

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "def add(a, b):\n    return a + b",
    "Llamas are domesticated South American camelids, used as meat and pack animals.",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/swift-llama/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--out", default="Tests/LlamaTests/Golden/embeddings.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    llm = llama_cpp.Llama(model_path=args.model, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                          n_ctx=512, n_batch=512, n_ubatch=512, n_threads=args.threads, verbose=False)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
    cases = []
    for text in TEXTS:
        tokens = llm.tokenize(text.encode(), add_bos=add_bos, special=False)
        vector = np.array(llm.embed(text, normalize=False), dtype=np.float64)
        vector /= np.linalg.norm(vector)
        cases.append({"text": text, "tokens": tokens, "embedding": [round(float(v), 7) for v in vector]})
    with open(args.out, "w") as f:
        json.dump({"model": os.path.basename(args.model), "llama_cpp_python": llama_cpp.__version__,
                   "pooling": "mean", "normalized": True, "cases": cases}, f)
    print(f"wrote {len(cases)} embeddings of {len(cases[0]['embedding'])} dimensions to {args.out}")


if __name__ == "__main__":
    main()
