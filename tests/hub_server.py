"""A stand-in for the Hugging Face Hub over HTTP on 127.0.0.1, for tests that use the real huggingface_hub.

It answers the few endpoints ``HfApi.model_info``, ``snapshot_download`` and ``hf_hub_download``
call (model info, revision, tree, resolve) the way the Hub does, including its error headers
(``X-Error-Code: RepoNotFound / GatedRepo / RevisionNotFound / EntryNotFound``), and records every
request so a test can assert what was, or was not, downloaded. ``hub_server`` (a pytest fixture in
the tests that use it) points huggingface_hub at it and at a cache in tmp_path.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

PIECE = 8192  # a slow download (FakeHub.rate) is sent in pieces of this many bytes


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = "c" * 40
    gated: bool = False                   # downloads need an Authorization header
    parameters: dict[str, int] | None = None  # the Hub's safetensors metadata: {"F32": n, ...}


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    tokens: list[str | None] = field(default_factory=list)  # the Authorization header of each request, or None
    rate: float = 0.0   # bytes per second a download is sent at (0: at once): a download a page can watch

    def downloads(self) -> list[str]:
        """Files whose bytes were sent (GET on resolve)."""
        return [path.split("/resolve/", 1)[1].split("/", 1)[1] for method, path in self.requests
                if method == "GET" and "/resolve/" in path]

    def info(self, repo_id: str, repo: Repo) -> dict:
        meta = repo.parameters
        return {"id": repo_id, "sha": repo.sha, "private": False, "gated": "manual" if repo.gated else False,
                "siblings": [{"rfilename": f, "size": len(b)} for f, b in repo.files.items()],
                **({"safetensors": {"parameters": meta, "total": sum(meta.values())}} if meta else {})}

    def answer(self, method: str, path: str, headers) -> tuple[int, dict, bytes]:
        """(status, headers, body) for one request."""
        self.requests.append((method, path))
        self.tokens.append(headers.get("authorization"))
        parts = unquote(urlsplit(path).path).strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo_id = "/".join(parts[2:4] if api else parts[:2])
        repo = self.repos.get(repo_id)
        if repo is None:
            return 401, {"X-Error-Code": "RepoNotFound"}, b""
        rest = parts[4:] if api else parts[2:]
        revision = rest[1] if len(rest) > 1 else "main"
        if revision not in ("main", repo.sha):
            return 404, {"X-Error-Code": "RevisionNotFound"}, b""
        if api and rest[:1] == ["tree"]:
            tree = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for f, b in repo.files.items()]
            return 200, {"Content-Type": "application/json"}, json.dumps(tree).encode()
        if api:  # model_info, with or without /revision/<rev>
            return 200, {"Content-Type": "application/json"}, json.dumps(self.info(repo_id, repo)).encode()
        if rest[:1] != ["resolve"]:
            return 404, {}, b""
        if repo.gated and not headers.get("authorization"):
            return 403, {"X-Error-Code": "GatedRepo"}, b""
        filename = "/".join(rest[2:])
        if filename not in repo.files:
            return 404, {"X-Error-Code": "EntryNotFound"}, b""
        body = repo.files[filename]
        return 200, {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'}, body


def serve(hub: FakeHub) -> http.server.ThreadingHTTPServer:
    """Start ``hub`` on a free port in a daemon thread; ``server.shutdown()`` stops it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def respond(self):
            status, headers, body = hub.answer(self.command, self.path, self.headers)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                slow = hub.rate > 0 and "/resolve/" in self.path and status == 200
                step = PIECE if slow else max(len(body), 1)
                for start in range(0, len(body), step):
                    self.wfile.write(body[start:start + step])
                    self.wfile.flush()
                    if slow:
                        time.sleep(len(body[start:start + step]) / hub.rate)

        do_GET = do_HEAD = respond

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
