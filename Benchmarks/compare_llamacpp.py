#!/usr/bin/env python3
"""swift-llama against llama.cpp on the same GGUF file, the same threads, in the same run.

swift-llama runs as `llama bench -o json`; llama.cpp runs through `llama-cpp-python` (whose pip
install builds llama.cpp from source on this machine): ppN evaluates N random tokens in one
batch from an empty cache, tgN evaluates N tokens one at a time, as llama-bench does. Each test
is warmed up once, then measured -r times, alternating between the two. Prints one table with
tokens per second (mean +/- sd) and the ratio swift-llama / llama.cpp.

    pip install llama-cpp-python
    python3 Benchmarks/compare_llamacpp.py [-m MODEL.gguf ...] [-p 512] [-n 128] [-t 2] [-r 3]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import time

import llama_cpp


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
    print(f"llama.cpp through llama-cpp-python {llama_cpp.__version__}; {args.t} threads; {args.r} runs after a warm-up\n")
    print("| model | test | swift-llama t/s | llama.cpp t/s | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
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
            print(f"| {os.path.basename(model)} | {test}{size} | {statistics.mean(a):.2f} ± {sd(a):.2f} "
                  f"| {statistics.mean(b):.2f} ± {sd(b):.2f} | {statistics.mean(a) / statistics.mean(b):.2f} |", flush=True)


if __name__ == "__main__":
    main()
