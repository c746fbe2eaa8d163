"""The I/O between the transitions of one tick, handed to the pure `analysis.step.step` as callbacks.

`analysis.step.step` decides; `Transitions` does what each decision needs from the cluster and Prometheus:
judge the metrics (`Evaluator.evaluate`), read the forecast and the stable's history when a rollout starts,
and for each decision act, then record, then (after an ``again``) read the cluster afresh for the next one.

Invariants it keeps, which make a crash at any point safe to resume from:
- act before record: the status annotation describes traffic that is already in force, so a restarted
  controller never repeats a weight increase it did not record (it re-applies the same weight: a no-op);
- the cleanup finalizer is put on the policy before the rollout's first change to the cluster
  (`controller.deletion`), never while the policy is being deleted;
- a decision marked ``again`` (rollback, promotion) is recorded before the next transition is taken, and
  the next one is decided from the cluster as read after it;
- the verdicts of one evaluation are logged with the first decision recorded after them only;
- ``done`` and ``state`` hold only what was acted on and recorded: when a call fails, the tick reports the
  last recorded state and the failed transition is decided again next tick.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import structlog

from songbird.analysis.decision import ACTIVE, Decision, Facts
from songbird.analysis.plan import Target
from songbird.analysis.state import Evidence, RolloutState
from songbird.analysis.verdict import MetricResult
from songbird.config.policy import Policy
from songbird.controller.deletion import set_finalizer
from songbird.controller.facts import Observed, read_facts
from songbird.controller.ports import ClusterReader, ClusterWriter, Obj
from songbird.controller.routers.base import Router

log = structlog.get_logger("songbird")


class Evaluator(Protocol):
    def evaluate(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> tuple[tuple[MetricResult, ...], Evidence]:
        """Verdicts for every metric of the policy, and the judge's updated evidence sums."""
        ...

    def forecast(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> str:
        """Before a rollout: how long promotion evidence should take at the observed traffic."""
        ...

    def history(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> Evidence:
        """Before a rollout: the stable's counts over the last hours, as evidence entries for the judge."""
        ...


class Acting(Protocol):
    """The reconciler's side of a tick: its edges, and how it acts on and records one decision."""

    reader: ClusterReader
    writer: ClusterWriter
    router: Router
    evaluator: Evaluator

    def act(
        self, policy: Policy, namespace: str, name: str, observed: Observed, target: Target | None
    ) -> None:
        """Make ``target`` so: scale-ups, then the route, then scale-downs."""
        ...

    def record(
        self,
        configmap: Obj,
        namespace: str,
        name: str,
        before: RolloutState,
        decision: Decision,
        *,
        evaluated: bool,
    ) -> None:
        """Write the decision's state as the status (when it must be) and say it in logs and Events."""
        ...


class Transitions:
    """One tick's callbacks for `analysis.step.step`, and what they did (``done``, ``state``)."""

    def __init__(
        self,
        reconciler: Acting,
        configmap: Obj,
        namespace: str,
        name: str,
        policy: Policy,
        observed: Observed,
        state: RolloutState,
        now: float,
    ) -> None:
        self.r = reconciler
        self.configmap = configmap
        self.namespace = namespace
        self.name = name
        self.policy = policy
        self.observed = observed
        self.state = state  # the last state recorded (or read at the tick's start)
        self.now = now
        self.evaluated = False  # the metrics were judged this tick
        self.reported = False  # and the decision that took their verdicts was recorded
        self.done: tuple[Decision, ...] = ()  # decisions acted on and recorded, in order

    def verdicts(self, state: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
        self.evaluated = True
        self.reported = False
        return self.r.evaluator.evaluate(self.policy, self.namespace, state, self.now)

    def started(self, state: RolloutState) -> RolloutState:
        said = self.r.evaluator.forecast(self.policy, self.namespace, state, self.now)
        log.info("forecast", rollout=f"{self.namespace}/{self.name}", forecast=said)
        seen = self.r.evaluator.history(self.policy, self.namespace, state, self.now)
        return replace(state, forecast=said, evidence={**state.evidence, **seen})

    def acted(self, decision: Decision, facts: Facts) -> Facts:
        r = self.r
        if decision.target is not None and decision.state.phase in ACTIVE and not facts.deleting:
            # Before the rollout's first change: a later deletion of the policy waits for its cleanup.
            set_finalizer(r.reader, r.writer, self.namespace, self.name, present=True)
        r.act(self.policy, self.namespace, self.name, self.observed, decision.target)
        evaluated = self.evaluated and not self.reported  # only the first decision after them saw them
        self.reported = self.evaluated
        r.record(self.configmap, self.namespace, self.name, self.state, decision, evaluated=evaluated)
        self.done = (*self.done, decision)
        self.state = decision.state
        if decision.again:
            view = r.router.read(r.reader, self.namespace, self.policy, self.name)
            self.observed = read_facts(
                r.reader,
                view,
                self.namespace,
                self.policy,
                self.state,
                deleting=facts.deleting,
                rollout=self.name,
            )
        return self.observed.facts


__all__ = ["Acting", "Evaluator", "Transitions"]
