"""The lab's real nginx routing real backends, as a client and Prometheus see it.

Covers: weight 30 gives a v2 share within 4 binomial sigmas over 2,000 requests; ``Region: always`` reaches
v2 every time and ``never`` never, whatever the weight; weight 0 sends nothing to v2; canary cookie
always/never; a header value with quotes, dollar and backslash matches exactly; sticky affinity keeps each
client on the version it first landed on, and ``legacy`` does not pin canary clients; an upstream without
endpoints answers 503 (and a canary without endpoints leaves traffic on v1); an unknown Host gets the 404
default backend; ``/metrics`` exposes ``nginx_ingress_controller_requests`` and the request-duration
histogram with ingress-nginx's labels and the trap (canary traffic labelled with the MAIN ingress and the
STABLE service, ``canary`` = canary upstream); a reload that changes the weight under load drops no
request and takes effect; a taken port and a missing binary give errors that say what to do.
"""

from __future__ import annotations

import http.client
import math
import re
import socket
import threading
import time
import urllib.request
from collections import Counter
from typing import Protocol

import pytest

from songbird.lab.backend import BackendProfile
from songbird.lab.load import LoadGenerator, LoadPlan, LoadReport
from songbird.lab.model import DEFAULT_AFFINITY_COOKIE, RoutingModel
from songbird.lab.nginx import (
    INSTALL_HINT,
    NginxNotInstalledError,
    NginxPortInUseError,
    NginxServer,
    find_nginx,
)
from songbird.lab.replicas import ReplicaSupervisor
from songbird.lab.translator import translate
from tests.lab.objects import HOST, canary, main

FAST = BackendProfile(latency_median=0.0)


@pytest.fixture(scope="module")
def backends(supervisor: ReplicaSupervisor) -> ReplicaSupervisor:
    supervisor.scale("nginx-v1", 2, version="v1", profile=FAST)
    supervisor.scale("nginx-v2", 1, version="v2", profile=FAST)
    return supervisor


class ApplyRoute(Protocol):
    def __call__(
        self, *, main_annotations: dict[str, str] | None = None, **canary_annotations: str
    ) -> RoutingModel: ...


@pytest.fixture
def route(nginx: NginxServer, backends: ReplicaSupervisor) -> ApplyRoute:
    """Applies the seed Ingresses with the given annotations (``canary_weight="30"``) to nginx."""

    def apply(*, main_annotations: dict[str, str] | None = None, **canary_annotations: str) -> RoutingModel:
        endpoints = {name: backends.addresses(name) for name in ("nginx-v1", "nginx-v2")}
        model = translate([main(**(main_annotations or {})), canary(**canary_annotations)], endpoints)
        nginx.apply(model)
        return model

    return apply


def send(
    nginx: NginxServer, n: int, headers: dict[str, str] | None = None, host: str = HOST
) -> Counter[tuple[str, int]]:
    """n sequential GETs on one keep-alive connection; counts of (X-Version, status)."""
    counts: Counter[tuple[str, int]] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
    try:
        for _ in range(n):
            conn.request("GET", "/", headers={"Host": host, **(headers or {})})
            response = conn.getresponse()
            response.read()
            counts[(response.getheader("X-Version") or "none", response.status)] += 1
    finally:
        conn.close()
    return counts


def versions(counts: Counter[tuple[str, int]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (version, _), n in counts.items():
        out[version] += n
    return out


def scrape(nginx: NginxServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(nginx.metrics_url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    # Parsed here rather than with prometheus_client, whose parser renames a counter to "<name>_total":
    # Prometheus itself keeps the exposed name, and the exact name is what this test pins.
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m["labels"])}
        samples.setdefault(m["name"], []).append((labels, float(m["value"])))
    return samples


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == m for k, m in match.items()))


def test_weight_30_share_is_within_binomial_noise(nginx: NginxServer, route: ApplyRoute) -> None:
    route(canary_weight="30")
    plan = LoadPlan(
        target=nginx.url, rate=2000, duration=10, max_requests=2000, header_every=0, concurrency=4
    )
    report = LoadGenerator(plan).run()
    got = report.total()
    n = got.plain
    assert n == 2000 and got.failures == 0 and got.statuses == Counter({200: 2000})
    sigma = math.sqrt(0.3 * 0.7 / n)
    assert abs(got.versions["v2"] / n - 0.30) < 4 * sigma, got.versions


def test_region_always_reaches_v2_and_never_stays_on_v1(nginx: NginxServer, route: ApplyRoute) -> None:
    route(canary_by_header="Region", canary_weight="50")
    assert versions(send(nginx, 200, {"Region": "always"})) == Counter({"v2": 200})
    assert versions(send(nginx, 200, {"Region": "never"})) == Counter({"v1": 200})
    mixed = versions(send(nginx, 200, {"Region": "maybe"}))
    assert mixed["v1"] > 0 and mixed["v2"] > 0  # any other value falls through to the weight


def test_weight_zero_sends_nothing_to_v2(nginx: NginxServer, route: ApplyRoute) -> None:
    route(canary_by_header="Region", canary_weight="0")
    assert versions(send(nginx, 500)) == Counter({"v1": 500})


def test_canary_cookie_always_and_never(nginx: NginxServer, route: ApplyRoute) -> None:
    route(canary_by_cookie="beta", canary_weight="50")
    assert versions(send(nginx, 100, {"Cookie": "beta=always"})) == Counter({"v2": 100})
    assert versions(send(nginx, 100, {"Cookie": "other=1; beta=never"})) == Counter({"v1": 100})


def test_header_value_with_special_characters_matches_exactly(nginx: NginxServer, route: ApplyRoute) -> None:
    value = 'eu "$west" \\1'
    route(canary_by_header="X-Canary-Group", canary_by_header_value=value)
    assert versions(send(nginx, 50, {"X-Canary-Group": value})) == Counter({"v2": 50})
    assert versions(send(nginx, 50, {"X-Canary-Group": "eu"})) == Counter({"v1": 50})


def test_sticky_affinity_keeps_each_client_on_its_first_version(
    nginx: NginxServer, route: ApplyRoute
) -> None:
    route(main_annotations={"affinity": "cookie"}, canary_by_header="Region", canary_weight="50")
    landed: Counter[str] = Counter()
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
        conn.request("GET", "/", headers={"Host": HOST})
        first = conn.getresponse()
        first.read()
        cookie = first.getheader("Set-Cookie") or ""
        assert cookie.startswith(f"{DEFAULT_AFFINITY_COOKIE}=") and "Path=/" in cookie
        jar = cookie.split(";", 1)[0]
        version = first.getheader("X-Version") or ""
        landed[version] += 1
        for _ in range(10):
            # Even the header does not move a client pinned to v1: balancer.lua checks affinity first.
            conn.request("GET", "/", headers={"Host": HOST, "Cookie": jar, "Region": "always"})
            again = conn.getresponse()
            again.read()
            assert again.getheader("X-Version") == version
            assert again.getheader("Set-Cookie") is None
        conn.close()
    assert landed["v1"] > 0 and landed["v2"] > 0, landed


def test_legacy_affinity_does_not_pin_canary_clients(nginx: NginxServer, route: ApplyRoute) -> None:
    route(main_annotations={"affinity": "cookie"}, canary_weight="100", affinity_canary_behavior="legacy")
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
    conn.request("GET", "/", headers={"Host": HOST})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.getheader("X-Version") == "v2"
    assert response.getheader("Set-Cookie") is None


def test_upstream_without_endpoints_answers_503(nginx: NginxServer, backends: ReplicaSupervisor) -> None:
    before = scrape(nginx)
    nginx.apply(
        translate([main(), canary(canary_weight="100")], {"nginx-v2": backends.addresses("nginx-v2")})
    )
    assert send(nginx, 20) == Counter({("none", 503): 20})
    after = scrape(nginx)
    name = "nginx_ingress_controller_requests"
    assert (
        total(after, name, status="503", ingress="nginx") - total(before, name, status="503", ingress="nginx")
        == 20
    )


def test_canary_without_endpoints_leaves_traffic_on_v1(
    nginx: NginxServer, backends: ReplicaSupervisor
) -> None:
    nginx.apply(
        translate([main(), canary(canary_by_header="Region")], {"nginx-v1": backends.addresses("nginx-v1")})
    )
    assert send(nginx, 30, {"Region": "always"}) == Counter({("v1", 200): 30})


def test_unknown_host_gets_the_default_backend(nginx: NginxServer, route: ApplyRoute) -> None:
    route(canary_weight="50")
    assert send(nginx, 3, host="bar.example.com") == Counter({("none", 404): 3})


def test_metrics_label_canary_traffic_with_main_ingress_and_stable_service(
    nginx: NginxServer, route: ApplyRoute
) -> None:
    route(canary_by_header="Region", canary_weight="20")
    before = scrape(nginx)
    plain = versions(send(nginx, 300))
    forced = versions(send(nginx, 50, {"Region": "always"}))
    after = scrape(nginx)
    name = "nginx_ingress_controller_requests"
    base = {"namespace": "default", "ingress": "nginx", "service": "nginx-v1", "host": HOST, "path": "/"}

    def delta(metric: str, **labels: str) -> float:
        return total(after, metric, **base, **labels) - total(before, metric, **base, **labels)

    assert delta(name, canary="default-nginx-v2-80", status="200", method="GET") == plain["v2"] + forced["v2"]
    assert delta(name, canary="", status="200", method="GET") == plain["v1"]
    assert total(after, name, service="nginx-v2") == 0  # filtering on the canary Service finds nothing
    assert not any(k.endswith("_total") for k in after)

    # Histogram: Prometheus' default buckets, cumulative, +Inf == _count, for both kinds of traffic.
    hist = "nginx_ingress_controller_request_duration_seconds"
    buckets = [
        (labels["le"], v)
        for labels, v in after[f"{hist}_bucket"]
        if labels["canary"] == "default-nginx-v2-80" and labels["status"] == "200"
    ]
    assert [le for le, _ in buckets] == [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ]  # fmt: skip
    values = [v for _, v in buckets]
    assert values == sorted(values)
    count = total(after, f"{hist}_count", **base, canary="default-nginx-v2-80", status="200")
    assert values[-1] == count and count >= forced["v2"]
    assert delta(f"{hist}_count", canary="", status="200") == plain["v1"]
    assert total(after, f"{hist}_sum", **base, canary="") > 0


def test_reload_changes_the_weight_under_load_without_dropping_requests(
    nginx: NginxServer, route: ApplyRoute
) -> None:
    route(canary_weight="0")
    plan = LoadPlan(target=nginx.url, rate=300, duration=4.5, max_requests=1350, header_every=0, bucket=0.5)
    generator = LoadGenerator(plan)
    result: list[LoadReport] = []
    runner = threading.Thread(target=lambda: result.append(generator.run()))
    runner.start()
    time.sleep(1.5)
    route(canary_weight="100")
    switched_up = time.time()
    time.sleep(1.5)
    route(canary_weight="0")
    switched_down = time.time()
    runner.join(timeout=30)
    report = result[0]
    got = report.total()
    assert got.failures == 0 and set(got.statuses) == {200}, got
    assert got.plain == 1350
    for b in report.buckets:
        if b.start + b.width < switched_up:
            assert b.versions["v2"] == 0, b
        elif b.start > switched_up and b.start + b.width < switched_down:
            assert b.versions["v1"] == 0, b
        elif b.start > switched_down:
            assert b.versions["v2"] == 0, b


def test_taken_port_is_reported(require_nginx: None) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(NginxPortInUseError, match=re.escape(f"127.0.0.1:{port} is already in use")):
            NginxServer(port=port).start()


def test_missing_nginx_says_what_to_install() -> None:
    with pytest.raises(NginxNotInstalledError, match=re.escape(INSTALL_HINT)):
        find_nginx("/nonexistent/nginx")
