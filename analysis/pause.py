"""Pauses, as a pure rule over the state machine's decisions: a paused rollout holds its weight.

A rollout is paused by a ``pause`` command (`analysis.command`) or by a pause step of its policy
(``steps: [10, {pause: 5m}, 20, {pause: {}}]``, `config.steps`). `decide` wraps `analysis.decision.decide`:
- the analysis goes on while paused (evaluations are due in the Paused phase as in Progressing); a decision
  to advance or to promote is turned into a hold at the weight in force (phase Paused);
- a pause step begins when the step before it would advance (its interval has run and its analysis lets
  it go on): a timed one holds for its duration, then the next weight (or the promotion) follows; an
  indefinite one holds until ``resume`` or ``promote``. Each pause step is served once (``pause_step``);
- a rollback still happens while paused: a failed analysis rolls back unless the policy says
  ``analysis.rollbackWhilePaused: false`` (then it holds, and the failures count once resumed); a
  withdrawn route or a deleted policy always rolls back;
- the last command (``last_command``) survives every transition, a restart from step 1 included, so a
  command is never executed twice.
Invariant: while ``paused`` the weight in force never rises and no promotion begins. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import replace

from songbird.analysis.cause import Cause
from songbird.analysis.decision import Action, Decision, Facts, tick_tolerance
from songbird.analysis.decision import decide as decide_steps
from songbird.analysis.plan import Target, TrafficSplit, canary_replicas
from songbird.analysis.state import Phase, RolloutState
from songbird.analysis.verdict import MetricResult
from songbird.config.fields import format_duration
from songbird.config.policy import Policy

_RUNNING = (Phase.PROGRESSING, Phase.PAUSED)
# Rollbacks the analysis asks for; the others (route withdrawn, policy deleted) happen even when the
# policy keeps a paused rollout from rolling back.
_ANALYSIS_ROLLBACKS = (Cause.METRIC_FAILED, Cause.ERROR_DEADLINE, Cause.INCONCLUSIVE)


def unpaused(state: RolloutState) -> RolloutState:
    """``state`` with no pause in force (a served pause step stays served)."""
    return replace(state, paused=False, pause_until=None)


def _expired(policy: Policy, state: RolloutState, now: float) -> RolloutState:
    """A timed pause step whose time has run is over."""
    until = state.pause_until
    if state.paused and until is not None and now >= until - tick_tolerance(policy.analysis.cadence):
        return unpaused(state)
    return state


def decide(
    policy: Policy,
    state: RolloutState,
    facts: Facts,
    results: tuple[MetricResult, ...] | None,
    now: float,
) -> Decision:
    """`analysis.decision.decide`, with the rollout's pauses kept (see the module docstring)."""
    state = _expired(policy, state, now)
    decision = decide_steps(policy, state, facts, results, now)
    if decision.state.last_command != state.last_command:  # a restart builds a new state: keep the command
        decision = replace(decision, state=replace(decision.state, last_command=state.last_command))
    if state.phase not in _RUNNING or decision.state.phase in (Phase.INITIALIZING, Phase.IDLE):
        return decision
    moving_on = (decision.action is Action.ADVANCE and decision.state.step > state.step) or (
        decision.action is Action.PROMOTE and decision.state.phase is Phase.PROMOTING
    )
    if decision.action is Action.ROLLBACK:
        held = state.paused and not policy.analysis.rollback_while_paused
        if held and decision.cause in _ANALYSIS_ROLLBACKS:
            why = f"would roll back ({decision.reason}), but analysis.rollbackWhilePaused is false"
            return _hold(policy, state, decision, facts, why, now)
        return decision
    if state.paused:
        if moving_on or decision.action is Action.HOLD:
            return _hold(policy, state, decision, facts, decision.reason, now)
        return decision
    pause = policy.pause_after(state.step)
    if moving_on and pause is not None and state.pause_step != state.step:
        until = None if pause.duration is None else now + pause.duration
        begun = replace(state, paused=True, pause_until=until, pause_step=state.step)
        return _hold(policy, begun, decision, facts, decision.reason, now)
    return decision


def _hold(
    policy: Policy, state: RolloutState, decision: Decision, facts: Facts, underneath: str, now: float
) -> Decision:
    """Hold at ``state``'s weight, keeping what the decision recorded (its evaluation, failure count)."""
    label = f"step {state.step + 1}/{len(policy.steps)} at {state.weight:g}%"
    step_pause = state.pause_step == state.step
    if state.paused and state.pause_until is not None:
        cause = Cause.PAUSE_STEP
        what = f"pause step: {format_duration(max(state.pause_until - now, 0.0))} left"
    elif state.paused and step_pause and state.cause is not Cause.PAUSED:
        cause, what = Cause.PAUSE_STEP, "pause step: holding until resume or promote"
    elif state.paused:
        last = state.last_command
        by = "" if last is None or last.command != "pause" else f" by {last.by or 'an unknown manager'}"
        cause, what = Cause.PAUSED, f"paused{by}: holding until resume or promote"
    else:
        cause, what = decision.cause, "held"
    reason = f"{label}: {what} ({underneath})"
    kept = replace(
        decision.state,
        phase=Phase.PAUSED,
        step=state.step,
        weight=state.weight,
        step_started_at=state.step_started_at,
        promoted_at=state.promoted_at,
        paused=state.paused,
        pause_until=state.pause_until,
        pause_step=state.pause_step,
        last_command=state.last_command,
        updated_at=now,
        reason=reason,
        cause=cause,
        cause_metric=decision.cause_metric,
    )
    total = state.total_replicas
    needed = canary_replicas(policy, state.weight, total)
    held_target = decision.target if decision.action is Action.HOLD else None
    target = held_target or Target(
        traffic=TrafficSplit(
            stable_service=state.stable_service,
            canary_service=state.canary_service,
            weight=state.weight,
            match_routes=True,
        ),
        canary_replicas=max(needed, min(facts.canary_replicas, total)),
        stable_replicas=total,
    )
    if held_target is not None and held_target.traffic.weight > state.weight:  # never raised while paused
        target = replace(held_target, traffic=replace(held_target.traffic, weight=state.weight))
    return Decision(
        state=kept,
        action=Action.HOLD,
        cause=cause,
        cause_metric=decision.cause_metric,
        reason=reason,
        target=target,
    )


__all__ = ["decide", "unpaused"]
