"""Property test of the rollout state machine (`analysis.step.step` over `analysis.decision.decide`), with
Hypothesis, at the level of verdicts: any sequence of verdict sets (PASS, FAIL, INCONCLUSIVE, ERROR per
metric, decisive or not), clock advances, canary readiness changes and crashes.

The test plays the cluster: a model of the route (the split in force), the Deployments' replicas and the
status annotation. Each tick reloads the state from the status JSON (as a restarted controller does) and
applies every decision's target before writing its status; a crash drawn for a tick happens after a
decision's target took effect and before its status was written (the status write is lost, the traffic
change is not). Held after every applied decision:
- no promotion without a PASS for every metric at the current weight in that step: the evaluation the
  promotion rests on is one the test gave, all PASS, at the last step's weight, taken after that weight came
  into force on the route;
- the canary's share of traffic on the route never decreases except by a rollback decision;
- a rollback always ends with weight 0 and no canary route (a TrafficSplit with no canary service), the
  canary scaled to 0 and the stable at full size, and the share is never raised after it;
- the phase is always one of the architecture's words, and survives the status JSON.
With operator commands (promote, promote --step, abort, pause, resume, retry, and unreadable ones, their
ids drawn from a small set so that the same annotation is seen again) and a policy with pause steps (timed
and indefinite), also:
- while paused (a command or a pause step whose time has not run out) the share never rises and no
  promotion begins, except by a promote command;
- a command whose id the status records is never taken up again (executed or refused), so no id is
  recorded twice in a row;
- an executed abort ends the tick with the rollout Failed, weight 0 and no canary route;
- a promotion rests on all-PASS verdicts unless a promote command asked for it.
Kept to a few seconds: 200 examples of up to 60 operations (150 with commands), no deadline.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from songbird.analysis.cause import Cause
from songbird.analysis.command import Request
from songbird.analysis.decision import Action, Decision, Facts, tick_tolerance
from songbird.analysis.plan import Target, TrafficSplit
from songbird.analysis.state import Evidence, Phase, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.command import Command, CommandName
from songbird.config.loader import load_policy_yaml
from songbird.config.policy import Policy

POLICY_TEXT = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 30, 60]
interval: 1m
analysis:
  cadence: 15s
  window: 15s
  failureLimit: 2
  errorDeadline: 2m
  metrics:
    - {name: error-rate, max: 0.02}
    - {name: latency, quantile: 0.99, max: 0.5}
  compare: {maxWait: 1m, onInconclusive: pause}
promotion: {scaleDownDelay: 30s}
"""
POLICY = load_policy_yaml(POLICY_TEXT)
PAUSING = load_policy_yaml(
    POLICY_TEXT.replace("steps: [10, 30, 60]", "steps: [10, {pause: 1m}, 30, {pause: {}}, 60, {pause: 30s}]")
)
TOTAL = 4
T0 = 1_700_000_000.0
WORDS = {"Idle", "Initializing", "Progressing", "Paused", "Promoting", "Succeeded", "RollingBack", "Failed"}
METRICS = tuple(m.name for m in POLICY.analysis.metrics)


class Crash(Exception):
    """The controller died after a decision's traffic change, before its status write."""


@dataclass(frozen=True, kw_only=True)
class Given:
    """An evaluation the test answered: when, the canary's share in force then, and the verdicts."""

    at: float
    share: float
    since: float  # when that share came into force
    results: tuple[MetricResult, ...]


@dataclass(kw_only=True)
class Cluster:
    route: TrafficSplit = field(default_factory=lambda: TrafficSplit(stable_service="nginx-v1"))
    canary_replicas: int = 0
    canary_ready: int = 0
    stable_replicas: int = TOTAL
    status: str = field(default_factory=lambda: RolloutState().to_json())
    share_since: float = T0
    rolled_back: bool = False
    given: list[Given] = field(default_factory=list)
    annotation: Request | None = None  # the command annotation on the policy
    executed: list[str] = field(default_factory=list)  # command ids recorded (executed or refused), in order

    def share(self) -> float:
        if self.route.stable_service == "nginx-v2":
            return 100.0
        return self.route.weight if self.route.canary_service is not None else 0.0

    def facts(self, state: RolloutState) -> Facts:
        active = state.phase not in (Phase.IDLE, Phase.SUCCEEDED, Phase.FAILED) and state.stable_service
        return Facts(
            canary="nginx-v2",
            stable="nginx-v1",
            canary_service="nginx-v2",
            stable_service=state.stable_service if active else self.route.stable_service,
            revision="r1",
            stable_replicas=self.stable_replicas,
            canary_replicas=self.canary_replicas,
            canary_ready=self.canary_ready,
            route=self.route,
        )

    def apply(self, target: Target, now: float) -> None:
        before = self.share()
        self.route = target.traffic
        self.canary_replicas = target.canary_replicas
        self.canary_ready = min(self.canary_ready, self.canary_replicas)
        self.stable_replicas = target.stable_replicas
        if self.share() != before:
            self.share_since = now


def check_decision(
    cluster: Cluster, decision: Decision, before: float, now: float, policy: Policy = POLICY
) -> None:
    state = decision.state
    assert state.phase.value in WORDS
    assert RolloutState.from_json(state.to_json()).phase is state.phase
    after = cluster.share()
    if after < before:
        assert decision.action is Action.ROLLBACK, (before, after, decision.reason)
    if cluster.rolled_back:
        assert after == 0, "traffic raised after a rollback"
    if state.phase is Phase.FAILED:
        assert cluster.route.canary_service is None and after == 0
        assert (cluster.canary_replicas, cluster.stable_replicas) == (0, TOTAL)
        cluster.rolled_back = True
    if decision.cause is Cause.RETRIED:
        cluster.rolled_back = False  # a new rollout, asked for
    first_promotion = state.phase is Phase.PROMOTING and state.promoted_at is None
    if decision.action is Action.PROMOTE and first_promotion and decision.cause is not Cause.COMMAND_PROMOTE:
        # The first transition of a promotion: what it rests on.
        last = state.history[-1]
        given = next(g for g in cluster.given if g.at == last.at)
        assert all(r.verdict is Verdict.PASS for r in given.results), decision.reason
        assert {r.name for r in given.results} == set(METRICS)
        assert given.share == policy.steps[-1] == state.weight and given.since < given.at
        assert last.step == len(policy.steps) - 1 and last.at >= (state.step_started_at or 0)


verdict_sets = st.tuples(
    *(st.tuples(st.sampled_from([Verdict.PASS] * 8 + list(Verdict)), st.booleans()) for _ in METRICS)
)
ticks = st.tuples(
    st.just("tick"),
    st.sampled_from([1.0, 5.0, 15.0, 20.0, 60.0, 60.0, 120.0]),
    verdict_sets,
    st.one_of(st.none(), st.integers(min_value=0, max_value=3)),  # crash after that decision
    st.sampled_from([True, True, True, False]),  # the kubelet makes every asked-for pod ready after the tick
)
readiness = st.tuples(st.just("ready"), st.integers(min_value=0, max_value=TOTAL))
operations = st.lists(st.one_of(ticks, ticks, ticks, readiness), min_size=10, max_size=60)


def tick(
    cluster: Cluster,
    now: float,
    results: tuple[MetricResult, ...],
    crash_at: int | None,
    policy: Policy = POLICY,
) -> None:
    """One tick from the status annotation, as a (possibly restarted) controller takes it."""
    state = RolloutState.from_json(cluster.status)
    applied = 0
    previous = state
    aborted = False

    def judge(s: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
        cluster.given.append(Given(at=now, share=cluster.share(), since=cluster.share_since, results=results))
        return results, s.evidence

    def acted(decision: Decision, facts: Facts) -> Facts:
        nonlocal applied, previous, aborted
        before = cluster.share()
        if decision.target is not None:
            cluster.apply(decision.target, now)
        check_decision(cluster, decision, before, now, policy)
        last, was = decision.state.last_command, previous.last_command
        commanded = last is not None and last != was
        if commanded and was is not None:
            assert last is not None and last.id != was.id, "a recorded command was executed again"
        timed_out = previous.pause_until is not None and now >= previous.pause_until - tick_tolerance(15.0)
        if previous.paused and not timed_out and not (commanded and last and last.result == "executed"):
            assert cluster.share() <= before, "the weight rose while paused"
            assert decision.action is not Action.PROMOTE or previous.phase is Phase.PROMOTING
        if commanded and last is not None and last.result == "executed" and last.command == "abort":
            aborted = True
        if crash_at == applied:
            raise Crash  # the traffic change took effect, its status write is lost
        applied += 1
        cluster.status = decision.state.to_json()
        if commanded and last is not None:
            assert not cluster.executed or cluster.executed[-1] != last.id, "an id taken up twice in a row"
            cluster.executed.append(last.id)
        previous = decision.state
        return cluster.facts(decision.state)

    with contextlib.suppress(Crash):
        step(
            policy, state, cluster.facts(state), now, verdicts=judge, acted=acted, command=cluster.annotation
        )
        if aborted:
            final = RolloutState.from_json(cluster.status)
            assert final.phase is Phase.FAILED and cluster.share() == 0
            assert cluster.route.canary_service is None


@settings(max_examples=200, deadline=None)
@given(operations)
def test_the_state_machine_keeps_its_promises(ops: list[tuple[object, ...]]) -> None:
    cluster = Cluster()
    now = T0
    for op in ops:
        if op[0] == "ready":
            assert isinstance(op[1], int)
            cluster.canary_ready = min(op[1], cluster.canary_replicas)
            continue
        _, dt, drawn, crash_at, kubelet = op
        assert isinstance(dt, float) and isinstance(drawn, tuple)
        assert crash_at is None or isinstance(crash_at, int)
        now += dt
        results = tuple(
            MetricResult(name=name, verdict=v, reason=f"drawn {v.value}", decisive=d and v is Verdict.FAIL)
            for name, (v, d) in zip(METRICS, drawn, strict=True)
        )
        tick(cluster, now, results, crash_at)
        if kubelet:
            cluster.canary_ready = cluster.canary_replicas


def test_the_model_reaches_promotion_and_rollback() -> None:
    """The property above is not vacuous: the same model, driven by hand, promotes and rolls back."""
    for verdict, phase in ((Verdict.PASS, Phase.SUCCEEDED), (Verdict.FAIL, Phase.FAILED)):
        cluster = Cluster()
        now = T0
        for _ in range(40):
            now += 15
            tick(cluster, now, tuple(MetricResult(name=n, verdict=verdict, reason="") for n in METRICS), None)
            cluster.canary_ready = cluster.canary_replicas
        assert RolloutState.from_json(cluster.status).phase is phase


NAMES: tuple[CommandName, ...] = ("promote", "abort", "pause", "resume", "retry")
commands = st.tuples(
    st.just("command"),
    st.sampled_from([*NAMES, "promote --step", "invalid"]),
    st.sampled_from(["c1", "c2", "c3", "c4"]),
)
with_commands = st.lists(st.one_of(ticks, ticks, ticks, readiness, commands), min_size=10, max_size=60)


def _request(name: str, ident: str) -> Request:
    if name == "invalid":
        return Request(id=f"invalid:{ident}", command=None, problem="not JSON", by=None)
    if name == "promote --step":
        return Request(id=ident, command=Command(id=ident, command="promote", step=True), by="tester")
    chosen = next(n for n in NAMES if n == name)
    return Request(id=ident, command=Command(id=ident, command=chosen), by="tester")


def drive(ops: list[tuple[object, ...]], policy: Policy) -> Cluster:
    cluster = Cluster()
    now = T0
    for op in ops:
        if op[0] == "ready":
            assert isinstance(op[1], int)
            cluster.canary_ready = min(op[1], cluster.canary_replicas)
            continue
        if op[0] == "command":
            assert isinstance(op[1], str) and isinstance(op[2], str)
            cluster.annotation = _request(op[1], op[2])
            continue
        _, dt, drawn, crash_at, kubelet = op
        assert isinstance(dt, float) and isinstance(drawn, tuple)
        assert crash_at is None or isinstance(crash_at, int)
        now += dt
        results = tuple(
            MetricResult(name=name, verdict=v, reason=f"drawn {v.value}", decisive=d and v is Verdict.FAIL)
            for name, (v, d) in zip(METRICS, drawn, strict=True)
        )
        tick(cluster, now, results, crash_at, policy)
        if kubelet:
            cluster.canary_ready = cluster.canary_replicas
    return cluster


@settings(max_examples=150, deadline=None)
@given(with_commands, st.sampled_from([POLICY, PAUSING]))
def test_commands_and_pauses_keep_their_promises(ops: list[tuple[object, ...]], policy: Policy) -> None:
    drive(ops, policy)


def test_the_pausing_model_pauses_resumes_and_aborts() -> None:
    """The property above is not vacuous: pause steps hold (timed, then until resume), commands run."""
    healthy = tuple(MetricResult(name=n, verdict=Verdict.PASS, reason="") for n in METRICS)
    cluster = Cluster()
    now = T0
    seen: list[tuple[Phase, float, bool]] = []
    for i in range(60):
        if i == 40:
            cluster.annotation = _request("resume", "r1")
        now += 15
        tick(cluster, now, healthy, None, PAUSING)
        cluster.canary_ready = cluster.canary_replicas
        state = RolloutState.from_json(cluster.status)
        seen.append((state.phase, cluster.share(), state.paused))
    assert (Phase.PAUSED, 10.0, True) in seen and (Phase.PAUSED, 30.0, True) in seen
    held = [i for i, s in enumerate(seen) if s == (Phase.PAUSED, 30.0, True)]
    assert held[-1] == 39  # the indefinite pause held until the resume at tick 40
    assert seen[-1][0] is Phase.SUCCEEDED
    assert cluster.executed == ["r1"]
