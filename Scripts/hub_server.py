#!/usr/bin/env python3
"""A small stand-in for the Hugging Face hub, for tests: the endpoints huggingface_hub and llama.cpp
call, over real files, with faults that can be switched on.

    GET  /api/models/{user}/{repo}/revision/{rev}       {"id", "sha": commit, "siblings"}
    GET  /api/models/{user}/{repo}/tree/{rev}?recursive  files with size, git oid and lfs.oid (sha256),
                                                        a few per page with a Link: rel="next" header
    HEAD|GET /{user}/{repo}/resolve/{rev}/{file}        302 to the "CDN" (the same server under another
                                                        host name, as the real hub's CDN is another host),
                                                        with X-Repo-Commit, X-Linked-Etag, X-Linked-Size
    HEAD|GET /cdn/{sha256}                              the bytes, with ETag and Range (206, 416)

Faults, set with POST /_faults (JSON) and read back with GET /_log (every request seen):
    {"drop_after": N}      the next file GET closes the connection after N bytes (once)
    {"fail": N}            the next N resolve requests answer 500
    {"corrupt": true}      file bytes served with one byte flipped (until switched off)
    gated repositories     401 without "Authorization: Bearer <token>"

    python3 Scripts/hub_server.py --port 0 --repo user/name=FILE[,FILE...] [--gated user/name] [--token T]
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse, parse_qs

PAGE = 3  # tree entries per page, small so that pagination is exercised


class Repo:
    def __init__(self, name, files, gated=False):
        self.name, self.gated = name, gated
        self.files = {}  # path in repo -> (local path, size, git oid, sha256)
        digest = hashlib.sha1(name.encode())
        for path, local in sorted(files.items()):
            size = os.path.getsize(local)
            oid, sha = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
            with open(local, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    oid.update(chunk)
                    sha.update(chunk)
            self.files[path] = (local, size, oid.hexdigest(), sha.hexdigest())
            digest.update(path.encode() + sha.hexdigest().encode())
        self.commit = digest.hexdigest()


class Hub:
    def __init__(self, repos, token=None):
        self.repos = {r.name: r for r in repos}
        self.token = token
        self.blobs = {f[3]: f for r in repos for f in r.files.values()}
        self.lock = threading.Lock()
        self.faults = {}
        self.log = []

    def take(self, name):
        """One use of a counted fault."""
        with self.lock:
            n = self.faults.get(name, 0)
            if n:
                self.faults[name] = n - 1
            return n > 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: Hub = None  # set on the class by serve()

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.route(head=True)

    def do_GET(self):
        self.route(head=False)

    def do_POST(self):
        if self.path == "/_faults":
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with self.hub.lock:
                self.hub.faults.update(json.loads(body or b"{}"))
            return self.send_json({"ok": True})
        self.send_json({"error": "not found"}, 404)

    def route(self, head):
        hub = self.hub
        url = urlparse(self.path)
        with hub.lock:
            hub.log.append({"method": self.command, "path": url.path, "range": self.headers.get("Range"),
                            "auth": self.headers.get("Authorization"), "host": self.headers.get("Host")})
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if url.path == "/_log":
            with hub.lock:
                return self.send_json(list(hub.log))
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo = self.repo("/".join(parts[2:4]))
            if repo is None:
                return
            if parts[5] not in ("main", repo.commit):
                return self.send_json({"error": "Invalid rev id"}, 404)
            if parts[4] == "revision":
                return self.send_json({"id": repo.name, "sha": repo.commit, "siblings": [{"rfilename": p} for p in repo.files]})
            entries = [{"type": "file", "path": p, "size": size, "oid": oid, "lfs": {"oid": sha, "size": size, "pointerSize": 134}}
                       for p, (_, size, oid, sha) in repo.files.items()]
            page = int(parse_qs(url.query).get("page", ["0"])[0])
            headers = {}
            if (page + 1) * PAGE < len(entries):
                headers["Link"] = f'<{self.base()}/api/models/{repo.name}/tree/{parts[5]}?recursive=true&page={page + 1}>; rel="next"'
            return self.send_json(entries[page * PAGE:(page + 1) * PAGE], headers=headers)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self.repo("/".join(parts[0:2]))
            if repo is None:
                return
            if hub.take("fail"):
                return self.send_json({"error": "injected failure"}, 500)
            if parts[3] not in ("main", repo.commit) or "/".join(parts[4:]) not in repo.files:
                return self.send_json({"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})
            _, size, oid, sha = repo.files["/".join(parts[4:])]
            # The CDN is another host, as on the real hub: clients must not send it their token.
            host, port = self.server.server_address[:2]
            cdn = f"http://localhost:{port}/cdn/{sha}"
            self.send_response(302)
            for name, value in {"Location": cdn, "X-Repo-Commit": repo.commit, "X-Linked-Etag": f'"{sha}"',
                                "X-Linked-Size": str(size), "ETag": f'"{oid}"', "Content-Length": "0"}.items():
                self.send_header(name, value)
            return self.end_headers()
        if len(parts) == 2 and parts[0] == "cdn" and parts[1] in hub.blobs:
            return self.send_file(hub.blobs[parts[1]], head)
        self.send_json({"error": "not found"}, 404)

    def repo(self, name):
        repo = self.hub.repos.get(name)
        if repo is None:
            # The real hub answers 401 for a repository it will not name (missing or private).
            self.send_json({"error": "Repository Not Found"}, 401 if self.headers.get("Authorization") is None else 404,
                           {"X-Error-Code": "RepoNotFound"})
            return None
        if repo.gated and self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            self.send_json({"error": "Access to this model is restricted"}, 401, {"X-Error-Code": "GatedRepo"})
            return None
        return repo

    def base(self):
        host, port = self.server.server_address[:2]
        return f"http://127.0.0.1:{port}"

    def send_json(self, value, status=200, headers=None):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, val in (headers or {}).items():
            self.send_header(name, val)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_file(self, blob, head):
        local, size, oid, sha = blob
        start, status = 0, 200
        requested = self.headers.get("Range")
        if requested and requested.startswith("bytes=") and requested.endswith("-"):
            start = int(requested[6:-1])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(size - start))
        self.send_header("ETag", f'"{sha}"')
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if head:
            return
        drop = None
        with self.hub.lock:
            if self.hub.faults.get("drop_after"):
                drop = self.hub.faults.pop("drop_after")
            corrupt = self.hub.faults.get("corrupt", False)
        sent = 0
        with open(local, "rb") as f:
            f.seek(start)
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                if corrupt and sent == 0:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                if drop is not None and sent + len(chunk) >= drop:
                    self.wfile.write(chunk[:max(0, drop - sent)])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)


def serve(repos, token=None, port=0):
    """Starts the hub on a thread; returns (server, hub). server.server_address[1] is the port."""
    hub = Hub(repos, token)
    handler = type("BoundHandler", (Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hub


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--repo", action="append", default=[], help="user/name=FILE[,FILE...] (files served under their base names)")
    parser.add_argument("--gated", action="append", default=[])
    parser.add_argument("--token", default="test-token")
    args = parser.parse_args()
    repos = []
    for spec in args.repo:
        name, files = spec.split("=", 1)
        repos.append(Repo(name, {os.path.basename(f): f for f in files.split(",")}, gated=name in args.gated))
    server, _ = serve(repos, args.token, args.port)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
