"""Dry-run metrics (`analysis.dryrun`): judged and shown, never acted on.

Covers, with Hypothesis: for any verdicts of dry-run metrics (any verdict, decisive or not, shared outage
or not) beside any verdicts of the enforced ones, over whole rollouts of clock advances, every decision
(action, cause, reason, target, phase, step, weight, failure count, error clock) equals the one taken for
the same policy with the dry-run metrics removed (also for a dry-run built-in metric, whose traffic counts
the split check does not use either; the verdicts carry window counts, so split checks happen). And, by
example: the judge splits alpha among the enforced built-ins only and marks dry-run verdicts; a dry-run
verdict survives the status record with its mark; `newly_failed` says a dry-run FAIL once, when it starts.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from songbird.analysis import dryrun
from songbird.analysis.decision import Decision, Facts
from songbird.analysis.evaluate import judge
from songbird.analysis.figures import Figures
from songbird.analysis.observe import MetricObservation
from songbird.analysis.state import Evaluation, Phase, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult, Verdict, WindowCounts
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy

ENFORCED = """
    - {name: error-rate, max: 0.02}
    - {name: latency, quantile: 0.99, max: 0.5}
"""
DRY = """
    - {name: shadow-a, query: 'vector(1)', max: 0.5, dryRun: true}
    - {name: shadow-b, query: 'vector(1)', min: 0.5, dryRun: true}
"""
TEMPLATE = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 30, 60]
interval: 1m
analysis:
  cadence: 15s
  window: 15s
  failureLimit: 2
  errorDeadline: 1m
  compare: {maxWait: 1m}
  metrics:
"""
WITH_DRY = load_policy_yaml(TEMPLATE + ENFORCED + DRY)
WITHOUT = load_policy_yaml(TEMPLATE + ENFORCED)
# A dry-run built-in: its traffic counts are not the split check's either.
WITH_DRY_BUILTIN = load_policy_yaml(
    TEMPLATE + "    - {name: error-rate, max: 0.02}\n    - {name: latency, max: 0.5, dryRun: true}\n"
)
ERRORS_ONLY = load_policy_yaml(TEMPLATE + "    - {name: error-rate, max: 0.02}\n")
FACTS = Facts(
    canary="nginx-v2",
    stable="nginx-v1",
    canary_service="nginx-v2",
    stable_service="nginx-v1",
    revision="r1",
    stable_replicas=4,
    canary_replicas=4,
    canary_ready=4,
)

verdicts = st.sampled_from(list(Verdict))


@st.composite
def metric_result(draw: st.DrawFn, name: str, dry: bool) -> MetricResult:
    verdict = draw(verdicts)
    return MetricResult(
        name=name,
        verdict=verdict,
        reason=f"{name} {verdict.value}",
        decisive=verdict is Verdict.FAIL and draw(st.booleans()),
        figures=Figures(
            shared_outage=draw(st.booleans()),
            canary_total=draw(st.sampled_from([0.0, 10.0, 100.0, 500.0])),
            stable_total=draw(st.sampled_from([0.0, 400.0, 900.0])),
        ),
        dry_run=dry,
    )


@st.composite
def tick(draw: st.DrawFn) -> tuple[float, tuple[MetricResult, ...], tuple[MetricResult, ...]]:
    advance = draw(st.sampled_from([1.0, 5.0, 15.0, 15.0, 30.0, 70.0]))
    enforced = (draw(metric_result("error-rate", False)), draw(metric_result("latency", False)))
    dry = (draw(metric_result("shadow-a", True)), draw(metric_result("shadow-b", True)))
    return advance, enforced, dry


@st.composite
def tick_dry_builtin(draw: st.DrawFn) -> tuple[float, tuple[MetricResult, ...], tuple[MetricResult, ...]]:
    advance = draw(st.sampled_from([1.0, 5.0, 15.0, 15.0, 30.0, 70.0]))
    return advance, (draw(metric_result("error-rate", False)),), (draw(metric_result("latency", True)),)


def _without_dry(state: RolloutState) -> RolloutState:
    history = tuple(replace(e, results=dryrun.enforced(e.results)) for e in state.history)
    return replace(state, history=history)


def _same(a: Decision, b: Decision) -> None:
    assert (a.action, a.cause, a.reason, a.target, a.again, a.cause_metric) == (
        b.action,
        b.cause,
        b.reason,
        b.target,
        b.again,
        b.cause_metric,
    )
    assert _without_dry(a.state) == b.state


def _compare(with_policy: Policy, without_policy: Policy, ticks: list[object]) -> None:
    with_dry, without, now = RolloutState(), RolloutState(), 1000.0
    for advance, enforced, dry in ticks:  # type: ignore[misc]
        a = step(with_policy, with_dry, FACTS, now, verdicts=lambda s, r=(*enforced, *dry): (r, s.evidence))
        b = step(without_policy, without, FACTS, now, verdicts=lambda s, r=enforced: (r, s.evidence))
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
        with_dry, without = a[-1].state, b[-1].state
        if with_dry.phase.finished:
            break
        now += advance


@settings(max_examples=150, deadline=None)
@given(st.lists(tick(), min_size=1, max_size=40))
def test_decisions_equal_those_without_the_dry_run_metrics(ticks: list[object]) -> None:
    _compare(WITH_DRY, WITHOUT, ticks)


@settings(max_examples=100, deadline=None)
@given(st.lists(tick_dry_builtin(), min_size=1, max_size=40))
def test_decisions_equal_those_without_a_dry_run_builtin(ticks: list[object]) -> None:
    _compare(WITH_DRY_BUILTIN, ERRORS_ONLY, ticks)


def test_a_failing_dry_run_metric_alone_never_stops_promotion() -> None:
    state, now = RolloutState(), 1000.0
    passing = (
        MetricResult(name="error-rate", verdict=Verdict.PASS, reason="ok"),
        MetricResult(name="latency", verdict=Verdict.PASS, reason="ok"),
        MetricResult(name="shadow-a", verdict=Verdict.FAIL, reason="1 > 0.5", decisive=True, dry_run=True),
        MetricResult(name="shadow-b", verdict=Verdict.ERROR, reason="no answer", dry_run=True),
    )
    for _ in range(60):
        for d in step(WITH_DRY, state, FACTS, now, verdicts=lambda s: (passing, s.evidence)):
            state = d.state
        if state.phase.finished:
            break
        now += 15
    assert state.phase is Phase.SUCCEEDED
    assert state.consecutive_failures == 0 and state.error_since is None


def test_the_judge_marks_dry_run_verdicts_and_splits_alpha_among_the_enforced() -> None:
    counts = WindowCounts(canary_total=100, canary_bad=1, stable_total=900, stable_bad=9)
    observed = tuple(
        MetricObservation(name=n, counts=counts, at=1000.0, window=15.0) for n in ("error-rate", "latency")
    )
    policy = load_policy_yaml(
        TEMPLATE + "    - {name: error-rate, max: 0.02}\n    - {name: latency, max: 0.5, dryRun: true}\n"
    )
    results, _ = judge(policy, RolloutState(phase=Phase.PROGRESSING, step=0, weight=10), observed, ())
    by = {r.name: r for r in results}
    assert not by["error-rate"].dry_run and by["latency"].dry_run
    alone = load_policy_yaml(TEMPLATE + "    - {name: error-rate, max: 0.02}\n")
    only, _ = judge(alone, RolloutState(phase=Phase.PROGRESSING, step=0, weight=10), observed[:1], ())
    # The enforced metric is judged exactly as if the dry-run one were absent (its alpha is not halved).
    assert only[0].figures.threshold_bad == by["error-rate"].figures.threshold_bad
    assert by["latency"].figures.threshold_bad == by["error-rate"].figures.threshold_bad * 2


def test_dry_run_verdicts_survive_the_status_and_are_said_once() -> None:
    fail = MetricResult(name="shadow-a", verdict=Verdict.FAIL, reason="1 > 0.5", dry_run=True)
    state = RolloutState(history=(Evaluation(at=1.0, step=0, weight=10, results=(fail,)),))
    again = RolloutState.from_json(state.to_json())
    assert again.history[-1].results[0].dry_run
    assert dryrun.newly_failed((), (fail,)) == (fail,)
    assert dryrun.newly_failed((fail,), (fail,)) == ()
    assert "no effect on the rollout" in dryrun.describe(fail)
