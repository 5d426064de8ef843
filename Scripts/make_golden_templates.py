#!/usr/bin/env python3
"""Renders every chat template in Tests/JinjaTests/Templates with the `jinja2` package, set up the
way Hugging Face's `apply_chat_template` sets it up (sandboxed, trim_blocks, lstrip_blocks, loop
controls, raise_exception, tojson with ensure_ascii=False), over a set of conversations, and
writes the outputs (or the error each case raises) to Tests/JinjaTests/Golden/templates.json.
Conversations with tools (calls, parallel calls, tool results) are rendered with `tools` set.

Also writes Tests/JinjaTests/Golden/llama2_meta.json: the token ids Meta's reference code
(llama/generation.py, chat_completion) builds for Llama 2 dialogs, with the `sentencepiece`
package and the Llama 2 tokenizer.model from the fixtures.

    pip install jinja2==3.1.6 sentencepiece==0.2.3
    python3 Scripts/make_golden_templates.py
"""
import datetime
import glob
import json
import os

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "Tests", "JinjaTests", "Templates")
GOLDEN = os.path.join(ROOT, "Tests", "JinjaTests", "Golden")
FIXTURES = os.environ.get("LLAMA_FIXTURES") or os.path.join(os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama"), "fixtures")


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` renders its body (HF uses it to mark assistant text)."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    # Hugging Face's strftime_now reads the clock; a fixed instant keeps the golden file stable.
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.fromtimestamp(NOW).strftime(fmt)
    return env


S = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello!"}
A1 = {"role": "assistant", "content": "Hi there. How can I help?"}
U2 = {"role": "user", "content": "  What is the capital of France?\n"}
A2 = {"role": "assistant", "content": " Paris. "}
U3 = {"role": "user", "content": "Émoji 🦙, 'single' and \"double\" quotes, {{ braces }} {% too %}\nand a second line."}
CONVERSATIONS = {
    "user": [U1],
    "system_user": [S, U1],
    "two_turns": [U1, A1, U2],
    "system_two_turns": [S, U1, A1, U2],
    "three_turns": [U1, A1, U2, A2, U3],
    "system_three_turns": [S, U1, A1, U2, A2, U3],
    "ends_with_assistant": [S, U1, A1],
    "not_alternating": [U1, U2],
    "empty_content": [{"role": "user", "content": ""}],
}
# Conversations with tools (Hugging Face's convention: `tools` as OpenAI function tools, an
# assistant turn's `tool_calls` with arguments as an object, results in `tool` turns that name the
# call they answer), rendered with the `tools` variable set.
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city's name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "The local time in a time zone.",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}},
]
UW = {"role": "user", "content": "What is the weather and the time in Paris?"}
CALL_WEATHER = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
CALL_TIME = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}}
RESULT_WEATHER = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 18, \"sky\": \"clear\"}"}
RESULT_TIME = {"role": "tool", "tool_call_id": "call_2", "name": "get_time", "content": "14:05"}
TOOL_CONVERSATIONS = {
    "tools_user": [S, UW],
    "tools_no_system": [UW],
    "tools_call": [S, UW, {"role": "assistant", "content": None, "tool_calls": [CALL_WEATHER]}, RESULT_WEATHER],
    "tools_parallel": [S, UW, {"role": "assistant", "content": "", "tool_calls": [CALL_WEATHER, CALL_TIME]},
                       RESULT_WEATHER, RESULT_TIME, {"role": "assistant", "content": "It is 18 degrees and clear; the time is 14:05."},
                       U2],
}
NOW = 1722000000  # 2024-07-26, seconds since 1970
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}


def render_all():
    env = environment()
    cases = []
    for path in sorted(glob.glob(os.path.join(TEMPLATES, "*.jinja"))):
        name = os.path.basename(path)[:-len(".jinja")]
        source = open(path, encoding="utf-8").read()
        template = env.from_string(source)
        for conversation, messages in {**CONVERSATIONS, **TOOL_CONVERSATIONS}.items():
            for add_generation_prompt in (True, False):
                variables = dict(SPECIAL, messages=messages, add_generation_prompt=add_generation_prompt,
                                 date_string="26 Jul 2024")
                case = {"template": name, "conversation": conversation, "add_generation_prompt": add_generation_prompt}
                if conversation in TOOL_CONVERSATIONS:
                    variables["tools"] = TOOLS
                    case["tools"] = True
                try:
                    case["output"] = template.render(**variables)
                except jinja2.exceptions.TemplateError as error:
                    case["error"] = str(error)
                except Exception as error:  # a template bug on this input: Python raises, so must we
                    case["error"] = f"{type(error).__name__}: {error}"
                cases.append(case)
    return {"conversations": {**CONVERSATIONS, **TOOL_CONVERSATIONS}, "tools": TOOLS, "special": SPECIAL,
            "date_string": "26 Jul 2024", "now": NOW, "cases": cases}


def meta_llama2():
    """Token ids as Meta's chat_completion builds them: BOS [INST] user [/INST] answer EOS per pair."""
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(FIXTURES, "llama2-tokenizer", "tokenizer.model"))
    B_INST, E_INST, B_SYS, E_SYS = "[INST]", "[/INST]", "<<SYS>>\n", "\n<</SYS>>\n\n"
    dialogs = {name: CONVERSATIONS[name] for name in
               ["user", "system_user", "two_turns", "system_two_turns", "three_turns", "system_three_turns"]}
    out = []
    for name, dialog in dialogs.items():
        if dialog[0]["role"] == "system":
            dialog = [{"role": dialog[1]["role"], "content": B_SYS + dialog[0]["content"] + E_SYS + dialog[1]["content"]}] + dialog[2:]
        tokens = []
        for prompt, answer in zip(dialog[::2], dialog[1::2]):
            tokens += [sp.bos_id()] + sp.encode(f"{B_INST} {prompt['content'].strip()} {E_INST} {answer['content'].strip()} ") + [sp.eos_id()]
        tokens += [sp.bos_id()] + sp.encode(f"{B_INST} {dialog[-1]['content'].strip()} {E_INST}")
        out.append({"conversation": name, "tokens": tokens})
    return out


def main():
    os.makedirs(GOLDEN, exist_ok=True)
    golden = render_all()
    with open(os.path.join(GOLDEN, "templates.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
    print(f"{len(golden['cases'])} renderings of {len(golden['cases']) // (2 * len(golden['conversations']))} templates")
    with open(os.path.join(GOLDEN, "llama2_meta.json"), "w") as f:
        json.dump(meta_llama2(), f, indent=1)


if __name__ == "__main__":
    main()
