"""The Prometheus adapter: `analysis.source.MetricsSource` over the HTTP API (``GET /api/v1/query``).

The query goes through prometheus-api-client (``PrometheusConnect.custom_query``), the product's client
for Prometheus, over a ``requests`` session of our own (`_BoundedSession`) that gives the library's
requests the limits below; the answer is read by `analysis.answer` from the bytes that came back, never
from what the library made of them.

What it guarantees to the caller:
- One answer, one number: an instant query evaluated at an explicit time (``time=``), so the same tick
  always asks about the same window. The answer is read by `analysis.answer` (the one parser): a finite
  number (a NaN sample handed on as NaN, for the judge to refuse), None for no data (an empty result), or
  `MetricsUnavailable` with a short reason for anything else (several series, labels left after
  aggregation, ±Inf, a value of the wrong JSON type, a range vector, an error answer, bytes that are not
  JSON). No other exception leaves `query_scalar`.
- A total deadline: ``timeout`` seconds (at most ``MAX_DEADLINE``) for the whole query, connect, TLS, the
  request, the headers, every byte of the body and every retry together. A watchdog shuts the socket down
  at the deadline, so a server dribbling a byte at a time, or accepting and never answering, costs
  ``timeout`` and no more. (Name resolution happens before the socket exists and is bounded by the system
  resolver's own timeouts.)
- A bounded answer: a body larger than ``MAX_BODY_BYTES`` (1 MiB; 16 MiB for a grouped `query_vector`
  answer, which serves every rollout of the endpoint) is an error; reading stops at the cap
  (a ``Content-Length`` above it is refused before reading). Nothing is decompressed (the request says
  ``Accept-Encoding: identity`` and urllib3 is told not to decode).
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

How the library is held to these (prometheus-api-client 0.7, requests 2.x, urllib3 2.x):
- ``PrometheusConnect`` gets our session and a urllib3 ``Retry`` of zero (its default retries three times
  with a 1 s backoff, also on 429 and 5xx); the session sends every request through one `_WatchedAdapter`
  whose own ``Retry`` is zero too, whatever the library mounts. The retry loop is ours (`_get`).
- `_BoundedSession.request` (the one call the library makes) forces ``allow_redirects=False``,
  ``stream=True``, no proxies and a timeout of the time left; the session ignores the environment
  (``trust_env = False``: no proxy variables, no ``.netrc``, no CA bundle variables), keeps no cookies
  and sends ``Connection: close``. It never works out a redirect target (requests otherwise reads a
  3xx's whole body to prepare ``Response.next``, even with ``allow_redirects=False``): a 3xx comes back
  to the library as a non-200, which it raises and we report. It reads the body itself, a chunk per
  urllib3 ``read1`` (one ``recv`` at most, so a slow sender cannot hide behind a buffered read), up to
  the cap, and hands the library the bytes it read (``Response._content``), so the library's ``.json()``
  never touches the socket again.
- The watchdog reaches the socket through the connection class of the adapter's pools
  (`_WatchedHTTPConnection`): urllib3 calls its ``_new_conn`` for every new TCP connection, before any TLS,
  and it registers a duplicate descriptor of the socket with the current attempt's watchdog, held in a
  thread-local (`_Attempt`), so the watchdog keeps a handle on the connection after TLS wraps it. Each
  connection is closed at the end of its attempt (a reused one would be watched from its ``request``).
  ``_new_conn`` and ``Response._content`` are private hooks of urllib3 2.x and requests 2.x: the fault
  tests (tests/integration/test_prometheus_faults.py) fail if a release moves them.
- Whatever the library raises after a whole answer was read (``PrometheusApiClientException`` with the body
  in its text, a ``KeyError`` on an odd shape, a ``RecursionError`` on deep JSON) is dropped: the status
  and bytes we kept decide, and no library message reaches ours.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from songbird.analysis.answer import NoData, Number, decode, error_text, read_body
from songbird.analysis.batch import read_vector
from songbird.analysis.source import PrometheusUnreachable
from songbird.config.errors import MetricsUnavailable
from songbird.config.policy import PrometheusSource as PrometheusSettings
from songbird.config.text import LABEL_LIMIT, MESSAGE_LIMIT, bounded, quoted

MAX_RETRIES = 2
MAX_DEADLINE = 120.0  # seconds: the longest one query may take, whatever the policy says
MAX_BODY_BYTES = 1 << 20
# A grouped query (`query_vector`) answers every rollout of an endpoint at once: about 3 KB a rollout for
# the latency buckets, so 16 MiB serves a few thousand rollouts per endpoint.
MAX_GROUPED_BODY_BYTES = 16 << 20
_BACKOFF = 0.1  # seconds before the first retry, doubled for the next
_CHUNK = 64 * 1024
_QUERY_IN_ERRORS = 200  # characters of a query quoted in an error
_URL_IN_ERRORS = 200
# No hidden retries anywhere in requests/urllib3: not on connect or read errors, not on a status, never a
# redirect (urllib3 2.x ``Retry``; the adapter also asks urlopen not to redirect).
_NO_RETRY = Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0, respect_retry_after_header=False)


def _short(promql: str) -> str:
    return bounded(" ".join(promql[: _QUERY_IN_ERRORS * 4].split()), _QUERY_IN_ERRORS)


@dataclass(frozen=True, kw_only=True)
class _Endpoint:
    base: str  # the base URL given to the library: scheme://host[:port]/prefix, without credentials
    auth: tuple[bytes, bytes] | None  # basic-auth user and password, UTF-8
    shown: str  # the URL for messages (the same as ``base``)


def _endpoint(url: str) -> _Endpoint | str:
    """The parts of a Prometheus base URL, or why it cannot be used."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        return f"not a usable Prometheus URL ({exc})"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "a Prometheus URL must be http:// or https:// with a host"
    netloc = parts.netloc.rpartition("@")[2]
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username).encode(), unquote(parts.password or "").encode())
    base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    return _Endpoint(base=base, auth=auth, shown=base)


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
    """Shuts the watched sockets down at the deadline, which ends any connect, read or write blocked on
    them. It holds duplicate descriptors: shutdown acts on the connection, not the descriptor, and a
    duplicate stays valid when TLS wraps (and detaches) the socket urllib3 made."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        try:
            copy = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:  # already closed: nothing left to wake
            return
        with self._lock:
            if self._done:
                copy.close()
                return
            self._socks.append(copy)
            if self.fired:
                self._shutdown(copy)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._socks:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the peer already went away: nothing left to wake
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            for sock in self._socks:
                sock.close()
            self._socks.clear()


@dataclass(kw_only=True)
class _Attempt:
    """One GET in progress on this thread: its deadline, its watchdog, the connections it opened and, once
    read, the reply."""

    deadline: float
    guard: _Watchdog
    cap: int = MAX_BODY_BYTES  # bytes of body, at most
    connections: list[HTTPConnection] = field(default_factory=list)
    reply: _Reply | None = None

    def left(self) -> float:
        """Seconds before the deadline; `_Deadline` when none are left."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _Deadline
        return remaining

    def spent(self) -> bool:
        return self.guard.fired or time.monotonic() >= self.deadline


_current = threading.local()


def _attempt() -> _Attempt:
    attempt: _Attempt | None = getattr(_current, "attempt", None)
    if attempt is None:
        raise RuntimeError("a Prometheus request outside a query: every request needs a deadline")
    return attempt


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, its socket watched by the current attempt's watchdog from the moment it
    exists (``_new_conn`` makes the TCP connection, before any TLS)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        attempt = _attempt()
        attempt.guard.watch(sock)
        attempt.connections.append(self)
        return sock

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        attempt = _attempt()
        if self.sock is not None and self not in attempt.connections:  # a reused connection: watch it too
            attempt.guard.watch(self.sock)
            attempt.connections.append(self)
        super().request(method, url, *args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter over pools of watched connections, with no retries. TLS trusts the system's CAs
    (as ``ssl.create_default_context``) besides requests' bundle."""

    def __init__(self) -> None:
        super().__init__(max_retries=_NO_RETRY)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kw: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, ssl_context=ssl.create_default_context(), **kw)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value) > 20:
        return None
    return int(value)


def _read_body(raw: urllib3.BaseHTTPResponse, attempt: _Attempt) -> bytes:
    """The whole body, at most ``attempt.cap`` bytes, each read bounded by the time left."""
    cap = attempt.cap
    declared = _content_length(raw.headers.get("Content-Length"))
    if declared is not None and declared > cap:
        raise _Garbled(f"answer of {declared:,} bytes is larger than the {cap:,}-byte cap")
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = attempt.left()
        for conn in attempt.connections:
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
        chunk = raw.read1(min(_CHUNK, cap + 1 - size), decode_content=False)
        if not chunk:
            if attempt.spent():  # the watchdog's shutdown reads as the end
                raise _Deadline
            if declared is not None and size != declared:
                raise _Broken(f"answer cut short: {size:,} of {declared:,} bytes")
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise _Garbled(f"answer larger than the {cap:,}-byte cap (reading stopped there)")
        chunks.append(chunk)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps, outermost first: requests wraps urllib3, which wraps the socket's error
    (in ``reason``, in ``args`` or as the ``__cause__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        inner: BaseException | None = None
        if isinstance(current, MaxRetryError) and isinstance(current.reason, BaseException):
            inner = current.reason
        elif isinstance(current, requests.RequestException | urllib3.exceptions.HTTPError):
            inner = next((a for a in reversed(current.args) if isinstance(a, BaseException)), None)
        current = inner or current.__cause__ or current.__context__


def _failure(exc: BaseException, attempt: _Attempt) -> Exception:
    """What a transport exception means for the query: `_Deadline`, `_Broken` or `_Garbled`."""
    root = list(_causes(exc))[-1]
    if attempt.spent() or isinstance(root, TimeoutError):
        return _Deadline()
    if isinstance(root, ssl.SSLError):
        return _Garbled(f"TLS failure ({type(root).__name__})")
    if isinstance(root, ConnectionError | http.client.IncompleteRead):
        return _Broken(f"{type(root).__name__}: {bounded(str(root), LABEL_LIMIT)}")
    if isinstance(root, http.client.HTTPException):
        return _Garbled(f"not an HTTP answer ({type(root).__name__})")
    if isinstance(root, OSError):
        return _Broken(f"{type(root).__name__}: {bounded(str(root), LABEL_LIMIT)}")
    return _Garbled(f"not an HTTP answer ({type(root).__name__})")


_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


class _BoundedSession(requests.Session):
    """The session prometheus-api-client sends its requests through, holding each to the current
    attempt's deadline, cap and no-redirect rule (see the module docstring)."""

    def __init__(self, *, auth: tuple[bytes, bytes] | None) -> None:
        super().__init__()
        if auth is not None:  # the URL's credentials (UTF-8), sent as basic auth with every request
            self.auth = HTTPBasicAuth(*auth)
        self.trust_env = False
        self.max_redirects = 0
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no cookie kept nor sent
        self.headers.clear()
        self.headers.update({"User-Agent": "songbird", "Accept": "application/json", "Connection": "close"})
        self._adapter = _WatchedAdapter()
        self.mount("http://", self._adapter)
        self.mount("https://", self._adapter)

    def get_redirect_target(self, resp: requests.Response) -> None:
        """No redirect is ever followed, nor prepared: requests would otherwise read a 3xx's whole body
        (uncapped) to work out ``Response.next`` even with ``allow_redirects=False``."""
        return None

    def get_adapter(self, url: str) -> HTTPAdapter:
        """Every request goes through the watched adapter, also where the library mounted its own."""
        return self._adapter

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        attempt = _attempt()
        kwargs.update(allow_redirects=False, stream=True, timeout=attempt.left(), proxies={})
        try:
            response = super().request(*args, **kwargs)
        except _TRANSPORT_ERRORS as exc:
            raise _failure(exc, attempt) from exc
        try:
            if response.is_redirect or 300 <= response.status_code < 400:
                reply = _Reply(
                    status=response.status_code, body=b"", location=response.headers.get("Location")
                )
            else:
                reply = _Reply(status=response.status_code, body=_read_body(response.raw, attempt))
        except _TRANSPORT_ERRORS as exc:
            raise _failure(exc, attempt) from exc
        finally:
            response.raw.close()  # the connection too: the next attempt opens (and watches) its own
            response.close()
        response._content = reply.body  # what the library's .json() reads: the socket is not read again
        attempt.reply = reply
        return response


# What the library may raise after a whole answer was read (a non-200 with the body in its text, or its
# own reading of an odd 200); the reply we kept decides instead.
_LIBRARY_READING = (PrometheusApiClientException, ValueError, LookupError, TypeError, RecursionError)


def _exchange(client: PrometheusConnect, promql: str, at: float, deadline: float, cap: int) -> _Reply:
    """One GET of the query through the library, all of it before ``deadline`` (monotonic seconds), with
    at most ``cap`` bytes of body."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Deadline
    attempt = _Attempt(deadline=deadline, guard=_Watchdog(remaining), cap=cap)
    _current.attempt = attempt
    failed: BaseException | None = None
    try:
        client.custom_query(promql, params={"time": f"{at:.3f}"})
    except _LIBRARY_READING as exc:
        failed = exc
    finally:
        attempt.guard.cancel()
        _current.attempt = None
    if attempt.reply is None:  # the library failed before any answer: not one of the paths above
        name = type(failed).__name__ if failed is not None else "no answer"
        raise _Garbled(f"the Prometheus client failed ({name})") from failed
    return attempt.reply


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
        self._client: PrometheusConnect | None = None
        if isinstance(self._endpoint, _Endpoint):
            self._client = PrometheusConnect(
                self._endpoint.base, retry=_NO_RETRY, session=_BoundedSession(auth=self._endpoint.auth)
            )

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
        endpoint, client = self._endpoint, self._client
        if isinstance(endpoint, str) or client is None:
            raise MetricsUnavailable(
                bounded(f"{bounded(self.url, _URL_IN_ERRORS)}: {endpoint}", MESSAGE_LIMIT)
            )
        where = f"{bounded(endpoint.shown, _URL_IN_ERRORS)}/api/v1/query"
        query = f"(query {_short(promql)})"
        reply = self._get(client, promql, at, where, query)
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
            # An empty vector is no data (None); a NaN sample comes back as NaN, for the caller to judge:
            # a count or a custom metric is never NaN (ERROR), a latency quantile is (no observations).
            return math.nan if answer.why == "NaN" else None
        raise MetricsUnavailable(bounded(f"{where}: {answer.reason} {query}", MESSAGE_LIMIT))

    def query_vector(self, promql: str, *, at: float) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant query at ``at`` as (labels, value), NaN an error: the grouped
        queries of ``analysis.batch``. Same deadline, retries and errors as `query_scalar`; the body cap is
        ``MAX_GROUPED_BODY_BYTES``, since one answer serves every rollout of the endpoint."""
        endpoint, client = self._endpoint, self._client
        if isinstance(endpoint, str) or client is None:
            raise MetricsUnavailable(
                bounded(f"{bounded(self.url, _URL_IN_ERRORS)}: {endpoint}", MESSAGE_LIMIT)
            )
        where = f"{bounded(endpoint.shown, _URL_IN_ERRORS)}/api/v1/query"
        query = f"(query {_short(promql)})"
        reply = self._get(client, promql, at, where, query, cap=MAX_GROUPED_BODY_BYTES)
        if reply.status != 200:
            detail = error_text(decode(reply.body)) if reply.body else None
            raise MetricsUnavailable(
                bounded(
                    f"{where}: HTTP {reply.status} from Prometheus"
                    + (f": {detail}" if detail else "")
                    + f" {query}",
                    MESSAGE_LIMIT,
                )
            )
        found = read_vector(decode(reply.body))
        if isinstance(found, str):
            raise MetricsUnavailable(bounded(f"{where}: {found} {query}", MESSAGE_LIMIT))
        return found

    def _get(
        self,
        client: PrometheusConnect,
        promql: str,
        at: float,
        where: str,
        query: str,
        *,
        cap: int = MAX_BODY_BYTES,
    ) -> _Reply:
        """The answer to the query, after at most ``retries`` retries, all before the deadline."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            failure: str
            cause: BaseException | None = None
            try:
                reply = _exchange(client, promql, at, deadline, cap)
            except _Deadline as exc:
                raise PrometheusUnreachable(
                    f"{where}: no answer within {self.timeout:g} s ({attempt} attempt"
                    f"{'' if attempt == 1 else 's'}) {query}"
                ) from (exc.__cause__ or exc)
            except _Garbled as exc:
                raise MetricsUnavailable(bounded(f"{where}: {exc} {query}", MESSAGE_LIMIT)) from (
                    exc.__cause__ or exc
                )
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
        """Closes the client's session and its connection pools."""
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
