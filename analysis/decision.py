"""The rollout state machine: from (policy, state, cluster facts, verdicts, now) to (new state, action,
reason, target). Pure: no I/O, no wall clock.

Phases: Idle -> Initializing -> Progressing (<-> Paused) -> Promoting -> Succeeded, and from any active
phase -> RollingBack -> Failed. Actions: advance, hold, promote, rollback; each decision carries a reason a
person can read.

Invariants kept here:
- No data never rolls back and never promotes: only FAIL verdicts count toward a rollback, ERROR holds (and
  rolls back only once Prometheus has been silent for ``errorDeadline``), INCONCLUSIVE lets time-based steps
  advance but never promotes.
- A weight is raised only when the canary already has the replicas that weight needs, and they are ready.
- Rollback and promotion are split into transitions that are each safe to stop after: the reconciler acts
  and records one transition before taking the next (``again``), so a crash in between resumes correctly.
- On resume the route in force (``Facts.route``) is the truth, not the recorded weight: the status is
  written after the traffic change it records, so a crash in between leaves the route ahead of the status.
  A later step's weight found in force is adopted as started now (its clock, hence its analysis, starts
  at adoption); canary traffic found withdrawn (weight 0, no header/cookie routing) while a weight was
  recorded continues the rollback that withdrew it; a main route found switched to the canary continues
  the promotion. Hence a weight written never decreases except by a rollback.
- A traffic split found far from the weight in force (`analysis.split`) holds: it never advances and never
  promotes, never rolls back by itself, and clears when the share comes back inside the bound.
- Dry-run metrics' verdicts are recorded and never acted on (`analysis.dryrun.enforced`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from songbird.analysis import split
from songbird.analysis.cause import Cause
from songbird.analysis.dryrun import enforced
from songbird.analysis.plan import Target, TrafficSplit, canary_replicas, total_replicas
from songbird.analysis.split import SplitStatus
from songbird.analysis.state import Evaluation, Phase, RolloutState
from songbird.analysis.verdict import MetricResult, Verdict
from songbird.config.fields import format_duration
from songbird.config.policy import Policy

ACTIVE = (Phase.INITIALIZING, Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK)


class Action(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the controller observed in the cluster this tick (already resolved to names and numbers)."""

    canary: str  # canary Deployment
    stable: str  # stable Deployment
    canary_service: str
    stable_service: str  # the Service the main route sends traffic to now
    revision: str  # fingerprint of the canary pod template
    stable_replicas: int  # spec.replicas of the stable Deployment
    canary_replicas: int  # spec.replicas of the canary Deployment
    canary_ready: int  # status.readyReplicas of the canary Deployment
    route: TrafficSplit | None = None  # the split in force on the cluster; None: not observed (simulators)
    deleting: bool = False  # the policy is being deleted: withdraw the canary, as a rollback does


@dataclass(frozen=True, kw_only=True)
class Decision:
    state: RolloutState
    action: Action
    cause: Cause  # why, for code (metrics, pause logic); ``reason`` says it to people
    reason: str
    target: Target | None  # None: leave every object as it is
    again: bool = False  # record this, then decide again in the same tick (next safe transition)
    cause_metric: str = ""  # the metric the cause is about, if any


def _said(state: RolloutState, cause: Cause, reason: str, metric: str = "") -> RolloutState:
    """The state with what was said about it: the reason, and its cause."""
    return replace(state, reason=reason, cause=cause, cause_metric=metric)


def tick_tolerance(cadence: float) -> float:
    """How early a tick may come and still count as due: ticks fire on a real clock, and a tick a few
    milliseconds early must not cost a whole cadence."""
    return min(1.0, cadence * 0.05)


def _tolerance(policy: Policy) -> float:
    return tick_tolerance(policy.analysis.cadence)


def evaluation_due(policy: Policy, state: RolloutState, now: float) -> bool:
    """Metrics are evaluated every ``cadence`` while progressing or paused, starting one cadence into a step
    (so each window holds traffic at the step's weight)."""
    if state.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return False
    last = max(state.last_evaluated_at or 0.0, state.step_started_at or 0.0)
    return now - last >= policy.analysis.cadence - _tolerance(policy)


def decide(
    policy: Policy,
    state: RolloutState,
    facts: Facts,
    results: tuple[MetricResult, ...] | None,
    now: float,
) -> Decision:
    if facts.deleting and state.phase is not Phase.ROLLING_BACK:
        return _deleting(policy, state, facts, now)
    if _needs_start(state, facts):
        if facts.canary == facts.stable:
            return Decision(
                state=replace(state, phase=Phase.IDLE, updated_at=now),
                action=Action.HOLD,
                cause=Cause.ALREADY_STABLE,
                reason=f"canary {facts.canary} is already the stable version",
                target=None,
            )
        return _start(policy, state, facts, now)
    if state.phase is Phase.INITIALIZING:
        adopted = _adopted(policy, state, facts, now)
        return adopted if adopted is not None else _initializing(policy, state, facts, now)
    if state.phase in (Phase.PROGRESSING, Phase.PAUSED):
        return _progressing(policy, state, facts, results, now)
    if state.phase is Phase.PROMOTING:
        return _promoting(policy, state, facts, now)
    if state.phase is Phase.ROLLING_BACK:
        done = replace(state, phase=Phase.FAILED, weight=0.0, updated_at=now)
        return Decision(
            state=done,
            action=Action.ROLLBACK,
            cause=state.cause,
            cause_metric=state.cause_metric,
            reason=state.reason,
            target=_rolled_back(state, facts),
        )
    return _as_it_was(state, target=None)  # finished or idle


def _needs_start(state: RolloutState, facts: Facts) -> bool:
    if state.phase is Phase.IDLE or state.canary != facts.canary:
        return True
    # The canary's pod template changed: a new version to judge, from the first step (also after a
    # finished rollout of the previous template).
    return bool(state.revision) and state.revision != facts.revision


def _adopted(policy: Policy, state: RolloutState, facts: Facts, now: float) -> Decision | None:
    """A later step's weight in force on the route (its status write was lost in a crash): that step,
    started now, so its analysis is not skipped and its weight is not written back down."""
    route = facts.route
    if route is None or route.canary_service is None or route.weight <= state.weight:
        return None
    later = [
        i for i in range(state.step + 1, len(policy.steps)) if math.isclose(policy.steps[i], route.weight)
    ]
    if not later:
        return None
    step = later[0]
    weight = policy.steps[step]
    reason = (
        f"step {step + 1}/{len(policy.steps)} at {weight:g}%: found in force (its status was not recorded); "
        "its analysis starts now"
    )
    new = replace(
        state, phase=Phase.PROGRESSING, step=step, weight=weight, step_started_at=now, updated_at=now
    )
    target = _target(policy, new, weight=weight, match=True, replicas_for=weight)
    return _hold(new, Phase.PROGRESSING, Cause.STEP_ADOPTED, reason, target, now)


def _withdrawn(state: RolloutState, facts: Facts) -> bool:
    """Canary traffic found withdrawn as a rollback's first transition leaves it, while a weight is
    recorded: that rollback was interrupted before its status write (or a person withdrew the canary)."""
    route = facts.route
    return (
        route is not None
        and route.canary_service is not None
        and route.weight == 0
        and not route.match_routes
        and state.weight > 0
    )


def _deleting(policy: Policy, state: RolloutState, facts: Facts, now: float) -> Decision:
    """The policy is being deleted: withdraw the canary as a rollback does, unless the main route already
    serves it (then nothing is withdrawn and both Deployments keep their replicas)."""
    if state.phase is Phase.PROMOTING and state.promoted_at is not None:
        reason = (
            f"policy deleted after the main route switched to {state.canary_service}; {state.stable} keeps "
            "its replicas"
        )
        done = _said(replace(state, phase=Phase.SUCCEEDED, updated_at=now), Cause.POLICY_DELETED, reason)
        return Decision(
            state=done, action=Action.HOLD, cause=Cause.POLICY_DELETED, reason=reason, target=None
        )
    routed = facts.route is not None and facts.route.canary_service is not None
    if state.phase in ACTIVE or routed:
        return _rollback(state, facts, Cause.POLICY_DELETED, "policy deleted: withdrawing the canary", now)
    return _as_it_was(state, target=None)


def _start(policy: Policy, state: RolloutState, facts: Facts, now: float) -> Decision:
    restarting = state.phase in ACTIVE and state.canary == facts.canary
    total = total_replicas(policy, facts.stable_replicas)
    if restarting and state.total_replicas:
        total = state.total_replicas
    new = RolloutState(
        phase=Phase.INITIALIZING,
        step=-1,
        weight=0.0,
        canary=facts.canary,
        stable=facts.stable,
        canary_service=facts.canary_service,
        stable_service=facts.stable_service,
        revision=facts.revision,
        total_replicas=total,
        started_at=now,
        step_started_at=None,
        updated_at=now,
    )
    if restarting:
        cause, reason = Cause.RESTARTED, f"canary {facts.canary} pod template changed: restarting from step 1"
    else:
        cause, reason = (
            Cause.STARTED,
            f"rollout of {facts.canary} started (stable {facts.stable}, {total} replicas)",
        )
    new = _said(new, cause, reason)
    return Decision(
        state=new,
        action=Action.ADVANCE,
        cause=cause,
        reason=reason,
        target=_target(policy, new, weight=0.0, match=False),
        again=True,
    )


def _target(
    policy: Policy, state: RolloutState, *, weight: float, match: bool, replicas_for: float | None = None
) -> Target:
    return Target(
        traffic=TrafficSplit(
            stable_service=state.stable_service,
            canary_service=state.canary_service,
            weight=weight,
            match_routes=match,
        ),
        canary_replicas=canary_replicas(
            policy, policy.steps[0] if replicas_for is None else replicas_for, state.total_replicas
        ),
        stable_replicas=state.total_replicas,
    )


def _as_it_was(state: RolloutState, *, target: Target | None) -> Decision:
    """Hold with the state, its cause and its reason unchanged (nothing new to say)."""
    return Decision(
        state=state,
        action=Action.HOLD,
        cause=state.cause,
        cause_metric=state.cause_metric,
        reason=state.reason,
        target=target,
    )


def _rolled_back(state: RolloutState, facts: Facts) -> Target:
    return Target(
        traffic=TrafficSplit(stable_service=state.stable_service or facts.stable_service),
        canary_replicas=0,
        stable_replicas=state.total_replicas or facts.stable_replicas,
    )


def _initializing(policy: Policy, state: RolloutState, facts: Facts, now: float) -> Decision:
    first = policy.steps[0]
    needed = canary_replicas(policy, first, state.total_replicas)
    if facts.canary_ready < needed or facts.canary_replicas < needed:
        reason = f"waiting for canary pods: {facts.canary_ready}/{needed} ready"
        return Decision(
            state=replace(state, updated_at=now),
            action=Action.HOLD,
            cause=Cause.WAITING_FOR_PODS,
            reason=reason,
            target=_target(policy, state, weight=0.0, match=False),
        )
    reason = f"step 1/{len(policy.steps)}: weight {first:g}% ({needed} canary replicas ready)"
    return _advance(policy, state, 0, reason, now)


def _advance(policy: Policy, state: RolloutState, step: int, reason: str, now: float) -> Decision:
    """Start ``step``: its weight, its replicas, its clock."""
    weight = policy.steps[step]
    new = _said(
        replace(
            state, phase=Phase.PROGRESSING, step=step, weight=weight, step_started_at=now, updated_at=now
        ),
        Cause.STEP_STARTED,
        reason,
    )
    return Decision(
        state=new,
        action=Action.ADVANCE,
        cause=Cause.STEP_STARTED,
        reason=reason,
        target=_target(policy, new, weight=weight, match=True, replicas_for=weight),
    )


def _record(
    policy: Policy, state: RolloutState, results: tuple[MetricResult, ...], now: float
) -> RolloutState:
    failed = any(r.verdict is Verdict.FAIL for r in enforced(results))
    errored = any(r.verdict is Verdict.ERROR for r in enforced(results))
    evaluation = Evaluation(at=now, step=state.step, weight=state.weight, results=results)
    return replace(
        state.with_evaluation(evaluation),
        consecutive_failures=state.consecutive_failures + 1 if failed else 0,
        error_since=(state.error_since if state.error_since is not None else now) if errored else None,
    )


def _latest(state: RolloutState) -> Evaluation | None:
    if not state.history:
        return None
    last = state.history[-1]
    if last.step != state.step or last.at < (state.step_started_at or 0.0):
        return None
    return last


def _window_inside(policy: Policy, state: RolloutState) -> bool:
    """Whether the last evaluation's window lay inside the current step: it began where the previous one
    ended, no earlier than one cadence before the previous evaluation (batched windows end on the cadence
    grid, `analysis.batch`), so a previous evaluation at least a cadence into the step is enough."""
    began = state.step_started_at
    if len(state.history) < 2 or began is None:
        return False
    return state.history[-2].at >= began + policy.analysis.cadence - _tolerance(policy)


def summarize(results: tuple[MetricResult, ...]) -> str:
    return "; ".join(f"{r.name} {r.verdict.value}: {r.reason}" for r in results) or "no metrics"


def _rollback(
    state: RolloutState, facts: Facts, cause: Cause, reason: str, now: float, metric: str = ""
) -> Decision:
    # A rollback from Idle (a policy deleted while its start was interrupted) knows its objects from facts.
    state = replace(
        state,
        canary=state.canary or facts.canary,
        stable=state.stable or facts.stable,
        canary_service=state.canary_service or facts.canary_service,
        stable_service=state.stable_service or facts.stable_service,
        total_replicas=state.total_replicas or facts.stable_replicas,
    )
    new = _said(replace(state, phase=Phase.ROLLING_BACK, updated_at=now), cause, reason, metric)
    # First transition: withdraw canary traffic and header/cookie routing, keep the pods; the next one
    # (same tick) removes the canary route and scales the canary down.
    target = Target(
        traffic=TrafficSplit(
            stable_service=state.stable_service,
            canary_service=state.canary_service,
            weight=0.0,
            match_routes=False,
        ),
        canary_replicas=max(facts.canary_replicas, 0),
        stable_replicas=state.total_replicas,
    )
    return Decision(
        state=new,
        action=Action.ROLLBACK,
        cause=cause,
        cause_metric=metric,
        reason=reason,
        target=target,
        again=True,
    )


def _progressing(
    policy: Policy,
    state: RolloutState,
    facts: Facts,
    results: tuple[MetricResult, ...] | None,
    now: float,
) -> Decision:
    steps = policy.steps
    step = min(state.step, len(steps) - 1)
    if step != state.step or state.weight != steps[step]:
        state = replace(state, step=step, weight=min(state.weight, steps[step]))
    if _withdrawn(state, facts):
        reason = (
            f"step {step + 1}/{len(steps)}: canary traffic found withdrawn (0%, no header/cookie routing) "
            f"while {state.weight:g}% was recorded: rolling back"
        )
        return _rollback(state, facts, Cause.TRAFFIC_WITHDRAWN, reason, now)
    current = _target(policy, state, weight=state.weight, match=True, replicas_for=state.weight)

    if results is not None:
        state = _record(policy, state, results, now)
        results = enforced(results)  # dry-run verdicts are recorded, never acted on (`analysis.dryrun`)
        decisive = [r for r in results if r.verdict is Verdict.FAIL and r.decisive]
        if decisive:
            r = decisive[0]
            return _rollback(state, facts, Cause.METRIC_FAILED, f"{r.name}: {r.reason}", now, r.name)
        failed = [r for r in results if r.verdict is Verdict.FAIL]
        limit = policy.analysis.failure_limit
        if failed and state.consecutive_failures >= limit:
            r = failed[0]
            return _rollback(
                state,
                facts,
                Cause.METRIC_FAILED,
                f"{r.name}: {r.reason} ({state.consecutive_failures} consecutive "
                f"failed evaluations, failureLimit {limit})",
                now,
                r.name,
            )
        if state.error_since is not None and now - state.error_since >= policy.analysis.error_deadline:
            errors = [r for r in results if r.verdict is Verdict.ERROR]
            silent = format_duration(now - state.error_since)
            return _rollback(
                state,
                facts,
                Cause.ERROR_DEADLINE,
                f"metrics unavailable for {silent} (errorDeadline "
                f"{format_duration(policy.analysis.error_deadline)}): {errors[0].reason}",
                now,
            )

    adopted = _adopted(policy, state, facts, now)  # after the verdicts, which judged the recorded step
    if adopted is not None:
        return adopted

    latest = _latest(state)
    verdicts = enforced(latest.results) if latest is not None else ()
    outage = [r for r in verdicts if r.figures.shared_outage]
    label = f"step {step + 1}/{len(steps)} at {state.weight:g}%"
    if outage:
        reason = f"{label}: paused, stable failing too (shared outage): {outage[0].reason}"
        return _hold(state, Phase.PAUSED, Cause.SHARED_OUTAGE, reason, current, now, outage[0].name)
    if state.phase is Phase.PAUSED and state.cause is not Cause.INCONCLUSIVE:
        state = replace(state, phase=Phase.PROGRESSING)  # the cause of the pause has cleared

    needed_now = canary_replicas(policy, state.weight, state.total_replicas)
    if facts.canary_ready < needed_now:
        why = f"{label}: canary not ready ({facts.canary_ready}/{needed_now})"
        return _hold(state, state.phase, Cause.CANARY_NOT_READY, why, current, now)

    last_window = (
        split.window(latest.results) if latest is not None and _window_inside(policy, state) else None
    )
    checked = split.verify(policy, state.evidence, step=step, weight=state.weight, last_window=last_window)
    state = replace(state, split=checked)
    if state.split is not None and state.split.status is SplitStatus.MISMATCH:
        return _hold(
            state, state.phase, Cause.SPLIT_MISMATCH, f"{label}: {state.split.reason()}", current, now
        )

    elapsed = now - (state.step_started_at or now)
    if latest is None:
        why = f"{label}: waiting for the first evaluation"
        return _hold(state, state.phase, Cause.WAITING_FOR_EVALUATION, why, current, now)
    blocking = [r for r in verdicts if r.verdict in (Verdict.FAIL, Verdict.ERROR)]
    if elapsed < policy.interval - _tolerance(policy) or blocking:
        why = (
            f"holding: {summarize(tuple(blocking))}"
            if blocking
            else f"{format_duration(elapsed)} of {format_duration(policy.interval)}; {summarize(verdicts)}"
        )
        if not blocking and step + 1 < len(steps) and elapsed + policy.analysis.cadence >= policy.interval:
            # One cadence before the step ends, start the next step's canary pods, so the weight can rise
            # on time. Extra canary pods receive no more traffic than the weight in force.
            current = replace(
                current,
                canary_replicas=max(
                    current.canary_replicas, canary_replicas(policy, steps[step + 1], state.total_replicas)
                ),
            )
        cause = Cause.BLOCKED if blocking else Cause.STEP_RUNNING
        return _hold(state, state.phase, cause, f"{label}: {why}", current, now)

    if step + 1 < len(steps):
        nxt = steps[step + 1]
        needed = canary_replicas(policy, nxt, state.total_replicas)
        if facts.canary_replicas < needed or facts.canary_ready < needed:
            reason = (
                f"{label}: scaling canary to {needed} replicas before raising the weight to {nxt:g}% "
                f"({facts.canary_ready}/{needed} ready)"
            )
            scaled = replace(current, canary_replicas=needed)
            return _hold(state, state.phase, Cause.SCALING_CANARY, reason, scaled, now)
        reason = f"step {step + 2}/{len(steps)}: weight {nxt:g}% (analysis: {summarize(verdicts)})"
        return _advance(policy, state, step + 1, reason, now)

    # Last step: promotion needs every metric to PASS.
    if verdicts and all(r.verdict is Verdict.PASS for r in verdicts):
        why = f"analysis passed at {state.weight:g}%: {summarize(verdicts)}"
        return _promote(policy, state, Cause.ANALYSIS_PASSED, why, now)
    waited = elapsed - policy.interval
    max_wait = policy.analysis.compare.max_wait
    if waited < max_wait:
        reason = (
            f"{label}: waiting for promotion evidence ({format_duration(max(waited, 0))} of "
            f"{format_duration(max_wait)}): {summarize(verdicts)}"
        )
        return _hold(state, state.phase, Cause.WAITING_FOR_EVIDENCE, reason, current, now)
    mode = policy.analysis.compare.on_inconclusive
    why = f"inconclusive after {format_duration(elapsed)} at {state.weight:g}%: {summarize(verdicts)}"
    inconclusive = Cause.INCONCLUSIVE
    if mode == "promote":
        return _promote(policy, state, inconclusive, f"{why}; promoting (onInconclusive: promote)", now)
    if mode == "rollback":
        return _rollback(state, facts, inconclusive, f"{why}; rolling back (onInconclusive: rollback)", now)
    paused = f"{label}: {why}; paused (onInconclusive: pause)"
    return _hold(state, Phase.PAUSED, inconclusive, paused, current, now)


def _hold(
    state: RolloutState,
    phase: Phase,
    cause: Cause,
    reason: str,
    target: Target,
    now: float,
    metric: str = "",
) -> Decision:
    return Decision(
        state=_said(replace(state, phase=phase, updated_at=now), cause, reason, metric),
        action=Action.HOLD,
        cause=cause,
        cause_metric=metric,
        reason=reason,
        target=target,
    )


def _promote(policy: Policy, state: RolloutState, cause: Cause, reason: str, now: float) -> Decision:
    new = _said(replace(state, phase=Phase.PROMOTING, updated_at=now), cause, f"promoting: {reason}")
    return Decision(
        state=new,
        action=Action.PROMOTE,
        cause=cause,
        reason=new.reason,
        target=_target(policy, new, weight=state.weight, match=True, replicas_for=100.0),
        again=True,
    )


def _promoting(policy: Policy, state: RolloutState, facts: Facts, now: float) -> Decision:
    total = state.total_replicas
    if state.promoted_at is None:
        # Canary at full size first; switch the main route only when all of it is ready (or when the route
        # is found switched already: the switch's status write was lost, and it is never undone).
        switched_already = facts.route is not None and facts.route.stable_service == state.canary_service
        if not switched_already and (facts.canary_ready < total or facts.canary_replicas < total):
            reason = f"promoting: waiting for the canary at full size ({facts.canary_ready}/{total} ready)"
            return Decision(
                state=_said(replace(state, updated_at=now), Cause.WAITING_FOR_PODS, reason),
                action=Action.HOLD,
                cause=Cause.WAITING_FOR_PODS,
                reason=reason,
                target=_target(policy, state, weight=state.weight, match=True, replicas_for=100.0),
            )
        reason = (
            f"promoted: main route now sends all traffic to {state.canary_service}; {state.stable} "
            f"scales to 0 after {format_duration(policy.promotion.scale_down_delay)}"
        )
        new = _said(replace(state, promoted_at=now, weight=100.0, updated_at=now), Cause.PROMOTED, reason)
        switched = Target(
            traffic=TrafficSplit(stable_service=state.canary_service),
            canary_replicas=total,
            stable_replicas=total,
        )
        return Decision(
            state=new, action=Action.PROMOTE, cause=Cause.PROMOTED, reason=reason, target=switched, again=True
        )
    switched = Target(
        traffic=TrafficSplit(stable_service=state.canary_service),
        canary_replicas=total,
        stable_replicas=total,
    )
    if now - state.promoted_at < policy.promotion.scale_down_delay:
        return _as_it_was(state, target=switched)
    reason = f"succeeded: {state.canary} is the stable version; {state.stable} scaled to 0"
    done = _said(replace(state, phase=Phase.SUCCEEDED, updated_at=now), Cause.SUCCEEDED, reason)
    return Decision(
        state=done,
        action=Action.PROMOTE,
        cause=Cause.SUCCEEDED,
        reason=reason,
        target=replace(switched, stable_replicas=0),
    )


# The transitions an operator's command (`analysis.command`) and a pause (`analysis.pause`) reuse, so a
# command withdraws, promotes and advances exactly as the analysis does.
start_rollback = _rollback
start_promotion = _promote
start_step = _advance
weight_target = _target
