"""`analysis.observe.observe` against a real Prometheus holding backfilled ingress-nginx history.

Covers, for a policy written as a user writes it (YAML):
- the default metrics: error-rate counts (requests and 5xx per version) and latency counts (requests seen by
  the histogram and those slower than the default 0.5 s bucket), over the policy window or a given one;
- a latency quantile and a threshold between bucket bounds (moved up to the next bound);
- custom queries rendered with the rollout's names and window; a custom query with no data;
- a canary that has not served anything yet: zero counts, not an error;
- one bad query (naming another namespace, refused when scoped) marks only its metric; a threshold above
  the largest bucket marks only the latency metric;
- a dead Prometheus: every metric is ERROR, and the evaluation costs one timeout, not one per query;
- observations then judged by `analysis.threshold` end to end.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from songbird.analysis.observe import observe
from songbird.analysis.prometheus import PrometheusSource
from songbird.analysis.queries import IngressTarget
from songbird.analysis.threshold import judge_threshold
from songbird.analysis.verdict import Verdict, WindowCounts
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy
from tests.support.nginx_series import IngressNames, Traffic, ingress_nginx_series
from tests.support.prom_server import PrometheusServer, free_port

T0 = 1_700_000_000.0
CANARY_FROM = T0 + 600  # the canary starts serving (its series appear) ten minutes in
END = T0 + 1800
AT = T0 + 1200  # scrape-aligned
NAMES = IngressNames(namespace="shop", ingress="web", stable_service="web-v1", canary_service="web-v2")
TARGET = IngressTarget(namespace="shop", ingress="web", canary="web-v2", stable="web-v1")
# Per 15 s scrape: stable 60 requests, 3 x 5xx, one in three slower than 0.5 s (0.7 s);
# canary 30 requests, 10 x 5xx, 40 % at 0.4 s and 20 % at 1.5 s.
STABLE = Traffic(rate=4.0, error_share=0.05, latency={0.02: 2 / 3, 0.7: 1 / 3})
CANARY = Traffic(rate=2.0, error_share=1 / 3, latency={0.02: 0.4, 0.4: 0.4, 1.5: 0.2})


def policy(metrics_yaml: str = "", window: str = "60s") -> Policy:
    text = f"""
ingress: web
canary: {{deployment: web-v2, service: web-v2}}
steps: [10, 50]
analysis:
  window: {window}
  minRequests: 50
"""
    if metrics_yaml:
        text += "  metrics:\n" + metrics_yaml
    return load_policy_yaml(text, source="shop/web-rollout")


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    server = PrometheusServer()
    server.backfill(
        ingress_nginx_series(start=T0, end=END, stable=STABLE, canary=None, names=NAMES)
        + ingress_nginx_series(start=CANARY_FROM, end=END, stable=None, canary=CANARY, names=NAMES)
    )
    with server:
        yield server


@pytest.fixture
def source(prom: PrometheusServer) -> Iterator[PrometheusSource]:
    with PrometheusSource(prom.url, timeout=5.0) as src:
        yield src


def test_default_metrics_give_window_counts(source: PrometheusSource) -> None:
    error_rate, latency = observe(policy(), source, TARGET, at=AT)
    assert error_rate.name == "error-rate" and error_rate.error is None
    assert error_rate.counts == WindowCounts(canary_total=120, canary_bad=40, stable_total=240, stable_bad=12)
    assert latency.name == "latency" and latency.error is None
    assert latency.counts == WindowCounts(canary_total=120, canary_bad=24, stable_total=240, stable_bad=80)
    assert latency.bucket is not None and latency.bucket.le == "0.5"
    assert latency.value is None  # no quantile asked for
    assert (error_rate.at, error_rate.window) == (AT, 60.0)


def test_window_argument_overrides_policy_window(source: PrometheusSource) -> None:
    (error_rate,) = observe(policy("    - name: error-rate\n", window="2m"), source, TARGET, at=AT, window=30)
    assert error_rate.counts == WindowCounts(canary_total=60, canary_bad=20, stable_total=120, stable_bad=6)
    (longer,) = observe(policy("    - name: error-rate\n", window="2m"), source, TARGET, at=AT)
    assert longer.counts is not None and longer.counts.canary_total == 240


def test_latency_quantile_and_threshold_between_bounds(source: PrometheusSource) -> None:
    (latency,) = observe(
        policy("    - {name: latency, quantile: 0.9, max: 2, threshold: 0.3}\n"), source, TARGET, at=AT
    )
    assert latency.bucket is not None and (latency.bucket.le, latency.bucket.moved) == ("0.5", True)
    assert latency.counts is not None and latency.counts.canary_bad == 24
    # 80 % of the canary at or below 0.5 s, 20 % in (1, 2.5]: p90 = 1 + 1.5 * (0.9 - 0.8) / 0.2
    assert latency.value == pytest.approx(1.75)


def test_custom_queries_are_rendered_with_the_rollout_names(source: PrometheusSource) -> None:
    canary_rps = (
        "sum(rate(nginx_ingress_controller_requests"
        "{namespace='{{ namespace }}',ingress='{{ ingress }}',canary!=''}[{{ window }}]))"
    )
    by_canary_service = (
        "sum(rate(nginx_ingress_controller_requests"
        "{namespace='{{ namespace }}',service='{{ canary }}'}[{{ window }}]))"
    )
    metrics = (
        f'    - {{name: canary-rps, min: 1, query: "{canary_rps}"}}\n'
        f'    - {{name: canary-by-service, max: 1, query: "{by_canary_service}"}}\n'
    )
    rps, by_service = observe(policy(metrics), source, TARGET, at=AT)
    assert (rps.value, rps.counts, rps.error) == (2.0, None, None)
    # The canary Service name finds nothing in ingress-nginx metrics: no data, not an error.
    assert (by_service.value, by_service.error) == (None, None)


def test_canary_that_has_not_served_yet_counts_zero(source: PrometheusSource) -> None:
    error_rate, latency = observe(policy(), source, TARGET, at=CANARY_FROM - 60)
    assert error_rate.error is None and latency.error is None
    assert error_rate.counts == WindowCounts(canary_total=0, canary_bad=0, stable_total=240, stable_bad=12)
    assert latency.counts is not None and latency.counts.canary_total == 0
    verdict = judge_threshold(error_rate, policy().analysis.metrics[0], min_requests=50)
    assert verdict.verdict is Verdict.INCONCLUSIVE


def test_one_bad_query_marks_only_its_metric(source: PrometheusSource) -> None:
    metrics = """\
    - name: error-rate
    - {name: broken, max: 1, query: 'sum(rate(x{namespace="other"}[{{ window }}]))'}
    - {name: latency, threshold: 30}
"""
    error_rate, broken, latency = observe(policy(metrics), source, TARGET, at=AT)
    assert error_rate.error is None and error_rate.counts is not None
    # A query that does not parse never gets here (the loader refuses it); one that names another
    # namespace loads (the loader may not know the namespace) and is refused when it is scoped.
    assert broken.error is not None
    assert broken.error.startswith('analysis.metrics[1].query: the matcher namespace="other" reaches beyond')
    assert latency.error is not None and "analysis.metrics[2].threshold" in latency.error
    assert "above the largest histogram bucket" in latency.error


class SilentServer:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])

    def pending(self) -> int:
        """Connections made so far (accepted now, then held open until close)."""
        self.sock.setblocking(False)
        held = []
        try:
            while True:
                held.append(self.sock.accept()[0])
        except BlockingIOError:
            pass
        self._held = held
        return len(held)

    def close(self) -> None:
        for conn in getattr(self, "_held", []):
            conn.close()
        self.sock.close()


def test_dead_prometheus_costs_one_timeout_and_errors_every_metric() -> None:
    silent = SilentServer()
    try:
        metrics = """\
    - name: error-rate
    - {name: latency, quantile: 0.99, max: 1}
    - {name: custom, max: 1, query: "vector(1)"}
"""
        with PrometheusSource(f"http://127.0.0.1:{silent.port}", timeout=0.5, retries=0) as src:
            started = time.monotonic()
            seen = observe(policy(metrics), src, TARGET, at=AT)
            elapsed = time.monotonic() - started
        assert [s.error is not None for s in seen] == [True, True, True]
        assert "no answer within 0.5 s" in (seen[0].error or "")
        assert "not asked" in (seen[2].error or "")
        assert elapsed < 1.5  # one timeout, not one per query (10 queries)
        assert silent.pending() == 1
        verdicts = [
            judge_threshold(s, m, min_requests=50).verdict
            for s, m in zip(seen, policy(metrics).analysis.metrics, strict=True)
        ]
        assert verdicts == [Verdict.ERROR] * 3
    finally:
        silent.close()


def test_refused_port_errors_every_metric_quickly() -> None:
    with PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=2.0, retries=2) as src:
        started = time.monotonic()
        seen = observe(policy(), src, TARGET, at=AT)
        assert time.monotonic() - started < 2.0
    assert all(s.error is not None and "127.0.0.1" in s.error for s in seen)


def test_observed_then_judged(source: PrometheusSource) -> None:
    metrics = """\
    - {name: error-rate, max: 0.05}
    - {name: latency, quantile: 0.5, max: 0.5}
"""
    p = policy(metrics)
    results = [
        judge_threshold(s, m, min_requests=p.analysis.min_requests)
        for s, m in zip(observe(p, source, TARGET, at=AT), p.analysis.metrics, strict=True)
    ]
    assert results[0].verdict is Verdict.FAIL
    assert results[0].reason == "error-rate 0.333 > max 0.05 (canary 33.3% of 120 requests)"
    assert results[1].verdict is Verdict.PASS
    assert results[1].reason.startswith("latency p50 ")
    assert "within max 0.5 s (canary 120 requests; 24 slower than 0.5 s)" in results[1].reason
