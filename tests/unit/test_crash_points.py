"""Crash injection at every action point of a rollout, in process: the controller dies right after its k-th
write (the write took effect, nothing after it happened) for every k of a whole rollout, and a new
controller (nothing in memory, state only from the cluster) carries the rollout to its end.

For a healthy rollout (10, 20, 40 %, promotion, scale-down) and for one whose canary fails at
20 % (rollback), with the crash after each write (the finalizer, each scale, each route write, each
status write, the promotion's switch and the rollback's two transitions):
The first evaluation after each crash answers ERROR, so the recovery tick holds (a PASS would advance and
hide a weight written back down). Checked:
- the canary's share of traffic (its weight, 100 once the main route serves it) never decreases except by
  a rollback, which takes it to 0 and never raises it again;
- no step's analysis is skipped: every weight the canary is raised from was in force for at least one
  evaluation, and the main route switches only after an all-PASS evaluation at the last step's weight;
- the rollout ends as it would have without the crash: Succeeded with the main route on the canary and
  the old stable at 0, or Failed with no canary route, the canary at 0 and the stable at full size; and
  either way without the cleanup finalizer on the policy.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest

from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.policy import Policy
from songbird.controller.keys import CLEANUP_FINALIZER
from songbird.controller.ports import Kind
from songbird.controller.reconciler import Reconciler
from songbird.controller.routers import make_router
from tests.support import scenario
from tests.support.fakes import Crashed, FakeClock, FakeCluster, Write, verdicts

NS = scenario.NAMESPACE
NAME = "nginx-rollout"
P = "nginx.ingress.kubernetes.io"
T0 = 1_790_000_000.0
POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 20, 40]
interval: 30s
routing:
  header: {name: Region, value: always}
replicas: {mode: proportional, min: 1}
analysis:
  prometheus: {url: "http://prometheus.invalid:9090"}
  cadence: 10s
  window: 10s
  metrics:
    - {name: error-rate, max: 0.02}
  failureLimit: 1
  errorDeadline: 1m
promotion: {scaleDownDelay: 20s}
"""


def share(cluster: FakeCluster) -> float:
    """The canary's share of plain traffic on the cluster: 100 once the main route serves it."""
    main = cluster.object(Kind.INGRESS, NS, scenario.MAIN_INGRESS)
    assert main is not None
    if main["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "nginx-v2":
        return 100.0
    canary = cluster.object(Kind.INGRESS, NS, "nginx-canary")
    return 0.0 if canary is None else float(canary["metadata"]["annotations"][f"{P}/canary-weight"])


@dataclass(frozen=True, kw_only=True)
class Entry:
    """A write (and the share in force after it) or an evaluation (and the share it judged)."""

    share: float
    write: Write | None = None
    verdict: Verdict | None = None


class LoggedCluster(FakeCluster):
    """A fake cluster that logs the canary's share after every write, in one log with the evaluations."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.log: list[Entry] = []
        super().__init__(objects)

    def _written(self, write: Write) -> None:
        self.log.append(Entry(share=share(self), write=write))
        super()._written(write)


@dataclass(kw_only=True)
class Judge:
    """Verdicts from the traffic in force: PASS, or a decisive FAIL from ``fails_at`` percent up; ERROR for
    the first evaluation of a controller that started after a crash (the recovery tick holds)."""

    cluster: LoggedCluster
    fails_at: float | None
    recovering: bool = False

    def evaluate(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> tuple[tuple[MetricResult, ...], dict[str, dict[str, float]]]:
        now_share = share(self.cluster)
        bad = self.fails_at is not None and 0 < now_share < 100 and now_share >= self.fails_at
        verdict = Verdict.ERROR if self.recovering else Verdict.FAIL if bad else Verdict.PASS
        self.recovering = False
        self.cluster.log.append(Entry(share=now_share, verdict=verdict))
        return verdicts(policy, verdict, decisive=bad), dict(state.evidence)

    def forecast(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> str:
        return ""

    def history(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> dict[str, dict[str, float]]:
        return {}


def configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"songbird.dev/policy": "true"}},
        "data": {"policy.yaml": textwrap.dedent(POLICY)},
    }


def status(cluster: FakeCluster) -> RolloutState:
    cm = cluster.object(Kind.CONFIGMAP, NS, NAME)
    assert cm is not None
    text = (cm["metadata"].get("annotations") or {}).get("songbird.dev/status")
    return RolloutState.from_json(text) if text else RolloutState()


def run(fails_at: float | None, crash_after: int | None) -> tuple[LoggedCluster, int]:
    """The whole rollout, the controller dying after its ``crash_after``-th write; the cluster and the
    number of writes."""
    cluster = LoggedCluster([*scenario.objects(), configmap()])
    clock = FakeClock(T0)

    def controller(recovering: bool) -> Reconciler:  # a new process: nothing carried over but the cluster
        return Reconciler(
            reader=cluster,
            writer=cluster,
            recorder=cluster,
            router=make_router("ingress-nginx"),
            evaluator=Judge(cluster=cluster, fails_at=fails_at, recovering=recovering),
            clock=clock,
        )

    reconciler = controller(False)
    cluster.crash_after(crash_after)
    for _ in range(200):
        clock.advance(5)
        try:
            reconciler.tick(NS, NAME)
        except Crashed:
            reconciler = controller(True)
        cluster.kubelet()
        cm = cluster.object(Kind.CONFIGMAP, NS, NAME)
        assert cm is not None
        if status(cluster).phase.finished and CLEANUP_FINALIZER not in cm["metadata"].get("finalizers", []):
            break
    return cluster, len(cluster.writes)


def check(cluster: LoggedCluster, *, fails: bool) -> None:
    shares = [e.share for e in cluster.log if e.write is not None]
    for before, after in itertools.pairwise(shares):
        if after < before:
            assert fails and after == 0, shares  # only a rollback lowers it, and to 0
    if fails and 0.0 in shares[1:]:
        withdrawn = max(i for i, s in enumerate(shares) if s > 0) + 1
        assert all(s == 0 for s in shares[withdrawn:]), shares  # never raised again after the rollback
    # Every raise from a step's weight comes after an evaluation at that weight, taken once it was in force.
    in_force: float = 0.0
    judged = False
    passed = False
    for entry in cluster.log:
        if entry.verdict is not None:
            if entry.share == in_force:
                judged, passed = True, entry.verdict is Verdict.PASS
            continue
        if entry.share > in_force > 0:
            assert judged, f"raised from {in_force:g}% to {entry.share:g}% without an evaluation at it"
            if entry.share == 100:
                assert passed and in_force == 40, "promoted without a PASS at the last step's weight"
        if entry.share != in_force:
            in_force, judged, passed = entry.share, False, False
    state = status(cluster)
    cm = cluster.object(Kind.CONFIGMAP, NS, NAME)
    canary = cluster.object(Kind.DEPLOYMENT, NS, "nginx-v2")
    stable = cluster.object(Kind.DEPLOYMENT, NS, "nginx-v1")
    assert cm is not None and canary is not None and stable is not None
    assert CLEANUP_FINALIZER not in cm["metadata"].get("finalizers", [])
    assert cluster.object(Kind.INGRESS, NS, "nginx-canary") is None  # no canary route either way
    if fails:
        assert state.phase is Phase.FAILED and share(cluster) == 0
        assert (canary["spec"]["replicas"], stable["spec"]["replicas"]) == (0, 3)
    else:
        assert state.phase is Phase.SUCCEEDED and share(cluster) == 100
        assert (canary["spec"]["replicas"], stable["spec"]["replicas"]) == (3, 0)
        assert sorted(set(shares)) == [0, 10, 20, 40, 100]  # every step taken


HEALTHY_WRITES = run(None, None)[1]
FAILING_WRITES = run(20, None)[1]


def test_the_runs_without_a_crash_keep_the_invariants() -> None:
    for fails_at in (None, 20.0):
        cluster, _ = run(fails_at, None)
        check(cluster, fails=fails_at is not None)
    # The crashes below fall after every kind of write a rollout makes.
    kinds = {
        (w.op, w.kind.value, w.name, next(iter(w.body.get("metadata") or {}), "spec" if w.body else ""))
        for fails_at in (None, 20.0)
        for w in run(fails_at, None)[0].writes
    }
    assert kinds == {
        ("patch", "ConfigMap", NAME, "finalizers"),  # added, then removed
        ("patch", "ConfigMap", NAME, "annotations"),  # the status
        ("scale", "Deployment", "nginx-v2", "spec"),  # canary scale-up, scale-down
        ("scale", "Deployment", "nginx-v1", "spec"),  # old stable scale-down
        ("create", "Ingress", "nginx-canary", "name"),
        ("patch", "Ingress", "nginx-canary", "annotations"),  # each weight, the withdrawal
        ("patch", "Ingress", scenario.MAIN_INGRESS, "resourceVersion"),  # the promotion's switch
        ("delete", "Ingress", "nginx-canary", ""),
    }


@pytest.mark.parametrize("k", range(1, HEALTHY_WRITES + 1))
def test_crash_after_each_write_of_a_healthy_rollout(k: int) -> None:
    cluster, _ = run(None, k)
    check(cluster, fails=False)


@pytest.mark.parametrize("k", range(1, FAILING_WRITES + 1))
def test_crash_after_each_write_of_a_rollback(k: int) -> None:
    cluster, _ = run(20, k)
    check(cluster, fails=True)
