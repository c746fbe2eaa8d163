"""A bounded load generator for the lab: which version answered, per time bucket.

`LoadGenerator(plan).run()` sends GET requests to ``plan.target`` (an ``http://127.0.0.1:<port>`` URL) with
``Host: plan.host`` at a steady rate; every ``header_every``-th request also carries ``plan.header`` (e.g.
``Region: always``). Each answer is attributed to a version by its ``X-Version`` header (``"none"`` when
absent, e.g. nginx's own 503) and counted in the time bucket of its scheduled send time, separately for
plain and header-carrying requests, with its status. ``snapshot()`` may be called from another thread
while it runs, to print progress.

Bounds, always all three: ``max_requests``, ``duration`` (seconds) and a per-request ``timeout``; it also
stops when the ``stop`` event is set. At most ``concurrency`` requests are in flight: when they are all
busy the schedule waits instead of piling up. Only loopback targets are accepted, unless the plan says
``remote=True`` (``songbird lab --kubeconfig``: the user named a cluster's ingress address).

Which version answered: the ``X-Version`` header (the lab's backends); else a body naming ``nginx-v1`` or
``nginx-v2`` (``v1``/``v2``); else a ``Server: nginx/<tag>`` header matching one of ``plan.images``' tags
(the seed's stock images nginx:1.25 and nginx:1.27 say their version there); else ``"none"``.

A request that fails on a reused keep-alive connection before any answer arrives (the server closed the
idle connection, as nginx does when a graceful reload retires a worker) is retried once on a new
connection, as HTTP clients do for idempotent requests (RFC 9112, section 9.3.1). Any other failure is
counted in ``failures``.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

NO_VERSION = "none"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, kw_only=True)
class LoadPlan:
    target: str
    host: str = "foo.example.com"
    path: str = "/"
    rate: float = 50.0  # requests per second
    duration: float = 10.0  # seconds
    max_requests: int = 1_000
    header: tuple[str, str] | None = ("Region", "always")
    header_every: int = 20  # every n-th request carries the header; 0: none do
    bucket: float = 1.0  # seconds
    concurrency: int = 4
    timeout: float = 5.0
    remote: bool = False  # allow a non-loopback target
    images: Mapping[str, str] = field(default_factory=dict)  # version -> image ("nginx:1.25")

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"target must be an http:// URL, got {self.target!r}")
        if not self.remote and (parts.hostname not in _LOOPBACK or not parts.port):
            raise ValueError(f"target must be http://127.0.0.1:<port>, got {self.target!r}")
        if self.rate <= 0 or self.duration <= 0 or self.max_requests <= 0 or self.bucket <= 0:
            raise ValueError("rate, duration, max_requests and bucket must be positive")
        if not 1 <= self.concurrency <= 64:
            raise ValueError("concurrency must be within [1, 64]")


@dataclass
class Bucket:
    """What happened to the requests scheduled in [start, start + width) (seconds since the epoch)."""

    start: float
    width: float
    versions: Counter[str] = field(default_factory=Counter)  # plain requests, by answering version
    header_versions: Counter[str] = field(default_factory=Counter)  # requests carrying the header
    statuses: Counter[int] = field(default_factory=Counter)  # all answered requests
    errors: Counter[str] = field(default_factory=Counter)  # plain 5xx answers, by version
    failures: int = 0  # no answer at all

    @property
    def plain(self) -> int:
        return sum(self.versions.values())

    def share(self, version: str) -> float | None:
        """Share of plain requests answered by ``version``; None when no plain request was answered."""
        return self.versions[version] / self.plain if self.plain else None

    def copy(self) -> Bucket:
        return Bucket(
            start=self.start,
            width=self.width,
            versions=Counter(self.versions),
            header_versions=Counter(self.header_versions),
            statuses=Counter(self.statuses),
            errors=Counter(self.errors),
            failures=self.failures,
        )


@dataclass
class LoadReport:
    buckets: list[Bucket]
    sent: int
    elapsed: float

    def total(self) -> Bucket:
        start = self.buckets[0].start if self.buckets else 0.0
        total = Bucket(start=start, width=self.elapsed)
        for b in self.buckets:
            total.versions.update(b.versions)
            total.header_versions.update(b.header_versions)
            total.statuses.update(b.statuses)
            total.errors.update(b.errors)
            total.failures += b.failures
        return total

    def share(self, version: str) -> float | None:
        return self.total().share(version)


class LoadGenerator:
    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        parts = urlsplit(plan.target)
        self._addr = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self._lock = threading.Lock()
        self._buckets: dict[int, Bucket] = {}
        self._start = 0.0
        self._sent = 0
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []

    def run(self, stop: threading.Event | None = None) -> LoadReport:
        plan = self.plan
        stop = stop or threading.Event()
        slots = threading.BoundedSemaphore(plan.concurrency)
        self._start = time.time()
        t0 = time.monotonic()
        interval = 1.0 / plan.rate
        try:
            with ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="lab-load") as pool:
                for i in range(plan.max_requests):
                    due = t0 + i * interval
                    if due - t0 >= plan.duration or stop.is_set():
                        break
                    wait = due - time.monotonic()
                    if wait > 0 and stop.wait(wait):
                        break
                    if not _acquire(slots, stop, give_up_at=t0 + plan.duration + plan.timeout):
                        break
                    with_header = (
                        plan.header is not None
                        and plan.header_every > 0
                        and (i % plan.header_every == plan.header_every - 1)
                    )
                    pool.submit(self._one, due - t0, with_header, slots)
                    self._sent += 1
        finally:
            with self._lock:
                for conn in self._connections:
                    conn.close()
                self._connections.clear()
        return LoadReport(buckets=self._sorted(), sent=self._sent, elapsed=time.monotonic() - t0)

    def snapshot(self) -> LoadReport:
        return LoadReport(buckets=self._sorted(), sent=self._sent, elapsed=time.time() - self._start)

    def _sorted(self) -> list[Bucket]:
        with self._lock:
            return [self._buckets[k].copy() for k in sorted(self._buckets)]

    def _bucket(self, offset: float) -> Bucket:
        index = int(offset // self.plan.bucket)
        b = self._buckets.get(index)
        if b is None:
            b = self._buckets[index] = Bucket(
                start=self._start + index * self.plan.bucket, width=self.plan.bucket
            )
        return b

    def _one(self, offset: float, with_header: bool, slots: threading.BoundedSemaphore) -> None:
        try:
            answer = self._request(with_header)
        except Exception:
            answer = None
        finally:
            slots.release()
        with self._lock:
            b = self._bucket(offset)
            if answer is None:
                b.failures += 1
                return
            status, version = answer
            b.statuses[status] += 1
            if with_header:
                b.header_versions[version] += 1
            else:
                b.versions[version] += 1
                if status >= 500:
                    b.errors[version] += 1

    def _connection(self, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and not fresh:
            return conn, True
        if conn is not None:
            conn.close()
        conn = http.client.HTTPConnection(*self._addr, timeout=self.plan.timeout)
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn, False

    def _request(self, with_header: bool) -> tuple[int, str]:
        headers = {"Host": self.plan.host}
        if with_header and self.plan.header is not None:
            headers[self.plan.header[0]] = self.plan.header[1]
        fresh = False
        while True:
            conn, reused = self._connection(fresh)
            try:
                conn.request("GET", self.plan.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused:
                    fresh = True
                    continue
                raise
            except Exception:
                conn.close()
                raise
            if response.will_close:
                conn.close()
            return response.status, self._version(response, body)

    def _version(self, response: http.client.HTTPResponse, body: bytes) -> str:
        declared = response.getheader("X-Version")
        if declared:
            return declared
        for version in ("v1", "v2"):
            if f"nginx-{version}".encode() in body[:4096]:
                return version
        server = response.getheader("Server") or ""
        for version, image in self.plan.images.items():
            tag = image.rpartition(":")[2]
            if tag and server.startswith(f"nginx/{tag}"):
                return version
        return NO_VERSION


def _acquire(slots: threading.BoundedSemaphore, stop: threading.Event, give_up_at: float) -> bool:
    """A free in-flight slot, or False when stopped or past ``give_up_at`` (monotonic seconds)."""
    while not slots.acquire(timeout=0.1):
        if stop.is_set() or time.monotonic() >= give_up_at:
            return False
    return True
