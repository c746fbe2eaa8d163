"""The decisions' causes reaching the controller's own metrics (`controller.tick_metrics.TickMetrics`), with
the state machine's real decisions (`analysis.step.step`) and no reason text read anywhere.

Covers: a rollback is counted once, labelled with the failing metric's name for a metric's FAIL,
``error-deadline`` when Prometheus stayed silent for errorDeadline, ``inconclusive`` for onInconclusive:
rollback; an onInconclusive pause counts one inconclusive outcome however many ticks it lasts; every
transition is counted as a decision; a rollback cause the controller does not know is ``other``.
"""

from __future__ import annotations

from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from songbird.analysis.cause import Cause
from songbird.analysis.decision import Action, Decision, Facts
from songbird.analysis.state import Evidence, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy
from songbird.controller.metrics import ControllerMetrics
from songbird.controller.tick_metrics import TickMetrics, rollback_code


def policy(on_inconclusive: str = "pause") -> Policy:
    return load_policy_yaml(f"""
ingress: nginx
canary: {{deployment: nginx-v2, service: nginx-v2}}
steps: [10, 50]
interval: 1m
analysis: {{cadence: 15s, window: 15s, errorDeadline: 1m,
           compare: {{maxWait: 30s, onInconclusive: {on_inconclusive}}}}}
""")


FACTS = Facts(
    canary="nginx-v2",
    stable="nginx-v1",
    canary_service="nginx-v2",
    stable_service="nginx-v1",
    revision="r1",
    stable_replicas=4,
    canary_replicas=0,
    canary_ready=0,
)


def ready(decision: Decision, facts: Facts) -> Facts:
    if decision.target is None:
        return facts
    n = decision.target.canary_replicas
    return replace(facts, canary_replicas=n, canary_ready=n)


def drive(p: Policy, verdict: MetricResult, ticks: int = 30) -> ControllerMetrics:
    """Tick every 15 s with the same verdict for every evaluation, reporting each tick to `TickMetrics`."""
    metrics = ControllerMetrics(version="test")
    listener = TickMetrics(metrics)
    state, facts, now = RolloutState(), FACTS, 1_700_000_000.0

    def verdicts(s: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
        return (verdict,), s.evidence

    for _ in range(ticks):
        decisions = step(p, state, facts, now, verdicts=verdicts, acted=ready)
        for d in decisions:
            facts = ready(d, facts)
        listener.tick_done("shop", "web", state, decisions[-1].state, decisions, None, None)
        state = decisions[-1].state
        if state.phase.finished:
            break
        now += 15
    return metrics


def counted(metrics: ControllerMetrics, family: str, **labels: str) -> float:
    want = {"namespace": "shop", "name": "web", **labels}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            if s.name == family and s.labels == want:
                return float(s.value)
    return 0.0


def test_rollback_by_a_metric_is_labelled_with_its_name() -> None:
    fail = MetricResult(name="latency", verdict=Verdict.FAIL, reason="p99 0.9 s", decisive=True)
    m = drive(policy(), fail)
    assert counted(m, "songbird_rollbacks_total", reason="latency") == 1
    assert counted(m, "songbird_decisions_total", action="rollback") == 2  # withdraw, then scale down


def test_rollback_after_the_error_deadline() -> None:
    error = MetricResult(name="error-rate", verdict=Verdict.ERROR, reason="Prometheus unreachable")
    m = drive(policy(), error)
    assert counted(m, "songbird_rollbacks_total", reason="error-deadline") == 1
    assert counted(m, "songbird_evaluation_errors_total", metric="error-rate") >= 4


def test_rollback_on_inconclusive() -> None:
    unsure = MetricResult(name="error-rate", verdict=Verdict.INCONCLUSIVE, reason="too few requests")
    m = drive(policy("rollback"), unsure)
    assert counted(m, "songbird_rollbacks_total", reason="inconclusive") == 1
    assert counted(m, "songbird_inconclusive_total") == 1


def test_a_long_inconclusive_pause_counts_once() -> None:
    unsure = MetricResult(name="error-rate", verdict=Verdict.INCONCLUSIVE, reason="too few requests")
    m = drive(policy("pause"), unsure, ticks=40)
    assert counted(m, "songbird_inconclusive_total") == 1
    assert counted(m, "songbird_rollbacks_total", reason="inconclusive") == 0


def test_a_rollback_cause_the_controller_does_not_know_is_other() -> None:
    d = Decision(state=RolloutState(), action=Action.ROLLBACK, cause=Cause.UNKNOWN, reason="x", target=None)
    assert rollback_code(d) == "other"
    assert rollback_code(replace(d, cause=Cause.METRIC_FAILED, cause_metric="error-rate")) == "error-rate"
