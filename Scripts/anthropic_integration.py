#!/usr/bin/env python3
"""Drives `llama serve`'s Messages API with the official `anthropic` Python package, as an agent
that speaks it would: a text answer, the same answer streamed (its stream helper must rebuild
the same text and final message), a tool-use round trip (tool_use, then tool_result), token
counting, a wrong API key (401, in Anthropic's error shape) and a malformed body (400).

    python3 Scripts/anthropic_integration.py --llama .build/release/llama [--model FILE]

(This version of the package no longer has a `temperature` argument; the server still reads the
field, which goes in `extra_body`.)
"""
import argparse
import json
import signal
import subprocess
import sys

import anthropic

from openai_integration import KEY, check, failures, free_port, start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama", default=".build/release/llama")
    parser.add_argument("--model", help="GGUF file (default: the default model)")
    args = parser.parse_args()

    port = free_port()
    server = start(args.llama, args.model, port, [])
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=KEY, max_retries=0, timeout=120)
    try:
        print(f"anthropic {anthropic.__version__} against llama serve on port {port}")
        question = [{"role": "user", "content": "What is the capital of France?"}]
        whole = client.messages.create(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=24, extra_body={"temperature": 0},
                                       system="You are a helpful assistant.", messages=question)
        text = "".join(block.text for block in whole.content if block.type == "text")
        check(whole.type == "message" and whole.role == "assistant" and bool(text), f"messages.create: {text!r}")
        check(whole.stop_reason in ("end_turn", "max_tokens") and whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0,
              f"stop_reason {whole.stop_reason}, usage {whole.usage.input_tokens} in / {whole.usage.output_tokens} out")

        with client.messages.stream(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=24, extra_body={"temperature": 0},
                                    system="You are a helpful assistant.", messages=question) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        final_text = "".join(block.text for block in final.content if block.type == "text")
        check(streamed == final_text and streamed != "", f"stream: {streamed!r}")
        check(final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens,
              f"stream end: {final.stop_reason}, {final.usage.output_tokens} tokens")

        stopped = client.messages.create(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=24, extra_body={"temperature": 0}, messages=question,
                                         system="You are a helpful assistant.", stop_sequences=["Paris"])
        stopped_text = "".join(block.text for block in stopped.content if block.type == "text")
        check(stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "Paris" and text.startswith(stopped_text) and "Paris" not in stopped_text,
              f"stop_sequences: {stopped.stop_reason} {stopped.stop_sequence!r} after {stopped_text!r}")

        tools = [{"name": "get_weather", "description": "Get the current weather in a city.",
                  "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}}]
        weather = [{"role": "user", "content": "What is the weather in Paris?"}]
        called = client.messages.create(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=200, extra_body={"temperature": 0}, tools=tools,
                                        tool_choice={"type": "any"}, messages=weather)
        uses = [block for block in called.content if block.type == "tool_use"]
        check(called.stop_reason == "tool_use" and uses and all(u.name == "get_weather" and isinstance(u.input.get("city"), str) for u in uses),
              f"tool_use: {[(u.name, u.input) for u in uses]}")
        with client.messages.stream(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=200, extra_body={"temperature": 0}, tools=tools,
                                    tool_choice={"type": "any"}, messages=weather) as stream:
            streamed_uses = [block for block in stream.get_final_message().content if block.type == "tool_use"]
        check(streamed_uses and all(isinstance(u.input, dict) and isinstance(u.input.get("city"), str) for u in streamed_uses),
              f"streamed tool_use (input rebuilt from input_json_delta): {[u.input for u in streamed_uses]}")
        if uses:
            answer = client.messages.create(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=60, extra_body={"temperature": 0}, tools=tools,
                                            tool_choice={"type": "none"}, messages=weather + [
                                                {"role": "assistant", "content": [u.model_dump() for u in uses]},
                                                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id,
                                                                              "content": json.dumps({"temperature": 18, "sky": "clear"})}
                                                                             for u in uses]}])
            reply = "".join(block.text for block in answer.content if block.type == "text")
            check(answer.stop_reason in ("end_turn", "max_tokens") and bool(reply), f"tool_result, then the answer: {reply!r}")

        counted = client.messages.count_tokens(model="SmolLM2-135M-Instruct.Q4_1", system="You are a helpful assistant.", messages=question)
        check(counted.input_tokens == whole.usage.input_tokens, f"count_tokens: {counted.input_tokens} (the answer's usage: {whole.usage.input_tokens})")

        wrong = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="sk-wrong", max_retries=0)
        try:
            wrong.messages.create(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=4, messages=question)
            check(False, "wrong API key: no error")
        except anthropic.AuthenticationError as error:
            check(error.status_code == 401 and error.body.get("error", {}).get("type") == "authentication_error", f"wrong API key: 401 {error.body}")
        try:
            client.messages.create(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=4, messages=[{"role": "robot", "content": "hi"}])
            check(False, "malformed body: no error")
        except anthropic.BadRequestError as error:
            check(error.status_code == 400 and error.body.get("error", {}).get("type") == "invalid_request_error", f"malformed body: 400 {error.body}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("all checks passed")


if __name__ == "__main__":
    main()
