"""What an operator's command does to a rollout, as a pure function: a `Decision` of the state machine.

The command comes from the ``songbird.dev/command`` annotation of the policy ConfigMap (`config.command`);
the controller reads it and who wrote it (`controller.commands`) and `execute` decides, before the tick's
other decisions (`analysis.step`). By phase:

- ``promote`` (Initializing, Progressing, Paused): promotes now, analysis notwithstanding, said loudly;
- ``promote --step`` (Progressing, Paused): the next step now; when its canary pods are not ready yet,
  the canary is scaled up first and the next weight follows as soon as they are (``step_requested``,
  `requested_step`), as a step that ends on time does (at the last step: promotes);
- ``abort`` (Initializing, Progressing, Paused, and Promoting until the main route switched): rolls back
  now, "aborted by <who>";
- ``pause`` (Progressing, Paused, when not paused already): holds the weight in force (`analysis.pause`);
- ``resume`` (while paused by a command or a pause step): ends the pause;
- ``retry`` (Failed): starts the rollout again from the first step.

Anything else is refused: the state is unchanged but for ``last_command`` (result "refused" and why), and
no object is touched. Invariants: the decision's state always records the request as ``last_command``
(the caller never executes a request whose id equals the recorded one, so a command runs at most once,
across restarts and leaders, since the status is on the cluster); a command never raises the weight onto
canary pods that are not ready; the policy and the annotation are never changed. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from songbird.analysis.cause import Cause
from songbird.analysis.decision import (
    Action,
    Decision,
    Facts,
    start_promotion,
    start_rollback,
    start_step,
    summarize,
)
from songbird.analysis.pause import unpaused
from songbird.analysis.plan import Target, TrafficSplit, canary_replicas
from songbird.analysis.state import COMMAND_MESSAGE_CHARS, LastCommand, Phase, RolloutState
from songbird.config.command import Command
from songbird.config.policy import Policy
from songbird.config.text import bounded

_RUNNING = (Phase.PROGRESSING, Phase.PAUSED)
LOUD = "PROMOTE BY COMMAND"


def loud(decision: Decision) -> Decision:
    """While a promotion a promote command forced goes on (and once it succeeded), every reason says so."""
    state, last = decision.state, decision.state.last_command
    forced = last is not None and last.command == "promote" and last.result == "executed"
    if not forced or state.phase not in (Phase.PROMOTING, Phase.SUCCEEDED) or LOUD in state.reason:
        return decision
    who = last.by if last is not None and last.by is not None else "an unknown manager"
    reason = f"{state.reason} ({LOUD} from {who}, analysis notwithstanding)"
    return replace(decision, reason=reason, state=replace(state, reason=reason))


@dataclass(frozen=True, kw_only=True)
class Request:
    """A command as the controller found it: parsed, or why it could not be (then ``command`` is None)."""

    id: str
    command: Command | None
    problem: str = ""  # why the annotation cannot be executed, when ``command`` is None
    by: str | None = None  # the field manager that wrote it; None when the API server recorded none

    @property
    def display(self) -> str:
        return self.command.display if self.command is not None else "invalid"

    @property
    def who(self) -> str:
        return self.by if self.by is not None else "an unknown manager"


def rfc3339(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pending(state: RolloutState, request: Request | None) -> bool:
    """Whether ``request`` is still to be taken up (its id is not the last one recorded)."""
    return request is not None and (state.last_command is None or state.last_command.id != request.id)


def _recorded(state: RolloutState, request: Request, result: str, message: str, now: float) -> RolloutState:
    last = LastCommand(
        id=request.id,
        command=request.display,
        at=rfc3339(now),
        result=result,
        message=bounded(message, COMMAND_MESSAGE_CHARS),
        by=request.by,
    )
    return replace(state, last_command=last)


def refuse(state: RolloutState, request: Request, why: str, now: float) -> Decision:
    message = f"{request.display} refused: {why}"
    return Decision(
        state=_recorded(state, request, "refused", message, now),
        action=Action.HOLD,
        cause=Cause.COMMAND_REFUSED,
        reason=message,
        target=None,
        again=True,
    )


def _executed(decision: Decision, request: Request, now: float) -> Decision:
    state = _recorded(decision.state, request, "executed", decision.reason, now)
    return replace(decision, state=state, again=True)


def execute(policy: Policy, state: RolloutState, facts: Facts, request: Request, now: float) -> Decision:
    """The decision ``request`` takes in ``state`` at ``now``: executed, or refused (see the table)."""
    command = request.command
    if command is None:
        return refuse(state, request, f"annotation songbird.dev/command: {request.problem}", now)
    phase = state.phase
    where = f"the rollout is {phase.value}"
    if command.command == "abort":
        if phase in (Phase.INITIALIZING, *_RUNNING) or (
            phase is Phase.PROMOTING and state.promoted_at is None
        ):
            reason = f"aborted by {request.who}"
            return _executed(start_rollback(unpaused(state), facts, Cause.ABORTED, reason, now), request, now)
        if phase is Phase.PROMOTING:
            return refuse(state, request, "the main route already serves the canary", now)
        return refuse(state, request, f"{where}: no rollout in progress to abort", now)
    if command.command == "promote":
        return _promote(policy, state, facts, request, command.step, now)
    if command.command == "pause":
        if phase not in _RUNNING:
            return refuse(state, request, f"{where}: only a progressing rollout can be paused", now)
        if state.paused:
            return refuse(state, request, "already paused", now)
        label = f"step {state.step + 1}/{len(policy.steps)} at {state.weight:g}%"
        reason = f"{label}: paused by {request.who}: holding the weight until resume or promote"
        new = replace(state, phase=Phase.PAUSED, paused=True, pause_until=None, updated_at=now, reason=reason)
        new = replace(new, cause=Cause.PAUSED, cause_metric="")
        held = Decision(state=new, action=Action.HOLD, cause=Cause.PAUSED, reason=reason, target=None)
        return _executed(held, request, now)
    if command.command == "resume":
        if not state.paused:
            return refuse(state, request, f"{where}: not paused by a command or a pause step", now)
        reason = f"resumed by {request.who}"
        new = replace(unpaused(state), updated_at=now, reason=reason, cause=Cause.RESUMED, cause_metric="")
        if new.phase is Phase.PAUSED:
            new = replace(new, phase=Phase.PROGRESSING)
        resumed = Decision(state=new, action=Action.HOLD, cause=Cause.RESUMED, reason=reason, target=None)
        return _executed(resumed, request, now)
    # retry
    if phase is not Phase.FAILED:
        return refuse(state, request, f"{where}: only a Failed rollout can be retried", now)
    # Recorded before anything is touched: the rollout is Idle again, and the start that follows in the
    # same tick (`analysis.step`) is the one any rollout makes, from step 1.
    reason = f"retry requested by {request.who}: starting again from step 1"
    fresh = RolloutState(last_command=state.last_command, reason=reason, cause=Cause.RETRIED, updated_at=now)
    retried = Decision(state=fresh, action=Action.HOLD, cause=Cause.RETRIED, reason=reason, target=None)
    return _executed(retried, request, now)


def _promote(
    policy: Policy, state: RolloutState, facts: Facts, request: Request, one_step: bool, now: float
) -> Decision:
    phase = state.phase
    where = f"the rollout is {phase.value}"
    steps = policy.steps
    if one_step and phase in _RUNNING and state.step + 1 < len(steps):
        nxt = steps[state.step + 1]
        needed = canary_replicas(policy, nxt, state.total_replicas)
        if facts.canary_ready < needed or facts.canary_replicas < needed:
            requested = replace(unpaused(state), step_requested=True)
            if requested.phase is Phase.PAUSED:
                requested = replace(requested, phase=Phase.PROGRESSING)
            return _executed(_scaling_for(policy, requested, facts, state.step + 1, now), request, now)
        reason = (
            f"step {state.step + 2}/{len(steps)}: weight {nxt:g}%, started by promote --step from "
            f"{request.who} before step {state.step + 1} ended"
        )
        advanced = start_step(policy, unpaused(state), state.step + 1, reason, now)
        moved = replace(
            advanced, cause=Cause.COMMAND_STEP, state=replace(advanced.state, cause=Cause.COMMAND_STEP)
        )
        return _executed(moved, request, now)
    if one_step and phase is Phase.INITIALIZING:
        return refuse(state, request, f"{where}: step 1 starts as soon as its canary pods are ready", now)
    if phase not in (Phase.INITIALIZING, *_RUNNING):
        return refuse(state, request, f"{where}: no rollout in progress to promote", now)
    skipped = len(steps) - max(state.step, 0) - 1
    last = summarize(state.history[-1].results) if state.history else "no evaluation yet"
    why = (
        f"{LOUD} from {request.who}, ANALYSIS NOTWITHSTANDING: {skipped} remaining step(s) "
        f"skipped at {state.weight:g}% (last analysis: {last})"
    )
    route = facts.route
    in_force = route.weight if route is not None and route.canary_service is not None else 0.0
    # A weight found in force above the recorded one (its status write was lost) is kept, never lowered.
    base = replace(unpaused(state), weight=max(state.weight, in_force))
    promoted = start_promotion(policy, base, Cause.COMMAND_PROMOTE, why, now)
    return _executed(promoted, request, now)


def _scaling_for(policy: Policy, state: RolloutState, facts: Facts, step: int, now: float) -> Decision:
    """Hold the weight in force while the canary is scaled up for ``step`` (a requested step)."""
    nxt = policy.steps[step]
    needed = canary_replicas(policy, nxt, state.total_replicas)
    reason = (
        f"step {state.step + 1}/{len(policy.steps)} at {state.weight:g}%: promote --step: scaling canary to "
        f"{needed} replicas before raising the weight to {nxt:g}% ({facts.canary_ready}/{needed} ready)"
    )
    held = replace(state, updated_at=now, reason=reason, cause=Cause.SCALING_CANARY, cause_metric="")
    traffic = TrafficSplit(
        stable_service=state.stable_service,
        canary_service=state.canary_service,
        weight=state.weight,
        match_routes=True,
    )
    target = Target(traffic=traffic, canary_replicas=needed, stable_replicas=state.total_replicas)
    return Decision(state=held, action=Action.HOLD, cause=Cause.SCALING_CANARY, reason=reason, target=target)


def requested_step(
    policy: Policy, before: RolloutState, decision: Decision, facts: Facts, now: float
) -> Decision:
    """Carry a ``promote --step`` that waits for canary pods (``step_requested``) on ``decision``, the one
    the state machine took from ``before``: the next weight as soon as its pods are ready, the canary
    scaled up meanwhile. A rollback, a pause, a promotion or a step the machine took itself wins; the
    request ends with any of them but the pause (it goes on after ``resume``)."""
    if not before.step_requested:
        return decision
    state = decision.state
    if state.paused:
        return decision
    if (
        decision.action is Action.ROLLBACK
        or state.phase not in _RUNNING
        or state.step != before.step
        or state.step + 1 >= len(policy.steps)
    ):
        return replace(decision, state=replace(state, step_requested=False))
    nxt = policy.steps[state.step + 1]
    needed = canary_replicas(policy, nxt, state.total_replicas)
    if facts.canary_ready < needed or facts.canary_replicas < needed:
        return _scaling_for(policy, state, facts, state.step + 1, now)
    reason = f"step {state.step + 2}/{len(policy.steps)}: weight {nxt:g}%, started by promote --step"
    advanced = start_step(policy, replace(state, step_requested=False), state.step + 1, reason, now)
    return replace(
        advanced, cause=Cause.COMMAND_STEP, state=replace(advanced.state, cause=Cause.COMMAND_STEP)
    )


__all__ = ["LOUD", "Request", "execute", "loud", "pending", "refuse", "requested_step", "rfc3339"]
