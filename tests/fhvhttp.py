"""A real HTTP server on 127.0.0.1 serving generated FHV files, with scriptable faults."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    """How one path answers. `fail_first` answers `fail_status` that many times first."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    fail_first: int = 0
    fail_status: int = 503
    truncate_to: int | None = None  # announce len(body), send only this many bytes, close
    truncate_first: int | None = None  # only the first N answers are truncated (None: all)
    bytes_per_second: float | None = None  # trickle the body (for Ctrl-C tests)
    hold: threading.Event | None = None  # a byte every 0.5 s until set, then the rest
    announce_length: int | None = None  # Content-Length to announce instead of len(body)
    last_modified: str | None = None  # a Last-Modified header (the TLC's CloudFront sends one)


class FHVServer:
    """Routes by path; counts requests so tests can assert that none was made."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.allow_head = False  # like before: HEAD answers 501, a ranged GET must be used
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/trip-data"

    def _handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-body (a ranged GET read 16 bytes) is no error."""
        if not isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            ThreadingHTTPServer.handle_error(self.httpd, request, client_address)  # type: ignore[arg-type]

    def serve_file(self, name: str, path: Path, **kw: object) -> None:
        self.routes[f"/trip-data/{name}"] = Route(body=path.read_bytes(), **kw)  # type: ignore[arg-type]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                if not server.allow_head:
                    self.send_error(501, f"Unsupported method ({self.command!r})")
                    return
                route = server.routes.get(self.path)
                if route is None:
                    self._reply(404, b"", "text/html")
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(route.announce_length or len(route.body)))
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                self.end_headers()

            def do_GET(self) -> None:
                with server.lock:
                    server.hits[self.path] += 1
                    hit = server.hits[self.path]
                route = server.routes.get(self.path)
                if route is None:
                    self._reply(404, b"<html>Not Found</html>", "text/html")
                    return
                if hit <= route.fail_first:
                    self._reply(route.fail_status, b"busy", "text/plain")
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                announced = route.announce_length
                self.send_header("Content-Length", str(announced or len(route.body)))
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                self.end_headers()
                body = route.body
                if announced is not None:  # a body we never send in full: close at once
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                cut = route.truncate_first is None or hit <= route.truncate_first
                if route.truncate_to is not None and cut:
                    self.wfile.write(body[: route.truncate_to])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if route.hold is not None:
                    sent = 0
                    while not route.hold.wait(0.5) and sent < len(body) - 1:
                        self.wfile.write(body[sent : sent + 1])
                        self.wfile.flush()
                        sent += 1
                    self.wfile.write(body[sent:])
                    return
                if route.bytes_per_second:
                    step = max(1, int(route.bytes_per_second / 20))
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i : i + step])
                        self.wfile.flush()
                        time.sleep(0.05)
                    return
                self.wfile.write(body)

            def _reply(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@contextmanager
def running_server() -> Iterator[FHVServer]:
    """Start an FHVServer in a thread; always shut it down."""
    server = FHVServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=5)
