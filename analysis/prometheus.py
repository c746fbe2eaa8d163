"""The Prometheus adapter: `analysis.source.MetricsSource` over the HTTP API (``GET /api/v1/query``).

It speaks HTTP with the standard library's ``http.client`` on a socket it owns, because the guarantees
below need control that a client library with its own session, pool and redirect handling does not give
(requests follows up to 30 redirects to any host, and its timeouts bound each socket read, not a query).

What it guarantees to the caller:
- One answer, one number: an instant query evaluated at an explicit time (``time=``), so the same tick
  always asks about the same window. The answer is read by `analysis.answer` (the one parser): a finite
  number, None for no data (an empty result or NaN), or `MetricsUnavailable` with a short reason for
  anything else (several series, labels left after aggregation, ±Inf, a value of the wrong JSON type, a
  range vector, an error answer, bytes that are not JSON). No other exception leaves `query_scalar`.
- A total deadline: ``timeout`` seconds (at most ``MAX_DEADLINE``) for the whole query, connect, TLS, the
  request, the headers, every byte of the body and every retry together. A watchdog shuts the socket down
  at the deadline, so a server dribbling a byte at a time, or accepting and never answering, costs
  ``timeout`` and no more. (Name resolution happens before the socket exists and is bounded by the system
  resolver's own timeouts.)
- A bounded answer: a body larger than ``MAX_BODY_BYTES`` (1 MiB) is an error; reading stops at the cap
  (a ``Content-Length`` above it is refused before reading). Nothing is decompressed (no
  ``Accept-Encoding`` is sent).
- Redirects are never followed: a 3xx is an error and no request goes to the other location.
- Bounded retries: at most ``retries`` (<= ``MAX_RETRIES`` = 2) more attempts, only for this idempotent GET,
  only on a broken or refused connection, a 5xx or a 429, after 0.1 s then 0.2 s, and only while the
  deadline leaves time; ``Retry-After`` is not obeyed (the deadline is). A 4xx other than 429 (a bad query)
  is never retried. There are no other, hidden retries.
- Bounded text: reasons quote at most `config.text.REASON_LIMIT` characters of anything Prometheus sent
  (its ``error`` field, a label), never a body; a whole message is at most `config.text.MESSAGE_LIMIT`.
  Credentials in the URL (``http://user:password@host``) are sent as basic auth and never shown.
- Failures are `MetricsUnavailable`, raised ``from`` the original exception where there is one; when the
  server itself is out of reach (refused, reset, deadline, 5xx/429 after the retries) it is the subclass
  `PrometheusUnreachable`, so callers may skip the rest of an evaluation.

Proxies from the environment (``HTTP_PROXY``) are not used: the controller talks to Prometheus directly.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlencode, urlsplit

from songbird.analysis.answer import NoData, Number, decode, error_text, read_body
from songbird.config.errors import MetricsUnavailable
from songbird.config.policy import PrometheusSource as PrometheusSettings
from songbird.config.text import LABEL_LIMIT, MESSAGE_LIMIT, bounded, quoted

MAX_RETRIES = 2
MAX_DEADLINE = 120.0  # seconds: the longest one query may take, whatever the policy says
MAX_BODY_BYTES = 1 << 20
_BACKOFF = 0.1  # seconds before the first retry, doubled for the next
_CHUNK = 64 * 1024
_QUERY_IN_ERRORS = 200  # characters of a query quoted in an error
_URL_IN_ERRORS = 200


def _short(promql: str) -> str:
    return bounded(" ".join(promql[: _QUERY_IN_ERRORS * 4].split()), _QUERY_IN_ERRORS)


class PrometheusUnreachable(MetricsUnavailable):
    """Prometheus itself did not answer (refused, reset, no answer by the deadline, 5xx or 429 after the
    retries): later queries of the same evaluation would fare no better, so callers may skip them. A bad
    query or an unusable answer is the plain `MetricsUnavailable`: only that query is affected."""


@dataclass(frozen=True, kw_only=True)
class _Endpoint:
    host: str
    port: int
    tls: bool
    netloc: str  # the Host header: host[:port], without credentials
    path: str  # the query path, with the URL's prefix
    auth: str | None  # an Authorization header value
    shown: str  # the URL for messages, without credentials


def _endpoint(url: str) -> _Endpoint | str:
    """The parts of a Prometheus base URL, or why it cannot be used."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a usable Prometheus URL ({exc})"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "a Prometheus URL must be http:// or https:// with a host"
    host = parts.hostname
    tls = parts.scheme == "https"
    netloc = parts.netloc.rpartition("@")[2]
    auth = None
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        auth = "Basic " + base64.b64encode(token).decode("ascii")
    return _Endpoint(
        host=host,
        port=port if port is not None else (443 if tls else 80),
        tls=tls,
        netloc=netloc,
        path=parts.path.rstrip("/") + "/api/v1/query",
        auth=auth,
        shown=f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}",
    )


@dataclass(frozen=True, kw_only=True)
class _Reply:
    status: int
    body: bytes
    location: str | None = None


class _Deadline(Exception):
    """The query's deadline passed."""


class _Broken(Exception):
    """The connection was refused, reset or cut before a whole answer: worth another attempt."""


class _Garbled(Exception):
    """What came back is not a usable HTTP answer (bad status line, TLS failure, a body over the cap)."""


class _Watchdog:
    """Shuts the watched socket down at the deadline, which ends any read or write blocked on it."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is None:
            return
        # The plain socket's shutdown, also for a TLS socket: ssl.SSLSocket.shutdown would drop its TLS
        # state under a reader in another thread. OSError: already closed, nothing left to wake.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value) > 20:
        return None
    return int(value)


def _read_body(
    response: http.client.HTTPResponse, sock: socket.socket, deadline: float, guard: _Watchdog
) -> bytes:
    """The whole body, at most ``MAX_BODY_BYTES``, each read bounded by the time left."""
    declared = _content_length(response.getheader("Content-Length"))
    if declared is not None and declared > MAX_BODY_BYTES:
        raise _Garbled(f"answer of {declared:,} bytes is larger than the {MAX_BODY_BYTES:,}-byte cap")
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Deadline
        sock.settimeout(remaining)
        chunk = response.read1(min(_CHUNK, MAX_BODY_BYTES + 1 - size))
        if not chunk:
            if guard.fired or time.monotonic() >= deadline:  # the watchdog's shutdown reads as the end
                raise _Deadline
            if declared is not None and size != declared:
                raise _Broken(f"answer cut short: {size:,} of {declared:,} bytes")
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Garbled(f"answer larger than the {MAX_BODY_BYTES:,}-byte cap (reading stopped there)")
        chunks.append(chunk)


def _exchange(endpoint: _Endpoint, target: str, deadline: float) -> _Reply:
    """One GET of ``target``, all of it before ``deadline`` (monotonic seconds)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Deadline
    guard = _Watchdog(remaining)
    sock: socket.socket | None = None
    response: http.client.HTTPResponse | None = None
    try:
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=remaining)
            guard.watch(sock)
            if endpoint.tls:
                context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=endpoint.host, do_handshake_on_connect=False)
                guard.watch(sock)
                sock.do_handshake()
            conn = http.client.HTTPConnection(endpoint.host, endpoint.port)
            conn.sock = sock  # already connected: http.client only writes and reads
            headers = {"Host": endpoint.netloc, "Accept": "application/json", "Connection": "close"}
            if endpoint.auth is not None:
                headers["Authorization"] = endpoint.auth
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            if 300 <= response.status < 400:
                return _Reply(status=response.status, body=b"", location=response.getheader("Location"))
            return _Reply(status=response.status, body=_read_body(response, sock, deadline, guard))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if guard.fired or time.monotonic() >= deadline or isinstance(exc, TimeoutError):
                raise _Deadline from exc
            if isinstance(exc, ConnectionError | http.client.IncompleteRead):
                raise _Broken(f"{type(exc).__name__}: {bounded(str(exc), LABEL_LIMIT)}") from exc
            if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
                raise _Broken(f"{type(exc).__name__}: {bounded(str(exc), LABEL_LIMIT)}") from exc
            raise _Garbled(f"not an HTTP answer ({type(exc).__name__})") from exc
    finally:
        guard.cancel()
        if response is not None:
            response.close()
        if sock is not None:
            sock.close()


class PrometheusSource:
    """Instant queries against one Prometheus base URL. Use as a context manager or call `close`."""

    def __init__(self, url: str, *, timeout: float, retries: int = 1) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be between 0 and {MAX_RETRIES}, got {retries!r}")
        self.url = url.rstrip("/")
        self.timeout = min(timeout, MAX_DEADLINE)
        self.retries = retries
        self._endpoint = _endpoint(self.url)

    @classmethod
    def from_settings(
        cls, settings: PrometheusSettings, *, default_url: str, retries: int = 1
    ) -> PrometheusSource:
        """From the policy's ``analysis.prometheus`` (its ``url`` wins over the daemon's default)."""
        return cls(settings.url or default_url, timeout=settings.timeout, retries=retries)

    @property
    def worst_case_seconds(self) -> float:
        """The longest a `query_scalar` call takes (name resolution aside): its deadline."""
        return self.timeout

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        endpoint = self._endpoint
        if isinstance(endpoint, str):
            raise MetricsUnavailable(
                bounded(f"{bounded(self.url, _URL_IN_ERRORS)}: {endpoint}", MESSAGE_LIMIT)
            )
        where = f"{bounded(endpoint.shown, _URL_IN_ERRORS)}/api/v1/query"
        query = f"(query {_short(promql)})"
        reply = self._get(endpoint, promql, at, where, query)
        if 300 <= reply.status < 400:
            location = f" ({quoted(reply.location)})" if reply.location else ""
            raise MetricsUnavailable(
                f"{where}: Prometheus answered a redirect ({reply.status}) to another location{location}; "
                f"redirects are not followed {query}"
            )
        if reply.status != 200:
            detail = error_text(decode(reply.body))
            raise MetricsUnavailable(
                bounded(
                    f"{where}: HTTP {reply.status} from Prometheus"
                    + (f": {detail}" if detail else "")
                    + f" {query}",
                    MESSAGE_LIMIT,
                )
            )
        answer = read_body(reply.body)
        if isinstance(answer, Number):
            return answer.value
        if isinstance(answer, NoData):
            return None
        raise MetricsUnavailable(bounded(f"{where}: {answer.reason} {query}", MESSAGE_LIMIT))

    def _get(self, endpoint: _Endpoint, promql: str, at: float, where: str, query: str) -> _Reply:
        """The answer to the query, after at most ``retries`` retries, all before the deadline."""
        deadline = time.monotonic() + self.timeout
        target = endpoint.path + "?" + urlencode({"query": promql, "time": f"{at:.3f}"})
        attempt = 0
        while True:
            attempt += 1
            failure: str
            cause: BaseException | None = None
            try:
                reply = _exchange(endpoint, target, deadline)
            except _Deadline as exc:
                raise PrometheusUnreachable(
                    f"{where}: no answer within {self.timeout:g} s ({attempt} attempt"
                    f"{'' if attempt == 1 else 's'}) {query}"
                ) from (exc.__cause__ or exc)
            except _Garbled as exc:
                raise MetricsUnavailable(f"{where}: {exc} {query}") from (exc.__cause__ or exc)
            except _Broken as exc:
                failure, cause = f"connection failed ({exc})", exc.__cause__ or exc
            else:
                if reply.status != 429 and reply.status < 500:
                    return reply
                detail = error_text(decode(reply.body))
                failure = f"HTTP {reply.status} from Prometheus" + (f": {detail}" if detail else "")
            pause = _BACKOFF * 2.0 ** (attempt - 1)
            if attempt > self.retries or time.monotonic() + pause >= deadline:
                plural = "" if attempt == 1 else "s"
                message = bounded(
                    f"{where}: {failure} after {attempt} attempt{plural} {query}", MESSAGE_LIMIT
                )
                if cause is not None:
                    raise PrometheusUnreachable(message) from cause
                raise PrometheusUnreachable(message)
            time.sleep(pause)

    def close(self) -> None:
        """Nothing is kept between queries (each opens and closes its own connection)."""

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
