"""The reconciler's tick against in-memory ports (`tests.support.fakes`): what it writes, in which order,
and what it tells the user, for behaviour that does not depend on Prometheus (verdicts are scripted).

Covers:
- start: the cleanup finalizer is put on the policy first, the canary is scaled up before its route
  exists, and the status is recorded last; a tick that
  only holds writes nothing;
- act before record: in every tick of a whole healthy rollout the status write comes after the route and
  replica writes it describes (a tick that only starts the next step's canary pods early records
  nothing), and each recorded weight is the one already in force; the weights written are the policy's
  steps, each once;
- a weight is raised only onto canary pods that exist and are ready (scale-up, then the weight);
- rollback: canary traffic and header routing are withdrawn before the canary is scaled down, and the
  stable keeps its replicas;
- a crash (the process dies) right after an advance's route write, before its status write: a new
  controller adopts the weight in force as the step started now, so an ERROR evaluation on the recovery
  tick holds that weight instead of writing the recorded, lower one back, and the step's analysis still
  runs a whole interval from its adoption;
- deleting a policy mid-rollout (the API server sets deletionTimestamp and waits for the finalizers):
  canary traffic and header routing are withdrawn first, then the canary Ingress is deleted and the canary
  scaled to 0 with the stable at full size, a PolicyDeleted Event is emitted, and only then is the cleanup
  finalizer removed, another controller's finalizer kept and the resourceVersion sent as a precondition;
  an idle or finished policy carries no finalizer, so its deletion is immediate;
- an API error mid-tick (status write or route write failing) leaves the new step unrecorded, is reported
  as a Warning, and the next tick converges without writing the increase again;
- an invalid policy, a missing Deployment or a hand-made canary Ingress: one Warning Event naming the
  field or object, the status says why, and no traffic or replica change.
"""

from __future__ import annotations

import copy
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from songbird.analysis.cause import Cause
from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import Verdict
from songbird.controller.ports import Kind
from songbird.controller.reconciler import Reconciler, TickResult
from tests.support import scenario
from tests.support.fakes import Crashed, FakeClock, FakeCluster, ScriptedEvaluator, Write, reconciler_over

NS = scenario.NAMESPACE
NAME = "nginx-rollout"
CANARY_INGRESS = "nginx-canary"
P = "nginx.ingress.kubernetes.io"
STATUS = "songbird.dev/status"
T0 = 1_790_000_000.0

# Three stable replicas: the canary needs 1 pod up to 33%, 2 up to 66%, 3 above (proportional, min 1).
POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 20, 40, 60, 80]
interval: 1m
routing:
  header: {name: Region, value: always}
replicas: {mode: proportional, min: 1}
analysis:
  prometheus: {url: "http://prometheus.invalid:9090"}
  cadence: 15s
  window: 30s
  metrics:
    - {name: error-rate, max: 0.02}
    - {name: latency, quantile: 0.99, max: 0.5}
  failureLimit: 2
  errorDeadline: 1m
promotion: {scaleDownDelay: 30s}
"""

Script = list[Verdict | tuple[Verdict, bool]]


def policy_configmap(text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"songbird.dev/policy": "true"}},
        "data": {"policy.yaml": textwrap.dedent(text)},
    }


def describe(write: Write) -> str:
    """One write as a line a person can compare: what changed, not the whole body."""
    head = f"{write.op} {write.kind.value} {write.name}"
    body = write.body
    if write.kind is Kind.CONFIGMAP and "finalizers" in body["metadata"]:
        return f"{head} finalizers={','.join(body['metadata']['finalizers']) or '-'}"
    if write.kind is Kind.CONFIGMAP:
        status = json.loads(body["metadata"]["annotations"][STATUS])
        return f"{head} status={status['phase']} step={status['step'] + 1} weight={status['weight']:g}"
    if write.kind is Kind.DEPLOYMENT and "replicas" in (body.get("spec") or {}):
        return f"{head} replicas={body['spec']['replicas']}"
    if write.kind is Kind.INGRESS and write.op != "delete":
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        parts = []
        if f"{P}/canary-weight" in annotations:
            parts.append(f"weight={annotations[f'{P}/canary-weight']}")
        if f"{P}/canary-by-header" in annotations:
            parts.append("header=" + ("off" if annotations[f"{P}/canary-by-header"] is None else "on"))
        rules = (body.get("spec") or {}).get("rules")
        if write.name == scenario.MAIN_INGRESS and rules:
            parts.append(f"backend={rules[0]['http']['paths'][0]['backend']['service']['name']}")
        return " ".join([head, *parts])
    return head


@dataclass
class Rig:
    """One rollout on a fake cluster, a scripted judge and a clock that moves by hand."""

    cluster: FakeCluster
    clock: FakeClock
    evaluator: ScriptedEvaluator
    reconciler: Reconciler
    ticks: list[list[str]] = field(default_factory=list)  # each tick's writes, described
    last: TickResult | None = None

    def tick(self) -> list[str]:
        before = len(self.cluster.writes)
        self.last = self.reconciler.tick(NS, NAME)
        done = [describe(w) for w in self.cluster.writes[before:]]
        self.ticks.append(done)
        return done

    def run_until(
        self, done: Callable[[Rig], bool], *, ready: bool = True, every: float = 5.0, limit: float = 900.0
    ) -> list[str]:
        """Tick every ``every`` seconds (the kubelet following each tick) until ``done``; the writes."""
        writes: list[str] = []
        end = self.clock.t + limit
        while not done(self):
            assert self.clock.t < end, f"not reached in {limit:g}s; state: {self.state()}"
            self.clock.advance(every)
            writes += self.tick()
            if ready:
                self.cluster.kubelet()
        return writes

    def state(self) -> RolloutState:
        cm = self.cluster.object(Kind.CONFIGMAP, NS, NAME)
        assert cm is not None
        text = (cm["metadata"].get("annotations") or {}).get(STATUS)
        return RolloutState.from_json(text) if text else RolloutState()

    def weight(self) -> str | None:
        ingress = self.cluster.object(Kind.INGRESS, NS, CANARY_INGRESS)
        return None if ingress is None else ingress["metadata"]["annotations"][f"{P}/canary-weight"]

    def replicas(self, deployment: str) -> int:
        obj = self.cluster.object(Kind.DEPLOYMENT, NS, deployment)
        assert obj is not None
        return int(obj["spec"]["replicas"])

    def warnings(self) -> list[str]:
        return [e.message for e in self.cluster.events if e.warning and e.reason == "RolloutBlocked"]


def rig(
    script: Script | None = None, *, policy: str = POLICY, objects: list[dict[str, Any]] | None = None
) -> Rig:
    cluster = FakeCluster([*(scenario.objects() if objects is None else objects), policy_configmap(policy)])
    clock = FakeClock(T0)
    evaluator = ScriptedEvaluator(script=script or [Verdict.PASS])
    reconciler = reconciler_over(cluster, evaluator=evaluator, clock=clock)
    return Rig(cluster=cluster, clock=clock, evaluator=evaluator, reconciler=reconciler)


def at_step(step: int) -> Callable[[Rig], bool]:
    """Until the status records ``step`` (1-based) as Progressing."""
    return lambda r: r.state().phase is Phase.PROGRESSING and r.state().step + 1 == step


def advance_due(r: Rig) -> None:
    """Move the clock to the end of the current step's interval (the next tick advances, verdicts PASS)."""
    started = r.state().step_started_at
    assert started is not None
    r.clock.t = started + 60.0


# -- start and the order of writes ---------------------------------------------------------------------


def test_start_scales_the_canary_before_its_route_exists_and_records_last() -> None:
    r = rig()
    assert r.tick() == [
        "patch ConfigMap nginx-rollout finalizers=songbird.dev/cleanup",  # before the rollout's first change
        "scale Deployment nginx-v2 replicas=1",
        "create Ingress nginx-canary weight=0",
        "patch ConfigMap nginx-rollout status=Initializing step=0 weight=0",
    ]
    assert [e.reason for e in r.cluster.events] == ["RolloutStarted"]
    r.clock.advance(5)
    assert r.tick() == []  # the canary pod is not ready yet: a hold writes nothing
    r.cluster.kubelet()
    r.clock.advance(5)
    assert r.tick() == [
        "patch Ingress nginx-canary weight=10 header=on",
        "patch ConfigMap nginx-rollout status=Progressing step=1 weight=10",
    ]


def test_every_status_write_follows_the_changes_it_records() -> None:
    r = rig()
    r.tick()
    r.run_until(lambda r: r.state().phase.finished)
    assert r.state().phase is Phase.SUCCEEDED
    weights: list[str] = []
    for writes in r.ticks:
        if any(" Ingress " in line for line in writes):
            assert writes[-1].startswith("patch ConfigMap"), writes  # a traffic change is recorded last
        elif writes and not writes[-1].startswith("patch ConfigMap"):
            # Only the next step's canary pods started a cadence early: nothing recorded changed.
            assert all(w.startswith("scale Deployment nginx-v2 replicas=") for w in writes), writes
        in_force = None
        for line in writes:
            if "weight=" in line and "Ingress nginx-canary" in line:
                in_force = line.split("weight=")[1].split()[0]
                weights.append(in_force)
            if in_force is not None and "status=Progressing" in line:
                assert line.endswith(f"weight={in_force}"), writes  # the status names the weight in force
    assert weights == ["0", "10", "20", "40", "60", "80"]  # each step's weight, written once
    # Promotion: the main route switches to the canary, the canary route goes, then the old stable shrinks.
    flat = [line for writes in r.ticks for line in writes]
    switch = flat.index("patch Ingress nginx backend=nginx-v2")
    assert flat[switch + 1] == "delete Ingress nginx-canary"
    assert flat.index("scale Deployment nginx-v1 replicas=0") > switch
    assert [e.reason for e in r.cluster.events][-2:] == ["Promoting", "Promoted"]


def test_weight_rises_only_onto_ready_canary_pods() -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(2))  # 20%: one canary pod; 40% needs two
    assert r.replicas("nginx-v2") == 1
    # The kubelet stops: the second pod is asked for but never becomes ready.
    writes = r.run_until(lambda r: r.clock.t >= (r.state().step_started_at or 0) + 120, ready=False)
    assert "scale Deployment nginx-v2 replicas=2" in writes
    assert r.weight() == "20" and r.state().step + 1 == 2
    assert "scaling canary to 2 replicas before raising the weight to 40%" in r.state().reason
    r.cluster.kubelet()
    r.clock.advance(5)
    assert r.tick() == [
        "patch Ingress nginx-canary weight=40",
        "patch ConfigMap nginx-rollout status=Progressing step=3 weight=40",
    ]


def test_rollback_withdraws_traffic_before_removing_the_canary() -> None:
    r = rig([Verdict.PASS, (Verdict.FAIL, True)])  # the second evaluation is a decisive failure
    r.tick()
    r.run_until(lambda r: r.state().phase.finished)
    assert r.state().phase is Phase.FAILED
    assert r.ticks[-1] == [
        "patch Ingress nginx-canary weight=0 header=off",
        "patch ConfigMap nginx-rollout status=RollingBack step=1 weight=10",
        "delete Ingress nginx-canary",
        "scale Deployment nginx-v2 replicas=0",
        "patch ConfigMap nginx-rollout status=Failed step=1 weight=0",
        "patch ConfigMap nginx-rollout finalizers=-",  # a finished rollout keeps nothing to clean up
    ]
    assert r.replicas("nginx-v1") == 3  # the stable was never shrunk
    assert r.state().reason.startswith("error-rate: scripted FAIL")
    rollback = [(e.reason, e.warning) for e in r.cluster.events][-2:]
    assert rollback == [("RollingBack", True), ("RolledBack", True)]


def restarted(r: Rig, script: Script) -> Rig:
    """A new controller process on the same cluster and clock: nothing in memory, a new judge."""
    fresh = rig(script)
    fresh.cluster, fresh.clock = r.cluster, r.clock
    fresh.reconciler = reconciler_over(r.cluster, evaluator=fresh.evaluator, clock=r.clock)
    return fresh


def canary_weights(cluster: FakeCluster) -> list[int]:
    """Every canary weight the controller wrote, in order."""
    return [
        int(w.body["metadata"]["annotations"][f"{P}/canary-weight"])
        for w in cluster.writes
        if w.kind is Kind.INGRESS
        and w.name == CANARY_INGRESS
        and f"{P}/canary-weight" in ((w.body.get("metadata") or {}).get("annotations") or {})
    ]


def test_crash_between_route_and_status_write_never_lowers_the_weight() -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(1))
    advance_due(r)
    r.cluster.crash_after(1)  # the process dies right after the advance's route write (10% -> 20%)
    with pytest.raises(Crashed):
        r.tick()
    assert (r.state().step + 1, r.state().weight, r.weight()) == (1, 10, "20")  # in force, not recorded

    again = restarted(r, [Verdict.ERROR, Verdict.PASS])  # the recovery tick's evaluation: no answer
    again.clock.advance(5)
    adopted_at = again.clock.t
    assert again.tick() == ["patch ConfigMap nginx-rollout status=Progressing step=2 weight=20"]
    assert again.evaluator.evaluations == 1 and r.weight() == "20"
    state = again.state()
    assert (state.cause, state.step_started_at) == (Cause.STEP_ADOPTED, adopted_at)
    assert state.history[-1].step == 0  # the ERROR judged the recorded step, not the adopted one
    # Step 2's analysis runs a whole interval from its adoption: 40% comes no earlier.
    again.run_until(at_step(3))
    assert again.clock.t >= adopted_at + 60
    weights = canary_weights(r.cluster)
    assert weights == [0, 10, 20, 40] and weights == sorted(weights)


# -- deleting a policy ------------------------------------------------------------------------------------


def delete_policy(r: Rig) -> None:
    """What the API server does on ``kubectl delete`` of an object with finalizers: it only sets
    ``metadata.deletionTimestamp``, and removes the object once its finalizers are gone."""
    cm = r.cluster.object(Kind.CONFIGMAP, NS, NAME)
    assert cm is not None
    if not cm["metadata"].get("finalizers"):
        r.cluster.remove(Kind.CONFIGMAP, NS, NAME)
        return
    cm["metadata"]["deletionTimestamp"] = "2026-09-20T10:00:00Z"
    r.cluster.put(cm)


def finalizers(r: Rig) -> list[str]:
    cm = r.cluster.object(Kind.CONFIGMAP, NS, NAME)
    return [] if cm is None else list(cm["metadata"].get("finalizers", []))


def test_deleting_a_policy_mid_rollout_withdraws_the_canary_then_lets_it_go() -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(2))
    assert finalizers(r) == ["songbird.dev/cleanup"]
    cm = r.cluster.object(Kind.CONFIGMAP, NS, NAME)
    assert cm is not None
    cm["metadata"]["finalizers"].insert(0, "example.com/backup")  # another controller's, kept
    r.cluster.put(cm)
    delete_policy(r)
    version = r.cluster.object(Kind.CONFIGMAP, NS, NAME)["metadata"]["resourceVersion"]  # type: ignore[index]
    r.clock.advance(5)
    assert r.tick() == [
        "patch Ingress nginx-canary weight=0 header=off",
        "patch ConfigMap nginx-rollout status=RollingBack step=2 weight=20",
        "delete Ingress nginx-canary",
        "scale Deployment nginx-v2 replicas=0",
        "patch ConfigMap nginx-rollout status=Failed step=2 weight=0",
        "patch ConfigMap nginx-rollout finalizers=example.com/backup",
    ]
    last = r.cluster.writes[-1].body["metadata"]
    assert last["resourceVersion"] != version  # the version read after the status writes, not a stale one
    assert (r.replicas("nginx-v1"), r.replicas("nginx-v2")) == (3, 0)
    assert r.state().reason == "policy deleted: withdrawing the canary"
    assert [(e.reason, e.warning) for e in r.cluster.events][-3:] == [
        ("RollingBack", True),
        ("RolledBack", True),
        ("PolicyDeleted", False),
    ]
    assert (
        r.cluster.events[-1].message
        == "policy deleted: canary nginx-v2 withdrawn: no canary traffic or route, nginx-v2 scaled to 0"
    )
    assert finalizers(r) == ["example.com/backup"]  # the API server now waits for that one only


def test_a_finished_or_idle_policy_carries_no_finalizer_and_goes_at_once() -> None:
    r = rig()
    r.tick()
    r.run_until(lambda r: r.state().phase.finished)
    assert r.state().phase is Phase.SUCCEEDED and finalizers(r) == []
    delete_policy(r)
    assert r.cluster.object(Kind.CONFIGMAP, NS, NAME) is None
    r.clock.advance(5)
    assert r.tick() == [] and r.last is not None and r.last.error == f"ConfigMap {NS}/{NAME} is gone"


class RacingCluster(FakeCluster):
    """A user edits the policy ConfigMap right after the controller's ``race_after``-th read of it."""

    race_after = 0

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        obj = super().get(kind, namespace, name)
        if kind is Kind.CONFIGMAP and self.race_after > 0:
            self.race_after -= 1
            if self.race_after == 0 and obj is not None:
                edited = copy.deepcopy(obj)
                edited["metadata"].setdefault("labels", {})["team"] = "checkout"
                self.put(edited)
        return obj


def test_finalizer_removal_racing_an_edit_is_refused_and_done_next_tick() -> None:
    r = rig()
    racing = RacingCluster()
    for kind in Kind:
        for obj in r.cluster.list_objects(kind, NS):
            racing.put(obj)
    r = restarted(replace(r, cluster=racing), [Verdict.PASS])
    r.tick()
    r.run_until(at_step(1))
    delete_policy(r)
    racing.race_after = 2  # the tick's first read, then the read the finalizer patch is computed from
    r.clock.advance(5)
    assert r.tick()[-1] == "patch ConfigMap nginx-rollout status=Failed step=1 weight=0"
    assert finalizers(r) == ["songbird.dev/cleanup"]  # 409: a merge patch never overwrites a newer list
    assert r.last is not None and r.last.error is None
    r.clock.advance(5)
    assert r.tick() == ["patch ConfigMap nginx-rollout finalizers=-"]
    kept = r.cluster.object(Kind.CONFIGMAP, NS, NAME)
    assert finalizers(r) == [] and kept is not None and kept["metadata"]["labels"]["team"] == "checkout"


# -- API errors ------------------------------------------------------------------------------------------


def test_failed_status_write_after_an_increase_is_not_repeated() -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(1))
    advance_due(r)
    r.cluster.fail("patch", Kind.CONFIGMAP, NAME)  # the status write of the advance fails once
    writes = r.tick()
    assert writes == [
        "patch Ingress nginx-canary weight=20",
        "patch ConfigMap nginx-rollout status=Progressing step=1 weight=10",  # the error, at the old step
    ]
    assert r.last is not None and r.last.error is not None and "connection reset" in r.last.error
    assert (r.state().step + 1, r.state().weight, r.weight()) == (1, 10, "20")  # in force, not recorded
    assert "Kubernetes API" in r.state().reason and "connection reset" in r.warnings()[-1]
    r.clock.advance(5)
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Progressing step=2 weight=20"]
    r.run_until(at_step(3))
    weights = [line for writes in r.ticks for line in writes if line.startswith("patch Ingress nginx-canary")]
    assert weights == [
        "patch Ingress nginx-canary weight=10 header=on",
        "patch Ingress nginx-canary weight=20",
        "patch Ingress nginx-canary weight=40",
    ]


def test_failed_route_write_leaves_the_step_unrecorded_until_it_succeeds() -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(1))
    advance_due(r)
    r.cluster.fail("patch", Kind.INGRESS, CANARY_INGRESS)
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Progressing step=1 weight=10"]
    assert (r.state().step + 1, r.weight()) == (1, "10")
    assert len(r.warnings()) == 1 and f"Ingress {CANARY_INGRESS}" in r.warnings()[0]
    r.clock.advance(5)
    assert r.tick() == [
        "patch Ingress nginx-canary weight=20",
        "patch ConfigMap nginx-rollout status=Progressing step=2 weight=20",
    ]


# -- bad input ---------------------------------------------------------------------------------------------


def test_invalid_policy_is_a_warning_and_traffic_stays() -> None:
    r = rig()
    r.tick()
    r.run_until(at_step(1))
    cm = r.cluster.object(Kind.CONFIGMAP, NS, NAME)
    assert cm is not None
    cm["data"]["policy.yaml"] = textwrap.dedent(POLICY).replace(
        "steps: [10, 20, 40, 60, 80]", "steps: [10, 5]"
    )
    r.cluster.put(cm)  # a user edits the policy mid-rollout; the status annotation stays
    r.clock.advance(5)
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Progressing step=1 weight=10"]
    assert r.warnings() == [
        f"ConfigMap {NS}/{NAME}: invalid policy: steps[1]: steps must be strictly increasing; 5 follows 10"
    ]
    assert r.state().reason == r.warnings()[0]
    writes = r.run_until(lambda r: r.clock.t >= T0 + 300, every=15)
    assert writes == [] and len(r.warnings()) == 1  # reported once, nothing touched while it stays invalid
    assert (r.weight(), r.replicas("nginx-v2"), r.replicas("nginx-v1")) == ("10", 1, 3)


def test_missing_canary_deployment_is_named_and_nothing_changes() -> None:
    objects = [
        o for o in scenario.objects() if o["metadata"]["name"] != "nginx-v2" or o["kind"] != "Deployment"
    ]
    r = rig(objects=objects)
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Idle step=0 weight=0"]
    assert len(r.warnings()) == 1
    assert f"canary.deployment: Deployment {NS}/nginx-v2 not found" in r.warnings()[0]
    assert r.cluster.object(Kind.INGRESS, NS, CANARY_INGRESS) is None
    assert r.evaluator.evaluations == 0


def test_hand_made_canary_ingress_is_refused_and_left_alone() -> None:
    by_hand = scenario.main_ingress(backend="nginx-v2", namespace=NS)
    by_hand["metadata"]["name"] = "nginx-by-hand"
    by_hand["metadata"]["annotations"] = {f"{P}/canary": "true", f"{P}/canary-weight": "10"}
    r = rig(objects=[*scenario.objects(), by_hand])
    assert r.tick() == ["patch ConfigMap nginx-rollout status=Idle step=0 weight=0"]
    assert len(r.warnings()) == 1
    assert f"Ingress {NS}/nginx-by-hand already carries a canary for foo.example.com/" in r.warnings()[0]
    kept = r.cluster.object(Kind.INGRESS, NS, "nginx-by-hand")
    assert kept is not None and kept["metadata"]["annotations"] == by_hand["metadata"]["annotations"]
    assert r.replicas("nginx-v2") == 0
