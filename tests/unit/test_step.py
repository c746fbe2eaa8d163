"""One tick as a pure function (`analysis.step.step`): the ordered decisions the controller, the benchmark
and the lab all take from the same inputs.

Covers: a start is followed in the same tick by the first step when the canary's pods are ready (and the
``started`` hook's additions reach the state the next decision is taken from); without ready pods the tick
stops at "waiting for canary pods"; verdicts are asked for only when an evaluation is due and reach only
the first decision; a decisive FAIL is two transitions in one tick (traffic withdrawn with the pods kept,
then the canary scaled to 0), each with the metric as its cause; a promotion is three transitions over two
ticks (promote, switch the route, after scaleDownDelay scale the stable down); ``acted`` sees every
decision, in order, with the facts it was taken from; an exception from ``acted`` ends the tick; the cause is
kept in the status, and a status without one (or with an unknown one) reads as UNKNOWN.
Resume after a crash (the route in force is the truth): a later step's weight found in force is adopted as
started now, and an ERROR evaluation then holds that weight (never the recorded, lower one) and promotion
waits a whole interval from the adoption; canary traffic found withdrawn goes on with the rollback.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from songbird.analysis.cause import Cause
from songbird.analysis.decision import Action, Decision, Facts
from songbird.analysis.plan import TrafficSplit
from songbird.analysis.state import Evidence, Phase, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.loader import load_policy_yaml

POLICY = load_policy_yaml("""
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 50]
interval: 1m
analysis: {cadence: 15s, window: 15s, failureLimit: 2, errorDeadline: 1m, compare: {maxWait: 1m}}
promotion: {scaleDownDelay: 30s}
""")

FACTS = Facts(
    canary="nginx-v2",
    stable="nginx-v1",
    canary_service="nginx-v2",
    stable_service="nginx-v1",
    revision="r1",
    stable_replicas=4,
    canary_replicas=1,
    canary_ready=1,
)
T0 = 1_700_000_000.0


def judged(*results: MetricResult) -> tuple[tuple[MetricResult, ...], Evidence]:
    return results, {}


def never(state: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
    raise AssertionError("no evaluation is due")


def ready(decision: Decision, facts: Facts) -> Facts:
    """A cluster whose pods are ready as soon as they are asked for."""
    if decision.target is None:
        return facts
    n = decision.target.canary_replicas
    return replace(facts, canary_replicas=n, canary_ready=n, stable_replicas=decision.target.stable_replicas)


def started_at(now: float) -> RolloutState:
    decisions = step(POLICY, RolloutState(), FACTS, now, verdicts=never, acted=ready)
    return decisions[-1].state


def test_start_then_first_step_in_one_tick_with_the_started_hook() -> None:
    seen = {"error-rate": {"history_total": 5000.0}}
    decisions = step(
        POLICY,
        RolloutState(),
        FACTS,
        T0,
        verdicts=never,
        started=lambda s: replace(s, evidence=seen, forecast="about 2m"),
        acted=ready,
    )
    assert [(d.action, d.cause, d.state.phase) for d in decisions] == [
        (Action.ADVANCE, Cause.STARTED, Phase.INITIALIZING),
        (Action.ADVANCE, Cause.STEP_STARTED, Phase.PROGRESSING),
    ]
    assert decisions[0].reason == "rollout of nginx-v2 started (stable nginx-v1, 4 replicas)"
    assert decisions[1].reason == "step 1/2: weight 10% (1 canary replicas ready)"
    assert decisions[1].state.evidence == seen and decisions[1].state.forecast == "about 2m"


def test_start_without_ready_pods_stops_at_waiting() -> None:
    none_ready = replace(FACTS, canary_replicas=0, canary_ready=0)
    decisions = step(POLICY, RolloutState(), none_ready, T0, verdicts=never)
    assert [d.cause for d in decisions] == [Cause.STARTED, Cause.WAITING_FOR_PODS]
    assert decisions[-1].reason == "waiting for canary pods: 0/1 ready"
    assert decisions[-1].state.phase is Phase.INITIALIZING


def test_verdicts_only_when_due_and_only_for_the_first_decision() -> None:
    state = started_at(T0)
    asked: list[RolloutState] = []

    def count(s: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
        asked.append(s)
        return (MetricResult(name="error-rate", verdict=Verdict.PASS, reason="fine"),), {
            "error-rate": {"n": 1}
        }

    assert step(POLICY, state, FACTS, T0 + 10, verdicts=count)[0].cause is Cause.WAITING_FOR_EVALUATION
    assert asked == []  # one cadence (15 s) into the step is the first evaluation
    (d,) = step(POLICY, state, FACTS, T0 + 15, verdicts=count)
    assert len(asked) == 1 and d.state.evidence == {"error-rate": {"n": 1}}
    assert d.cause is Cause.STEP_RUNNING and d.state.last_evaluated_at == T0 + 15


def test_decisive_fail_rolls_back_in_two_transitions_of_one_tick() -> None:
    state = started_at(T0)
    fail = MetricResult(name="latency", verdict=Verdict.FAIL, reason="slow", decisive=True)
    seen: list[tuple[Action, Facts]] = []

    def acted(decision: Decision, facts: Facts) -> Facts:
        seen.append((decision.action, facts))
        return ready(decision, facts)

    decisions = step(POLICY, state, FACTS, T0 + 15, verdicts=lambda s: judged(fail), acted=acted)
    first, second = decisions
    assert (first.action, first.cause, first.cause_metric) == (
        Action.ROLLBACK,
        Cause.METRIC_FAILED,
        "latency",
    )
    assert first.again and first.state.phase is Phase.ROLLING_BACK
    assert first.target is not None and first.target.traffic.weight == 0 and first.target.canary_replicas == 1
    assert (second.action, second.cause, second.cause_metric) == (
        Action.ROLLBACK,
        Cause.METRIC_FAILED,
        "latency",
    )
    assert second.state.phase is Phase.FAILED and not second.again
    assert second.target is not None and second.target.canary_replicas == 0
    assert second.target.traffic.canary_service is None  # the canary route is removed
    assert first.reason == second.reason == "latency: slow"
    assert [a for a, _ in seen] == [Action.ROLLBACK, Action.ROLLBACK] and seen[0][1] == FACTS


def test_promotion_switches_the_route_then_scales_the_stable_down_later() -> None:
    passed = MetricResult(name="error-rate", verdict=Verdict.PASS, reason="fine")
    state, facts, now = started_at(T0), FACTS, T0
    for _ in range(20):  # walk the steps on time, every cadence
        now += 15
        decisions = step(POLICY, state, facts, now, verdicts=lambda s: judged(passed), acted=ready)
        state = decisions[-1].state
        facts = ready(decisions[-1], facts)
        if state.phase is Phase.PROMOTING:
            break
    assert [(d.action, d.cause) for d in decisions] == [
        (Action.PROMOTE, Cause.ANALYSIS_PASSED),
        (Action.PROMOTE, Cause.PROMOTED),
        (Action.HOLD, Cause.PROMOTED),  # the stable keeps its pods for scaleDownDelay
    ]
    assert decisions[1].target is not None and decisions[1].target.traffic.stable_service == "nginx-v2"
    (done,) = step(POLICY, state, facts, now + 30, verdicts=never, acted=ready)
    assert (done.action, done.cause, done.state.phase) == (Action.PROMOTE, Cause.SUCCEEDED, Phase.SUCCEEDED)
    assert done.target is not None and done.target.stable_replicas == 0


def test_an_error_while_acting_ends_the_tick() -> None:
    class Refused(Exception):
        pass

    calls: list[Decision] = []

    def refuse(decision: Decision, facts: Facts) -> Facts:
        calls.append(decision)
        raise Refused

    with pytest.raises(Refused):
        step(POLICY, RolloutState(), FACTS, T0, verdicts=never, acted=refuse)
    assert [d.cause for d in calls] == [Cause.STARTED]


def test_the_cause_survives_the_status_and_old_statuses_still_read() -> None:
    state = started_at(T0)
    assert RolloutState.from_json(state.to_json()) == state and state.cause is Cause.STEP_STARTED
    old = json.loads(state.to_json())
    del old["cause"], old["cause_metric"]  # written before causes existed
    assert RolloutState.from_json(json.dumps(old)).cause is Cause.UNKNOWN
    newer = {**old, "cause": "a-cause-from-a-newer-controller"}
    assert RolloutState.from_json(json.dumps(newer)).cause is Cause.UNKNOWN


def routed(weight: float, *, match: bool = True) -> TrafficSplit:
    return TrafficSplit(
        stable_service="nginx-v1", canary_service="nginx-v2", weight=weight, match_routes=match
    )


def test_a_later_weight_in_force_is_adopted_and_an_error_never_lowers_it() -> None:
    state = started_at(T0)  # step 1 at 10%; the crash lost the status write of the advance to 50%
    error = MetricResult(name="error-rate", verdict=Verdict.ERROR, reason="no answer")
    facts = replace(FACTS, route=routed(50))
    (held,) = step(POLICY, state, facts, T0 + 65, verdicts=lambda s: judged(error), acted=ready)
    assert (held.action, held.cause, held.state.phase) == (Action.HOLD, Cause.STEP_ADOPTED, Phase.PROGRESSING)
    assert (held.state.step, held.state.weight, held.state.step_started_at) == (1, 50, T0 + 65)
    assert held.target is not None and held.target.traffic.weight == 50  # never the recorded 10
    assert held.state.history[-1].step == 0  # the ERROR judged the window of the recorded step
    passed = MetricResult(name="error-rate", verdict=Verdict.PASS, reason="fine")
    state, now, facts = held.state, T0 + 65, ready(held, facts)
    for _ in range(20):  # PASS every cadence: promotion only once the adopted step ran its whole interval
        now += 15
        decisions = step(POLICY, state, facts, now, verdicts=lambda s: judged(passed), acted=ready)
        splits = [d.target.traffic for d in decisions if d.target is not None]
        assert all(t.weight >= 50 or t.stable_service == "nginx-v2" for t in splits)  # or all, promoted
        state, facts = decisions[-1].state, ready(decisions[-1], facts)
        if decisions[0].action is Action.PROMOTE:
            break
    assert state.phase is Phase.PROMOTING and now >= T0 + 65 + 60


def test_an_adopted_first_step_after_a_crash_in_initializing() -> None:
    start = step(POLICY, RolloutState(), FACTS, T0, verdicts=never)[0].state  # Initializing recorded
    none_ready = replace(FACTS, canary_ready=0, route=routed(10))  # 10% in force, the pod since restarted
    (held,) = step(POLICY, start, none_ready, T0 + 5, verdicts=never)
    assert (held.cause, held.state.step, held.state.weight) == (Cause.STEP_ADOPTED, 0, 10)
    assert held.target is not None and held.target.traffic.weight == 10


def test_traffic_found_withdrawn_goes_on_with_the_rollback() -> None:
    state = replace(started_at(T0), step=1, weight=50.0)
    withdrawn = replace(FACTS, route=routed(0, match=False))
    decisions = step(POLICY, state, withdrawn, T0 + 5, verdicts=never, acted=ready)
    assert [(d.action, d.cause, d.state.phase) for d in decisions] == [
        (Action.ROLLBACK, Cause.TRAFFIC_WITHDRAWN, Phase.ROLLING_BACK),
        (Action.ROLLBACK, Cause.TRAFFIC_WITHDRAWN, Phase.FAILED),
    ]
    last = decisions[-1].target
    assert last is not None and last.traffic.canary_service is None and last.canary_replicas == 0
