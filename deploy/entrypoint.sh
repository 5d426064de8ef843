#!/bin/sh
# The container's entrypoint: `llama serve` on every interface, with the model from the
# environment:
#   LLAMA_MODEL   a GGUF file in the mounted volume (/models/...);
#   LLAMA_HF      user/repo[:QUANT] (several, space-separated), pulled into the volume at start
#                 unless already there;
#   neither       every model already in the volume (--models-dir /models).
# Anything after the image name is passed on to `llama serve` (e.g. --parallel 8 --api-key ...).
set -eu
set -- --host 0.0.0.0 --port "${PORT:-8080}" "$@"
if [ -n "${LLAMA_MODEL:-}" ]; then
    set -- "$@" -m "$LLAMA_MODEL"
fi
for reference in ${LLAMA_HF:-}; do
    set -- "$@" -hf "$reference"
done
if [ -z "${LLAMA_MODEL:-}" ] && [ -z "${LLAMA_HF:-}" ]; then
    set -- "$@" --models-dir "${LLAMA_CACHE:-/models}"
fi
exec llama serve "$@"
