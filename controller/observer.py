"""Turns what a tick did into the controller's own metrics (`controller.metrics`).

The reconciler reports each tick once: the state before and after, and every decision taken in it. From
that this module derives what a dashboard needs and a single state cannot say: each decision by action,
a promotion or rollback once (when the rollout reaches Succeeded or Failed, not at every transition of
it), rollbacks by reason (the metric, ``error-deadline`` or ``inconclusive``), evaluation errors by
metric (only for evaluations made in this tick), inconclusive outcomes, and how long each step lasted.
"""

from __future__ import annotations

import re

from songbird.analysis.decision import Action, Decision
from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import Verdict
from songbird.config.fields import METRIC_NAME_PATTERN
from songbird.controller.metrics import ControllerMetrics, DecisionAction

_ACTIONS: dict[Action, DecisionAction] = {
    Action.ADVANCE: "advance",
    Action.HOLD: "hold",
    Action.PROMOTE: "promote",
    Action.ROLLBACK: "rollback",
}


def rollback_code(reason: str) -> str:
    """A short, bounded label for why a rollout was rolled back."""
    if reason.startswith("metrics unavailable"):
        return "error-deadline"
    if "onInconclusive: rollback" in reason:
        return "inconclusive"
    head = reason.split(":", 1)[0]
    return head if ":" in reason and re.fullmatch(METRIC_NAME_PATTERN, head) else "other"


class MetricsObserver:
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
            code = rollback_code(decision.reason) if action == "rollback" else decision.action.value
            # A promotion or rollback is several transitions; the outcome counts once, when it is reached.
            m.record_decision(namespace, name, action, code, outcome=state.phase.finished)
            inconclusive = "onInconclusive" in state.reason and "onInconclusive" not in previous.reason
            if inconclusive:
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
