"""The rollout state machine, driven tick by tick on a virtual clock with the cluster's answers simulated
by a perfect Deployment controller (ready replicas follow spec replicas one tick later).

Covers: start waits for canary pods; steps advance on time only after an evaluation of the step; the
canary is scaled before the weight rises; a decisive FAIL rolls back at once and failureLimit counts only
consecutive FAILs; ERROR holds and rolls back after errorDeadline; INCONCLUSIVE never promotes and
onInconclusive applies after maxWait; shared outages pause; promotion switches the route only when the
canary is at full size and scales the stable down after scaleDownDelay; a new pod template restarts from
step 1; exact reasons."""

from __future__ import annotations

from dataclasses import replace

from songbird.analysis.decision import Action, Decision, Facts, decide, evaluation_due
from songbird.analysis.figures import Figures
from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.loader import load_policy_yaml

POLICY = load_policy_yaml("""
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 50]
interval: 1m
analysis: {cadence: 15s, window: 15s, failureLimit: 2, errorDeadline: 1m,
           compare: {maxWait: 1m}}
promotion: {scaleDownDelay: 30s}
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


def ok(name: str = "error-rate") -> MetricResult:
    return MetricResult(name=name, verdict=Verdict.PASS, reason="fine")


def res(verdict: Verdict, *, decisive: bool = False, outage: bool = False) -> MetricResult:
    figures = Figures(shared_outage=True) if outage else Figures()
    return MetricResult(
        name="error-rate",
        verdict=verdict,
        reason=f"{verdict.value.lower()} reason",
        decisive=decisive,
        figures=figures,
    )


class World:
    """Applies each decision's target the way a healthy cluster would."""

    def __init__(self, policy=POLICY, facts: Facts = FACTS) -> None:
        self.policy, self.facts = policy, facts
        self.state = RolloutState()
        self.now = 1000.0
        self.decisions: list[Decision] = []

    def tick(self, results: tuple[MetricResult, ...] | None = None, *, ready: bool = True) -> Decision:
        if results is None and evaluation_due(self.policy, self.state, self.now):
            results = (ok(),)
        while True:
            d = decide(self.policy, self.state, self.facts, results, self.now)
            self.decisions.append(d)
            self.state = d.state
            if d.target is not None:
                t = d.target
                self.facts = replace(
                    self.facts, canary_replicas=t.canary_replicas, stable_replicas=t.stable_replicas
                )
            if not d.again:
                break
            results = None
        if ready:
            self.facts = replace(self.facts, canary_ready=self.facts.canary_replicas)
        return d

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_start_creates_route_at_zero_and_waits_for_pods() -> None:
    w = World()
    d = w.tick(ready=False)
    assert w.state.phase is Phase.INITIALIZING
    assert (
        d.target is not None
        and d.target.traffic.weight == 0
        and d.target.traffic.canary_service == "nginx-v2"
    )
    assert d.target.canary_replicas == 1 and d.target.stable_replicas == 4
    assert d.reason == "waiting for canary pods: 0/1 ready"
    w.facts = replace(w.facts, canary_ready=1)
    w.advance(5)
    d = w.tick()
    assert (w.state.phase, w.state.step, w.state.weight) == (Phase.PROGRESSING, 0, 10)
    assert d.action is Action.ADVANCE and d.target is not None and d.target.traffic.match_routes


def test_healthy_rollout_walks_every_step_and_promotes() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()  # step 1 at 10%
    weights = []
    for _ in range(40):
        w.advance(15)
        w.tick()
        weights.append(w.state.weight)
        if w.state.phase.finished:
            break
    assert w.state.phase is Phase.SUCCEEDED, w.state.reason
    assert weights[:4] == [10, 10, 10, 10] or weights[:3] == [10, 10, 10]
    assert 50 in weights
    # Promotion: canary at full size before the route switches, stable to 0 only after scaleDownDelay.
    promoting = [d for d in w.decisions if d.state.phase is Phase.PROMOTING and d.target is not None]
    switch = next(d for d in promoting if d.target and d.target.traffic.stable_service == "nginx-v2")
    assert (
        switch.target is not None
        and switch.target.canary_replicas == 4
        and switch.target.stable_replicas == 4
    )
    final = w.decisions[-1]
    assert final.target is not None and final.target.stable_replicas == 0
    assert final.state.promoted_at is not None and w.now - final.state.promoted_at >= 30
    assert w.state.reason == "succeeded: nginx-v2 is the stable version; nginx-v1 scaled to 0"


def test_step_waits_for_an_evaluation_and_its_interval() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    w.advance(45)  # 45 s into step 1: evaluated, but the interval is not over
    w.tick()
    assert w.state.step == 0 and "45s of 1m" in w.state.reason
    w.advance(15)
    w.tick()
    assert w.state.step == 1 and w.state.weight == 50


def test_canary_is_scaled_before_the_weight_rises() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    w.advance(45)
    d = w.tick(ready=False)  # one cadence before the step ends: next step's pods are asked for
    assert w.state.weight == 10 and d.target is not None and d.target.canary_replicas == 2
    w.advance(15)
    d = w.tick(ready=False)  # step time over, pods not ready: the weight waits for them
    assert w.state.weight == 10 and d.target is not None and d.target.canary_replicas == 2
    assert "scaling canary to 2 replicas before raising the weight to 50% (1/2 ready)" in d.reason
    w.facts = replace(w.facts, canary_ready=2)
    w.advance(15)
    d = w.tick()
    assert w.state.weight == 50 and d.action is Action.ADVANCE


def test_decisive_fail_rolls_back_in_one_tick_withdrawing_traffic_first() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    w.advance(15)
    w.tick((res(Verdict.FAIL, decisive=True),))
    assert w.state.phase is Phase.FAILED
    assert w.state.reason == "error-rate: fail reason"
    withdraw, remove = w.decisions[-2], w.decisions[-1]
    assert withdraw.state.phase is Phase.ROLLING_BACK and withdraw.again
    assert withdraw.target is not None and withdraw.target.traffic.weight == 0
    assert not withdraw.target.traffic.match_routes and withdraw.target.canary_replicas == 1
    assert remove.target is not None and remove.target.traffic.canary_service is None
    assert remove.target.canary_replicas == 0 and remove.target.stable_replicas == 4


def test_failure_limit_counts_consecutive_fails_only() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    for verdict in (Verdict.FAIL, Verdict.PASS, Verdict.FAIL):
        w.advance(15)
        w.tick((res(verdict),))
        assert w.state.phase is Phase.PROGRESSING
    w.advance(15)
    w.tick((res(Verdict.FAIL),))
    assert w.state.phase is Phase.FAILED
    assert "2 consecutive failed evaluations, failureLimit 2" in w.state.reason


def test_errors_hold_then_roll_back_after_the_deadline() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    for _ in range(5):  # 0, 15, 30, 45 s of silence: hold, never advance
        w.advance(15)
        w.tick((res(Verdict.ERROR),))
        if w.state.phase is not Phase.PROGRESSING:
            break
        assert w.state.step == 0 and "holding" in w.state.reason
    assert w.state.phase is Phase.FAILED
    assert w.state.reason.startswith("metrics unavailable for 1m (errorDeadline 1m)")


def test_inconclusive_never_promotes_and_pauses_after_max_wait() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    for _ in range(30):
        w.advance(15)
        w.tick((res(Verdict.INCONCLUSIVE),))
    assert w.state.phase is Phase.PAUSED and w.state.weight == 50
    assert "paused (onInconclusive: pause)" in w.state.reason
    assert all(d.state.phase is not Phase.PROMOTING for d in w.decisions)
    # Evidence arriving later still promotes.
    w.advance(15)
    w.tick((ok(),))
    assert w.state.phase in (Phase.PROMOTING, Phase.SUCCEEDED)


def test_on_inconclusive_rollback() -> None:
    policy = load_policy_yaml("""
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [50]
analysis: {cadence: 15s, window: 15s, compare: {maxWait: 30s, onInconclusive: rollback}}
""")
    w = World(policy)
    w.tick()
    w.advance(1)
    w.tick()
    for _ in range(10):
        w.advance(15)
        w.tick((res(Verdict.INCONCLUSIVE),))
    assert w.state.phase is Phase.FAILED and "onInconclusive: rollback" in w.state.reason


def test_shared_outage_pauses_and_resumes() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    w.advance(15)
    w.tick((res(Verdict.INCONCLUSIVE, outage=True),))
    assert w.state.phase is Phase.PAUSED and "stable failing too" in w.state.reason
    w.advance(15)
    w.tick((ok(),))
    assert w.state.phase is Phase.PROGRESSING


def test_new_pod_template_restarts_from_the_first_step() -> None:
    w = World()
    w.tick()
    w.advance(1)
    w.tick()
    for _ in range(5):
        w.advance(15)
        w.tick()
    assert w.state.weight == 50
    w.facts = replace(w.facts, revision="r2")
    w.advance(15)
    d = w.tick()
    assert w.decisions[-2].reason == "canary nginx-v2 pod template changed: restarting from step 1"
    assert w.state.weight in (0, 10) and d.target is not None and d.target.traffic.weight <= 10


def test_finished_rollout_stays_put_and_canary_equal_to_stable_is_idle() -> None:
    w = World()
    w.state = RolloutState(phase=Phase.FAILED, canary="nginx-v2", revision="r1", reason="x")
    d = w.tick()
    assert d.target is None and w.state.phase is Phase.FAILED
    w = World(facts=replace(FACTS, stable="nginx-v2"))
    d = w.tick()
    assert w.state.phase is Phase.IDLE and d.target is None
