#!/usr/bin/env python3
"""Several `llama serve` replicas behind nginx (deploy/nginx.conf), on this machine's loopback:

  1. one replica alone, then three behind nginx: aggregate throughput of streaming clients whose
     conversations come back for a second turn (the replicas share the same cores, so this shows
     the routing, not a speed-up);
  2. the prompt-cache hit ratio of those second turns with affinity (consistent hashing on
     X-Session-Id) against round robin;
  3. one replica sent SIGTERM mid-run (it drains: zero failed requests expected);
  4. one replica killed with SIGKILL mid-run (only its in-flight requests may fail);
  5. a rolling restart of all three, one at a time (zero failed requests expected).

    python3 Benchmarks/cluster_bench.py --llama .build/release/llama [--model FILE] [--seconds 20] [--check]

nginx comes from apt (installed when missing and running as root).
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOPICS = ["the sea", "a lighthouse", "bread", "winter", "a violin", "the moon", "a garden", "trains", "bees", "a library",
          "glaciers", "a market", "owls", "the desert", "kites", "rivers"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Replica:
    def __init__(self, llama, model, port, threads):
        self.llama, self.model, self.port, self.threads = llama, model, port, threads
        self.process = None

    def start(self):
        command = [self.llama, "serve", "--port", str(self.port), "--parallel", "4", "-c", "8192", "-t", str(self.threads),
                   "--drain-timeout", "20"]
        if self.model:
            command += ["-m", self.model]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_healthy(self.port):
            sys.exit(f"replica on port {self.port} did not become healthy")

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        return self.process.returncode if self.process else None


class Nginx:
    """nginx with deploy/nginx.conf, its ports replaced; `affinity=False` drops the hash (round robin)."""

    def __init__(self, ports, affinity):
        self.folder = tempfile.mkdtemp(prefix="cluster-nginx-")
        self.port = free_port()
        with open(os.path.join(ROOT, "deploy", "nginx.conf")) as f:
            text = f.read()
        servers = "".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n" for p in ports)
        lines, kept = text.splitlines(keepends=True), []
        for line in lines:
            if line.strip().startswith("server 127.0.0.1:"):
                if servers:
                    kept.append(servers)
                    servers = ""
                continue
            if not affinity and line.strip().startswith("hash "):
                continue
            kept.append(line.replace("listen 8080;", f"listen 127.0.0.1:{self.port};"))
        text = "".join(kept).replace("worker_processes 1;", f"worker_processes 1;\npid {self.folder}/nginx.pid;\nerror_log {self.folder}/error.log;")
        text = text.replace("http {", f"http {{\n    access_log off;\n    client_body_temp_path {self.folder}/body;\n"
                                      f"    proxy_temp_path {self.folder}/proxy;\n", 1)
        with open(os.path.join(self.folder, "nginx.conf"), "w") as f:
            f.write(text)
        self.process = subprocess.Popen(["nginx", "-p", self.folder, "-c", os.path.join(self.folder, "nginx.conf"), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        sys.exit("nginx did not start: " + self.process.stderr.read().decode()[-2000:])

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


class Load:
    """Streaming clients, each running conversations of two turns with a session id."""

    def __init__(self, port, clients, max_tokens):
        self.port, self.clients, self.max_tokens = port, clients, max_tokens
        self.lock = threading.Lock()
        self.results = []  # (turn, ok, prompt tokens, cached tokens, completion tokens, error)
        self.stop_at = 0

    def chat(self, session, messages):
        body = json.dumps({"messages": messages, "max_tokens": self.max_tokens, "temperature": 0.7, "stream": True,
                           "stream_options": {"include_usage": True}})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json", "X-Session-Id": session})
            response = connection.getresponse()
            if response.status != 200:
                return None, None, f"HTTP {response.status}: {response.read()[:200]!r}"
            text, usage, done = "", None, False
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    done = True
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    return None, None, f"error event: {chunk['error'].get('message')}"
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices", []):
                    text += choice.get("delta", {}).get("content") or ""
            if not done or usage is None:
                return None, None, "stream ended early"
            return text, usage, None
        except (OSError, http.client.HTTPException, ValueError) as error:
            return None, None, f"{type(error).__name__}: {error}"
        finally:
            connection.close()

    def client(self, index):
        rng = random.Random(index)
        number = 0
        while time.time() < self.stop_at:
            number += 1
            session = f"client{index}-conversation{number}"
            topic = rng.choice(TOPICS)
            # A long system prompt of its own per conversation: what a second turn can reuse.
            system = f"You are a storyteller for conversation {session}. " + " ".join(
                f"Rule {i}: mention {rng.choice(TOPICS)} when it fits." for i in range(24))
            messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Tell me something about {topic}."}]
            for turn in (1, 2):
                text, usage, error = self.chat(session, messages)
                with self.lock:
                    self.results.append((turn, error is None, usage and usage["prompt_tokens"],
                                         usage and usage.get("prompt_tokens_details", {}).get("cached_tokens", 0),
                                         usage and usage["completion_tokens"], error))
                if error is not None:
                    break
                messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "And then?"}]

    def run(self, seconds, during=None):
        self.results = []
        self.stop_at = time.time() + seconds
        threads = [threading.Thread(target=self.client, args=(i,)) for i in range(self.clients)]
        start = time.time()
        for t in threads:
            t.start()
        if during:
            during()
        for t in threads:
            t.join()
        elapsed = time.time() - start
        done = [r for r in self.results if r[1]]
        second = [r for r in done if r[0] == 2]
        failed = [r for r in self.results if not r[1]]
        return {
            "requests": len(self.results), "failed": len(failed), "errors": sorted({r[5] for r in failed})[:5],
            "tokens_per_second": sum(r[4] for r in done) / elapsed,
            "hit_ratio": sum(r[3] for r in second) / max(1, sum(r[2] for r in second)),
        }


def busy(port, seconds=5):
    """Waits (a few seconds at most) until the replica has requests in flight; returns how many."""
    deadline = time.time() + seconds
    while (count := in_flight(port)) == 0 and time.time() < deadline:
        time.sleep(0.02)
    return count


def in_flight(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("llama_requests_in_flight "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama", default=os.path.join(ROOT, ".build/release/llama"))
    parser.add_argument("--model", help="GGUF file (default: the default model)")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--check", action="store_true", help="exit 1 unless drain and rolling restart fail no request and affinity beats round robin")
    args = parser.parse_args()

    if shutil.which("nginx") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run("apt-get install -y -qq nginx > /dev/null || (apt-get update -qq > /dev/null && apt-get install -y -qq nginx > /dev/null)",
                           shell=True, check=True)
        else:
            sys.exit("nginx is missing: apt-get install nginx")

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    replicas = [Replica(args.llama, args.model, free_port(), threads=1) for _ in range(3)]
    rows, problems = [], []
    try:
        # 1. One replica, directly.
        replicas[0].start()
        one = Load(replicas[0].port, args.clients, args.max_tokens).run(args.seconds)
        rows.append(("1 replica, direct", one, ""))
        for replica in replicas[1:]:
            replica.start()

        # 2. Three behind nginx: affinity, then round robin.
        for affinity in (True, False):
            nginx = Nginx([r.port for r in replicas], affinity)
            try:
                result = Load(nginx.port, args.clients, args.max_tokens).run(args.seconds)
            finally:
                nginx.stop()
            rows.append((f"3 replicas, nginx, {'affinity (X-Session-Id)' if affinity else 'round robin'}", result, ""))

        nginx = Nginx([r.port for r in replicas], True)
        try:
            # 3. SIGTERM one replica mid-run: it drains.
            load = Load(nginx.port, args.clients, args.max_tokens)
            notes = {}

            def terminate():
                time.sleep(args.seconds / 3)
                notes["in_flight"] = busy(replicas[1].port)
                began = time.time()
                notes["code"] = replicas[1].stop(signal.SIGTERM)
                notes["took"] = time.time() - began
            result = load.run(args.seconds, during=terminate)
            rows.append(("SIGTERM one replica mid-run", result,
                         f"{notes['in_flight']} in flight on it; it drained and exited {notes['code']} after {notes['took']:.1f} s"))
            replicas[1].start()

            # 4. SIGKILL one replica mid-run.
            def kill():
                time.sleep(args.seconds / 3)
                notes["in_flight"] = busy(replicas[2].port)
                replicas[2].stop(signal.SIGKILL)
            result = load.run(args.seconds, during=kill)
            rows.append(("SIGKILL one replica mid-run", result, f"{notes['in_flight']} in flight on it when killed"))
            replicas[2].start()
            time.sleep(3)  # past nginx's fail_timeout (2 s): the restarted replica takes requests again

            # 5. Rolling restart: each replica in turn drained, restarted, healthy again.
            def rolling():
                for replica in replicas:
                    code = replica.stop(signal.SIGTERM)
                    if code != 0:
                        problems.append(f"a replica exited {code} on SIGTERM")
                    replica.start()
                    # nginx counts a drained replica as failed for fail_timeout (2 s): the next
                    # goes down only once this one takes requests again (readiness does this
                    # in Kubernetes, with maxUnavailable 0).
                    time.sleep(3)
            result = load.run(max(args.seconds, 30), during=rolling)
            rows.append(("rolling restart of all three", result, "each drained, restarted and healthy before the next"))
        finally:
            nginx.stop()
    finally:
        for replica in replicas:
            replica.stop(signal.SIGKILL)

    print(f"cluster: 3 replicas of llama serve (4 slots, 1 thread each) on one machine, {args.clients} streaming clients, "
          f"conversations of 2 turns, {args.max_tokens} tokens per answer, {args.seconds:.0f} s per run; {cpu}; "
          f"model {os.path.basename(args.model) if args.model else 'default'}")
    print("| run | requests | failed | tokens/s | second-turn prompt-cache hit ratio | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for name, r, note in rows:
        errors = f" ({'; '.join(r['errors'])})" if r["errors"] else ""
        print(f"| {name} | {r['requests']} | {r['failed']} | {r['tokens_per_second']:.1f} | {r['hit_ratio']:.2f} | {note}{errors} |")
    by_name = {name: r for name, r, _ in rows}
    if by_name["SIGTERM one replica mid-run"]["failed"]:
        problems.append("requests failed during a drain")
    if by_name["rolling restart of all three"]["failed"]:
        problems.append("requests failed during the rolling restart")
    if by_name["3 replicas, nginx, affinity (X-Session-Id)"]["hit_ratio"] <= by_name["3 replicas, nginx, round robin"]["hit_ratio"]:
        problems.append("affinity did not raise the cache hit ratio over round robin")
    for problem in problems:
        print("problem:", problem)
    if args.check and problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
