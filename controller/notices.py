"""Events said beside the phase and step changes: a traffic split mismatch held or cleared
(`analysis.split`) and a dry-run metric that starts failing (`analysis.dryrun`).

Pure: from the state before a decision and the state after it to the Events to emit (`Notice`); the
reconciler sends them with its `Recorder`. Each is said once, on the change, never on every tick:
- ``TrafficSplitMismatch`` (Warning) when the rollout starts holding for a split mismatch, with the
  observed and expected shares and the likely causes;
- ``TrafficSplitRestored`` (Normal) when a rollout held for a mismatch goes on (the share came back, or
  the rollout moved on for another reason, such as a rollback);
- ``DryRunMetricFailed`` (Warning) for each dry-run metric whose verdict turns FAIL, saying it had no
  effect.
"""

from __future__ import annotations

from dataclasses import dataclass

from songbird.analysis import dryrun
from songbird.analysis.cause import Cause
from songbird.analysis.state import RolloutState


@dataclass(frozen=True, kw_only=True)
class Notice:
    reason: str  # the Event's reason (CamelCase, at most 128 characters)
    message: str
    warning: bool


def notices(before: RolloutState, after: RolloutState) -> tuple[Notice, ...]:
    """The Events to emit for the change from ``before`` to ``after`` (module docstring)."""
    out: list[Notice] = []
    held_before = before.cause is Cause.SPLIT_MISMATCH
    held_after = after.cause is Cause.SPLIT_MISMATCH
    if held_after and not held_before:
        out.append(Notice(reason="TrafficSplitMismatch", message=after.reason, warning=True))
    elif held_before and not held_after:
        said = after.split.describe() if after.split is not None else "no longer checked"
        out.append(Notice(reason="TrafficSplitRestored", message=f"{said}; {after.reason}", warning=False))
    if after.history and (not before.history or after.history[-1].at != before.history[-1].at):
        previous = before.history[-1].results if before.history else ()
        for result in dryrun.newly_failed(previous, after.history[-1].results):
            out.append(Notice(reason="DryRunMetricFailed", message=dryrun.describe(result), warning=True))
    return tuple(out)
