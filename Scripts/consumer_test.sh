#!/usr/bin/env bash
# Depend on swift-llama by version, as an app would: clone the committed HEAD, tag it with this
# release's version, and build a small package that names it with
#   .package(url: "file://…/swift-llama", from: "VERSION", traits: [])
# and uses only the `Llama` product. Checks that
#   - SwiftPM accepts the package by version (no unsafe build flags),
#   - resolving fetches swift-llama and nothing else (no server, hub or CLI stack),
#   - the app builds and generates the same greedy text as `llama generate` on the same model.
# Usage: Scripts/consumer_test.sh LLAMA_BINARY MODEL.gguf
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
llama="${1:?usage: Scripts/consumer_test.sh LLAMA_BINARY MODEL.gguf}"
model="${2:?usage: Scripts/consumer_test.sh LLAMA_BINARY MODEL.gguf}"
[ -f "$model" ] || { echo "consumer test: no model file at $model" >&2; exit 1; }
model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"
version="$(sed -n 's/.*static let version = "\(.*\)".*/\1/p' "$root/Sources/Llama/Version.swift")"
[ -n "$version" ] || { echo "consumer test: no version in Sources/Llama/Version.swift" >&2; exit 1; }
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
    echo "consumer test: note: uncommitted changes are not part of the tagged package (it is HEAD)" >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/swift-llama-consumer.XXXXXX")"
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-local "$root" "$work/swift-llama"
git -C "$work/swift-llama" tag -f "$version" > /dev/null

mkdir -p "$work/app/Sources/App"
cat > "$work/app/Package.swift" <<EOF
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "app",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "file://$work/swift-llama", from: "$version", traits: []),
    ],
    targets: [
        .executableTarget(name: "App", dependencies: [.product(name: "Llama", package: "swift-llama")]),
    ]
)
EOF
cat > "$work/app/Sources/App/main.swift" <<'EOF'
import Llama

let model = try LlamaModel.load(path: CommandLine.arguments[1])
let session = Session(model: model, contextSize: 256)
let parameters = GenerationParameters(maxTokens: 32, sampler: SamplerSettings(temperature: 0))
for try await event in session.generate(prompt: "Once upon a time", parameters: parameters) {
    if case .text(let piece) = event { print(piece, terminator: "") }
}
EOF

echo "consumer test: swift package resolve (swift-llama $version by version, traits: [])"
(cd "$work/app" && swift package resolve 2>&1) | sed 's/^/  | /'
pins="$(python3 -c 'import json,sys; print(" ".join(p["identity"] + "@" + p["state"].get("version", "?") for p in json.load(open(sys.argv[1]))["pins"]))' "$work/app/Package.resolved")"
checkouts="$(ls "$work/app/.build/checkouts" | tr '\n' ' ')"
echo "consumer test: resolved: $pins; checked out: $checkouts"
if [ "$pins" != "swift-llama@$version" ] || [ "$checkouts" != "swift-llama " ]; then
    echo "consumer test: FAILED: a Llama-only app must resolve swift-llama $version alone" >&2
    exit 1
fi

echo "consumer test: swift build (the Llama product only)"
(cd "$work/app" && swift build 2>&1) | grep -E "^(Building|Build complete|error|warning: .*unsafe)" | sed 's/^/  | /' || true
[ -x "$work/app/.build/debug/App" ] || { echo "consumer test: FAILED: the app did not build" >&2; exit 1; }
built=""
for module in "$work"/app/.build/debug/*.build; do
    if [ -n "$(find "$module" -name '*.o' | head -1)" ]; then built+="$(basename "$module" .build) "; fi
done
echo "consumer test: modules compiled: $built"
case "$built" in
    *LlamaServer*|*LlamaHub*|*LlamaCLI*|*Generable*) echo "consumer test: FAILED: a Llama-only app compiled more than the library" >&2; exit 1 ;;
esac

ours="$("$work/app/.build/debug/App" "$model")"
theirs="$("$llama" generate -m "$model" -p "Once upon a time" -n 32 --temp 0 -c 256 2> /dev/null)"
if [ "$theirs" != "Once upon a time$ours" ] && [ "$theirs" != "$ours" ]; then
    echo "consumer test: FAILED: the app's text differs from llama generate's" >&2
    echo "  app:   $ours" >&2
    echo "  llama: $theirs" >&2
    exit 1
fi
echo "consumer test: passed; the app generated the same text as llama generate:${ours:0:60}..."
