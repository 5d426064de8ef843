#!/usr/bin/env python3
"""Drives `llama serve` with the official `openai` Python package, as any OpenAI client would:
models, chat (whole and streamed, with usage), completions (whole and streamed), embeddings
(the client's default base64 and floats), JSON mode and JSON schema, tool calls (required on 20
seeds, streamed, a result answered, none), and the error cases (wrong
key, unknown model, prompt longer than the context, a bad parameter, invalid JSON, an oversized
body). Then SIGTERM, which must stop the server cleanly.

    python3 Scripts/openai_integration.py --llama .build/release/llama [--model FILE]
"""
import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai

KEY = "sk-swift-llama-test"
failures = []


def check(condition, what):
    print(("  ok    " if condition else "  FAIL  ") + what, flush=True)
    if not condition:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_post(port, path, body, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start(llama, model, port, extra):
    command = [llama, "serve", "--port", str(port), "--parallel", "2", "-c", "2048", "--api-key", KEY,
               "--max-body", "65536"] + (["-m", model] if model else []) + extra
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"llama serve exited early:\n{server.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit("llama serve did not answer /health within 120 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama", default=".build/release/llama")
    parser.add_argument("--model", help="GGUF file (default: the default model)")
    args = parser.parse_args()

    port = free_port()
    server = start(args.llama, args.model, port, [])
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=120)
    try:
        print(f"openai {openai.__version__} against llama serve on port {port}")
        models = client.models.list().data
        check(len(models) == 1 and models[0].object == "model", f"models.list: {[m.id for m in models]}")
        model = models[0].id

        chat = client.chat.completions.create(model=model, messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}], max_tokens=24, temperature=0)
        answer = chat.choices[0].message.content
        check(chat.object == "chat.completion" and bool(answer), f"chat: {answer!r}")
        check(chat.usage.completion_tokens > 0 and chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens,
              f"chat usage: {chat.usage.prompt_tokens} + {chat.usage.completion_tokens}")
        check(chat.choices[0].finish_reason in ("stop", "length"), f"chat finish_reason: {chat.choices[0].finish_reason}")

        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is the capital of France?"}],
                                                max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True})
        pieces, finish, usage = [], None, None
        for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        check(len(pieces) > 2 and "".join(pieces) != "", f"chat stream: {len(pieces)} chunks: {''.join(pieces)!r}")
        check(finish in ("stop", "length") and usage is not None and usage.completion_tokens > 0,
              f"chat stream end: finish_reason {finish}, usage {usage and usage.completion_tokens}")

        scored = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Name a color."}],
                                                max_tokens=5, temperature=0, logprobs=True, top_logprobs=2)
        entries = scored.choices[0].logprobs.content
        check(len(entries) == scored.usage.completion_tokens and all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)
              and entries[0].token == entries[0].top_logprobs[0].token,
              f"chat logprobs: {[(e.token, round(e.logprob, 3)) for e in entries]}")

        several = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Name a fruit."}],
                                                 max_tokens=8, temperature=1, seed=3, n=2)
        check([c.index for c in several.choices] == [0, 1] and all(c.message.content for c in several.choices),
              f"n = 2: {[c.message.content for c in several.choices]}")

        completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=16, temperature=0)
        check(completion.object == "text_completion" and completion.choices[0].text != "", f"completion: {completion.choices[0].text!r}")
        streamed = "".join(c.choices[0].text for c in client.completions.create(model=model, prompt="Once upon a time", max_tokens=16,
                                                                                temperature=0, stream=True) if c.choices)
        check(streamed != "", f"completion stream: {streamed!r}")

        embedding = client.embeddings.create(model=model, input=["The quick brown fox", "Paris is in France"])
        vectors = [d.embedding for d in embedding.data]
        norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
        check(len(vectors) == 2 and all(abs(n - 1) < 1e-3 for n in norms), f"embeddings (client default encoding): {len(vectors[0])} dims, norms {norms}")
        floats = client.embeddings.create(model=model, input="The quick brown fox", encoding_format="float").data[0].embedding
        check(max(abs(a - b) for a, b in zip(floats, vectors[0])) < 1e-5, "embeddings as floats equal the base64 ones")

        json_mode = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Describe a cat in JSON."}],
                                                   max_tokens=80, temperature=0.7, seed=1, response_format={"type": "json_object"})
        text = json_mode.choices[0].message.content
        if json_mode.choices[0].finish_reason == "stop":
            check(isinstance(json.loads(text), dict), f"json_object: {text!r}")
        else:
            check(text.lstrip().startswith("{"), f"json_object (cut at max_tokens): {text!r}")
        schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer"},
                                                   "likes": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}},
                  "required": ["name", "age", "likes"]}
        typed = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Make up a person."}], max_tokens=120,
                                               temperature=0.7, seed=2,
                                               response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
        person = json.loads(typed.choices[0].message.content)
        check(list(person) == ["name", "age", "likes"] and isinstance(person["age"], int), f"json_schema: {person}")

        # Tool calling: the generic JSON format on the default model, held to the schemas.
        tools = [{"type": "function", "function": {
            "name": "get_weather", "description": "Get the current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                           "required": ["city"]}}}]
        question = [{"role": "user", "content": "What is the weather in Paris?"}]
        valid = 0
        for seed in range(20):
            called = client.chat.completions.create(model=model, messages=question, tools=tools, tool_choice="required",
                                                    max_tokens=512, temperature=0.9, seed=seed)
            calls = called.choices[0].message.tool_calls or []
            ok = called.choices[0].finish_reason == "tool_calls" and len(calls) > 0
            for call in calls:
                arguments = json.loads(call.function.arguments)
                ok = ok and call.function.name == "get_weather" and isinstance(arguments.get("city"), str) \
                    and len(arguments["city"]) <= 30 and arguments.get("unit", "celsius") in ("celsius", "fahrenheit") \
                    and set(arguments) <= {"city", "unit"} and call.id and call.type == "function"
            valid += ok
        check(valid == 20, f"tool_choice required: {valid} of 20 seeds gave calls that follow the schema")
        first = client.chat.completions.create(model=model, messages=question, tools=tools, tool_choice="required",
                                               max_tokens=120, temperature=0.9, seed=1)
        streamed_calls = {}
        for chunk in client.chat.completions.create(model=model, messages=question, tools=tools, tool_choice="required",
                                                    max_tokens=120, temperature=0.9, seed=1, stream=True):
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = streamed_calls.setdefault(delta.index, {"name": "", "arguments": ""})
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
        whole_calls = [{"name": c.function.name, "arguments": c.function.arguments} for c in first.choices[0].message.tool_calls]
        check([streamed_calls[i] for i in sorted(streamed_calls)] == whole_calls, f"streamed tool calls rebuilt: {streamed_calls}")
        call = first.choices[0].message.tool_calls[0]
        # The final answer is asked for as text (tool_choice none): with auto the 135M model repeats its call.
        follow = client.chat.completions.create(model=model, tools=tools, tool_choice="none", max_tokens=60, temperature=0, messages=question + [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18, "sky": "clear"})}])
        check(follow.choices[0].finish_reason == "stop" and bool(follow.choices[0].message.content) and not follow.choices[0].message.tool_calls,
              f"call, result, answer: {follow.choices[0].message.content!r}")
        unused = [client.chat.completions.create(model=model, messages=question, tools=tools, tool_choice="none", max_tokens=24,
                                                 temperature=0.9, seed=seed).choices[0] for seed in range(3)]
        check(all(not c.message.tool_calls and c.finish_reason in ("stop", "length") for c in unused), "tool_choice none never calls")

        def expect_error(kind, status, call, what):
            try:
                call()
                check(False, f"{what}: no error")
            except kind as error:
                body = error.body if isinstance(error.body, dict) else {}
                check(error.status_code == status and "message" in body, f"{what}: {error.status_code} {body.get('message', '')!r}")
                return body
            except Exception as error:  # noqa: BLE001 - any other outcome is a failure
                check(False, f"{what}: {type(error).__name__} {error}")
            return {}

        wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wrong", max_retries=0)
        expect_error(openai.AuthenticationError, 401, lambda: wrong.models.list(), "wrong API key")
        expect_error(openai.NotFoundError, 404, lambda: client.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}]), "unknown model")
        long = expect_error(openai.BadRequestError, 400, lambda: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "word " * 3000}]), "prompt longer than the context")
        check(long.get("code") == "context_length_exceeded", f"  ... code {long.get('code')}")
        expect_error(openai.BadRequestError, 400, lambda: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], temperature=9), "temperature out of range")
        expect_error(openai.BadRequestError, 400, lambda: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], n=17), "n = 17")
        expect_error(openai.APIStatusError, 413, lambda: client.embeddings.create(model=model, input="x" * 70000), "body over --max-body")
        status, body = raw_post(port, "/v1/chat/completions", b"{not json")
        check(status == 400 and "error" in body, f"invalid JSON: {status} {body.get('error', {}).get('message')!r}")

        # Nothing above crashed it.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            check(r.status == 200, "still healthy after the errors")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
            check(code == 0, f"SIGTERM: exit code {code}")
        except subprocess.TimeoutExpired:
            server.kill()
            check(False, "SIGTERM: still running after 30 s")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("all checks passed")


if __name__ == "__main__":
    main()
