"""The controller's HTTP endpoints, over real HTTP on 127.0.0.1.

Covers:
- ``/metrics`` serves the `ControllerMetrics` registry in the Prometheus text format, and reflects a change
  made after the server started;
- ``/healthz`` answers 200;
- ``/readyz`` answers 200 for a leader and for a standby with the API reachable, 503 with a readable reason
  when the API is unreachable, before the election, and when the readiness check itself raises;
- an unknown path is a 404; the address is parsed as host:port (IPv6 in brackets) and malformed ones are
  refused;
- ``stop()`` closes the socket (a new connection is refused) and is idempotent; two servers run side by side.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from songbird.controller.health import HealthServer, Readiness, parse_address
from songbird.controller.metrics import ControllerMetrics


class Switch:
    """A readiness source a test can flip, like the controller's loop would."""

    def __init__(self) -> None:
        self.readiness = Readiness(api_reachable=True, role="leader")
        self.error: Exception | None = None

    def __call__(self) -> Readiness:
        if self.error is not None:
            raise self.error
        return self.readiness


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def metrics() -> ControllerMetrics:
    return ControllerMetrics(version="0.1.0")


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def server(metrics: ControllerMetrics, switch: Switch) -> Iterator[HealthServer]:
    with HealthServer(metrics, switch, address="127.0.0.1:0") as running:
        yield running


def test_metrics_endpoint_serves_the_registry(server: HealthServer, metrics: ControllerMetrics) -> None:
    status, content_type, body = get(server.port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'songbird_build_info{version="0.1.0"} 1.0' in body
    assert "songbird_leader 0.0" in body
    metrics.set_leader(True)
    assert "songbird_leader 1.0" in get(server.port, "/metrics")[2]


def test_healthz(server: HealthServer, switch: Switch) -> None:
    switch.readiness = Readiness(api_reachable=False, role="starting")
    assert get(server.port, "/healthz")[:1] == (200,)  # liveness does not depend on the API


@pytest.mark.parametrize(
    ("readiness", "status", "body"),
    [
        (Readiness(api_reachable=True, role="leader"), 200, "ok (leader)\n"),
        (Readiness(api_reachable=True, role="standby"), 200, "ok (standby)\n"),
        (Readiness(api_reachable=True, role="starting"), 503, "leader election has not started yet\n"),
        (
            Readiness(api_reachable=False, role="leader", detail="connection refused"),
            503,
            "kubernetes API unreachable: connection refused\n",
        ),
        (Readiness(api_reachable=False, role="standby"), 503, "kubernetes API unreachable\n"),
    ],
)
def test_readyz(server: HealthServer, switch: Switch, readiness: Readiness, status: int, body: str) -> None:
    switch.readiness = readiness
    assert get(server.port, "/readyz") == (status, "text/plain; charset=utf-8", body)


def test_readyz_when_the_check_raises(server: HealthServer, switch: Switch) -> None:
    switch.error = TimeoutError("lease read timed out")
    status, _, body = get(server.port, "/readyz")
    assert status == 503
    assert body == "readiness check failed: TimeoutError('lease read timed out')\n"
    switch.error = None
    assert get(server.port, "/readyz")[0] == 200  # the server survived


def test_unknown_path(server: HealthServer) -> None:
    status, _, body = get(server.port, "/status")
    assert status == 404
    assert "/metrics" in body


def test_stop_closes_the_socket(metrics: ControllerMetrics, switch: Switch) -> None:
    server = HealthServer(metrics, switch, address="127.0.0.1:0")
    server.start()
    port = server.port
    assert get(port, "/healthz")[0] == 200
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port


def test_two_servers_side_by_side(switch: Switch) -> None:
    a, b = ControllerMetrics(version="1.0.0"), ControllerMetrics(version="2.0.0")
    with (
        HealthServer(a, switch, address="127.0.0.1:0") as sa,
        HealthServer(b, switch, address="127.0.0.1:0") as sb,
    ):
        assert 'version="1.0.0"' in get(sa.port, "/metrics")[2]
        assert 'version="2.0.0"' in get(sb.port, "/metrics")[2]
        assert 'version="1.0.0"' not in get(sb.port, "/metrics")[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:8080", ("0.0.0.0", 8080)), ("[::1]:9000", ("::1", 9000)), (":8080", ("", 8080))],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["8080", "localhost", "host:http", "host:70000"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        parse_address(text)
