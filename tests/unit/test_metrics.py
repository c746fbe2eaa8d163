"""The controller's own metrics, read back from the exposition text a Prometheus server would scrape.

Covers:
- each `ControllerMetrics` has its own registry: two instances do not share series;
- build info and the leader gauge;
- `observe_rollout`: one-hot phase over every phase, weight, step, replicas by role (absent when unknown),
  per-metric one-hot verdict (labelled ``dry_run`` for a dry-run metric), request counts, canary/stable
  rates and evidence from the last evaluation only; a metric no longer evaluated and a replica count that
  became unknown disappear;
- `forget_rollout` removes every series of that rollout (gauges, counters, histograms) and no other;
- `record_decision`: promotions, rollbacks by reason, inconclusive steps, evaluation errors by metric, the
  decisions counter; an unknown action is refused;
- step duration, Prometheus query and Kubernetes API histograms and counters, with status classes.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from songbird.analysis.figures import Figures
from songbird.analysis.state import Evaluation, Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.controller.metrics import ControllerMetrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: ControllerMetrics) -> Samples:
    """Every sample of the rendered text, keyed by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: ControllerMetrics, family: str, /, **labels: str) -> float | None:
    return samples(metrics).get((family, frozenset(labels.items())))


def names_with(metrics: ControllerMetrics, **labels: str) -> set[str]:
    want = set(labels.items())
    return {name for name, ls in samples(metrics) if want <= ls}


def evaluation(*results: MetricResult, step: int = 1, weight: float = 20.0) -> Evaluation:
    return Evaluation(at=1_700_000_000.0, step=step, weight=weight, results=results)


ERROR_RATE = MetricResult(
    name="error-rate",
    verdict=Verdict.FAIL,
    reason="canary 5xx share 0.08 > stable 0.01 x 1.2",
    canary_requests=250.0,
    stable_requests=2250.0,
    figures=Figures(canary_share=0.08, stable_bad=22.5, stable_total=2250.0, e_bad=42.5, e_good=0.3),
)
LATENCY = MetricResult(
    name="latency",
    verdict=Verdict.PASS,
    reason="p99 0.12 s <= 0.5 s",
    canary_requests=250.0,
    stable_requests=2250.0,
)


def progressing(*history: Evaluation) -> RolloutState:
    return RolloutState(phase=Phase.PROGRESSING, step=1, weight=20.0, history=history)


def test_each_instance_owns_its_registry() -> None:
    a, b = ControllerMetrics(version="0.1.0"), ControllerMetrics(version="9.9.9")
    a.observe_rollout("shop", "web", progressing(), 1, 3)
    assert value(a, "songbird_rollout_weight", namespace="shop", name="web") == 20.0
    assert value(b, "songbird_rollout_weight", namespace="shop", name="web") is None
    assert value(a, "songbird_build_info", version="0.1.0") == 1.0
    assert value(b, "songbird_build_info", version="9.9.9") == 1.0
    assert value(a, "songbird_build_info", version="9.9.9") is None


def test_leader_gauge() -> None:
    m = ControllerMetrics(version="0.1.0")
    assert value(m, "songbird_leader") == 0.0
    m.set_leader(True)
    assert value(m, "songbird_leader") == 1.0
    m.set_leader(False)
    assert value(m, "songbird_leader") == 0.0


def test_phase_is_one_hot_over_every_phase() -> None:
    m = ControllerMetrics(version="0.1.0")
    m.observe_rollout("shop", "web", progressing(), 2, 8)
    phases = {
        p.value: value(m, "songbird_rollout_phase", namespace="shop", name="web", phase=p.value)
        for p in Phase
    }
    assert phases == {p.value: (1.0 if p is Phase.PROGRESSING else 0.0) for p in Phase}
    m.observe_rollout("shop", "web", RolloutState(phase=Phase.ROLLING_BACK, step=1, weight=0.0), 0, 10)
    assert value(m, "songbird_rollout_phase", namespace="shop", name="web", phase="RollingBack") == 1.0
    assert value(m, "songbird_rollout_phase", namespace="shop", name="web", phase="Progressing") == 0.0
    assert value(m, "songbird_rollout_weight", namespace="shop", name="web") == 0.0


def test_rollout_position_and_replicas() -> None:
    m = ControllerMetrics(version="0.1.0")
    m.observe_rollout("shop", "web", RolloutState(phase=Phase.INITIALIZING), None, 10)
    assert value(m, "songbird_rollout_step", namespace="shop", name="web") == -1.0
    assert value(m, "songbird_rollout_replicas", namespace="shop", name="web", role="stable") == 10.0
    assert value(m, "songbird_rollout_replicas", namespace="shop", name="web", role="canary") is None
    m.observe_rollout("shop", "web", progressing(), 2, 8)
    assert value(m, "songbird_rollout_step", namespace="shop", name="web") == 1.0
    assert value(m, "songbird_rollout_replicas", namespace="shop", name="web", role="canary") == 2.0
    m.observe_rollout("shop", "web", progressing(), 2, None)  # stable Deployment unreadable this tick
    assert value(m, "songbird_rollout_replicas", namespace="shop", name="web", role="stable") is None


def test_last_evaluation_figures() -> None:
    m = ControllerMetrics(version="0.1.0")
    old = evaluation(
        MetricResult(name="error-rate", verdict=Verdict.PASS, reason="ok", canary_requests=1.0), step=0
    )
    m.observe_rollout("shop", "web", progressing(old, evaluation(ERROR_RATE, LATENCY)), 2, 8)
    labels = {"namespace": "shop", "name": "web", "metric": "error-rate"}
    verdicts = {
        v.value: value(m, "songbird_metric_verdict", **labels, verdict=v.value, dry_run="false")
        for v in Verdict
    }
    assert verdicts == {"PASS": 0.0, "FAIL": 1.0, "INCONCLUSIVE": 0.0, "ERROR": 0.0}
    assert (
        value(
            m,
            "songbird_metric_verdict",
            namespace="shop",
            name="web",
            metric="latency",
            verdict="PASS",
            dry_run="false",
        )
        == 1.0
    )
    assert (
        value(m, "songbird_metric_canary_requests", **labels) == 250.0
    )  # the last evaluation, not the first
    assert value(m, "songbird_metric_stable_requests", **labels) == 2250.0
    assert value(m, "songbird_metric_canary_rate", **labels) == 0.08  # given as a share
    assert value(m, "songbird_metric_stable_rate", **labels) == 0.01  # computed from the counts
    assert value(m, "songbird_metric_evidence", **labels, kind="rollback") == 42.5
    assert value(m, "songbird_metric_evidence", **labels, kind="promotion") == 0.3
    latency = {"namespace": "shop", "name": "web", "metric": "latency"}
    assert value(m, "songbird_metric_canary_rate", **latency) is None  # not in its figures
    assert value(m, "songbird_metric_evidence", **latency, kind="rollback") is None


def test_figures_that_are_not_numbers_are_not_exported() -> None:
    m = ControllerMetrics(version="0.1.0")
    # A status written by hand or by an older version: such values are read as absent, NaN stays NaN.
    odd = MetricResult.from_dict(
        {
            "name": "error-rate",
            "verdict": "INCONCLUSIVE",
            "reason": "12 canary requests < minRequests 100",
            "figures": {"canary_share": math.nan, "stable_bad": "n/a", "stable_total": 12, "e_bad": True},
        }
    )
    m.observe_rollout("shop", "web", progressing(evaluation(odd)), 1, 9)
    assert names_with(m, metric="error-rate") == {"songbird_metric_verdict"}


def test_series_the_new_state_no_longer_describes_disappear() -> None:
    m = ControllerMetrics(version="0.1.0")
    m.observe_rollout("shop", "web", progressing(evaluation(ERROR_RATE, LATENCY)), 2, 8)
    assert "songbird_metric_verdict" in names_with(m, metric="latency")
    m.observe_rollout(
        "shop", "web", progressing(evaluation(ERROR_RATE, LATENCY), evaluation(ERROR_RATE)), 2, 8
    )
    assert names_with(m, metric="latency") == set()
    assert "songbird_metric_verdict" in names_with(m, metric="error-rate")
    m.observe_rollout("shop", "web", RolloutState(phase=Phase.IDLE), 0, 10)  # history cleared: no figures
    assert names_with(m, metric="error-rate") == set()


def test_forget_rollout_removes_all_its_series_and_only_them() -> None:
    m = ControllerMetrics(version="0.1.0")
    for name in ("web", "api"):
        m.observe_rollout("shop", name, progressing(evaluation(ERROR_RATE)), 2, 8)
        m.record_decision("shop", name, "rollback", "error-rate")
        m.record_decision("shop", name, "promote", "")
        m.observe_step_duration("shop", name, 61.0)
    m.forget_rollout("shop", "web")
    assert names_with(m, namespace="shop", name="web") == set()
    kept = names_with(m, namespace="shop", name="api")
    assert {
        "songbird_rollout_phase",
        "songbird_metric_verdict",
        "songbird_rollbacks_total",
        "songbird_promotions_total",
        "songbird_step_duration_seconds_count",
    } <= kept
    m.forget_rollout("shop", "web")  # forgetting twice is harmless
    m.forget_rollout("other", "never-seen")


def test_decisions_are_counted_by_kind() -> None:
    m = ControllerMetrics(version="0.1.0")
    m.record_decision("shop", "web", "advance", "")
    m.record_decision("shop", "web", "advance", "")
    m.record_decision("shop", "web", "error", "latency")
    m.record_decision("shop", "web", "inconclusive", "")
    m.record_decision("shop", "web", "rollback", "error-deadline")
    m.record_decision("shop", "web", "rollback", "error-rate")
    m.record_decision("shop", "web", "rollback", "error-rate")
    m.record_decision("shop", "web", "promote", "")
    rollout = {"namespace": "shop", "name": "web"}
    assert value(m, "songbird_decisions_total", **rollout, action="advance") == 2.0
    assert value(m, "songbird_rollbacks_total", **rollout, reason="error-rate") == 2.0
    assert value(m, "songbird_rollbacks_total", **rollout, reason="error-deadline") == 1.0
    assert value(m, "songbird_evaluation_errors_total", **rollout, metric="latency") == 1.0
    assert value(m, "songbird_inconclusive_total", **rollout) == 1.0
    assert value(m, "songbird_promotions_total", **rollout) == 1.0
    with pytest.raises(ValueError, match="unknown action 'rollbak'"):
        m.record_decision("shop", "web", "rollbak", "error-rate")  # type: ignore[arg-type]


def test_step_duration_histogram() -> None:
    m = ControllerMetrics(version="0.1.0")
    m.observe_step_duration("shop", "web", 61.0)
    m.observe_step_duration("shop", "web", 119.0)
    rollout = {"namespace": "shop", "name": "web"}
    assert value(m, "songbird_step_duration_seconds_count", **rollout) == 2.0
    assert value(m, "songbird_step_duration_seconds_sum", **rollout) == 180.0
    assert value(m, "songbird_step_duration_seconds_bucket", **rollout, le="60.0") == 0.0
    assert value(m, "songbird_step_duration_seconds_bucket", **rollout, le="120.0") == 2.0


def test_prometheus_queries() -> None:
    m = ControllerMetrics(version="0.1.0")
    assert value(m, "songbird_prometheus_query_errors_total") == 0.0  # present before the first error
    m.observe_prometheus_query(0.02, ok=True)
    m.observe_prometheus_query(5.0, ok=False)
    assert value(m, "songbird_prometheus_query_duration_seconds_count") == 2.0
    assert value(m, "songbird_prometheus_query_duration_seconds_bucket", le="0.025") == 1.0
    assert value(m, "songbird_prometheus_query_errors_total") == 1.0


def test_kubernetes_api_calls_by_status_class() -> None:
    m = ControllerMetrics(version="0.1.0")
    m.observe_kube_call("patch", "ingresses", True, 0.03)
    m.observe_kube_call("patch", "ingresses", False, 0.04, status=409)
    m.observe_kube_call("get", "deployments", False, 10.0)  # no HTTP answer at all
    assert (
        value(m, "songbird_kube_api_requests_total", verb="patch", resource="ingresses", code_class="2xx")
        == 1.0
    )
    assert (
        value(m, "songbird_kube_api_requests_total", verb="patch", resource="ingresses", code_class="4xx")
        == 1.0
    )
    assert (
        value(m, "songbird_kube_api_requests_total", verb="get", resource="deployments", code_class="error")
        == 1.0
    )
    assert (
        value(m, "songbird_kube_api_request_duration_seconds_count", verb="patch", resource="ingresses")
        == 2.0
    )


def test_exposition_content_type() -> None:
    m = ControllerMetrics(version="0.1.0")
    assert m.content_type.startswith("text/plain; version=0.0.4")
    assert b"# HELP songbird_rollout_weight Canary traffic weight in force, in percent." in m.render()


def test_a_dry_run_verdict_is_labelled_dry_run() -> None:
    m = ControllerMetrics(version="0.1.0")
    shadow = MetricResult(name="shadow", verdict=Verdict.FAIL, reason="1 > 0.5", dry_run=True)
    m.observe_rollout("shop", "web", progressing(evaluation(shadow, LATENCY)), 2, 8)
    labels = {"namespace": "shop", "name": "web", "metric": "shadow", "verdict": "FAIL"}
    assert value(m, "songbird_metric_verdict", **labels, dry_run="true") == 1.0
    assert value(m, "songbird_metric_verdict", **labels, dry_run="false") is None
