"""A loopback server that answers like the Hugging Face hub for whole files.

It implements what `hf_hub_download` needs, and the repository listing of `model_info`
(`GET /api/models/{owner}/{repo}/revision/{revision}`, with each file's size and SHA-256):
HEAD and GET on
`/{owner}/{repo}/resolve/{revision}/{path}` with `X-Repo-Commit`, `ETag` and
`X-Linked-Etag` (the SHA-256, as for LFS files), `X-Linked-Size`, `Content-Length`, and
Range requests. Switches: `cut_after` drops the connection once after that many body
bytes (a resumed download follows), `corrupt` flips the body's bytes (same length).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<revision>[^/?]+)")


@dataclass
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    files: dict[str, bytes] = field(default_factory=dict)  # "owner/repo/path" -> content
    cut_after: int | None = None
    corrupt: bool = False
    requests: list[Seen] = field(default_factory=list)
    url: str = ""

    def add(self, repo: str, path: str, content: bytes) -> str:
        self.files[f"{repo}/{path}"] = content
        return f"hf://{repo}/{path}"

    def gets(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "GET"]


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            hub.requests.append(Seen(self.command, self.path, self.headers.get("Range")))
            info = _INFO.match(self.path)
            if info is not None:
                self._listing(info["repo"])
                return
            match = _RESOLVE.match(self.path)
            content = hub.files.get(f"{match['repo']}/{match['path']}") if match else None
            if match is None or content is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            sha = hashlib.sha256(content).hexdigest()
            start = 0
            ranged = re.match(r"^bytes=(\d+)-$", self.headers.get("Range") or "")
            if ranged and body:
                start = int(ranged[1])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{sha}"')
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(content)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(content) - start))
            if start:
                last = len(content) - 1
                self.send_header("Content-Range", f"bytes {start}-{last}/{len(content)}")
            self.end_headers()
            if not body:
                return
            data = bytes(b ^ 0xFF for b in content) if hub.corrupt else content
            data = data[start:]
            if hub.cut_after is not None and not start:
                cut, hub.cut_after = hub.cut_after, None
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data)

        def _listing(self, repo: str) -> None:
            siblings = [
                {
                    "rfilename": name.removeprefix(repo + "/"),
                    "size": len(content),
                    "lfs": {
                        "sha256": hashlib.sha256(content).hexdigest(),
                        "size": len(content),
                        "pointerSize": 134,
                    },
                }
                for name, content in hub.files.items()
                if name.startswith(repo + "/")
            ]
            if not siblings:
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextlib.contextmanager
def serve_hub(hub: FakeHub) -> Iterator[FakeHub]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
