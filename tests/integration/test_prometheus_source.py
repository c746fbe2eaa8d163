"""`analysis.prometheus.PrometheusSource` against a real Prometheus holding backfilled ingress-nginx history,
and against small real servers that misbehave.

Covers:
- per-version request and 5xx counts over a window, exact on scrape-aligned windows and within the
  tolerance of ``increase()`` extrapolation otherwise;
- the canary-label trap: canary traffic is found through ``canary!=""`` while a query on the canary Service
  name finds nothing;
- the canary's latency quantile and slow-request count from the histogram;
- no data (before any sample, unknown Ingress) is None, a NaN answer (0/0) is handed on as NaN; several
  series are an error naming the query;
- live mode: a local exporter scraped every second is seen through the adapter;
- a refused port, a server that accepts and never answers, 503s and a 422 all become MetricsUnavailable
  with the URL (PrometheusUnreachable unless only the query is at fault), within the query's deadline
  (retries included), with the promised number of attempts (none repeated on 4xx, none after the deadline
  is spent, Retry-After ignored). More faults: tests/integration/test_prometheus_faults.py.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from songbird.analysis import queries
from songbird.analysis.prometheus import MAX_DEADLINE, PrometheusSource, PrometheusUnreachable
from songbird.analysis.queries import IngressTarget, Version
from songbird.config.errors import MetricsUnavailable
from tests.support.nginx_series import IngressNames, Traffic, ingress_nginx_series
from tests.support.prom_server import PrometheusServer, free_port

T0 = 1_700_000_000.0
END = T0 + 1200
AT = T0 + 600  # scrape-aligned: a 60 s window holds four whole 15 s increments
NAMES = IngressNames(namespace="shop", ingress="web", stable_service="web-v1", canary_service="web-v2")
TARGET = IngressTarget(namespace="shop", ingress="web", canary="web-v2", stable="web-v1")
# Per 15 s scrape: stable 60 requests (3 x 5xx), canary 30 requests (10 x 5xx). Every (status, latency) cell
# gets a whole number of requests per scrape, so aligned windows give exact counts.
STABLE = Traffic(rate=4.0, error_share=0.05, latency={0.02: 2 / 3, 0.2: 1 / 3})
CANARY = Traffic(rate=2.0, error_share=1 / 3, latency={0.02: 0.6, 0.4: 0.2, 1.5: 0.2})


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    server = PrometheusServer()
    server.backfill(
        ingress_nginx_series(start=T0, end=END, step=15, stable=STABLE, canary=CANARY, names=NAMES)
    )
    with server:
        yield server


@pytest.fixture
def source(prom: PrometheusServer) -> Iterator[PrometheusSource]:
    with PrometheusSource(prom.url, timeout=5.0) as src:
        yield src


def test_request_counts_per_version_on_an_aligned_window(source: PrometheusSource) -> None:
    assert source.query_scalar(queries.requests(TARGET, Version.STABLE, 60), at=AT) == 240.0
    assert source.query_scalar(queries.requests(TARGET, Version.CANARY, 60), at=AT) == 120.0
    assert source.query_scalar(queries.server_errors(TARGET, Version.STABLE, 60), at=AT) == 12.0
    assert source.query_scalar(queries.server_errors(TARGET, Version.CANARY, 60), at=AT) == 40.0


@pytest.mark.parametrize("offset", [1.0, 7.0, 14.0])
def test_counts_off_the_scrape_grid_are_within_extrapolation_tolerance(
    source: PrometheusSource, offset: float
) -> None:
    """increase() extrapolates to the window edges: the count is real-valued, close to rate x window."""
    canary = source.query_scalar(queries.requests(TARGET, Version.CANARY, 60), at=AT + offset)
    stable = source.query_scalar(queries.requests(TARGET, Version.STABLE, 60), at=AT + offset)
    assert canary == pytest.approx(120.0, abs=30.0)  # at most one scrape's worth off
    assert stable == pytest.approx(240.0, abs=60.0)


def test_canary_label_trap(source: PrometheusSource, prom: PrometheusServer) -> None:
    """ingress-nginx reports canary traffic under the main Ingress and the stable Service."""
    naive = 'sum(increase(nginx_ingress_controller_requests{namespace="shop",service="web-v2"}[60s]))'
    assert source.query_scalar(naive, at=AT) is None
    by_stable_service = (
        'sum(increase(nginx_ingress_controller_requests{namespace="shop",service="web-v1"}[60s]))'
    )
    assert source.query_scalar(by_stable_service, at=AT) == 360.0  # both versions
    # Both versions' series carry service="web-v1"; only the canary label differs.
    per_canary = prom.query('count by (canary) (nginx_ingress_controller_requests{service="web-v1"})', at=AT)
    assert sorted(r["metric"].get("canary", "") for r in per_canary) == ["", "shop-web-v2-80"]


def test_error_share_and_latency(source: PrometheusSource) -> None:
    assert source.query_scalar(queries.error_share(TARGET, 60), at=AT) == pytest.approx(1 / 3)
    assert source.query_scalar(queries.error_share(TARGET, 60, Version.STABLE), at=AT) == pytest.approx(0.05)
    # canary: 60 % at 20 ms, 20 % at 400 ms, 20 % at 1.5 s -> p90 in (1, 2.5]: 1 + 1.5 * (0.9 - 0.8) / 0.2
    assert source.query_scalar(queries.latency_quantile(TARGET, 0.9, 60), at=AT) == pytest.approx(1.75)
    slow = queries.slow_requests(TARGET, Version.CANARY, 60, queries.latency_bucket(0.3))  # -> le="0.5"
    assert source.query_scalar(slow, at=AT) == 24.0
    stable_slow = queries.slow_requests(TARGET, Version.STABLE, 60, queries.latency_bucket(0.1))
    assert source.query_scalar(stable_slow, at=AT) == 80.0


def test_no_data_is_none_and_nan_is_handed_on(source: PrometheusSource) -> None:
    assert source.query_scalar(queries.requests(TARGET, Version.CANARY, 60), at=T0 - 3600) is None
    other = IngressTarget(namespace="shop", ingress="search", canary="search-v2", stable="search-v1")
    assert source.query_scalar(queries.error_share(other, 60), at=AT) is None
    # NaN is not "no data" for the adapter: the judge decides (ERROR for a count or a custom metric).
    assert math.isnan(source.query_scalar("0 / 0", at=AT) or 0.0)  # a scalar NaN
    assert math.isnan(source.query_scalar("vector(1) / vector(0) * 0", at=AT) or 0.0)  # a vector NaN


def test_scalar_result(source: PrometheusSource) -> None:
    assert source.query_scalar("scalar(vector(2)) * 3", at=AT) == 6.0


def test_several_series_is_an_error_naming_the_query(source: PrometheusSource) -> None:
    query = "sum by (canary) (nginx_ingress_controller_requests)"
    with pytest.raises(MetricsUnavailable, match=r"2 series .*sum by \(canary\)"):
        source.query_scalar(query, at=AT)


def test_bad_query_is_an_error_with_prometheus_message(source: PrometheusSource) -> None:
    with pytest.raises(MetricsUnavailable, match=r"400 from Prometheus \(bad_data\)") as info:
        source.query_scalar("sum(rate(x[5m]", at=AT)
    assert source.url in str(info.value)
    assert "bad_data" in str(info.value)  # Prometheus' errorType, from its JSON error answer
    assert not isinstance(info.value, PrometheusUnreachable)  # only this query is wrong


# -- misbehaving servers -------------------------------------------------------------------------------


def test_unreachable_port_fails_fast_with_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    src = PrometheusSource(url, timeout=0.5, retries=2)
    started = time.monotonic()
    with pytest.raises(MetricsUnavailable, match=r"127\.0\.0\.1.*connection failed.*3 attempts") as info:
        src.query_scalar("up", at=AT)
    elapsed = time.monotonic() - started
    assert elapsed < src.worst_case_seconds  # refused connections are not waited for
    assert elapsed < 1.0  # and not hidden behind the client library's default ~6 s of retries
    assert url in str(info.value)
    assert isinstance(info.value, PrometheusUnreachable)
    assert info.value.__cause__ is not None


class SilentServer:
    """Accepts TCP connections and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.parametrize("retries", [0, 1])
def test_server_that_never_answers_is_bounded(silent: SilentServer, retries: int) -> None:
    """The timeout is the whole query's deadline: a silent server uses it up, and no retry follows."""
    src = PrometheusSource(f"http://127.0.0.1:{silent.port}", timeout=0.5, retries=retries)
    started = time.monotonic()
    with pytest.raises(PrometheusUnreachable, match=r"no answer within 0\.5 s"):
        src.query_scalar("up", at=AT)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < src.worst_case_seconds + 0.2
    assert len(silent.accepted) == 1


class StatusServer:
    """A real HTTP server answering every request with one status (and a Retry-After header)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "120")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_503_is_retried_a_bounded_number_of_times_ignoring_retry_after() -> None:
    server = StatusServer(503, b'{"status":"error","error":"overloaded"}')
    try:
        src = PrometheusSource(server.url, timeout=1.0, retries=2)
        started = time.monotonic()
        with pytest.raises(PrometheusUnreachable, match="503"):
            src.query_scalar("up", at=AT)
        assert time.monotonic() - started < 2.0  # Retry-After: 120 was not obeyed
        assert server.requests == 3
    finally:
        server.close()


def test_4xx_is_not_retried() -> None:
    server = StatusServer(422, b'{"status":"error","errorType":"execution","error":"too many samples"}')
    try:
        with (
            PrometheusSource(server.url, timeout=1.0, retries=2) as src,
            pytest.raises(MetricsUnavailable, match=r"422 from Prometheus \(execution\)") as info,
        ):
            src.query_scalar("up", at=AT)
        assert server.requests == 1
        assert not isinstance(info.value, PrometheusUnreachable)  # only this query is wrong
    finally:
        server.close()


def test_answer_that_is_not_prometheus_json_is_unavailable() -> None:
    server = StatusServer(200, b"<html>login</html>")
    try:
        with (
            PrometheusSource(server.url, timeout=1.0) as src,
            pytest.raises(MetricsUnavailable, match="unreadable"),
        ):
            src.query_scalar("up", at=AT)
    finally:
        server.close()


def test_settings_bound_the_retries() -> None:
    with pytest.raises(ValueError, match="retries"):
        PrometheusSource("http://127.0.0.1:1", timeout=1.0, retries=3)
    # The timeout bounds the whole query, retries included, and is itself capped.
    assert PrometheusSource("http://127.0.0.1:1", timeout=2.0, retries=2).worst_case_seconds == 2.0
    assert PrometheusSource("http://127.0.0.1:1", timeout=1e300).worst_case_seconds == MAX_DEADLINE


class CounterExporter:
    """A real /metrics endpoint exposing ingress-nginx's exact counter name (untyped, no _total suffix)."""

    def __init__(self) -> None:
        self.canary_requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "# TYPE nginx_ingress_controller_requests untyped\n"
                    'nginx_ingress_controller_requests{namespace="shop",ingress="web",service="web-v1",'
                    f'canary="shop-web-v2-80",status="200"}} {owner.canary_requests}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.slow
def test_live_scrape_is_visible_to_the_source() -> None:
    """Live mode: a local exporter scraped every second; a change shows up within a few intervals."""
    exporter = CounterExporter()
    try:
        with PrometheusServer(scrape_targets=[exporter.address]) as live:
            live.wait_for_targets(timeout=20)
            exporter.canary_requests = 50
            query = 'sum(nginx_ingress_controller_requests{namespace="shop",ingress="web",canary!=""})'
            with PrometheusSource(live.url, timeout=2.0) as src:
                deadline = time.monotonic() + 10
                value = None
                while value != 50.0 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    value = src.query_scalar(query, at=time.time())
            assert value == 50.0
    finally:
        exporter.close()
