"""A fake Prometheus that misbehaves on purpose: a real HTTP server on 127.0.0.1 serving ``/api/v1/query``
with one selectable `Fault` at a time, for the adapter's and the judge's fault tests and for the robustness
benchmark's ``faults`` campaign (it ships with the bench, which cannot import the tests;
``tests.support.fault_prometheus`` re-exports it).

``FaultPrometheus`` answers every query according to its ``fault`` attribute (change it between queries);
`Fault.HEALTHY` answers like a real Prometheus with `healthy_value` of the query. Each mode is what an
unlucky operator or an attacker could put between Songbird and its evidence:

- HTTP trouble: 500, 503, 429 with ``Retry-After: 120``, a 422 error answer, a redirect (302 or 307) to a
  second listener on another loopback address (`FaultPrometheus.elsewhere`, which answers healthily and
  counts what it receives: a client that follows the redirect shows up there), a reset connection, bytes
  that are not HTTP;
- time: a body sent one byte every ``drip`` seconds, headers sent the same way, a hang (the request is read
  and never answered);
- size: a 2 MiB body with its Content-Length, an 8 MiB body without one, JSON nested 100,000 deep;
- content: malformed JSON, an HTML page, ``status: error`` with a 100 kB message, wrong shapes (a value of
  5, [], [t, 5], no result, data as an array, a range vector, a string result, a native histogram), several
  series with 300 kB labels, one series with labels left, NaN, +Inf, -Inf, a negative value, +Inf as a
  scalar.

`EXPECTED` says what a correct controller makes of each mode: `Outcome.ERROR` for every one. NaN needs a
word: the answer parser reads a NaN sample as no data and the adapter hands it on as NaN, but a count or a
custom metric is never NaN, so the judge makes it ERROR (only the latency quantile, a figure, reads NaN as
"no observations"); `FAULTS` lists every mode but HEALTHY.

`MARKER` is written into every body that is not a short, quotable field: after the first `REASON_LIMIT`
characters of a long error text or label, in a page that is not JSON, in padding and in the bytes that are
not HTTP. A bounded message may quote the start of Prometheus' ``error`` field or of a label; the marker in
a message means a body (or more of it than a quote) reached it.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Fault(StrEnum):
    HEALTHY = "healthy"
    HTTP_500 = "http-500"
    HTTP_503 = "http-503"
    HTTP_429 = "http-429-retry-after"
    HTTP_422 = "http-422-error-answer"
    REDIRECT_302 = "redirect-302"
    REDIRECT_307 = "redirect-307"
    RESET = "connection-reset"
    NOT_HTTP = "not-http"
    SLOW_BODY = "slow-body"
    SLOW_HEADERS = "slow-headers"
    HANG = "hang"
    HUGE_BODY = "huge-body"
    HUGE_STREAM = "huge-body-no-length"
    DEEP_JSON = "deeply-nested-json"
    MALFORMED_JSON = "malformed-json"
    HTML = "html-page"
    STATUS_ERROR = "status-error"
    VALUE_INT = "value-5"
    VALUE_EMPTY_LIST = "value-[]"
    VALUE_NUMBER = "value-[t,5]"
    MISSING_RESULT = "missing-result"
    DATA_ARRAY = "data-array"
    MATRIX = "range-vector"
    STRING_RESULT = "string-result"
    HISTOGRAM = "native-histogram"
    SEVERAL_SERIES = "several-series-huge-labels"
    UNEXPECTED_LABELS = "unexpected-labels"
    NAN = "nan"
    POS_INF = "+inf"
    NEG_INF = "-inf"
    NEGATIVE = "negative"
    SCALAR_INF = "scalar-+inf"


class Outcome(StrEnum):
    ERROR = "error"
    NO_DATA = "no data"


FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f is not Fault.HEALTHY)
EXPECTED: dict[Fault, Outcome] = dict.fromkeys(FAULTS, Outcome.ERROR)

MARKER = "songbird-fault-body"
_TAIL = 400  # characters of filler before the marker: more than any bounded quote (config.text.REASON_LIMIT)

HUGE_BYTES = 2 << 20
STREAM_BYTES = 8 << 20
LABEL_BYTES = 300_000


def healthy_value(promql: str) -> float:
    """What a healthy ingress-nginx Prometheus answers: 1,000 requests, no 5xx, no slow request, a 0.1 s
    latency quantile; 1 for any other query."""
    if 'status=~"5.."' in promql:
        return 0.0
    if promql.startswith("histogram_quantile"):
        return 0.1
    if " - sum(increase(" in promql:  # slow requests: all minus those at or below the bound
        return 0.0
    if "increase(" in promql:
        return 1000.0
    return 1.0


def _vector(value: str, metric: dict[str, str] | None = None, at: float = 0.0) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": metric or {}, "value": [at, value]}]},
    }


def _body(fault: Fault, promql: str, at: float) -> bytes:
    """The body of a 200 answer for the content faults."""

    def vector_of(value: Any) -> dict[str, Any]:
        return {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": value}]},
        }

    doc: Any
    match fault:
        case Fault.HEALTHY:
            doc = _vector(repr(healthy_value(promql)), at=at)
        case Fault.MALFORMED_JSON:
            return b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"m":"' + (
                MARKER.encode() + b'"},"val'
            )
        case Fault.DEEP_JSON:
            return b"[" * 100_000 + b"]" * 100_000
        case Fault.HTML:
            return f"<html><body>Please log in ({MARKER})</body></html>".encode()
        case Fault.STATUS_ERROR:
            doc = {"status": "error", "errorType": "execution", "error": "x" * 100_000 + MARKER}
        case Fault.VALUE_INT:
            doc = vector_of(5)
        case Fault.VALUE_EMPTY_LIST:
            doc = vector_of([])
        case Fault.VALUE_NUMBER:
            doc = vector_of([at, 5])
        case Fault.MISSING_RESULT:
            doc = {"status": "success", "data": {"resultType": "vector"}}
        case Fault.DATA_ARRAY:
            doc = {"status": "success", "data": []}
        case Fault.MATRIX:
            doc = {
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[at, "1"]]}]},
            }
        case Fault.STRING_RESULT:
            doc = {"status": "success", "data": {"resultType": "string", "result": [at, "1"]}}
        case Fault.HISTOGRAM:
            doc = {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {}, "histogram": [at, {"count": "1", "sum": "1", "buckets": []}]}],
                },
            }
        case Fault.SEVERAL_SERIES:
            series = [
                {"metric": {"pod": f"{n}" + "p" * LABEL_BYTES + MARKER}, "value": [at, "1000"]}
                for n in range(2)
            ]
            doc = {"status": "success", "data": {"resultType": "vector", "result": series}}
        case Fault.UNEXPECTED_LABELS:
            doc = _vector("1000", {"instance": "elsewhere:9090", "job": "x" * 1000 + MARKER}, at=at)
        case Fault.NAN:
            doc = _vector("NaN", at=at)
        case Fault.POS_INF:
            doc = _vector("+Inf", at=at)
        case Fault.NEG_INF:
            doc = _vector("-Inf", at=at)
        case Fault.NEGATIVE:
            doc = _vector("-3", at=at)
        case Fault.SCALAR_INF:
            doc = {"status": "success", "data": {"resultType": "scalar", "result": [at, "+Inf"]}}
        case _:
            raise AssertionError(f"{fault} has no body")
    return json.dumps(doc).encode()


_STATUS_BODY = {
    Fault.HTTP_500: (
        500,
        {"status": "error", "errorType": "internal", "error": "boom " + "y" * 50_000 + MARKER},
    ),
    Fault.HTTP_503: (503, {"status": "error", "errorType": "unavailable", "error": "overloaded"}),
    Fault.HTTP_429: (429, {"status": "error", "errorType": "too_many_requests", "error": "slow down"}),
    Fault.HTTP_422: (422, {"status": "error", "errorType": "execution", "error": "too many samples"}),
}


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is what several faults are about


class HealthyPrometheus:
    """A listener that answers every query healthily and counts the requests it received."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                query = parse_qs(urlsplit(self.path).query)
                body = _body(Fault.HEALTHY, query.get("query", [""])[0], 0.0)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = _Quiet((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultPrometheus:
    """``/api/v1/query`` answered with the current ``fault``; use as a context manager.

    ``drip``: seconds between bytes of the slow modes. ``received``: the queries received (all modes).
    ``elsewhere``: the redirect target on 127.0.0.2; its ``requests`` must stay 0.
    """

    def __init__(self, fault: Fault = Fault.HEALTHY, *, drip: float = 0.05) -> None:
        self.fault = fault
        self.drip = drip
        self.received: list[str] = []
        self._stop = threading.Event()
        self.elsewhere = HealthyPrometheus()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                args = parse_qs(parts.query)
                promql = args.get("query", [""])[0]
                at = float(args.get("time", ["0"])[0] or 0)
                owner.received.append(promql)
                owner._answer(self, owner.fault, promql, at, parts.query)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _answer(self, h: BaseHTTPRequestHandler, fault: Fault, promql: str, at: float, query: str) -> None:
        h.close_connection = True
        if fault in _STATUS_BODY:
            status, doc = _STATUS_BODY[fault]
            body = json.dumps(doc).encode()
            h.send_response(status)
            h.send_header("Retry-After", "120")
            self._finish(h, body)
        elif fault in (Fault.REDIRECT_302, Fault.REDIRECT_307):
            h.send_response(302 if fault is Fault.REDIRECT_302 else 307)
            h.send_header("Location", f"{self.elsewhere.url}/api/v1/query?{query}")
            self._finish(h, b"")
        elif fault is Fault.RESET:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        elif fault is Fault.NOT_HTTP:
            h.wfile.write(f"SSH-2.0-OpenSSH_9.2 {'z' * _TAIL}{MARKER}\r\n\r\n".encode())
        elif fault is Fault.HANG:
            self._stop.wait()
        elif fault is Fault.SLOW_HEADERS:
            body = _body(Fault.HEALTHY, promql, at)
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: {'p' * 400}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            self._drip(h, head + body)
        elif fault is Fault.SLOW_BODY:
            body = json.dumps(
                {**_vector(repr(healthy_value(promql)), at=at), "warnings": ["w" * _TAIL + MARKER]}
            ).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.flush()
            self._drip(h, body)
        elif fault is Fault.HUGE_BODY:
            padding = "w" * HUGE_BYTES + MARKER
            body = json.dumps({**_vector("1000", at=at), "warnings": [padding]}).encode()
            h.send_response(200)
            self._finish(h, body)
        elif fault is Fault.HUGE_STREAM:
            h.protocol_version = "HTTP/1.0"  # no Content-Length: the body ends when the connection closes
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(b'{"status":"success","warnings":["')
            chunk = b"w" * 65536
            for _ in range(STREAM_BYTES // len(chunk)):
                if self._stop.is_set():
                    return
                h.wfile.write(chunk)
            h.wfile.write(MARKER.encode() + b'"],"data":{"resultType":"vector","result":[]}}')
        else:
            h.send_response(200)
            self._finish(h, _body(fault, promql, at))

    @staticmethod
    def _finish(h: BaseHTTPRequestHandler, body: bytes) -> None:
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _drip(self, h: BaseHTTPRequestHandler, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(self.drip):
                return
            h.wfile.write(data[i : i + 1])
            h.wfile.flush()

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.elsewhere.close()

    def __enter__(self) -> FaultPrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Polls ``predicate`` until it holds or ``timeout`` seconds pass (for server-side counters)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True
