"""When the reconciler writes the status (`controller.status`), counted on the fake cluster's writes.

Covers:
- an unchanged evaluation (same verdicts, only the judge's sums and the time move on) writes nothing, while
  the next tick still judges from the newer sums kept in memory;
- a change of verdict is written at once, with the new verdicts;
- after ``CHECKPOINT`` seconds of unchanged evaluations the status is written anyway, with the newer sums;
- a restart between unchanged evaluations resumes from the recorded status: the first evaluation after it
  reaches back to the last recorded evaluation (its window covers the unrecorded ones, counted once), no
  weight is written twice, and the rollout still promotes with every step analysed;
- a status rewritten by someone else is read again, not shadowed by the memory.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from songbird.analysis.state import STATUS_ANNOTATION, Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.policy import Policy
from songbird.controller.ports import Kind
from songbird.controller.reconciler import Reconciler
from songbird.controller.routers import make_router
from songbird.controller.status import CHECKPOINT
from tests.support import scenario
from tests.support.fakes import FakeClock, FakeCluster, ScriptedEvaluator, Write

NS = scenario.NAMESPACE
NAME = "nginx-rollout"
T0 = 1_790_000_000.0
CADENCE = 15.0

POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [10, 50]
interval: 10m
replicas: {mode: proportional, min: 1}
analysis:
  prometheus: {url: "http://prometheus.invalid:9090"}
  cadence: 15s
  window: 30s
  metrics:
    - {name: error-rate, max: 0.02}
    - {name: latency, quantile: 0.99, max: 0.5}
promotion: {scaleDownDelay: 30s}
"""


@dataclass(kw_only=True)
class CountingEvaluator(ScriptedEvaluator):
    """A scripted judge whose evidence grows by one window per evaluation, and which remembers the
    evaluation time of the state it was asked to judge (where its window would begin)."""

    seen_from: list[float | None] = field(default_factory=list)
    windows_seen: list[float] = field(default_factory=list)
    judged_at: list[float] = field(default_factory=list)

    def evaluate(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> tuple[tuple[MetricResult, ...], dict[str, dict[str, float]]]:
        results, _ = super().evaluate(policy, namespace, state, now)
        self.seen_from.append(state.last_evaluated_at)
        windows = state.evidence.get("error-rate", {}).get("windows", 0.0)
        self.windows_seen.append(windows)
        self.judged_at.append(now)
        return results, {"error-rate": {"windows": windows + 1.0}}


def configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"songbird.dev/policy": "true"}},
        "data": {"policy.yaml": textwrap.dedent(POLICY)},
    }


class Rig:
    def __init__(self, script: list[Verdict | tuple[Verdict, bool]]) -> None:
        self.cluster = FakeCluster([*scenario.objects(), configmap()])
        self.clock = FakeClock(T0)
        self.evaluator = CountingEvaluator(script=script)
        self.reconciler = self.restart()

    def restart(self) -> Reconciler:
        """A new controller process over the same cluster: nothing kept in memory."""
        self.reconciler = Reconciler(
            reader=self.cluster,
            writer=self.cluster,
            recorder=self.cluster,
            router=make_router("ingress-nginx"),
            evaluator=self.evaluator,
            clock=self.clock,
        )
        return self.reconciler

    def tick(self) -> list[Write]:
        before = len(self.cluster.writes)
        self.reconciler.tick(NS, NAME)
        self.cluster.kubelet()
        return self.cluster.writes[before:]

    def run(self, seconds: float) -> list[Write]:
        writes: list[Write] = []
        end = self.clock.t + seconds
        while self.clock.t < end:
            self.clock.advance(CADENCE)
            writes += self.tick()
        return writes

    def state(self) -> RolloutState:
        cm = self.cluster.object(Kind.CONFIGMAP, NS, NAME)
        assert cm is not None
        text = (cm["metadata"].get("annotations") or {}).get(STATUS_ANNOTATION)
        return RolloutState.from_json(text) if text else RolloutState()

    def start(self) -> None:
        """Ticks until the first step has its first evaluation recorded."""
        for _ in range(10):
            self.tick()
            self.clock.advance(CADENCE)
            state = self.state()
            if state.phase is Phase.PROGRESSING and state.history:
                return
        raise AssertionError(f"the first step was not evaluated: {self.state()}")


def status_writes(writes: list[Write]) -> list[dict[str, Any]]:
    return [
        json.loads(w.body["metadata"]["annotations"][STATUS_ANNOTATION])
        for w in writes
        if w.kind is Kind.CONFIGMAP
        and STATUS_ANNOTATION in (w.body.get("metadata") or {}).get("annotations", {})
    ]


def weights(writes: list[Write]) -> list[str]:
    return [
        w.body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
        for w in writes
        if w.kind is Kind.INGRESS
        and "nginx.ingress.kubernetes.io/canary-weight"
        in ((w.body.get("metadata") or {}).get("annotations") or {})
    ]


def test_unchanged_evaluations_write_nothing_but_are_judged_on_newer_sums() -> None:
    r = Rig([Verdict.INCONCLUSIVE])
    r.start()
    recorded = r.state()
    before = r.evaluator.evaluations
    writes = r.run(CHECKPOINT - 2 * CADENCE)
    done = r.evaluator.evaluations - before
    assert done >= 15  # evaluations happened
    assert writes == []  # and none was written
    assert r.state() == recorded
    # Each was judged from the one before it (its sums and its time), not from the recorded status.
    seen, times = r.evaluator.windows_seen[before:], r.evaluator.seen_from[before:]
    assert seen == [recorded.evidence["error-rate"]["windows"] + i for i in range(done)]
    assert times == [recorded.last_evaluated_at, *r.evaluator.judged_at[before:-1]]


def test_a_change_of_verdict_is_written_at_once() -> None:
    r = Rig([Verdict.INCONCLUSIVE] * 6 + [Verdict.ERROR])
    r.start()
    writes: list[Write] = []
    while r.evaluator.evaluations < 7:
        r.clock.advance(CADENCE)
        writes += r.tick()
    [record] = status_writes(writes)
    assert [x["verdict"] for x in record["history"][-1]["results"]] == ["ERROR", "ERROR"]
    assert record["error_since"] == r.clock.t
    assert r.run(4 * CADENCE) == []  # the same ERROR again: no write


def test_unchanged_evaluations_are_checkpointed() -> None:
    r = Rig([Verdict.INCONCLUSIVE])
    r.start()
    recorded = r.state()
    writes = r.run(CHECKPOINT + CADENCE)
    [record] = status_writes(writes)
    assert record["last_evaluated_at"] - recorded.last_evaluated_at >= CHECKPOINT
    assert record["evidence"]["error-rate"]["windows"] > recorded.evidence["error-rate"]["windows"] + 10


def test_restart_between_unchanged_evaluations_resumes_and_promotes() -> None:
    r = Rig([Verdict.INCONCLUSIVE] * 8 + [Verdict.PASS])
    r.start()
    recorded = r.state()
    assert r.run(5 * CADENCE) == []
    r.restart()
    r.evaluator.seen_from.clear()
    writes = r.run(CADENCE)
    # The first evaluation after the restart reaches back to the last recorded one: the windows of the
    # unrecorded evaluations are judged again, in one window, not lost and not counted twice.
    assert r.evaluator.seen_from == [recorded.last_evaluated_at]
    assert weights(writes) == []
    writes += r.run(1800)
    assert r.state().phase is Phase.SUCCEEDED
    assert weights(writes) == ["50"]  # the second step once; the first was never written again
    history = r.state().history
    assert any(e.step == 1 and all(x.verdict is Verdict.PASS for x in e.results) for e in history)


def test_status_rewritten_by_someone_else_is_read_again() -> None:
    r = Rig([Verdict.INCONCLUSIVE])
    r.start()
    r.run(3 * CADENCE)
    r.cluster.patch(Kind.CONFIGMAP, NS, NAME, {"metadata": {"annotations": {STATUS_ANNOTATION: None}}})
    r.clock.advance(CADENCE)
    r.tick()
    state = r.state()
    assert state.phase is Phase.INITIALIZING or state.phase is Phase.PROGRESSING
    assert state.step <= 0 and state.started_at == r.clock.t
