"""Turns what a tick did into the controller's own metrics (`controller.metrics`), from the decisions'
causes (never from their reason text).

The reconciler reports each tick once: the state before and after, and every decision taken in it. From
that this module derives what a dashboard needs and a single state cannot say: each decision by action,
a promotion or rollback once (when the rollout reaches Succeeded or Failed, not at every transition of
it), rollbacks by reason (the metric, ``error-deadline`` or ``inconclusive``), evaluation errors by
metric (only for evaluations made in this tick), inconclusive outcomes, and how long each step lasted.
"""

from __future__ import annotations

from songbird.analysis.cause import Cause
from songbird.analysis.decision import Action, Decision
from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import Verdict
from songbird.controller.metrics import ControllerMetrics, DecisionAction

_ACTIONS: dict[Action, DecisionAction] = {
    Action.ADVANCE: "advance",
    Action.HOLD: "hold",
    Action.PROMOTE: "promote",
    Action.ROLLBACK: "rollback",
}


def rollback_code(decision: Decision) -> str:
    """A short, bounded label for why a rollout was rolled back: the failing metric's name,
    ``error-deadline``, ``inconclusive``, or ``other``."""
    if decision.cause is Cause.METRIC_FAILED and decision.cause_metric:
        return decision.cause_metric
    if decision.cause is Cause.ERROR_DEADLINE:
        return "error-deadline"
    if decision.cause is Cause.INCONCLUSIVE:
        return "inconclusive"
    return "other"


class TickMetrics:
    def __init__(self, metrics: ControllerMetrics) -> None:
        self.metrics = metrics

    def tick_done(
        self,
        namespace: str,
        name: str,
        before: RolloutState,
        after: RolloutState,
        decisions: tuple[Decision, ...],
        canary_replicas: int | None,
        stable_replicas: int | None,
    ) -> None:
        m = self.metrics
        m.observe_rollout(namespace, name, after, canary_replicas, stable_replicas)
        previous = before
        for decision in decisions:
            state = decision.state
            action = _ACTIONS[decision.action]
            code = rollback_code(decision) if action == "rollback" else decision.action.value
            # A promotion or rollback is several transitions; the outcome counts once, when it is reached.
            m.record_decision(namespace, name, action, code, outcome=state.phase.finished)
            if state.cause is Cause.INCONCLUSIVE and previous.cause is not Cause.INCONCLUSIVE:
                m.record_decision(namespace, name, "inconclusive", "onInconclusive")
            ended = (
                previous.step_started_at is not None
                and previous.step >= 0
                and (
                    state.step != previous.step
                    or (
                        state.phase in (Phase.PROMOTING, Phase.ROLLING_BACK)
                        and previous.phase in (Phase.PROGRESSING, Phase.PAUSED)
                    )
                )
            )
            if ended and previous.step_started_at is not None and state.updated_at is not None:
                m.observe_step_duration(namespace, name, state.updated_at - previous.step_started_at)
            previous = state
        if after.last_evaluated_at != before.last_evaluated_at and after.history:
            for result in after.history[-1].results:
                if result.verdict is Verdict.ERROR:
                    m.record_decision(namespace, name, "error", result.name)
