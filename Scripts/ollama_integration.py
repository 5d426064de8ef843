#!/usr/bin/env python3
"""`llama serve` with two models, driven by the official `ollama` Python package (PyPI) and plain HTTP:

  - Ollama's routes: version, list (tags), show, ps, chat whole and streamed, generate whole and
    streamed (with `context` for a second turn), embed (checked against /v1/embeddings), a JSON
    answer (format "json" and a schema) that parses, a tool call, pull from the hub with Ollama's
    progress objects (from Scripts/hub_server.py, a local stand-in for Hugging Face), delete, and
    Ollama's error shape (an unknown model is a 404 ResponseError);
  - many models: both answer in one run; a load of one does not stall a stream from the other
    (the largest gap between its chunks is printed beside the load time); idle unload frees the
    memory (RSS printed before and after); keep_alive 0 unloads at once.

    python3 Scripts/ollama_integration.py --llama .build/release/llama [--model FILE] [--second FILE]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import ollama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hub_server  # noqa: E402
from openai_integration import check, failures, free_port  # noqa: E402

CACHE = os.environ.get("LLAMA_CACHE", os.path.expanduser("~/.cache/swift-llama"))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


def post(port, path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama", default=".build/release/llama")
    parser.add_argument("--model", default=os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--second", default=os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"), help="the second model (Scripts/fetch_gemma3.py)")
    parser.add_argument("--pullable", default=os.path.join(os.environ.get("LLAMA_FIXTURES") or os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"), "fixtures"), "tiny260K/tiny260K.gguf"),
                        help="a small GGUF model the stand-in hub serves for /api/pull")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="ollama-integration-")
    hub, _ = hub_server.serve([hub_server.Repo("test/tiny-GGUF", {"tiny260K-Q8_0.gguf": args.pullable})])
    port = free_port()
    idle = 4
    env = dict(os.environ, LLAMA_CACHE=os.path.join(work, "hub"), HF_ENDPOINT=f"http://127.0.0.1:{hub.server_address[1]}")
    command = [args.llama, "serve", "--port", str(port), "-m", args.model, "-m", args.second, "--alias", "smol",
               "--parallel", "2", "-c", "2048", "--idle-unload", str(idle)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                get(port, "/health")
                break
            except OSError:
                time.sleep(0.2)
        client = ollama.Client(host=f"http://127.0.0.1:{port}", timeout=120)
        smol, second = "smol", os.path.basename(args.second)[:-len(".gguf")]
        print(f"ollama {ollama.__version__ if hasattr(ollama, '__version__') else ''} against llama serve on port {port}: {smol}, {second}")

        version = get(port, "/api/version")["version"]
        check(version.count(".") == 2, f"version: {version}")

        listed = client.list().models
        check([m.model for m in listed] == [smol, second] and all(m.size > 0 and m.details.format == "gguf" and len(m.digest) == 64 for m in listed),
              f"list: {[(m.model, m.details.family, m.details.parameter_size, m.details.quantization_level) for m in listed]}")

        shown = client.show(smol)
        check(shown.details.family == "llama" and shown.modelinfo["general.architecture"] == "llama"
              and shown.modelinfo["llama.context_length"] > 0 and "{%" in (shown.template or "") and "completion" in shown.capabilities,
              f"show: {shown.details.parameter_size}, capabilities {shown.capabilities}, template of {len(shown.template or '')} chars")

        question = [{"role": "user", "content": "What is the capital of France?"}]
        options = {"temperature": 0, "num_predict": 24}
        whole = client.chat(model=smol, messages=question, options=options, stream=False)
        check(whole.done and whole.message.role == "assistant" and whole.message.content and whole.eval_count > 0 and whole.prompt_eval_count > 0
              and whole.total_duration > 0, f"chat: {whole.message.content!r} ({whole.done_reason}, {whole.eval_count} tokens)")
        chunks = list(client.chat(model=smol, messages=question, options=options, stream=True))
        streamed = "".join(c.message.content for c in chunks)
        check(len(chunks) > 3 and chunks[-1].done and not any(c.done for c in chunks[:-1]) and streamed == whole.message.content,
              f"chat streamed: {len(chunks)} lines, the same text as whole")

        generated = client.generate(model=smol, prompt="Name a fruit.", options=options, stream=False)
        check(generated.done and generated.response and len(generated.context) > generated.prompt_eval_count,
              f"generate: {generated.response!r}, context of {len(generated.context)} tokens")
        pieces = list(client.generate(model=smol, prompt="Name a fruit.", options=options, stream=True))
        check("".join(p.response for p in pieces) == generated.response and pieces[-1].done and pieces[-1].context,
              f"generate streamed: {len(pieces)} lines, the same text")
        again = client.generate(model=smol, prompt="And another one?", context=generated.context, options=options, stream=False)
        check(again.prompt_eval_count > len(generated.context), f"generate with context: {again.prompt_eval_count} prompt tokens, {again.response!r}")
        raw = client.generate(model=smol, prompt="Once upon a time", raw=True, options={"temperature": 0, "num_predict": 12}, stream=False)
        check(bool(raw.response), f"generate raw: {raw.response!r}")

        texts = ["The quick brown fox", "Paris is in France"]
        embedded = client.embed(model=smol, input=texts)
        norms = [math.sqrt(sum(x * x for x in v)) for v in embedded.embeddings]
        reference = post(port, "/v1/embeddings", {"model": smol, "input": texts, "encoding_format": "float"})["data"]
        gap = max(abs(a - b) for ours, theirs in zip(embedded.embeddings, reference) for a, b in zip(ours, theirs["embedding"]))
        check(len(embedded.embeddings) == 2 and all(abs(n - 1) < 1e-3 for n in norms) and gap < 1e-6,
              f"embed: {len(embedded.embeddings[0])} dims, norms {[round(n, 4) for n in norms]}, same as /v1/embeddings")
        legacy = client.embeddings(model=smol, prompt=texts[0])
        check(max(abs(a - b) for a, b in zip(legacy.embedding, embedded.embeddings[0])) < 1e-6, "embeddings (the older route): the same vector")

        answer = client.chat(model=smol, messages=[{"role": "user", "content": "Give a cat's name and color as JSON."}], format="json",
                             options={"temperature": 0, "num_predict": 256}, stream=False)
        try:
            check(isinstance(json.loads(answer.message.content), dict), f"format json: {answer.message.content!r}")
        except ValueError:
            check(False, f"format json does not parse: {answer.message.content!r}")
        schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}
        typed = client.chat(model=smol, messages=[{"role": "user", "content": "Invent a person."}], format=schema,
                            options={"temperature": 0, "num_predict": 64}, stream=False)
        try:
            person = json.loads(typed.message.content)
            check(isinstance(person.get("name"), str) and isinstance(person.get("age"), int), f"format schema: {person}")
        except ValueError:
            check(False, f"format schema does not parse: {typed.message.content!r}")

        def get_weather(city: str) -> str:
            """Get the current weather in a city.

            Args:
              city: The city's name
            """
            return "sunny"

        calls = []
        for seed in range(8):
            called = client.chat(model=smol, messages=[{"role": "user", "content": "What is the weather in Paris? Call the tool."}],
                                 tools=[get_weather], options={"temperature": 0.7, "seed": seed, "num_predict": 64}, stream=False)
            calls += [c for c in called.message.tool_calls or []]
        check(any(c.function.name == "get_weather" and isinstance(c.function.arguments, dict) and "city" in c.function.arguments for c in calls),
              f"tool call: {[(c.function.name, dict(c.function.arguments)) for c in calls][:3]}")

        try:
            client.chat(model="no-such-model", messages=question)
            check(False, "an unknown model was answered")
        except ollama.ResponseError as error:
            check(error.status_code == 404 and "no-such-model" in error.error, f"unknown model: {error.status_code} {error.error!r}")

        # Many models: a stream from one goes on while the other loads.
        running = {m.model for m in client.ps().models}
        check(running == {smol}, f"ps before the second model: {sorted(running)}")
        stamps = []

        def stream_smol():
            for _ in client.generate(model=smol, prompt="Tell me a long story about a dragon.", options={"temperature": 0, "num_predict": 160}, stream=True):
                stamps.append(time.monotonic())
        reader = threading.Thread(target=stream_smol)
        reader.start()
        while len(stamps) < 5:
            time.sleep(0.01)
        rss_one = rss_mib(server.pid)
        asked = time.monotonic()
        other = client.generate(model=second, prompt="Hello", options={"temperature": 0, "num_predict": 8}, stream=False)
        answered = time.monotonic()
        reader.join()
        during = [b - a for a, b in zip(stamps, stamps[1:]) if asked <= b <= answered]
        before = [b - a for a, b in zip(stamps, stamps[1:]) if b < asked]
        worst = max(during) if during else float("inf")
        load = other.load_duration / 1e9
        check(other.done and len(during) >= 3 and worst < max(0.25, load / 2),
              f"a load does not stall the other model: {second} loaded in {load * 1000:.0f} ms; {smol} sent {len(during)} chunks meanwhile, "
              f"largest gap {worst * 1000:.0f} ms (median before {sorted(before)[len(before) // 2] * 1000:.0f} ms)")
        running = client.ps().models
        check({m.model for m in running} == {smol, second} and all(m.expires_at is not None for m in running),
              f"ps with both: {[(m.model, m.size, str(m.expires_at)) for m in running]}")
        rss_both = rss_mib(server.pid)
        time.sleep(idle + 1.5)
        rss_idle = rss_mib(server.pid)
        check(client.ps().models == [] and rss_idle < rss_both - 100,
              f"idle unload after {idle} s: RSS {rss_one:.0f} MiB with one model, {rss_both:.0f} MiB with both, {rss_idle:.0f} MiB after unloading")
        client.generate(model=smol, prompt="Hi", options={"num_predict": 2})
        unloaded = post(port, "/api/generate", {"model": smol, "keep_alive": 0})
        check(unloaded["done_reason"] == "unload" and client.ps().models == [], "keep_alive 0 unloads at once")

        # Pull from the hub with Ollama's progress objects, use, delete.
        progress = list(client.pull("hf.co/test/tiny-GGUF:Q8_0", stream=True))
        statuses = [p.status for p in progress]
        files = [p for p in progress if p.digest]
        check(statuses[0] == "pulling manifest" and statuses[-1] == "success" and files and files[-1].completed == files[-1].total > 0
              and files[-1].digest.startswith("sha256:"), f"pull: {len(progress)} progress objects, {files[-1].total if files else 0} bytes, ends {statuses[-1]!r}")
        names = [m.model for m in client.list().models]
        check("test/tiny-GGUF:Q8_0" in names, f"pulled model listed: {names}")
        story = client.generate(model="hf.co/test/tiny-GGUF:Q8_0", prompt="Once upon a time", raw=True, options={"num_predict": 16, "temperature": 0})
        check(bool(story.response), f"the pulled model answers: {story.response!r}")
        blobs = os.path.join(work, "hub", "models--test--tiny-GGUF", "blobs")
        check(len(os.listdir(blobs)) == 1, "pulled into the hub cache")
        missing = None
        try:
            client.pull("test/no-such-repo")
        except ollama.ResponseError as error:
            missing = error
        check(missing is not None and "no-such-repo" in str(missing), f"pull of an unknown repo: {missing}")
        client.delete("test/tiny-GGUF:Q8_0")
        check("test/tiny-GGUF:Q8_0" not in [m.model for m in client.list().models] and not os.listdir(blobs) if os.path.isdir(blobs) else True,
              "delete: unlisted, its blob gone")
        try:
            client.delete("test/tiny-GGUF:Q8_0")
            check(False, "a deleted model was deleted again")
        except ollama.ResponseError as error:
            check(error.status_code == 404, f"delete of an unknown model: {error.status_code}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        hub.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} checks failed", file=sys.stderr)
        print(server.stderr.read()[-4000:], file=sys.stderr)
        sys.exit(1)
    print("all Ollama checks passed")


if __name__ == "__main__":
    main()
