"""A local stand-in for the Hugging Face Hub's HTTP API, as huggingface_hub 2.x speaks it, on 127.0.0.1.

It serves folders as model repositories: ``/api/models/ORG/NAME[/revision/REV]`` (with
``?blobs=true``: each file's size and, for weights, the LFS SHA256), ``/api/models/…/tree/REV``
``…/auth-check`` and ``HEAD``/``GET /ORG/NAME/resolve/REV/PATH`` with the headers ``hf_hub_download`` reads
(``X-Repo-Commit``, ``X-Linked-Etag`` = SHA256, ``X-Linked-Size``), ``Range`` included so an
interrupted download resumes. A repository can be ``gone`` (404 RepoNotFound, as after a
deletion) or ``gated`` (metadata public, files 401 GatedRepo, as on the real Hub).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt")


@dataclass
class Repo:
    folder: Path
    status: str = "ok"  # ok | gone | gated

    @property
    def sha(self) -> str:
        return hashlib.sha1(str(self.folder).encode()).hexdigest()

    def files(self) -> dict[str, Path]:
        return {p.relative_to(self.folder).as_posix(): p for p in sorted(self.folder.rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Hub:
    repos: dict[str, Repo] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)
    ranges: list[tuple[str, str]] = field(default_factory=list)
    stall: dict[str, int] = field(default_factory=dict)
    """File path -> bytes sent before the answer stalls (a connection that dies mid-download)."""
    url: str = ""

    def add(self, repo_id: str, folder: Path, status: str = "ok") -> None:
        self.repos[repo_id] = Repo(Path(folder), status)

    def asked(self, repo_id: str) -> bool:
        return any(f"/{repo_id}/" in path or path.endswith(f"/{repo_id}") for _, path in self.seen)

    def downloads(self, repo_id: str) -> list[str]:
        return [path for method, path in self.seen if method == "GET" and path.startswith(f"/{repo_id}/resolve/")]


def start(hub: Hub) -> ThreadingHTTPServer:
    """Serve ``hub`` on a free port of 127.0.0.1 (``hub.url``) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self._answer(body=True)

        def do_HEAD(self):
            self._answer(body=False)

        def log_message(self, *args):
            pass

        def _answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.seen.append((self.command, path))
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                return self._info(m[1], blobs="blobs=" in self.path)
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/auth-check", path):
                return self._repo(m[1], files=True) and self._json({})
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
                return self._tree(m[1], m[3] or "")
            if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._file(m[1], m[3], body)
            self._error(404, "EntryNotFound", "no such route")

        def _repo(self, repo_id: str, files: bool) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or repo.status == "gone":
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            if repo.status == "gated" and files:
                self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it "
                                              "and be authenticated to access it. Please log in.")
                return None
            return repo

        def _info(self, repo_id: str, blobs: bool) -> None:
            if (repo := self._repo(repo_id, files=False)) is None:
                return
            siblings = []
            for name, p in repo.files().items():
                entry: dict = {"rfilename": name}
                if blobs:
                    entry.update(size=p.stat().st_size, blobId=git_oid(p))
                    if name.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"sha256": sha256(p), "size": p.stat().st_size, "pointerSize": 134}
                siblings.append(entry)
            self._json({"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                        "gated": "auto" if repo.status == "gated" else False, "siblings": siblings})

        def _tree(self, repo_id: str, under: str) -> None:
            if (repo := self._repo(repo_id, files=False)) is None:
                return
            entries = []
            for name, p in repo.files().items():
                if name.startswith(under):
                    entry = {"type": "file", "path": name, "size": p.stat().st_size, "oid": git_oid(p)}
                    if name.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": sha256(p), "size": p.stat().st_size, "pointerSize": 134}
                    entries.append(entry)
            self._json(entries)

        def _file(self, repo_id: str, name: str, body: bool) -> None:
            if (repo := self._repo(repo_id, files=True)) is None:
                return
            p = repo.files().get(name)
            if p is None:
                self._error(404, "EntryNotFound", f"{name} does not exist")
                return
            data = p.read_bytes()
            start_at = 0
            if (rng := self.headers.get("Range")) and (m := re.fullmatch(r"bytes=(\d+)-", rng.strip())):
                start_at = int(m[1])
                hub.ranges.append((name, rng))
            self.send_response(206 if start_at else 200)
            self.send_header("X-Repo-Commit", repo.sha)
            if name.endswith(LFS_SUFFIXES):
                self.send_header("X-Linked-Etag", f'"{sha256(p)}"')
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{git_oid(p)}"')
            self.send_header("Content-Length", str(len(data) - start_at))
            self.end_headers()
            if body and name in hub.stall:
                self.wfile.write(data[start_at:start_at + hub.stall[name]])
                self.wfile.flush()
                time.sleep(60)  # the client is killed meanwhile
            elif body:
                self.wfile.write(data[start_at:])

        def _json(self, payload) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            data = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server
