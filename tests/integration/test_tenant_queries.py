"""Tenant isolation of custom queries against a REAL Prometheus: tenant A's policy cannot read tenant B.

Two namespaces hold the same metric with different, known 5xx counts (A: 20, B: 28 over the last minute)
and B has a private gauge (4242) and a private host name; a series with no namespace label (777) belongs to
nobody. Tenant A's custom query tries every way to read B: B's namespace by name, regex and negative
matchers, ``__name__`` tricks, ``or on()``, a subquery, ``offset``, ``@``, ``label_replace``, ``absent``,
``vector``, ``count by (namespace)``, ``or`` between matchers. Each goes the controller's way (policy
loaded, `analysis.observe.observe` rendering, scoping and asking the real server) and is either refused
with a message naming ``analysis.metrics[0].query``, or answers A's number (or no data), never B's.
An answer that is not one number says so without any label value of the answer (no host name).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from songbird.analysis.observe import MetricObservation, observe
from songbird.analysis.prometheus import PrometheusSource
from songbird.analysis.queries import IngressTarget
from songbird.config.loader import load_policy_yaml
from tests.support.prom_server import PrometheusServer, Series

T0 = 1_700_000_000.0
AT = T0 + 600  # scrape-aligned: a 1m window holds four whole 15 s increments
A_ERRORS, B_ERRORS = 20.0, 28.0  # increase over 1m: 5 and 7 per 15 s scrape
FIELD = "analysis.metrics[0].query"
TARGET = IngressTarget(namespace="tenant-a", ingress="web", canary="web-v2", stable="web-v1")
POLICY = """
ingress: web
canary: {deployment: web-v2, service: web-v2}
steps: [10, 50]
analysis:
  metrics:
    - name: attempt
      max: 1000000
      query: QUERY
"""


def _counter(namespace: str, host: str, per_scrape: float) -> Series:
    samples = tuple((T0 + 15 * i, per_scrape * i) for i in range(81))
    return Series("app_errors", {"namespace": namespace, "host": host, "code": "500"}, samples)


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    server = PrometheusServer()
    gauge = tuple((T0 + 15 * i, 4242.0) for i in range(81))
    server.backfill(
        [
            _counter("tenant-a", "web.tenant-a.internal", 5),
            _counter("tenant-b", "db-private.tenant-b.internal", 7),
            Series("tenant_secret", {"namespace": "tenant-b"}, gauge),
            Series("cluster_secret", {"job": "node"}, tuple((t, 777.0) for t, _ in gauge)),
        ]
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def source(prom: PrometheusServer) -> Iterator[PrometheusSource]:
    with PrometheusSource(prom.url, timeout=5.0) as src:
        yield src


def attempt(source: PrometheusSource, query: str) -> MetricObservation:
    policy = load_policy_yaml(POLICY.replace("QUERY", "'" + query.replace("'", "''") + "'"))
    (seen,) = observe(policy, source, TARGET, at=AT)
    return seen


def test_unscoped_the_server_would_tell_b_s_numbers(source: PrometheusSource) -> None:
    """The data is as described: without scoping these queries would read B (the premise of the test)."""
    assert source.query_scalar('sum(increase(app_errors{namespace="tenant-b"}[1m]))', at=AT) == B_ERRORS
    assert source.query_scalar("sum(increase(app_errors[1m]))", at=AT) == A_ERRORS + B_ERRORS
    assert source.query_scalar("sum(tenant_secret)", at=AT) == 4242.0


BEYOND = "reaches beyond this policy's namespace"
REFUSED = [
    ('sum(increase(app_errors{namespace="tenant-b"}[1m]))', BEYOND),
    ('sum(increase(app_errors{namespace=~"tenant-b|tenant-a"}[1m]))', BEYOND),
    ('sum(increase(app_errors{namespace=~".*"}[1m]))', BEYOND),
    ('sum(increase(app_errors{namespace!="tenant-a"}[1m]))', BEYOND),
    ('sum(increase(app_errors{namespace!~"tenant-a"}[1m]))', BEYOND),
    ('sum(increase({__name__=~".+",namespace="tenant-b"}[1m]))', BEYOND),
    ('sum(increase(app_errors[1m])) or on() sum(increase(app_errors{namespace="tenant-b"}[1m]))', BEYOND),
    ('max_over_time(sum(increase(app_errors{namespace="tenant-b"}[1m]))[5m:1m])', BEYOND),
    ('sum(increase(app_errors{namespace="tenant-b"}[1m] offset 1m))', BEYOND),
    ('sum(increase(app_errors{namespace="tenant-b"}[1m] @ 1700000600))', BEYOND),
    ('sum(tenant_secret{namespace="tenant-a",namespace="tenant-b"})', BEYOND),
    ('sum(tenant_secret{namespace="tenant-a" or namespace="tenant-b"})', "'or' between label matchers"),
    ('absent(tenant_secret{namespace="tenant-b"})', BEYOND),
    # A subquery without a step is rendered by the parser as a plain range: refused, not changed.
    ("sum(increase(app_errors[1m:]))", "does not render this query back to itself"),
]


@pytest.mark.parametrize(("query", "why"), REFUSED)
def test_attempts_to_name_another_namespace_are_refused_with_the_field(
    source: PrometheusSource, query: str, why: str
) -> None:
    seen = attempt(source, query)
    assert seen.value is None
    assert seen.error is not None
    assert seen.error.startswith(f"{FIELD}: ")
    assert why in seen.error


SCOPED = [
    ('sum(increase({__name__="app_errors"}[1m]))', A_ERRORS),
    ('sum(increase({__name__=~"app_.*"}[1m]))', A_ERRORS),
    ("sum(increase(app_errors[1m]))", A_ERRORS),
    ('sum(increase(app_errors{namespace="{{ namespace }}"}[{{ window }}]))', A_ERRORS),
    ('sum(increase(app_errors{code="404"}[1m])) or on() sum(tenant_secret)', None),
    ("max_over_time(sum(increase(app_errors[1m]))[5m:1m])", A_ERRORS),
    ("sum(increase(app_errors[1m] offset 1m))", A_ERRORS),
    ("sum(increase(app_errors[1m] @ 1700000600))", A_ERRORS),
    ('sum(label_replace(increase(app_errors[1m]), "namespace", "tenant-b", "namespace", ".*"))', A_ERRORS),
    ("sum(absent(tenant_secret))", 1.0),  # B's gauge exists, but not for A
    ("sum(tenant_secret)", None),
    ("sum(cluster_secret)", None),  # no namespace label: nobody's, so no tenant's
    ("count(count by (namespace) (app_errors))", 1.0),  # one namespace visible, not two
    ("sum(topk(1, increase(app_errors[1m])))", A_ERRORS),
    ("vector(1)", 1.0),  # no selector: a constant, no series read
]


@pytest.mark.parametrize(("query", "expected"), SCOPED)
def test_attempts_that_can_be_scoped_answer_a_s_numbers_never_b_s(
    source: PrometheusSource, query: str, expected: float | None
) -> None:
    seen = attempt(source, query)
    assert seen.error is None
    assert seen.value == expected


def test_an_answer_that_is_not_one_number_names_no_label_value(source: PrometheusSource) -> None:
    seen = attempt(source, "increase(app_errors[1m])")
    assert seen.value is None and seen.error is not None
    assert "query returned a series with 3 labels where one number was expected" in seen.error
    assert "internal" not in seen.error
    several = attempt(
        source, "sum by (code, host) (increase(app_errors[1m])) or sum by (host) (increase(app_errors[1m]))"
    )
    assert several.value is None and several.error is not None
    assert "query returned 2 series where one number was expected" in several.error
    assert "internal" not in several.error
