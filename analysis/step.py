"""One tick of one rollout, as a pure function: the ordered decisions the state machine takes in it.

The controller's reconciler, the decision-quality benchmark and the lab's odds simulator all drive
rollouts tick by tick; this is the one place that says what a tick is:
- metrics are judged only when an evaluation is due (`evaluation_due`), and those verdicts reach the first
  decision of the tick only;
- when a decision starts a rollout, the caller may add to the new state what it knows before the first
  step (the stable's recent history as evidence, the forecast) before the rollout goes on;
- a decision marked ``again`` (start, rollback, promotion) is followed by the next one in the same tick,
  up to `MAX_TRANSITIONS` decisions;
- an operator's command not yet taken up (`analysis.command.pending`) is decided first, before the
  metrics are judged (so they judge the step the command leaves in force), and the tick goes on from
  the state it leaves; pauses are kept by `analysis.pause.decide`, and a ``promote --step`` waiting for
  canary pods by `analysis.command.requested_step`.

No I/O here. Whatever the caller must do between transitions is passed in as a function: ``verdicts``
(judge the metrics), ``started`` (what to add to a new rollout) and ``acted`` (called with every decision
in order, before the next one is taken; it returns the facts the next one is taken from). The reconciler
acts on the cluster and records each decision in ``acted`` and re-reads the cluster after an ``again``,
which keeps its order: act before record, and one transition recorded before the next is taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from songbird.analysis.command import Request, execute, loud, pending, requested_step
from songbird.analysis.decision import Decision, Facts, evaluation_due
from songbird.analysis.pause import decide
from songbird.analysis.state import Evidence, Phase, RolloutState
from songbird.analysis.verdict import MetricResult
from songbird.config.policy import Policy

MAX_TRANSITIONS = 4  # decisions taken in one tick (e.g. rollback: withdraw traffic, then remove the canary)

#: Judge the metrics for this state: the verdicts, and the judge's updated evidence sums.
Verdicts = Callable[[RolloutState], tuple[tuple[MetricResult, ...], Evidence]]


def _unchanged(state: RolloutState) -> RolloutState:
    return state


def step(
    policy: Policy,
    state: RolloutState,
    facts: Facts,
    now: float,
    *,
    verdicts: Verdicts,
    started: Callable[[RolloutState], RolloutState] = _unchanged,
    acted: Callable[[Decision, Facts], Facts] | None = None,
    command: Request | None = None,
) -> tuple[Decision, ...]:
    """The decisions of one tick at ``now``, in the order they are to be carried out.

    ``verdicts`` is called once, before the first decision, when an evaluation is due. ``started`` is
    called with the new state when a decision starts a rollout (from a phase other than Initializing).
    ``acted`` is called with each decision (and the facts it was taken from) before the next is taken
    and returns the facts to take the next one from; without it the facts stay those given (a simulator
    whose pods change only between ticks). An exception raised by a callback ends the tick there.
    ``command`` is the operator's request found on the policy; it is decided first unless its id is the
    last one recorded.
    """
    decisions: list[Decision] = []

    def take(decision: Decision, before: RolloutState) -> Facts:
        if decision.state.phase is Phase.INITIALIZING and before.phase is not Phase.INITIALIZING:
            decision = replace(decision, state=started(decision.state))
        decisions.append(decision)
        return acted(decision, facts) if acted is not None else facts

    if command is not None and pending(state, command):
        decision = execute(policy, state, facts, command, now)
        facts = take(decision, state)
        state = decisions[-1].state
    results: tuple[MetricResult, ...] | None = None
    if evaluation_due(policy, state, now):
        results, evidence = verdicts(state)
        state = replace(state, evidence=evidence)
    for _ in range(MAX_TRANSITIONS):
        decision = loud(requested_step(policy, state, decide(policy, state, facts, results, now), facts, now))
        facts = take(decision, state)
        state = decisions[-1].state
        if not decision.again:
            break
        results = None
    return tuple(decisions)
