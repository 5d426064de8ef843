#!/usr/bin/env python3
"""`llama pull`, `-hf`, `llama ls` and `llama rm` against a local stand-in for the Hugging Face hub
(Scripts/hub_server.py), serving real files, with huggingface_hub (PyPI) as the oracle for the cache:

  - a pull: the hub calls (revision, paged tree, resolve, redirect to the CDN host without the
    token), the cache layout (blobs by SHA-256, relative snapshot links, refs/main), the bytes;
  - the quant asked for, the default choice, an unknown quant (the error lists what there is),
    an unknown repository;
  - a connection dropped mid-file (resumed with a Range request), an interrupted run (its
    .incomplete file resumed), two 500s then success, wrong bytes (a hash error, nothing left
    in the cache), a gated repository (401 without HF_TOKEN, success with it);
  - huggingface_hub's scan_cache_dir() and hf_hub_download(local_files_only=True) find what we
    fetched; we find, offline, what huggingface_hub fetched from the same server;
  - -hf on a model command, --offline without the network, `llama ls`, `llama rm`.

    python3 Scripts/hub_integration.py --llama .build/release/llama [--model FILE]
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hub_server  # noqa: E402

failures = []
TOKEN = "hf_test_token"


def check(condition, what):
    print(("  ok    " if condition else "  FAIL  ") + what, flush=True)
    if not condition:
        failures.append(what)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def copy_gguf(model, out, tensors=False, split_max_size=0):
    """The model's metadata (tokenizer included), with or without its tensors, by the gguf package's
    writer: without, a small real GGUF file; with split_max_size, a split model as llama.cpp's
    converters write one (out-00001-of-0000N.gguf ...)."""
    import gguf
    reader = gguf.GGUFReader(model)
    writer = gguf.GGUFWriter(out, arch=reader.fields["general.architecture"].contents(), split_max_size=split_max_size)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or not field.types:
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), field.types[0])
    if tensors:
        for tensor in reader.tensors:
            writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    else:
        writer.add_bool("general.vocab_only", True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


class Run:
    def __init__(self, llama, endpoint):
        self.llama, self.endpoint = llama, endpoint

    def __call__(self, cache, *args, token=None, env=None):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        environment.update({"LLAMA_CACHE": cache, "HF_ENDPOINT": self.endpoint, **(env or {})})
        if token:
            environment["HF_TOKEN"] = token
        start = time.time()
        result = subprocess.run([self.llama, *args], capture_output=True, text=True, env=environment, timeout=600)
        if time.time() - start > 10:
            print(f"  note  llama {' '.join(args)} took {time.time() - start:.0f} s", flush=True)
        return result.returncode, result.stdout, result.stderr


def serve_models_dir(llama, cache):
    """`llama serve --models-dir` on a hub cache serves its models by repo name, loading on first use."""
    from openai_integration import free_port
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    server = subprocess.Popen([llama, "serve", "--models-dir", cache, "--port", str(port), "-c", "1024", "--parallel", "1"],
                              env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
            listed = {m["id"]: m for m in json.loads(r.read())["data"]}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"model": "smollm2:Q4_1", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}).encode())
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())
        check("test/smollm2:Q4_1" in listed and "smollm2" in listed["test/smollm2:Q4_1"]["aliases"] and answer["model"] == "test/smollm2:Q4_1",
              f"serve --models-dir on the hub cache: {sorted(listed)}; a request by repo:QUANT is answered by it")
    finally:
        server.terminate()
        server.wait(timeout=15)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama", required=True)
    parser.add_argument("--model", default=os.path.join(os.environ.get("LLAMA_CACHE", os.path.expanduser("~/.cache/swift-llama")),
                                                        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = parser.parse_args()
    llama = os.path.abspath(args.llama)
    work = tempfile.mkdtemp(prefix="hub-test-")
    try:
        vocab = os.path.join(work, "vocab.gguf")
        copy_gguf(args.model, vocab)
        copy_gguf(args.model, os.path.join(work, "split.gguf"), tensors=True, split_max_size=40_000_000)
        shards = sorted(f for f in os.listdir(work) if f.startswith("split-"))
        repos = [
            hub_server.Repo("test/smollm2", {"SmolLM2-135M-Instruct.Q4_1.gguf": args.model, "README.md": __file__,
                                             "SmolLM2-135M-Instruct-vocab-F32.gguf": vocab}),
            # Several quants of one (tiny) file: the choice, pagination (3 entries a page), shared blobs.
            hub_server.Repo("test/choice", {f"Tiny-{q}.gguf": vocab for q in ("Q2_K", "Q4_K_M", "Q8_0", "IQ4_XS")}),
            hub_server.Repo("test/gated", {"Gated-Q8_0.gguf": vocab}, gated=True),
            # The default model split in three by the gguf package's writer.
            hub_server.Repo("test/split", {"SmolLM2-Q4_1" + f[len("split"):]: os.path.join(work, f) for f in shards}),
        ]
        server, hub = hub_server.serve(repos, TOKEN)
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        run = Run(llama, endpoint)
        smol = repos[0]

        def faults(**values):
            request = urllib.request.Request(endpoint + "/_faults", data=json.dumps(values).encode(), method="POST")
            urllib.request.urlopen(request).read()

        def log_since(mark):
            return hub.log[mark:]

        print("pull, cache layout, hub calls")
        cache = os.path.join(work, "cache1")
        mark = len(hub.log)
        status, out, err = run(cache, "pull", "test/smollm2:Q4_1", token=TOKEN)
        check(status == 0, f"llama pull test/smollm2:Q4_1 succeeds ({err.strip()[-300:]})")
        path = out.strip().splitlines()[-1] if out.strip() else ""
        folder = os.path.join(cache, "models--test--smollm2")
        blob = os.path.join(folder, "blobs", smol.files["SmolLM2-135M-Instruct.Q4_1.gguf"][3])
        check(path == os.path.join(folder, "snapshots", smol.commit, "SmolLM2-135M-Instruct.Q4_1.gguf"), f"prints the snapshot path ({path})")
        check(os.path.islink(path) and os.readlink(path) == "../../blobs/" + os.path.basename(blob), "the snapshot file is a relative link to blobs/<sha256>")
        check(os.path.isfile(blob) and sha256(blob) == smol.files["SmolLM2-135M-Instruct.Q4_1.gguf"][3], "the blob holds the file's bytes")
        check(open(os.path.join(folder, "refs", "main")).read().strip() == smol.commit, "refs/main holds the commit")
        check(not any(n.endswith(".incomplete") for n in os.listdir(os.path.join(folder, "blobs"))), "no partial file is left")
        calls = log_since(mark)
        paths = [c["path"] for c in calls]
        check(f"/api/models/test/smollm2/revision/main" in paths, "asks for the revision's commit")
        check(any(p == f"/api/models/test/smollm2/tree/{smol.commit}" for p in paths), "lists the tree at that commit")
        check(sum(p.startswith("/api/models/test/smollm2/tree/") for p in paths) == 1, "one page is enough for three files")
        check(f"/test/smollm2/resolve/{smol.commit}/SmolLM2-135M-Instruct.Q4_1.gguf" in paths, "downloads through resolve/{commit}/{file}")
        cdn = [c for c in calls if c["path"].startswith("/cdn/")]
        check(bool(cdn) and all(c["host"].startswith("localhost") for c in cdn), "follows the redirect to the CDN host")
        check(all(c["auth"] is None for c in cdn), "does not send the token to the CDN host")
        check(all(c["auth"] == f"Bearer {TOKEN}" for c in calls if c["path"].startswith(("/api/", "/test/"))), "sends the token to the hub")
        check("%" in err, "reports progress on stderr")

        mark = len(hub.log)
        status, out2, _ = run(cache, "pull", "test/smollm2:q4_1")
        check(status == 0 and out2 == out and not any(c["path"].startswith("/cdn/") for c in log_since(mark)), "a second pull downloads nothing")

        print("which file")
        status, out, err = run(cache, "pull", "test/choice")
        check(status == 0 and out.strip().endswith("/Tiny-Q4_K_M.gguf"), "no quant named: Q4_K_M")
        check(sum(c["path"].startswith("/api/models/test/choice/tree/") for c in hub.log) >= 2, "follows the tree's Link: rel=next pages")
        status, out, err = run(cache, "pull", "test/choice:Q5_K_M")
        check(status != 0 and "Q5_K_M" in err and all(q in err for q in ("Q2_K", "Q4_K_M", "Q8_0", "IQ4_XS")),
              f"an unknown quant fails and lists the available ones ({err.strip()[-200:]})")
        status, out, err = run(cache, "pull", "test/nothing-here")
        check(status != 0 and "test/nothing-here" in err and "HF_TOKEN" in err, f"an unknown repository fails clearly ({err.strip()[-200:]})")
        status, out, err = run(cache, "pull", "test/nothing-here", token=TOKEN)
        check(status != 0 and "not found" in err, f"with a token, an unknown repository is a 404 ({err.strip()[-200:]})")

        print("faults")
        cache = os.path.join(work, "cache2")
        faults(drop_after=30_000_000)
        mark = len(hub.log)
        status, out, err = run(cache, "pull", "test/smollm2:Q4_1")
        ranges = [c["range"] for c in log_since(mark) if c["path"].startswith("/cdn/") and c["method"] == "GET"]
        check(status == 0 and os.path.isfile(out.strip()) and sha256(out.strip()) == smol.files["SmolLM2-135M-Instruct.Q4_1.gguf"][3],
              f"a dropped connection is resumed and the file is whole ({err.strip()[-300:]})")
        resumed = ranges[1][len("bytes="):-1] if len(ranges) == 2 and ranges[1] else ""
        check(len(ranges) == 2 and ranges[0] is None and resumed.isdigit() and 0 < int(resumed) <= 30_000_000,
              f"the second request asks for the rest, from what arrived: {ranges}")

        cache = os.path.join(work, "cache3")  # an interrupted run left 10 MB behind
        blobs = os.path.join(cache, "models--test--smollm2", "blobs")
        os.makedirs(blobs)
        with open(args.model, "rb") as src, open(os.path.join(blobs, os.path.basename(blob) + ".incomplete"), "wb") as dst:
            dst.write(src.read(10_000_000))
        mark = len(hub.log)
        status, out, err = run(cache, "pull", "test/smollm2:Q4_1")
        ranges = [c["range"] for c in log_since(mark) if c["path"].startswith("/cdn/")]
        check(status == 0 and ranges == ["bytes=10000000-"] and sha256(out.strip()) == os.path.basename(blob),
              f"an interrupted run's partial file is resumed: {ranges}")

        cache = os.path.join(work, "cache4")
        faults(fail=2)
        mark = len(hub.log)
        status, out, err = run(cache, "pull", "test/smollm2:Q4_1")
        resolves = [c for c in log_since(mark) if "/resolve/" in c["path"]]
        check(status == 0 and len(resolves) == 3 and "retrying" in err, f"two 500s, then success ({len(resolves)} resolve requests)")

        cache = os.path.join(work, "cache5")
        faults(corrupt=True)
        status, out, err = run(cache, "pull", "test/smollm2:Q4_1")
        faults(corrupt=False)
        left = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(cache, "models--test--smollm2")) for f in fs]
        check(status != 0 and "hash" in err and "deleted" in err, f"wrong bytes: a hash error ({err.strip()[-200:]})")
        check(not [f for f in left if "/blobs/" in f or "/snapshots/" in f], f"nothing is left in the cache: {left}")

        small = os.path.join(work, "small")  # a 50 MB file system for a 98 MB model
        os.makedirs(small)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=50m", "tmpfs", small], capture_output=True).returncode == 0:
            try:
                mark = len(hub.log)
                status, out, err = run(small, "pull", "test/smollm2:Q4_1")
                check(status != 0 and "free" in err and "LLAMA_CACHE" in err and not any(c["path"].startswith("/cdn/") for c in log_since(mark)),
                      f"too little disk: a clear error before any byte moves ({err.strip()[-200:]})")
            finally:
                subprocess.run(["umount", small])
        else:
            print("  note  the disk-space check needs a tmpfs mount (root); not run here", flush=True)

        status, out, err = run(cache, "pull", "test/gated")
        check(status != 0 and "HF_TOKEN" in err, f"a gated repository without a token says to set HF_TOKEN ({err.strip()[-200:]})")
        status, out, err = run(cache, "pull", "test/gated", token="hf_wrong")
        check(status != 0 and "refused" in err, f"a wrong token is refused ({err.strip()[-200:]})")
        status, out, err = run(cache, "pull", "test/gated", token=TOKEN)
        check(status == 0 and out.strip().endswith("Gated-Q8_0.gguf"), "with HF_TOKEN it downloads")

        print("huggingface_hub as the oracle")
        import huggingface_hub
        cache = os.path.join(work, "cache1")
        info = huggingface_hub.scan_cache_dir(cache)
        repos_seen = {r.repo_id: r for r in info.repos}
        check("test/smollm2" in repos_seen and "test/choice" in repos_seen, f"scan_cache_dir lists our repositories: {sorted(repos_seen)}")
        if "test/smollm2" in repos_seen:
            files = {f.file_name: f for rev in repos_seen["test/smollm2"].revisions for f in rev.files}
            entry = files.get("SmolLM2-135M-Instruct.Q4_1.gguf")
            check(entry is not None and entry.size_on_disk == os.path.getsize(args.model), "with the file and its size")
            check(not info.warnings, f"and no warnings: {info.warnings}")
        found = huggingface_hub.hf_hub_download("test/smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", cache_dir=cache,
                                                local_files_only=True, endpoint=endpoint)
        check(sha256(found) == os.path.basename(blob), "hf_hub_download(local_files_only=True) finds our file")

        cache = os.path.join(work, "cache6")
        theirs = huggingface_hub.hf_hub_download("test/choice", "Tiny-Q8_0.gguf", cache_dir=cache, endpoint=endpoint)
        mark = len(hub.log)
        status, out, err = run(cache, "pull", "--offline", "test/choice:Q8_0")
        check(status == 0 and os.path.realpath(out.strip()) == os.path.realpath(theirs) and len(hub.log) == mark,
              f"we find, offline, what huggingface_hub fetched ({err.strip()[-200:]})")
        status, out, err = run(cache, "pull", "--offline", "test/choice:Q2_K")
        check(status != 0 and "Q8_0" in err, f"offline, a quant not cached fails and lists the cached ones ({err.strip()[-200:]})")
        status, out, err = run(cache, "pull", "test/choice:Q8_0", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
        check(status == 0 and "cached copy" in err, "with the hub unreachable, the cached copy is used and said so")

        print("split models")
        cache = os.path.join(work, "cache1")
        status, out, err = run(cache, "pull", "test/split")
        lines = out.strip().splitlines()
        check(status == 0 and len(shards) == 3 and [os.path.basename(l) for l in lines] == [f"SmolLM2-Q4_1-0000{i}-of-00003.gguf" for i in (1, 2, 3)],
              f"a split model comes with all its shards ({len(shards)} made by the gguf package): {[os.path.basename(l) for l in lines]}")
        prompt = ["-p", "Once upon a time", "-n", "12", "--temp", "0"]
        status, split_text, err = run(cache, "generate", "-hf", "test/split", "--offline", *prompt)
        _, whole_text, _ = run(cache, "generate", "-m", args.model, *prompt)
        check(status == 0 and split_text == whole_text and len(whole_text) > len("Once upon a time"),
              f"it generates what the whole file generates ({err.strip()[-200:]})")
        status, text, _ = run(cache, "generate", "-m", lines[-1] if lines else "", *prompt)
        check(status == 0 and text == whole_text, "also when opened by its last shard")

        print("-hf, ls, rm")
        cache = os.path.join(work, "cache1")
        status, out, err = run(cache, "info", "-hf", "test/smollm2:Q4_1", "--offline")
        check(status == 0 and "llama" in out.lower(), f"llama info -hf reads the cached model ({err.strip()[-200:]})")
        status, out, err = run(cache, "generate", "-hf", "test/smollm2:Q4_1", "--offline", "-p", "Once upon a time", "-n", "8", "--temp", "0")
        status2, out2, _ = run(cache, "generate", "-m", args.model, "-p", "Once upon a time", "-n", "8", "--temp", "0")
        check(status == 0 and out == out2, "generate -hf gives what generate -m gives")
        status, out, err = run(cache, "ls")
        check(status == 0 and "test/smollm2" in out and "Q4_1" in out and "llama" in out and "test/choice" in out and "Q4_K_M" in out,
              f"llama ls lists repo, quant and architecture:\n{out}")
        serve_models_dir(args.llama, cache)
        status, out, err = run(cache, "rm", "test/choice:Q4_K_M")
        status2, listing, _ = run(cache, "ls")
        check(status == 0 and "Q4_K_M" not in listing and "test/smollm2" in listing, "llama rm user/repo:QUANT removes that file only")
        status, out, err = run(cache, "rm", "test/smollm2")
        check(status == 0 and not os.path.exists(os.path.join(cache, "models--test--smollm2")), "llama rm user/repo removes the repository")
        status, out, err = run(cache, "rm", "test/smollm2")
        check(status != 0 and "not in the cache" in err, "removing it again says it is not there")
        server.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} hub check(s) failed:", *failures, sep="\n  ")
        return 1
    print("hub: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
