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
  in a 200 answer (its ``error`` field, a label), never a body; a whole message is at most
  `config.text.MESSAGE_LIMIT`. Of a non-200 answer a message gives the HTTP status and, for a Prometheus
  JSON error, only its ``errorType`` (a short word such as ``bad_data``): the body may be anything the
  upstream chose (a proxy's page, an echo of our request), so it goes nowhere but the operator's log, at
  debug level, bounded, with every credential of the endpoint replaced by ``[redacted]``.
- Nothing secret is shown: messages name the endpoint (`config.endpoints.Endpoint.label`: its name, or
  the redacted URL a policy gave), never its URL's userinfo, its token, password or header values.
- Credentials (`config.endpoints.Endpoint`): userinfo in the URL (``http://user:password@host``, the
  ``--prometheus-url`` shorthand) and ``basicAuth`` files are sent as basic auth, ``bearerTokenFile`` as
  ``Authorization: Bearer``, ``headers`` as given; the files are read before every query, so a rotated
  token is used from the next query on, and a credential is never put into a URL. ``caFile`` is trusted
  for https besides the system's CAs.
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
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from songbird.analysis.answer import NoData, Number, decode, read_body
from songbird.analysis.batch import read_vector
from songbird.analysis.credentials import Credentials, SecretUnreadable, credentials, scrub
from songbird.analysis.source import PrometheusUnreachable
from songbird.config.endpoints import Endpoint
from songbird.config.errors import MetricsUnavailable
from songbird.config.text import LABEL_LIMIT, MESSAGE_LIMIT, bounded, quoted
from songbird.config.urls import redact_url

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
_BODY_IN_LOG = 2000  # characters of a non-200 body in the operator's debug log
_ERROR_TYPE = re.compile(r"^[A-Za-z_]{1,32}$")
log = logging.getLogger("songbird.prometheus")
# No hidden retries anywhere in requests/urllib3: not on connect or read errors, not on a status, never a
# redirect (urllib3 2.x ``Retry``; the adapter also asks urlopen not to redirect).
_NO_RETRY = Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0, respect_retry_after_header=False)


def _short(promql: str) -> str:
    return bounded(" ".join(promql[: _QUERY_IN_ERRORS * 4].split()), _QUERY_IN_ERRORS)


@dataclass(frozen=True, kw_only=True)
class _Endpoint:
    base: str  # the base URL given to the library: scheme://host[:port]/prefix, without credentials
    auth: tuple[bytes, bytes] | None  # basic-auth user and password from the URL's userinfo, UTF-8


def _endpoint(url: str) -> _Endpoint | str:
    """The parts of a Prometheus base URL, or why it cannot be used (never quoting the URL)."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "not a usable Prometheus URL (bad host or port)"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "a Prometheus URL must be http:// or https:// with a host"
    if parts.query or parts.fragment:
        return "a Prometheus base URL has no query (?) or fragment (#)"
    netloc = parts.netloc.rpartition("@")[2]
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username).encode(), unquote(parts.password or "").encode())
    base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    return _Endpoint(base=base, auth=auth)


def _error_type(body: bytes) -> str | None:
    """The ``errorType`` of a Prometheus JSON error answer, when it is a short word; nothing else."""
    doc = decode(body)
    value = doc.get("errorType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and _ERROR_TYPE.fullmatch(value) else None


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
    headers: dict[str, str] = field(default_factory=dict)  # the endpoint's credentials and extra headers
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

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._context = context
        super().__init__(max_retries=_NO_RETRY)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kw: Any) -> None:
        context = self._context or ssl.create_default_context()
        super().init_poolmanager(connections, maxsize, block, ssl_context=context, **kw)
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

    def __init__(self, *, context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.trust_env = False
        self.max_redirects = 0
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no cookie kept nor sent
        self.headers.clear()
        self.headers.update({"User-Agent": "songbird", "Accept": "application/json", "Connection": "close"})
        self._adapter = _WatchedAdapter(context)
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
        if attempt.headers:  # credentials as headers of this request only, never in the URL
            kwargs["headers"] = {**(kwargs.get("headers") or {}), **attempt.headers}
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


def _exchange(
    client: PrometheusConnect, promql: str, at: float, deadline: float, cap: int, headers: dict[str, str]
) -> _Reply:
    """One GET of the query through the library, all of it before ``deadline`` (monotonic seconds), with
    at most ``cap`` bytes of body and ``headers`` added."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Deadline
    attempt = _Attempt(deadline=deadline, guard=_Watchdog(remaining), cap=cap, headers=headers)
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
    """Instant queries against one Prometheus endpoint (an operator `Endpoint`, or a bare base URL). Use as
    a context manager or call `close`."""

    def __init__(self, url: str | Endpoint, *, timeout: float, retries: int = 1) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be between 0 and {MAX_RETRIES}, got {retries!r}")
        endpoint = (
            url if isinstance(url, Endpoint) else Endpoint(name="prometheus", url=url, from_policy=True)
        )
        self.endpoint = endpoint
        self.url = endpoint.url.rstrip("/")
        self.label = bounded(endpoint.label, _URL_IN_ERRORS)  # what messages show: never a credential
        self.timeout = min(timeout, MAX_DEADLINE)
        self.retries = retries
        self._endpoint = _endpoint(self.url)
        self._client: PrometheusConnect | None = None
        if isinstance(self._endpoint, _Endpoint):
            context: ssl.SSLContext | None = None
            try:
                if endpoint.ca_file is not None:
                    context = ssl.create_default_context(cafile=endpoint.ca_file)
            except (OSError, ssl.SSLError) as exc:
                self._endpoint = f"cannot load its CA file ({type(exc).__name__})"
            else:
                self._client = PrometheusConnect(
                    self._endpoint.base, retry=_NO_RETRY, session=_BoundedSession(context=context)
                )

    @property
    def worst_case_seconds(self) -> float:
        """The longest a `query_scalar` call takes (name resolution aside): its deadline."""
        return self.timeout

    def _ready(self) -> tuple[PrometheusConnect, Credentials]:
        endpoint, client = self._endpoint, self._client
        if isinstance(endpoint, str) or client is None:
            raise MetricsUnavailable(bounded(f"{self.label}: {endpoint}", MESSAGE_LIMIT))
        try:
            return client, credentials(self.endpoint, endpoint.auth)
        except SecretUnreadable as exc:
            raise MetricsUnavailable(bounded(f"{self.label}: {exc}", MESSAGE_LIMIT)) from exc

    def _refused_status(self, reply: _Reply, where: str, query: str, secrets: tuple[str, ...]) -> NoReturn:
        """A non-200 answer: the status and ``errorType`` for the message, the body for the debug log."""
        if 300 <= reply.status < 400:
            location = f" ({quoted(redact_url(reply.location))})" if reply.location else ""
            raise MetricsUnavailable(
                f"{where}: Prometheus answered a redirect ({reply.status}) to another location{location}; "
                f"redirects are not followed {query}"
            )
        self._log_body(reply, secrets)
        error_type = _error_type(reply.body)
        detail = f" ({error_type})" if error_type else ""
        raise MetricsUnavailable(
            bounded(f"{where}: HTTP {reply.status} from Prometheus{detail} {query}", MESSAGE_LIMIT)
        )

    def _log_body(self, reply: _Reply, secrets: tuple[str, ...]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            body = reply.body[: _BODY_IN_LOG * 4].decode("utf-8", "replace")
            log.debug(
                "Prometheus answered HTTP %d (%s): %s",
                reply.status,
                self.label,
                bounded(scrub(body, secrets), _BODY_IN_LOG),
            )

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        client, credentials = self._ready()
        where = f"{self.label}/api/v1/query"
        query = f"(query {_short(promql)})"
        reply = self._get(client, promql, at, where, query, credentials=credentials)
        if reply.status != 200:
            self._refused_status(reply, where, query, credentials.secrets)
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
        client, credentials = self._ready()
        where = f"{self.label}/api/v1/query"
        query = f"(query {_short(promql)})"
        reply = self._get(
            client, promql, at, where, query, cap=MAX_GROUPED_BODY_BYTES, credentials=credentials
        )
        if reply.status != 200:
            self._refused_status(reply, where, query, credentials.secrets)
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
        credentials: Credentials,
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
                reply = _exchange(client, promql, at, deadline, cap, credentials.headers)
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
                self._log_body(reply, credentials.secrets)
                error_type = _error_type(reply.body)
                failure = f"HTTP {reply.status} from Prometheus" + (f" ({error_type})" if error_type else "")
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
