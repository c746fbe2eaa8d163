"""The lab's nginx metrics as a real Prometheus scrapes them (the queries Songbird's analysis relies on).

Covers: Prometheus keeps the exact name ``nginx_ingress_controller_requests`` (no ``_total``); canary
traffic is found with ``{ingress="nginx", canary!=""}`` and stable traffic with ``canary=""``; filtering on
the canary Service finds nothing; ``histogram_quantile`` over the request-duration buckets gives a value.
Skipped, with the reason, when nginx or Prometheus is not installed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from songbird.lab.backend import BackendProfile
from songbird.lab.nginx import NginxServer
from songbird.lab.replicas import ReplicaSupervisor
from songbird.lab.translator import translate
from tests.lab.objects import canary, main
from tests.lab.test_nginx_routing import send, versions
from tests.support.prom_server import PrometheusNotInstalledError, PrometheusServer


@pytest.fixture
def prometheus_for(nginx: NginxServer) -> Iterator[PrometheusServer]:
    try:
        server = PrometheusServer(scrape_targets=[f"127.0.0.1:{nginx.metrics_port}"])
    except PrometheusNotInstalledError as exc:
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture(scope="module")
def seeded(nginx: NginxServer, supervisor: ReplicaSupervisor) -> Counter[str]:
    fast = BackendProfile(latency_median=0.0)
    supervisor.scale("nginx-v1", 1, version="v1", profile=fast)
    supervisor.scale("nginx-v2", 1, version="v2", profile=fast)
    endpoints = {n: supervisor.addresses(n) for n in ("nginx-v1", "nginx-v2")}
    nginx.apply(translate([main(), canary(canary_by_header="Region", canary_weight="20")], endpoints))
    return versions(send(nginx, 200)) + versions(send(nginx, 20, {"Region": "always"}))


def test_prometheus_finds_canary_traffic_only_through_the_canary_label(
    seeded: Counter[str], prometheus_for: PrometheusServer
) -> None:
    prom = prometheus_for
    prom.wait_for_targets(timeout=20)
    selector = 'namespace="default",ingress="nginx",host="foo.example.com"'
    assert prom.value(f'sum(nginx_ingress_controller_requests{{{selector},canary!=""}})') == seeded["v2"]
    assert prom.value(f'sum(nginx_ingress_controller_requests{{{selector},canary=""}})') == seeded["v1"]
    assert prom.value('sum(nginx_ingress_controller_requests{service="nginx-v2"})') is None
    assert prom.value('sum(nginx_ingress_controller_requests_total{ingress="nginx"})') is None
    p99 = prom.value(
        "histogram_quantile(0.99, sum by (le) "
        f'(nginx_ingress_controller_request_duration_seconds_bucket{{{selector},canary!=""}}))'
    )
    assert p99 is not None and 0 < p99 <= 10
