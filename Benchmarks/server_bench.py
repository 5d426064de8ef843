#!/usr/bin/env python3
"""Load on `llama serve`, and the same load on llama.cpp's `llama-server`.

  load     N concurrent streaming clients x M requests each, once per slot count (default 16 x 8
           with --parallel 8, then 1): every request must complete, the server's memory must stay
           flat (resident size after the first round against the end), and the aggregate
           generated tokens/s with 8 slots is reported against 1 slot.
  compare  aggregate tokens/s at 1, 4 and 8 concurrent clients, swift-llama against llama-server
           (built from the llama-cpp-python sdist by build_llamacpp.sh) on the same model file,
           same slots, threads and context, in the same run.

Each request is a streamed completion of --max-tokens tokens with the model's end tokens banned
(logit_bias -100), so both servers do the same work; clients use the official `openai` package.

    python3 Benchmarks/server_bench.py load
    python3 Benchmarks/server_bench.py load --clients 4 --requests 2 --max-tokens 32 --check   # what CI runs
    python3 Benchmarks/server_bench.py compare [--llama-server PATH]
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import json

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["Once upon a time", "The history of the city began", "In a distant galaxy", "The recipe starts with",
           "Dear diary, today", "The scientist looked at the data and", "Rain fell on the old house while", "Chapter one:"]
END_TEXTS = ["</s>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_healthy(process, port, name):
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    process.kill()
    sys.exit(f"{name} did not become healthy within 180 s")


class Server:
    """A server process on a free port: ours or llama-server."""

    def __init__(self, kind, binary, model, slots, context, threads):
        self.kind, self.port = kind, free_port()
        if kind == "swift-llama":
            command = [binary, "serve", "--port", str(self.port), "--parallel", str(slots), "-c", str(context), "-t", str(threads)]
            if model:
                command += ["-m", model]
        else:
            command = [binary, "-m", model, "--port", str(self.port), "-np", str(slots), "-c", str(context), "-t", str(threads),
                       "-tb", str(threads), "--no-webui"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(self.process, self.port, kind)
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", max_retries=0, timeout=600)
        self.model = self.client.models.list().data[0].id

    def end_tokens(self):
        """Ids of the model's end tokens (each a single special token), to ban them."""
        ids = []
        for text in END_TEXTS:
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}/tokenize", method="POST",
                                             data=json.dumps({"content": text, "add_special": False, "parse_special": True}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as r:
                tokens = json.loads(r.read())["tokens"]
            if len(tokens) == 1:
                ids.append(tokens[0])
        return ids

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_load(server, clients, requests, max_tokens, banned, sampler=None):
    """`clients` threads, each streaming `requests` completions one after another. Returns
    (generated tokens, seconds, failures, peak resident MiB, resident MiB after each request round)."""
    bias = {str(t): -100 for t in banned}
    tokens = [0] * clients
    failures = []
    lock = threading.Lock()
    rounds_done = [0] * clients
    samples = []
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            samples.append(rss_mib(server.process.pid))
            time.sleep(0.1)

    def client(index):
        for r in range(requests):
            try:
                stream = server.client.completions.create(
                    model=server.model, prompt=PROMPTS[(index + r) % len(PROMPTS)], max_tokens=max_tokens, stream=True,
                    temperature=0.8, top_p=0.95, seed=index * 100 + r, logit_bias=bias, stream_options={"include_usage": True})
                counted, chunks = None, 0
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].text:
                        chunks += 1
                    if chunk.usage:
                        counted = chunk.usage.completion_tokens
                tokens[index] += counted if counted is not None else chunks
            except Exception as error:  # noqa: BLE001 - every failure is reported
                with lock:
                    failures.append(f"client {index} request {r}: {type(error).__name__}: {error}")
            rounds_done[index] = r + 1

    sampler_thread = threading.Thread(target=sample, daemon=True)
    sampler_thread.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.time()
    after_first_round = None
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if after_first_round is None and min(rounds_done) >= 1:
            after_first_round = rss_mib(server.process.pid)
        time.sleep(0.05)
    seconds = time.time() - start
    stop_sampling.set()
    sampler_thread.join()
    end = rss_mib(server.process.pid)
    return {"tokens": sum(tokens), "seconds": seconds, "failures": failures, "peak": max(samples or [end]),
            "after_first_round": after_first_round or end, "end": end}


def llama_binary():
    path = os.path.join(ROOT, ".build/release/llama")
    if not os.path.exists(path):
        subprocess.run(["swift", "build", "-c", "release", "--product", "llama"], cwd=ROOT, check=True)
    return path


def load(args):
    ok = True
    results = {}
    for slots in args.slots:
        server = Server("swift-llama", args.llama or llama_binary(), args.model, slots, args.ctx_per_slot * slots, args.threads)
        try:
            banned = server.end_tokens()
            run_load(server, 1, 1, 4, banned)  # warm-up: pages of the weights in memory
            r = run_load(server, args.clients, args.requests, args.max_tokens, banned)
        finally:
            server.stop()
        results[slots] = r
        expected = args.clients * args.requests
        completed = expected - len(r["failures"])
        growth = r["end"] - r["after_first_round"]
        print(f"--parallel {slots}: {args.clients} clients x {args.requests} requests: {completed}/{expected} completed, "
              f"{r['tokens']} tokens in {r['seconds']:.1f} s = {r['tokens'] / r['seconds']:.1f} tokens/s; "
              f"resident {r['after_first_round']:.0f} MiB after the first round, {r['end']:.0f} MiB at the end "
              f"({growth:+.0f} MiB), peak {r['peak']:.0f} MiB", flush=True)
        for failure in r["failures"][:10]:
            print("  " + failure)
        if r["failures"]:
            ok = False
        if r["tokens"] != expected * args.max_tokens:
            print(f"  expected {expected * args.max_tokens} tokens")
            ok = False
        # Flat: no more than 5% (and 16 MiB) over the size after the first round of requests.
        if growth > max(16, 0.05 * r["after_first_round"]):
            print("  memory grew")
            ok = False
    if len(args.slots) >= 2:
        many, one = args.slots[0], args.slots[-1]
        speedup = (results[many]["tokens"] / results[many]["seconds"]) / (results[one]["tokens"] / results[one]["seconds"])
        print(f"aggregate tokens/s, {many} slots against {one}: {speedup:.2f}x")
        if speedup <= 1.0:
            print("  batching did not raise the throughput")
            ok = False
    if args.check and not ok:
        sys.exit("load test failed")


def compare(args):
    model = args.model
    if not model:
        sys.path.insert(0, ROOT)
        model = subprocess.run([args.llama or llama_binary(), "info"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in model.splitlines() if line.lower().startswith("file")), None)
    if not model or not os.path.exists(model):
        sys.exit("give --model FILE (a GGUF file both servers load)")
    server_binary = args.llama_server
    if not server_binary:
        bin_dir = subprocess.run([os.path.join(ROOT, "Benchmarks/build_llamacpp.sh"), args.llamacpp_dir],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        server_binary = os.path.join(bin_dir, "llama-server")
    slots = max(args.clients_list)
    rows = []
    for clients in args.clients_list:
        row = {"clients": clients}
        for kind in ("swift-llama", "llama.cpp"):
            binary = (args.llama or llama_binary()) if kind == "swift-llama" else server_binary
            server = Server(kind, binary, model, slots, args.ctx_per_slot * slots, args.threads)
            try:
                banned = server.end_tokens()
                run_load(server, 1, 1, 4, banned)
                r = run_load(server, clients, args.requests, args.max_tokens, banned)
            finally:
                server.stop()
            if r["failures"]:
                print(f"{kind}: {len(r['failures'])} failures, first: {r['failures'][0]}")
            row[kind] = r
            print(f"{kind:12s} {clients} clients: {r['tokens'] / r['seconds']:.1f} tokens/s, peak {r['peak']:.0f} MiB", flush=True)
        rows.append(row)
    print(f"\nmodel {os.path.basename(model)}, {slots} slots, {args.ctx_per_slot} positions each, {args.threads} threads, "
          f"{args.requests} streamed completions of {args.max_tokens} tokens per client")
    print("| clients | swift-llama t/s | llama-server t/s | ratio | swift-llama peak MiB | llama-server peak MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        a, b = row["swift-llama"], row["llama.cpp"]
        ta, tb = a["tokens"] / a["seconds"], b["tokens"] / b["seconds"]
        print(f"| {row['clients']} | {ta:.1f} | {tb:.1f} | {ta / tb:.2f} | {a['peak']:.0f} | {b['peak']:.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("load", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--llama", help="the llama binary (default: .build/release/llama, built if missing)")
        p.add_argument("--model", help="GGUF file (default: the default model)")
        p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
        p.add_argument("--ctx-per-slot", type=int, default=512)
        p.add_argument("--max-tokens", type=int, default=64)
    load_parser, compare_parser = sub.choices["load"], sub.choices["compare"]
    load_parser.add_argument("--clients", type=int, default=16)
    load_parser.add_argument("--requests", type=int, default=8)
    load_parser.add_argument("--slots", type=lambda s: [int(x) for x in s.split(",")], default=[8, 1])
    load_parser.add_argument("--check", action="store_true", help="exit non-zero on a failure, growth or no speed-up")
    compare_parser.add_argument("--clients-list", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    compare_parser.add_argument("--requests", type=int, default=4)
    compare_parser.add_argument("--llama-server", help="llama-server binary (default: build with build_llamacpp.sh)")
    compare_parser.add_argument("--llamacpp-dir", default=os.path.join(ROOT, ".build-llamacpp"))
    args = parser.parse_args()
    load(args) if args.mode == "load" else compare(args)


if __name__ == "__main__":
    main()
