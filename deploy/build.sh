#!/usr/bin/env bash
# Builds `llama` for a container (Swift's runtime linked in statically, so the image needs no
# Swift) and installs it with its entrypoint under PREFIX/bin. The Dockerfile runs this same
# script; deploy/check-image.sh runs it here, as no Docker engine runs on this machine.
#   deploy/build.sh PREFIX
set -euo pipefail
prefix="${1:?usage: deploy/build.sh PREFIX}"
cd "$(dirname "$0")/.."
swift build -c release --product llama --static-swift-stdlib --build-path "${BUILD_PATH:-.build-static}"
install -d "$prefix/bin"
install -m 0755 "$(swift build -c release --static-swift-stdlib --build-path "${BUILD_PATH:-.build-static}" --show-bin-path)/llama" "$prefix/bin/llama"
install -m 0755 deploy/entrypoint.sh "$prefix/bin/llama-entrypoint"
