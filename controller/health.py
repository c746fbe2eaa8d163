"""The controller's HTTP endpoints for Kubernetes probes and Prometheus: ``/metrics``, ``/healthz``,
``/readyz``.

A small `ThreadingHTTPServer` from the standard library runs in a daemon thread beside the controller.

- ``/healthz`` answers 200 while the process can serve a request at all (liveness: a wedged process is
  restarted; a slow or unreachable API server is not a reason to kill it).
- ``/readyz`` answers 200 when the readiness callback reports the Kubernetes API reachable and the
  controller either leading or standing by for the lease; otherwise 503 with the reason as text. A standby
  replica is ready on purpose: rolling updates of the controller must not wait for an election.
- ``/metrics`` renders the `ControllerMetrics` registry.

A readiness callback that raises is reported as not ready (503) with the exception, never as a crash of the
server. `HealthServer.stop` shuts the listener down and joins its thread, so a test or a terminating pod
leaves no socket behind.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from songbird.controller.metrics import ControllerMetrics

DEFAULT_ADDRESS = "0.0.0.0:8080"

#: ``leader``: holds the lease and reconciles; ``standby``: another replica leads, this one waits;
#: ``starting``: no election result yet.
Role = Literal["leader", "standby", "starting"]


@dataclass(frozen=True, kw_only=True)
class Readiness:
    """What the readiness probe needs to know, as reported by the controller's loop."""

    api_reachable: bool
    role: Role
    detail: str = ""  # why the API is unreachable, for the probe's body

    @property
    def ready(self) -> bool:
        return self.api_reachable and self.role in ("leader", "standby")

    def explain(self) -> str:
        if not self.api_reachable:
            return "kubernetes API unreachable" + (f": {self.detail}" if self.detail else "")
        if self.role == "starting":
            return "leader election has not started yet"
        return f"ok ({self.role})"


ReadinessCheck = Callable[[], Readiness]


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) to a (host, port) pair; raises ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], metrics: ControllerMetrics, readiness: ReadinessCheck):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.metrics = metrics
        self.readiness = readiness


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so stop() leaves no idle keep-alive connection behind. A probe or
    # a scrape every few seconds does not need connection reuse.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(HTTPStatus.OK, self.server.metrics.render(), self.server.metrics.content_type)
        elif path == "/healthz":
            self._reply(HTTPStatus.OK, b"ok\n")
        elif path == "/readyz":
            try:
                readiness = self.server.readiness()
            except Exception as exc:  # a failing check means "not ready", never a dead endpoint
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, f"readiness check failed: {exc!r}\n".encode())
                return
            status = HTTPStatus.OK if readiness.ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._reply(status, f"{readiness.explain()}\n".encode())
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found: try /metrics, /healthz or /readyz\n")

    def _reply(
        self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes and scrapes every few seconds would drown the controller's own log: stay silent."""


class HealthServer:
    """Serves the three endpoints on ``address`` (``host:port``; port 0 picks a free one)."""

    def __init__(
        self, metrics: ControllerMetrics, readiness: ReadinessCheck, *, address: str = DEFAULT_ADDRESS
    ) -> None:
        self._metrics = metrics
        self._readiness = readiness
        self._requested = parse_address(address)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0). Only valid after `start`."""
        if self._server is None:
            raise RuntimeError("the health server is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the health server is already started")
        self._server = _Server(self._requested, self._metrics, self._readiness)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="songbird-health",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests, close the socket and wait for the serving thread. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
