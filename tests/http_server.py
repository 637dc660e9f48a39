"""A real HTTP file server on 127.0.0.1 for download tests: serves in-memory files, honours Range requests,
records every request, and injects faults on demand (connection dropped after N body bytes, Range ignored).

Why a real server: the download code's resume, truncation and retry logic lives in how it talks HTTP over a
socket; a mocked urlopen would test the mock.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class RecordedRequest:
    """One GET the server received."""

    path: str
    range: str | None


@dataclass
class ServerState:
    """What the server serves and how it misbehaves; shared between the test and the server thread."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    # one entry per coming response: close the connection after this many body bytes (Content-Length stays full)
    drop_after_bytes: list[int] = field(default_factory=list)
    ignore_range: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0 handler: the connection closes after every response, so a short body is seen as EOF."""

    server: _StatefulServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state = self.server.state
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.lstrip("/"))
        range_header = self.headers.get("Range")
        with state.lock:
            state.requests.append(RecordedRequest(path, range_header))
            body = state.files.get(path)
            drop_after = state.drop_after_bytes.pop(0) if state.drop_after_bytes else None
            ignore_range = state.ignore_range
        if body is None:
            self.send_error(404, "not found")
            return
        status, start, content = 200, 0, body
        if range_header is not None and not ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header)
            if match is None:
                self.send_error(400, "bad range")
                return
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = int(match[2]) if match[2] else len(body) - 1
            status, content = 206, body[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(content) - 1}/{len(body)}")
        self.end_headers()
        self.wfile.write(content if drop_after is None else content[:drop_after])
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        """Silence the per-request log lines."""


class _StatefulServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class ArchiveServer:
    """Context manager: a running server on a free port of 127.0.0.1; ``url`` is its base URL."""

    def __init__(self) -> None:
        self.state = ServerState()
        self._server = _StatefulServer(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/files"

    def __enter__(self) -> ArchiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def serve(self, name: str, content: bytes) -> None:
        """Serve ``content`` at ``<url>/<name>``."""
        with self.state.lock:
            self.state.files[f"files/{name}"] = content

    def requests_for(self, name: str) -> list[RecordedRequest]:
        with self.state.lock:
            return [request for request in self.state.requests if request.path == f"files/{name}"]
