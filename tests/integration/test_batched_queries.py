"""Built-in queries batched across rollouts give the judge the same figures as per-rollout queries.

Against one real Prometheus holding backfilled ingress-nginx history for several rollouts (two namespaces,
the same Ingress name in both, a canary that has not served yet, one controller reporting status classes
``5xx``, one Ingress whose canary label changed between two canary Services):
- every rollout's observation (error-rate and latency counts, the latency quantile) is the same through
  `analysis.batch.BatchedSource` over `controller.batch.QueryBatcher` as through the per-rollout PromQL
  of `analysis.queries`, within 1e-9 relative, and the batched side sent three grouped queries for all
  of them;
- `PrometheusEvaluator` with and without batching, over five consecutive cadence-aligned evaluations with
  the evidence carried forward, gives the same verdicts, reasons, figures and evidence sums (one rollout
  fails, others pass or wait), while Prometheus sees three queries per cadence with batching and several
  per rollout without;
- a custom query stays per rollout, beside batched built-ins.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from songbird.analysis import batch
from songbird.analysis.evaluator import PrometheusEvaluator
from songbird.analysis.observe import observe
from songbird.analysis.prometheus import PrometheusSource
from songbird.analysis.queries import IngressTarget
from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import Verdict
from songbird.config.endpoints import Endpoint
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy
from songbird.controller.batch import QueryBatcher
from songbird.controller.endpoints import Endpoints
from tests.support.nginx_series import IngressNames, Traffic, ingress_nginx_series
from tests.support.prom_server import PrometheusServer

pytestmark = pytest.mark.slow

CADENCE = 60.0
T0 = 1_700_000_040.0  # a multiple of the cadence, so evaluations land on the grid
AT = T0 + 1200
END = T0 + 1800

HEALTHY = Traffic(rate=6.0, error_share=0.01, latency={0.02: 0.7, 0.3: 0.29, 0.7: 0.01})
BAD = Traffic(rate=3.0, error_share=0.2, latency={0.02: 0.3, 0.4: 0.3, 1.5: 0.4})
FINE = Traffic(rate=3.0, error_share=0.01, latency={0.02: 0.7, 0.3: 0.29, 0.7: 0.01})

# (names, stable, canary): each its own rollout
ROLLOUTS: list[tuple[IngressNames, Traffic, Traffic | None]] = [
    (
        IngressNames(namespace="shop", ingress="web", stable_service="web-v1", canary_service="web-v2"),
        HEALTHY,
        BAD,
    ),
    (
        IngressNames(namespace="shop", ingress="api", stable_service="api-v1", canary_service="api-v2"),
        HEALTHY,
        FINE,
    ),
    (
        IngressNames(
            namespace="pay",
            ingress="web",
            stable_service="pay-v1",
            canary_service="pay-v2",
            status_classes=True,
        ),
        HEALTHY,
        FINE,
    ),
    (
        IngressNames(namespace="pay", ingress="checkout", stable_service="co-v1", canary_service="co-v2"),
        HEALTHY,
        None,
    ),
]
# An earlier canary Service of shop/api, still reporting: its traffic is canary traffic too (canary!="").
OLD_CANARY = IngressNames(namespace="shop", ingress="api", stable_service="api-v1", canary_service="api-v0")

POLICY = """
ingress: {ingress}
canary: {{deployment: {canary}, service: {canary}}}
steps: [10, 50]
analysis:
  cadence: 60s
  window: 60s
  minRequests: 200
  metrics:
    - {{name: error-rate, max: 0.05}}
    - {{name: latency, quantile: 0.95, threshold: 0.3, max: 0.5}}
"""
CUSTOM = (
    '    - {name: canary-rps, min: 0.1, query: "sum(rate(nginx_ingress_controller_requests'
    "{namespace='{{ namespace }}',ingress='{{ ingress }}',canary!=''}[{{ window }}]))\"}\n"
)


def policy_for(names: IngressNames, *, custom: bool = False) -> Policy:
    text = POLICY.format(ingress=names.ingress, canary=names.canary_service) + (CUSTOM if custom else "")
    return load_policy_yaml(text, source=f"{names.namespace}/{names.ingress}-rollout")


def target_for(names: IngressNames) -> IngressTarget:
    return IngressTarget(
        namespace=names.namespace,
        ingress=names.ingress,
        canary=names.canary_service,
        stable=names.stable_service,
    )


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    server = PrometheusServer()
    series = []
    for names, stable, canary in ROLLOUTS:
        series += ingress_nginx_series(start=T0 - 600, end=END, stable=stable, canary=None, names=names)
        if canary is not None:
            series += ingress_nginx_series(start=T0, end=END, stable=None, canary=canary, names=names)
    series += ingress_nginx_series(start=T0, end=END, stable=None, canary=FINE, names=OLD_CANARY)
    server.backfill(series)
    with server:
        yield server


class Counting:
    """A MetricsSource that counts the per-rollout queries it sends."""

    def __init__(self, source: PrometheusSource) -> None:
        self.source = source
        self.sent = 0

    def query_scalar(self, promql: str, *, at: float) -> float | None:
        self.sent += 1
        return self.source.query_scalar(promql, at=at)


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats within 1e-9 relative (and 1e-12 absolute near zero), recursively."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), (path, a, b)
        if math.isinf(a) or math.isinf(b):
            assert a == b, (path, a, b)
        else:
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, a, b)
        for key in a:
            close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def test_batched_observations_equal_the_per_rollout_ones(prom: PrometheusServer) -> None:
    with PrometheusSource(prom.url, timeout=5.0) as source:
        batcher = QueryBatcher(endpoints=Endpoints(limit=2), timeout=5.0)
        try:
            for names, _, canary in ROLLOUTS:
                policy = policy_for(names)
                target = target_for(names)
                alone = observe(policy, source, target, at=AT, window=CADENCE)
                table = batch.picks(policy.analysis.metrics, target, CADENCE)
                shared = batch.BatchedSource(
                    batcher,
                    Endpoint(name="main", url=prom.url),
                    source,
                    target=target,
                    window=CADENCE,
                    table=table,
                )
                together = observe(policy, shared, target, at=AT, window=CADENCE)
                for one, other in zip(alone, together, strict=True):
                    assert one.error is None and other.error is None
                    assert one.counts is not None and other.counts is not None
                    close(vars(one.counts), vars(other.counts), f"{names.namespace}/{names.ingress}")
                    close(one.value, other.value)
                    assert one.bucket == other.bucket
                error_rate, latency = together
                assert error_rate.counts is not None and latency.counts is not None
                assert error_rate.counts.stable_total > 0 and error_rate.counts.stable_bad > 0
                if canary is None:
                    assert error_rate.counts.canary_total == 0 and latency.value is None
                else:
                    assert error_rate.counts.canary_total > 0 and latency.counts.canary_bad > 0
                    assert latency.value is not None
            assert batcher.queries == 3  # requests, 5xx, duration buckets: once for all four rollouts
        finally:
            batcher.close()


def test_the_evaluator_gives_the_same_verdicts_batched_or_not(prom: PrometheusServer) -> None:
    with PrometheusSource(prom.url, timeout=5.0) as raw:
        per_rollout = Counting(raw)
        plain = PrometheusEvaluator(default_url=prom.url, wrap=lambda url, source: per_rollout)
        batcher = QueryBatcher(endpoints=Endpoints(limit=2), timeout=5.0)
        batched = PrometheusEvaluator(default_url=prom.url, grouped=batcher)
        rollouts = [(names, policy_for(names, custom=i == 1)) for i, (names, _, _) in enumerate(ROLLOUTS)]
        states = {
            names: RolloutState(
                phase=Phase.PROGRESSING,
                step=0,
                weight=10,
                canary=names.canary_service,
                stable=names.stable_service,
                canary_service=names.canary_service,
                stable_service=names.stable_service,
                started_at=AT - 2 * CADENCE,
                step_started_at=AT - 2 * CADENCE,
                last_evaluated_at=AT - CADENCE,
            )
            for names, _ in rollouts
        }
        plain_states, batched_states = dict(states), dict(states)
        verdicts: set[Verdict] = set()
        try:
            for k in range(5):
                now = AT + k * CADENCE + 7.5  # a tick a little after the grid time, as ticks are
                sent_before, grouped_before = per_rollout.sent, batcher.queries
                for names, policy in rollouts:
                    # The per-rollout side evaluates at the grid time: the same windows as the batched one.
                    p_state, b_state = plain_states[names], batched_states[names]
                    p_results, p_evidence = plain.evaluate(policy, names.namespace, p_state, now - 7.5)
                    b_results, b_evidence = batched.evaluate(policy, names.namespace, b_state, now)
                    assert b_evidence[batch.WINDOW_KEY] == {"end": AT + k * CADENCE}
                    builtin = [r.to_dict() for r in b_results if r.name != "canary-rps"]
                    close([r.to_dict() for r in p_results if r.name != "canary-rps"], builtin, names.ingress)
                    if any(r.name == "canary-rps" for r in b_results):
                        # The custom query is asked per rollout at the tick's own time, as without batching.
                        (custom,) = [r for r in b_results if r.name == "canary-rps"]
                        at_tick, _ = plain.evaluate(policy, names.namespace, p_state, now)
                        assert custom == next(r for r in at_tick if r.name == "canary-rps")
                    close(p_evidence, {m: v for m, v in b_evidence.items() if m != batch.WINDOW_KEY})
                    verdicts.update(r.verdict for r in b_results)
                    plain_states[names] = RolloutState(
                        **{**vars(p_state), "evidence": p_evidence, "last_evaluated_at": now - 7.5}
                    )
                    batched_states[names] = RolloutState(
                        **{**vars(b_state), "evidence": b_evidence, "last_evaluated_at": now}
                    )
                assert batcher.queries - grouped_before == 3  # one per kind per cadence, for every rollout
                assert per_rollout.sent - sent_before >= 4 * len(rollouts)
            assert Verdict.FAIL in verdicts and Verdict.PASS in verdicts  # the comparison is not vacuous
        finally:
            batcher.close()
            plain.close()
            batched.close()
