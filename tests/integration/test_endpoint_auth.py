"""The operator's endpoint credentials reach Prometheus, and only as headers (issue 12): the Prometheus
adapter queries a real Prometheus through a loopback proxy that records every request.

Covers:
- ``bearerTokenFile`` is sent as ``Authorization: Bearer``, re-read for every query: a rotated token is
  used from the next query on;
- ``basicAuth`` files and userinfo in the URL (the ``--prometheus-url`` shorthand) are sent as basic auth,
  never in the request line;
- extra ``headers`` (``X-Scope-OrgID`` for Mimir, Cortex and Thanos tenants) are sent;
- an unreadable token file is an unavailable metric naming the endpoint, and no request is sent;
- ``caFile``: an https endpoint with a certificate from a private CA is trusted with it, refused without it
  (a TLS failure), and a CA file that cannot be loaded is an unavailable metric naming the endpoint.
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest

from songbird.analysis.prometheus import PrometheusSource
from songbird.config.endpoints import BasicAuth, Endpoint
from songbird.config.errors import MetricsUnavailable
from tests.support.listeners import Listener
from tests.support.prom_server import PrometheusServer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bearer_token_rotation_basic_auth_and_headers_reach_prometheus(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    user, password = tmp_path / "user", tmp_path / "password"
    user.write_text("songbird")
    password.write_text("pässword")
    with PrometheusServer() as prom, Listener("127.0.0.2", forward_to=prom.url) as proxy:
        bearer = Endpoint(
            name="main", url=proxy.url, bearer_token_file=str(token), headers=(("X-Scope-OrgID", "team-a"),)
        )
        with PrometheusSource(bearer, timeout=5.0) as source:
            assert source.query_scalar("vector(7)", at=time.time()) == 7.0
            token.write_text("second-token")  # rotated in place
            assert source.query_scalar("vector(8)", at=time.time()) == 8.0
        first, second = proxy.requests
        assert first.headers["Authorization"] == "Bearer first-token"
        assert second.headers["Authorization"] == "Bearer second-token"
        assert first.headers["X-Scope-OrgID"] == second.headers["X-Scope-OrgID"] == "team-a"

        files = Endpoint(
            name="files",
            url=proxy.url,
            basic_auth=BasicAuth(username_file=str(user), password_file=str(password)),
        )
        with PrometheusSource(files, timeout=5.0) as source:
            assert source.query_scalar("vector(1)", at=time.time()) == 1.0
        assert proxy.requests[-1].headers["Authorization"] == basic("songbird", "pässword")

        shorthand = f"http://alice:s%40cret@127.0.0.2:{proxy.port}"
        with PrometheusSource(Endpoint(name="default", url=shorthand), timeout=5.0) as source:
            assert source.query_scalar("vector(2)", at=time.time()) == 2.0
        last = proxy.requests[-1]
        assert last.headers["Authorization"] == basic("alice", "s@cret")
        assert "alice" not in last.path and "cret" not in last.path


def test_an_unreadable_token_file_sends_nothing(tmp_path: Path) -> None:
    with Listener("127.0.0.2") as target:
        endpoint = Endpoint(name="main", url=target.url, bearer_token_file=str(tmp_path / "missing"))
        with PrometheusSource(endpoint, timeout=2.0) as source, pytest.raises(MetricsUnavailable) as info:
            source.query_scalar("vector(1)", at=time.time())
        assert (
            str(info.value)
            == 'endpoint "main": cannot read its bearer token file (No such file or directory)'
        )
        assert target.connections == 0


def self_signed(tmp_path: Path, ip: str) -> tuple[str, str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=prometheus",
            "-addext",
            f"subjectAltName=IP:{ip}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return str(cert), str(key)


def test_a_private_ca_is_trusted_only_from_ca_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "127.0.0.2")
    with Listener("127.0.0.2", tls=(cert, key)) as target:
        trusted = Endpoint(name="tls", url=target.url, ca_file=cert)
        with PrometheusSource(trusted, timeout=5.0) as source:
            assert source.query_scalar("vector(1)", at=time.time()) is None  # the listener's empty vector
        untrusted = Endpoint(name="tls", url=target.url)
        with (
            PrometheusSource(untrusted, timeout=5.0) as source,
            pytest.raises(MetricsUnavailable, match=r'^endpoint "tls"/api/v1/query: TLS failure'),
        ):
            source.query_scalar("vector(1)", at=time.time())
        assert len(target.requests) == 1
        broken = Endpoint(name="tls", url=target.url, ca_file=str(tmp_path / "missing.crt"))
        with (
            PrometheusSource(broken, timeout=5.0) as source,
            pytest.raises(MetricsUnavailable, match=r'^endpoint "tls": cannot load its CA file'),
        ):
            source.query_scalar("vector(1)", at=time.time())
