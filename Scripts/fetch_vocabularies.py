#!/usr/bin/env python3
"""Fetches llama.cpp's tokenizer test vocabularies and vectors (models/ggml-vocab-*.gguf with their
.inp/.out files), which the llama-cpp-python sdist on PyPI vendors, into the model cache
($LLAMA_CACHE, default ~/.cache/swift-llama) under llamacpp-vocab-VERSION/. Prints the folder.
Nothing is fetched when it is already there.

    python3 Scripts/fetch_vocabularies.py [--version 0.3.36]
"""
import argparse
import os
import subprocess
import sys
import tarfile
import tempfile


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36"))
    args = parser.parse_args()
    cache = os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama")
    target = os.path.join(cache, f"llamacpp-vocab-{args.version}")
    if os.path.isdir(target) and any(name.endswith(".gguf.inp") for name in os.listdir(target)):
        print(target)
        return
    print(f"fetching llama.cpp's tokenizer test vocabularies (llama-cpp-python {args.version} sdist) into {target}, once",
          file=sys.stderr)
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--no-binary", "llama-cpp-python", f"llama-cpp-python=={args.version}", "-d", tmp], check=True)
        sdist = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".tar.gz"))
        staging = os.path.join(tmp, "vocab")
        os.makedirs(staging)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.isfile() and "/vendor/llama.cpp/models/" in member.name and name.startswith("ggml-vocab-"):
                    with tar.extractfile(member) as source, open(os.path.join(staging, name), "wb") as out:
                        out.write(source.read())
        os.replace(staging, target)
    print(target)


if __name__ == "__main__":
    main()
