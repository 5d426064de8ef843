#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-server, llama-perplexity, llama-quantize, llama-tokenize) from the source that
# the llama-cpp-python sdist on PyPI vendors, with cmake and ninja from PyPI, so that the
# comparison needs nothing beyond pip. Native CPU flags, as a user building llama.cpp would.
#
#   Benchmarks/build_llamacpp.sh [DIR]     (default DIR: .build-llamacpp; prints the bin folder)
#
# LLAMA_CPP_PATH=avx2 builds for AVX2 (+FMA, F16C) only, whatever the CPU has (GGML_NATIVE=OFF
# GGML_AVX2=ON, no AVX-512): the fair partner of swift-llama run with LLAMA_CPU_PATH=avx2.
#
# LLAMA_CPP_PYTHON_VERSION picks the sdist (default 0.3.36, the version the golden files use).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.build-llamacpp}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
bin="$dir/build/bin"

if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-server" ]; then
    echo "$bin"
    exit 0
fi

python3 -m pip install --quiet --disable-pip-version-check cmake ninja >&2
if [ ! -d "$dir/src" ]; then
    echo "fetching the llama-cpp-python $version sdist from PyPI" >&2
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$version" -d "$dir/download" >&2
    mkdir -p "$dir/src"
    tar -xzf "$dir"/download/llama_cpp_python-"$version".tar.gz -C "$dir/src" --strip-components=1
fi
source="$dir/src/vendor/llama.cpp"
echo "building llama-bench and llama-server from $source (several minutes on 2 cores)" >&2
if [ "${LLAMA_CPP_PATH:-native}" = avx2 ]; then
    isa=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF)
else
    isa=(-DGGML_NATIVE=ON)
fi
python3 -m cmake -S "$source" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${isa[@]}" \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DCMAKE_MAKE_PROGRAM="$(python3 -c 'import ninja, os; print(os.path.join(ninja.BIN_DIR, "ninja"))')" >&2
python3 -m cmake --build "$dir/build" --target llama-bench llama-server llama-perplexity llama-quantize llama-tokenize -j "$(nproc)" >&2
echo "$bin"
