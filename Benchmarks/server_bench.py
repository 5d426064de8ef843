#!/usr/bin/env python3
"""Load on `llama serve`, and the same load on llama.cpp's `llama-server`.

  load     N concurrent streaming clients x M requests each, once per slot count (default 16 x 8
           with --parallel 8, then 1): every request must complete, the server's memory must stay
           flat (resident size after the first round against the end), and the aggregate
           generated tokens/s with 8 slots is reported against 1 slot.
  compare  aggregate tokens/s at 1, 4 and 8 concurrent clients, swift-llama against llama-server
           (built from the llama-cpp-python sdist by build_llamacpp.sh) on the same model file,
           same slots, threads and context, in the same run.
  chaos    --seconds of random valid and hostile requests from several clients at once (bad JSON,
           wrong types, oversized fields and bodies, grammar and schema bombs, huge logit_bias,
           embedding floods, random bytes, trickled headers, clients that leave mid-answer),
           with /health probed throughout. Every valid request must be answered 200, every
           hostile one with a 4xx (never a 5xx or a dropped connection), /health quickly, and the
           server's memory must come back to its level. --chat-template-file serves the model
           with another (e.g. hostile) template.

Each request is a streamed completion of --max-tokens tokens with the model's end tokens banned
(logit_bias -100), so both servers do the same work; clients use the official `openai` package.

    python3 Benchmarks/server_bench.py load
    python3 Benchmarks/server_bench.py load --clients 4 --requests 2 --max-tokens 32 --check   # what CI runs
    python3 Benchmarks/server_bench.py compare [--llama-server PATH]
    python3 Benchmarks/server_bench.py chaos --seconds 600 [--chat-template-file Benchmarks/hostile.jinja]
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
import random
import statistics

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

    def __init__(self, kind, binary, model, slots, context, threads, extra=()):
        self.kind, self.port = kind, free_port()
        if kind == "swift-llama":
            command = [binary, "serve", "--port", str(self.port), "--parallel", str(slots), "-c", str(context), "-t", str(threads)]
            command += list(extra)
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


# MARK: chaos

def raw_request(port, method, path, body=b"", headers=None, read=True, timeout=120):
    """One HTTP/1.1 request on its own connection; (status, body bytes). Status 0: the
    connection failed or closed without an answer."""
    headers = dict(headers or {})
    if body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head.encode() + body)
        except OSError:
            pass  # the server may refuse a body it will not read (413): its answer still counts
        if not read:
            return 0, b""
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    if not data.startswith(b"HTTP/1.1 "):
        return 0, data
    return int(data[9:12]), data.split(b"\r\n\r\n", 1)[-1]


def hostile_bodies(vocab):
    """(route, body bytes) of requests that must be refused (4xx) or answered without harm."""
    chat = lambda extra: json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **extra}).encode()
    return [
        ("/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 4, "temperature": 0.8,
                                        "logit_bias": {str(i): -100 for i in range(vocab)}}).encode()),
        ("/v1/chat/completions", chat({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "maxLength": 1e300}}}})),
        ("/v1/chat/completions", chat({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "maxItems": -2**63}}}})),
        ("/v1/chat/completions", chat({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(3000)}}}}})),
        ("/v1/completions", json.dumps({"prompt": "Hi", "grammar": "root ::= " + "(" * 100000 + '"a"' + ")" * 100000}).encode()),
        ("/v1/completions", json.dumps({"prompt": "Hi", "grammar": 'root ::= "' + "x" * 20000 + '"{99999}'}).encode()),
        ("/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 2, "grammar": "root ::= r0\n" + "".join(f'r{i} ::= "x" | r{i + 1}\n' for i in range(20000)) + 'r20000 ::= "y"\n'}).encode()),
        ("/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 2, "temperature": 1, "grammar": "root ::= " + " | ".join(f'"w{i}"' for i in range(20000))}).encode()),
        ("/v1/completions", ("{" + ",".join(f'"k{i}":0' for i in range(200000)) + ',"prompt":"Hi","max_tokens":1}').encode()),
        ("/v1/embeddings", json.dumps({"input": ["hello"] * 10000}).encode()),
        ("/v1/completions", json.dumps({"prompt": "hello " * 1300000, "max_tokens": 1}).encode()),
        ("/v1/chat/completions", ("[" * 100000 + "]" * 100000).encode()),
        ("/v1/chat/completions", b"{\"messages\": [" + b"{\"role\":\"user\",\"content\":\"x\"}," * 1000 + b"]}"),
        ("/v1/completions", b"\x00\xff" * 1000),
        ("/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": -5, "temperature": "hot", "n": 10**30}).encode()),
        ("/v1/completions", json.dumps({"prompt": [2**40, -1], "max_tokens": 2}).encode()),
        ("/tokenize", json.dumps({"content": 12}).encode()),
        ("/detokenize", json.dumps({"tokens": [10**12]}).encode()),
    ]


def chaos(args):
    binary = args.llama or llama_binary()
    extra = ["--chat-template-file", args.chat_template_file] if args.chat_template_file else []
    extra += ["--max-body", str(9 << 20)]
    server = Server("swift-llama", binary, args.model, args.slots, args.ctx_per_slot * args.slots, args.threads, extra)
    port = server.port
    vocab = server.client.models.list().data[0].model_extra.get("meta", {}).get("n_vocab", 49152)
    hostile = hostile_bodies(vocab)
    banned = server.end_tokens()
    valid = [
        ("chat", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}),
        ("completion", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 8}),
        ("json_object", "/v1/chat/completions", {"messages": [{"role": "user", "content": "A JSON object please"}], "max_tokens": 12,
                                                 "response_format": {"type": "json_object"}}),
        ("embeddings", "/v1/embeddings", {"input": ["hello world", "good morning"]}),
        ("tokenize", "/tokenize", {"content": "Hello world"}),
    ]
    if args.chat_template_file:
        # A hostile template refuses every chat: those become hostile requests (4xx expected).
        valid = [v for v in valid if v[0] not in ("chat", "json_object")]
        hostile += [("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "Hi"}] * n, "max_tokens": 4}).encode())
                    for n in range(1, 5)]
    counts = {}
    problems = []
    lock = threading.Lock()
    health = []
    rss = []
    stop = threading.Event()

    def note(kind, status, ok, detail=""):
        with lock:
            c = counts.setdefault(kind, {"sent": 0, "ok": 0, "statuses": {}})
            c["sent"] += 1
            c["ok"] += ok
            c["statuses"][status] = c["statuses"].get(status, 0) + 1
            if not ok and len(problems) < 50:
                problems.append(f"{kind}: status {status} {detail[:200]}")

    def prober():
        while not stop.is_set():
            start = time.time()
            status, _ = raw_request(port, "GET", "/health", timeout=30)
            health.append((time.time() - start, status))
            rss.append((time.time(), rss_mib(server.process.pid)))
            time.sleep(0.2)

    def client(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            roll = rng.random()
            try:
                if roll < 0.45:
                    kind, path, body = rng.choice(valid)
                    body = dict(body)
                    if "max_tokens" in body:
                        body["logit_bias"] = {str(t): -100 for t in banned} if rng.random() < 0.5 else {}
                    status, reply = raw_request(port, "POST", path, json.dumps(body).encode())
                    note("valid " + kind, status, status == 200, reply.decode(errors="replace"))
                elif roll < 0.55:
                    # A streamed answer the client leaves after a few chunks.
                    body = json.dumps({"prompt": "The story goes on and on", "max_tokens": 200, "stream": True,
                                       "logit_bias": {str(t): -100 for t in banned}}).encode()
                    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                        got = sock.recv(4096)
                    note("disconnect mid-stream", int(got[9:12]) if got.startswith(b"HTTP/1.1 ") else 0, got.startswith(b"HTTP/1.1 200"))
                elif roll < 0.85:
                    path, body = rng.choice(hostile)
                    status, reply = raw_request(port, "POST", path, body)
                    # Refused with a client error, or (where the request is harmless after all) answered.
                    note("hostile " + path, status, 400 <= status < 500 or status == 200, reply.decode(errors="replace"))
                elif roll < 0.92:
                    # A random field of a valid body replaced by a random value.
                    kind, path, body = rng.choice(valid)
                    body = dict(body)
                    key = rng.choice(list(body) + ["n", "stop", "seed", "top_k", "logprobs", "stream_options"])
                    body[key] = rng.choice([None, -1, 2**70, 1e308, "x" * rng.randint(0, 100000), [], {}, [[[]]], True, -0.0])
                    status, reply = raw_request(port, "POST", path, json.dumps(body).encode())
                    note("mutated field", status, status in (200, 400, 404, 413), reply.decode(errors="replace"))
                elif roll < 0.96:
                    size = rng.choice([1 << 20, 10 << 20])
                    status, _ = raw_request(port, "POST", "/v1/completions", b"{\"prompt\": \"" + b"a" * size + b"\"}")
                    note("oversized body", status, status in (400, 413), "")
                else:
                    # Headers trickled in: the server must cut the connection (or answer) soon.
                    start = time.time()
                    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                        closed = False
                        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400:
                            try:
                                sock.send(bytes([byte]))
                            except OSError:
                                closed = True
                                break
                            time.sleep(0.1)
                            if time.time() - start > 30:
                                break
                    note("trickled headers", 0, closed, f"open after {time.time() - start:.1f} s")
            except Exception as error:  # noqa: BLE001
                note("client error", -1, False, f"{type(error).__name__}: {error}")
            if server.process.poll() is not None:
                problems.append(f"the server exited with code {server.process.returncode}")
                stop.set()

    # Warm up, then the baseline memory.
    raw_request(port, "POST", "/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 4}).encode())
    baseline = rss_mib(server.process.pid)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    threads.append(threading.Thread(target=prober, daemon=True))
    start = time.time()
    for t in threads:
        t.start()
    # The level: the most memory the server held (sampled every 0.2 s) by the time every kind of
    # request has been seen and the allocator has settled, a quarter into the run but at least
    # 20 seconds in. (One sample there would catch a trough or a crest of the storm at random; the
    # server trims freed memory every second, so its resident size saws up and down.)
    level_at = max(args.seconds / 4, min(20, args.seconds / 2))
    while time.time() - start < args.seconds and not stop.is_set():
        time.sleep(1)
    stop.set()
    level = max((r for t, r in list(rss) if t - start <= level_at), default=None)
    for t in threads:
        t.join(timeout=180)
    time.sleep(2)
    # Memory after the storm, once idle: the same requests again should not raise it further.
    end = rss_mib(server.process.pid)
    alive = server.process.poll() is None
    # SIGTERM with hostile work in flight: the process must end within seconds.
    for path, body in hostile[:6]:
        threading.Thread(target=lambda p=path, b=body: raw_request(port, "POST", p, b, timeout=30), daemon=True).start()
    time.sleep(0.3)
    terminated = time.time()
    server.process.terminate()
    try:
        server.process.wait(timeout=60)
        exit_seconds = time.time() - terminated
    except subprocess.TimeoutExpired:
        server.process.kill()
        exit_seconds = float("inf")
    latencies = sorted(h[0] for h in health)
    bad_health = [h for h in health if h[1] != 200]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"chaos: {args.seconds} s, {args.clients} clients, {args.slots} slots, {os.path.basename(args.model or 'default model')}"
          f"{', template ' + os.path.basename(args.chat_template_file) if args.chat_template_file else ''}; {cpu}")
    print("| requests | sent | as expected | statuses |")
    print("|---|---:|---:|---|")
    for kind in sorted(counts):
        c = counts[kind]
        print(f"| {kind} | {c['sent']} | {c['ok']} | {' '.join(f'{k}:{v}' for k, v in sorted(c['statuses'].items()))} |")
    if latencies:
        p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        print(f"/health: {len(latencies)} probes, {len(bad_health)} not 200; latency median {1000 * p(0.5):.1f} ms, "
              f"p99 {1000 * p(0.99):.1f} ms, max {1000 * latencies[-1]:.1f} ms")
    level = level or end
    print(f"server alive at the end: {alive}; resident memory {baseline:.0f} MiB after warm-up, {level:.0f} MiB at most in the first {level_at:.0f} s, "
          f"peak {max([r for _, r in rss] or [end]):.0f} MiB, {end:.0f} MiB at the end")
    print(f"SIGTERM with hostile requests in flight: exited after {exit_seconds:.1f} s with code {server.process.returncode}")
    for problem in problems[:20]:
        print("  " + problem)
    failed = (not alive or problems or bad_health or not latencies or latencies[int(0.99 * (len(latencies) - 1))] > args.health_p99
              or end - level > max(32, 0.15 * level) or exit_seconds > 10)
    if args.check and failed:
        sys.exit("chaos test failed")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("load", "compare", "chaos"):
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
    chaos_parser = sub.choices["chaos"]
    chaos_parser.add_argument("--seconds", type=int, default=600)
    chaos_parser.add_argument("--clients", type=int, default=6)
    chaos_parser.add_argument("--slots", type=int, default=4)
    chaos_parser.add_argument("--chat-template-file", help="serve the model with this chat template (e.g. a hostile one)")
    chaos_parser.add_argument("--health-p99", type=float, default=0.1, help="seconds /health may take at the 99th percentile")
    chaos_parser.add_argument("--check", action="store_true", help="exit non-zero on any unexpected answer, crash, slow /health or growth")
    args = parser.parse_args()
    {"load": load, "compare": compare, "chaos": chaos}[args.mode](args)


if __name__ == "__main__":
    main()
