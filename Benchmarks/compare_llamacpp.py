#!/usr/bin/env python3
"""swift-llama against llama.cpp on the same GGUF file, the same threads, in the same run.

swift-llama runs as `llama bench -o json`; llama.cpp runs through `llama-cpp-python` (whose pip
install builds llama.cpp from source on this machine): ppN evaluates N random tokens in one
batch from an empty cache, tgN evaluates N tokens one at a time, as llama-bench does. Each test
is warmed up once, then measured -r times, alternating between the two. Prints one table with
tokens per second (mean +/- sd), the ratio swift-llama / llama.cpp, and for generation the
memory-bandwidth ceiling: measured read bandwidth (all threads) / weight bytes read per token.

Random-weight files of real shapes come from the project's own writer:
    llama random-model tinyllama-1.1b Q4_0 FILE --vocab ggml-vocab-llama-spm.gguf
(shapes stories110M, tinyllama-1.1b, llama2-7b; any `llama quantize` target). llama.cpp's own
llama-bench can be built from the same sdist with Benchmarks/build_llamacpp.sh.

    pip install llama-cpp-python
    python3 Benchmarks/compare_llamacpp.py [-m MODEL.gguf ...] [-p 512] [-n 128] [-t 2] [-r 3]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import threading
import time

import gguf
import llama_cpp
import numpy as np


def ours(llama, model, test, size, threads):
    args = [llama, "bench", "-m", model, "-t", str(threads), "-r", "1", "-o", "json",
            "-p", str(size if test == "pp" else 0), "-n", str(size if test == "tg" else 0)]
    out = subprocess.run(args, capture_output=True, check=True, text=True).stdout
    return json.loads(out)[0]["tokens_per_second"]


def theirs(llm, test, size, rng):
    llm.reset()
    if test == "pp":
        tokens = [rng.randrange(llm.n_vocab()) for _ in range(size)]
        start = time.perf_counter()
        llm.eval(tokens)
    else:
        start = time.perf_counter()
        token = llm.token_bos() if llm.token_bos() >= 0 else 0
        for _ in range(size):
            llm.eval([token])
    return size / (time.perf_counter() - start)


def bandwidth(threads, megabytes=512):
    """Read bandwidth in GB/s: `threads` threads each summing its own buffer (numpy frees the GIL)."""
    buffers = [np.ones(megabytes * 262144, dtype=np.float32) for _ in range(threads)]
    best = 0.0
    for _ in range(3):
        workers = [threading.Thread(target=b.sum) for b in buffers]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, threads * megabytes * 1048576 / (time.perf_counter() - start) / 1e9)
    return best


def bytes_per_token(model):
    """Weight bytes one generated token reads: every tensor except the embedding table, of which it
    reads one row (unless the table doubles as the output matrix, which is read whole)."""
    reader = gguf.GGUFReader(model)
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    return sum(int(t.n_bytes) for t in reader.tensors if tied or t.name != "token_embd.weight")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", action="append")
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-t", type=int, default=2)
    parser.add_argument("-r", type=int, default=3)
    parser.add_argument("--llama", default=".build/release/llama")
    args = parser.parse_args()
    models = args.model or [os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"),
                                         "SmolLM2-135M-Instruct.Q4_1.gguf")]
    rng = random.Random(0)
    gbs = bandwidth(args.t)
    print(f"llama.cpp through llama-cpp-python {llama_cpp.__version__}; {args.t} threads; {args.r} runs after a warm-up; "
          f"measured read bandwidth {gbs:.1f} GB/s\n")
    print("| model | test | swift-llama t/s | llama.cpp t/s | ratio | bandwidth ceiling t/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for model in models:
        llm = llama_cpp.Llama(model_path=model, n_ctx=max(args.p + args.n, 512), n_batch=max(args.p, 1), n_ubatch=max(args.p, 1),
                              n_threads=args.t, n_threads_batch=args.t, verbose=False)
        for test, size in [("pp", args.p), ("tg", args.n)]:
            if size <= 0:
                continue
            ours(args.llama, model, test, size, args.t)
            theirs(llm, test, size, rng)
            a, b = [], []
            for _ in range(args.r):
                a.append(ours(args.llama, model, test, size, args.t))
                b.append(theirs(llm, test, size, rng))
            sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
            ceiling = f"{gbs * 1e9 / bytes_per_token(model):.1f}" if test == "tg" else ""
            print(f"| {os.path.basename(model)} | {test}{size} | {statistics.mean(a):.2f} ± {sd(a):.2f} "
                  f"| {statistics.mean(b):.2f} ± {sd(b):.2f} | {statistics.mean(a) / statistics.mean(b):.2f} | {ceiling} |", flush=True)


if __name__ == "__main__":
    main()
