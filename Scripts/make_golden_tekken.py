#!/usr/bin/env python3
"""Golden token ids for Mistral Nemo's "tekken" pre-tokenizer, from llama.cpp's own llama-tokenize
(built by Benchmarks/build_llamacpp.sh; add the llama-tokenize target). No tekken vocabulary has
test vectors in llama.cpp, so the Llama 3 vocabulary (ggml-vocab-llama-bpe.gguf, from
Scripts/fetch_vocabularies.py) is used with its pre-tokenizer set to "tekken": same merges, the
tekken split. Texts: llama.cpp's tokenizer test strings of every vocabulary, some camel-case and
path strings, and 200 random strings over letters of both cases, accents, digits, slashes.

    python3 Scripts/make_golden_tekken.py [--bin .build-llamacpp/build/bin]
"""
import argparse
import json
import os
import random
import subprocess
import tempfile

from gguf import GGUFReader, GGUFValueType, GGUFWriter


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=".build-llamacpp/build/bin")
    parser.add_argument("--vocab", default=subprocess.run(["python3", "Scripts/fetch_vocabularies.py"], capture_output=True,
                                                          text=True).stdout.strip())
    parser.add_argument("--out", default="Tests/TokenizersTests/Golden/tekken.json")
    args = parser.parse_args()
    texts = []
    for name in sorted(os.listdir(args.vocab)):
        if name.endswith(".inp") and "gemma-4" not in name:
            with open(os.path.join(args.vocab, name), encoding="utf-8") as f:
                texts += f.read().split("\n__ggml_vocab_test__\n")
    texts += ["HelloWorld", "XMLHttpRequest parses JSONData", "camelCaseWordsAndABBRs", "ÉcoleNormale ÀLaMode",
              "path/to/file.txt\n/usr/bin", "iPhone15Pro MAXsize", "ŁódźCity", "ΑθήναCity", "a/b//c\r\n/d", "don'tStop"]
    rng = random.Random(1)
    alphabet = "aAbBzZ ÉéŁłΣσ日本 12/.,!?'\n\t-_"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(200)]
    texts = list(dict.fromkeys(t for t in texts if t))
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "tekken.gguf")
        reader = GGUFReader(os.path.join(args.vocab, "ggml-vocab-llama-bpe.gguf"))
        writer = GGUFWriter(vocab, "llama")
        for name, field in reader.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture":
                continue
            value = "tekken" if name == "tokenizer.ggml.pre" else field.contents()
            if field.types[0] == GGUFValueType.ARRAY:
                writer.add_key_value(name, value, field.types[0], sub_type=field.types[-1])
            else:
                writer.add_key_value(name, value, field.types[0])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        cases = []
        for text in texts:
            out = subprocess.run([os.path.join(args.bin, "llama-tokenize"), "-m", vocab, "-p", text, "--ids", "--no-bos",
                                  "--log-disable"], capture_output=True, check=True).stdout.decode()
            cases.append({"text": text, "ids": json.loads(out.strip().split("\n")[-1])})
    with open(args.out, "w") as f:
        json.dump({"vocabulary": "ggml-vocab-llama-bpe.gguf with tokenizer.ggml.pre = tekken", "cases": cases}, f,
                  ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
