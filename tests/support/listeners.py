"""HTTP listeners on loopback addresses for the endpoint tests: each counts every TCP connection it
accepts and records every request (path and headers), then answers either a fixed reply or, as a proxy,
whatever a real Prometheus answers (``forward_to``); over plain HTTP or TLS (``tls``).

Linux routes all of 127.0.0.0/8 to loopback, so listeners on 127.0.0.2, 127.0.0.3... stand for distinct
hosts: a test can show that no connection at all reached a host Songbird was told not to query.
"""

from __future__ import annotations

import ssl
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

EMPTY_VECTOR = b'{"status":"success","data":{"resultType":"vector","result":[]}}'


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: bytes = EMPTY_VECTOR


@dataclass
class _State:
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State
    reply: Reply
    upstream: str | None

    def get_request(self) -> Any:
        accepted = super().get_request()
        with self.state.lock:
            self.state.connections += 1
        return accepted


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        server = self.server
        with server.state.lock:
            server.state.requests.append(Seen(path=self.path, headers=dict(self.headers.items())))
        status, body = server.reply.status, server.reply.body
        if server.upstream is not None:
            with urllib.request.urlopen(server.upstream + self.path, timeout=5) as answer:
                status, body = answer.status, answer.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class Listener:
    """One HTTP listener on ``host`` (a free port); use as a context manager."""

    def __init__(
        self,
        host: str,
        *,
        reply: Reply | None = None,
        forward_to: str | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """``tls``: (certificate file, key file) to serve https."""
        self._server = _Server((host, 0), _Handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._server.state = _State()
        self._server.reply = reply or Reply()
        self._server.upstream = forward_to.rstrip("/") if forward_to else None
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        with self._server.state.lock:
            return self._server.state.connections

    @property
    def requests(self) -> list[Seen]:
        with self._server.state.lock:
            return list(self._server.state.requests)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


__all__ = ["EMPTY_VECTOR", "Listener", "Reply", "Seen"]
