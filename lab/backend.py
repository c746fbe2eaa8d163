"""A local stand-in for one replica of a Deployment: an HTTP server that says which version it is.

Run as ``python -m songbird.lab.backend --deployment nginx-v2 --version v2 --replica 0 --port 0 ...``.
Every request (any method, any path) is answered after a log-normal delay with the given median, with
status 500 for a given share of requests and 200 otherwise, a body ``<deployment> <version> replica=<n>``
and the headers ``X-Version`` and ``X-Deployment``. Draws come from ``random.Random(seed)``, so a
replica's sequence of (delay, error) draws is reproducible.

Process contract (used by `lab.replicas`):
- it binds 127.0.0.1 only, then writes one line ``READY <port>`` to stdout and closes stdout;
- it exits on SIGTERM/SIGINT, and by itself within about a second if its parent process goes away, so a
  killed lab leaves no stray servers;
- it uses the standard library only; threads sleep while they simulate latency, so an idle server costs
  no CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

READY_PREFIX = "READY "


@dataclass(frozen=True, kw_only=True)
class BackendProfile:
    """How a Deployment's replicas behave: share of 5xx answers, latency median and spread, seed."""

    error_rate: float = 0.0
    latency_median: float = 0.002  # seconds
    latency_sigma: float = 0.25  # of the underlying normal; 0 gives a constant delay
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {self.error_rate}")
        if self.latency_median < 0 or self.latency_sigma < 0:
            raise ValueError("latency_median and latency_sigma must be >= 0")

    def args(self) -> list[str]:
        return [
            f"--error-rate={self.error_rate}",
            f"--latency-median={self.latency_median}",
            f"--latency-sigma={self.latency_sigma}",
            f"--seed={self.seed}",
        ]


class _Behaviour:
    """The seeded draws, shared by the server's threads."""

    def __init__(self, profile: BackendProfile, replica: int) -> None:
        self._profile = profile
        self._rng = random.Random(profile.seed * 1_000_003 + replica)
        self._lock = threading.Lock()

    def draw(self) -> tuple[float, bool]:
        p = self._profile
        with self._lock:
            if p.latency_median <= 0:
                delay = 0.0
            elif p.latency_sigma == 0:
                delay = p.latency_median
            else:
                delay = self._rng.lognormvariate(math.log(p.latency_median), p.latency_sigma)
            failed = self._rng.random() < p.error_rate
        return min(delay, 30.0), failed


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so nginx's upstream keepalive pool is used
    server_version = "songbird-lab-backend"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    deployment: ClassVar[str] = ""
    version: ClassVar[str] = ""
    replica: ClassVar[int] = 0
    behaviour: ClassVar[_Behaviour]

    def _answer(self, with_body: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        delay, failed = self.behaviour.draw()
        if delay:
            time.sleep(delay)
        body = f"{self.deployment} {self.version} replica={self.replica}\n".encode()
        self.send_response(500 if failed else 200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Version", self.version)
        self.send_header("X-Deployment", self.deployment)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(True)

    def do_POST(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def _watch_parent(server: _Server, parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    server.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m songbird.lab.backend", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--replica", type=int, default=0)
    parser.add_argument("--port", type=int, default=0, help="0: any free port (reported on stdout)")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency-median", type=float, default=0.002)
    parser.add_argument("--latency-sigma", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args(argv)
    profile = BackendProfile(
        error_rate=ns.error_rate,
        latency_median=ns.latency_median,
        latency_sigma=ns.latency_sigma,
        seed=ns.seed,
    )

    handler = type(
        "Handler",
        (_Handler,),
        {
            "deployment": ns.deployment,
            "version": ns.version,
            "replica": ns.replica,
            "behaviour": _Behaviour(profile, ns.replica),
        },
    )
    server = _Server(("127.0.0.1", ns.port), handler)

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=_watch_parent, args=(server, os.getppid()), daemon=True).start()

    sys.stdout.write(f"{READY_PREFIX}{server.server_address[1]}\n")
    sys.stdout.flush()
    sys.stdout.close()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
