"""When the rollout status is written, and what a replica keeps of it in memory between two writes.

The status annotation (`analysis.state`) is written when something a decision or a person relies on
changes, not on every evaluation:
- a change of phase, step, weight, Deployments or Services, clocks (rollout, step, promotion), failure
  count, error streak, cause or forecast, or of any metric's verdict (or its ``decisive`` mark) in the
  last evaluation, or of the traffic split check's status (`analysis.split`; not its counts); every action
  other than a hold (a traffic change is always recorded, after it is made);
- a checkpoint: ``CHECKPOINT`` seconds of evaluations since the last write, so the judge's sums on the
  cluster are never older than that.
An unchanged evaluation (same verdicts, only the judge's sums, the evaluation time, the reason's wording
and the compact history move on) is kept in memory (`StatusMemory`) and used by the next tick, as long as
the annotation still holds the text this replica last wrote or read: a write by anyone else, a restart or
a change of leader makes the replica read the annotation again.

What a crash (or a change of leader) between two writes loses, and why that is safe:
- only what an unchanged evaluation adds: the judge's sums for the windows since the last write, the
  compact history entries, the reason's wording. Phase, step, weight, verdicts, failure count and error
  streak are on the cluster, because a change of any of them is written before the tick ends.
- The lost windows are not lost evidence: the next evaluation's window reaches back to the last
  *recorded* evaluation (`analysis.evaluate.evidence_window`), so the traffic of the unrecorded windows
  is counted again, once, in one longer window (capped at ``MAX_EVIDENCE_WINDOW``, 600 s; ``CHECKPOINT``
  is half of it, so a replica that takes over within five minutes counts every request). Windows never
  overlap and nothing is counted twice, which is what keeps the judge's bound (`analysis.evidence`).
  Beyond the cap, the older windows are simply not counted: less evidence, never wrong evidence.
- A weight increase is never lost: act before record stays, and an advance always writes. A step's
  analysis is never skipped: the step index and its start time are written when the step starts, and the
  evaluations it needs are taken again after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from songbird.analysis.evaluate import MAX_EVIDENCE_WINDOW
from songbird.analysis.state import STATUS_ANNOTATION, RolloutState
from songbird.controller.ports import ClusterWriter, Kind, Obj

#: Seconds of unrecorded evaluations after which the status is written anyway.
CHECKPOINT = MAX_EVIDENCE_WINDOW / 2


def annotation(configmap: Obj) -> str:
    """The status annotation's text on ``configmap`` ("" when there is none)."""
    return str(((configmap.get("metadata") or {}).get("annotations") or {}).get(STATUS_ANNOTATION) or "")


def _verdicts(state: RolloutState) -> tuple[tuple[str, str, bool], ...]:
    if not state.history:
        return ()
    return tuple((r.name, r.verdict.value, r.decisive) for r in state.history[-1].results)


def _decided(state: RolloutState) -> RolloutState:
    """The state without what an unchanged evaluation moves on."""
    return replace(
        state,
        updated_at=None,
        last_evaluated_at=None,
        reason="",
        history=(),
        evidence={},
        split=None,
    )


def _split(state: RolloutState) -> tuple[str, int] | None:
    """What is written for a change of the split check: its status at its step (not its counts)."""
    return None if state.split is None else (state.split.status.value, state.split.step)


def must_write(before: RolloutState, after: RolloutState, *, recorded_at: float | None) -> bool:
    """Pure: whether ``after`` must be written, ``before`` being what the cluster holds in every field a
    decision reads, and ``recorded_at`` the evaluation time of the state last written."""
    if _decided(before) != _decided(after) or _verdicts(before) != _verdicts(after):
        return True
    if _split(before) != _split(after):
        return True
    if after.last_evaluated_at is None or after.last_evaluated_at == recorded_at:
        return False
    return recorded_at is None or after.last_evaluated_at - recorded_at >= CHECKPOINT


def read_state(configmap: Obj) -> RolloutState:
    text = ((configmap.get("metadata") or {}).get("annotations") or {}).get(STATUS_ANNOTATION)
    return RolloutState() if not text else RolloutState.from_json(text)


def write_state(
    writer: ClusterWriter, namespace: str, name: str, state: RolloutState, *, text: str | None = None
) -> None:
    """Write ``state`` (its `RolloutState.to_json`, or ``text`` when already made) as the status."""
    body = state.to_json() if text is None else text
    writer.patch(Kind.CONFIGMAP, namespace, name, {"metadata": {"annotations": {STATUS_ANNOTATION: body}}})


@dataclass(frozen=True, kw_only=True)
class _Kept:
    text: str  # the annotation this state continues
    state: RolloutState
    recorded_at: float | None  # last_evaluated_at of the state that text holds


class StatusMemory:
    """Per rollout: the newest state this replica decided, over the annotation text it continues."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], _Kept] = {}

    def resume(self, namespace: str, name: str, configmap: Obj) -> RolloutState:
        """The state to tick from: the one kept in memory while the annotation is still the text it
        continues, else the annotation's (ValueError if it cannot be read)."""
        text = annotation(configmap)
        kept = self._kept.get((namespace, name))
        if kept is not None and kept.text == text:
            return kept.state
        self._kept.pop((namespace, name), None)
        return RolloutState() if not text else RolloutState.from_json(text)

    def recorded_at(self, namespace: str, name: str, configmap: Obj, before: RolloutState) -> float | None:
        """The evaluation time of the status on the cluster (``before`` is the state the tick started
        from or last recorded)."""
        kept = self._kept.get((namespace, name))
        if kept is not None and kept.text == annotation(configmap):
            return kept.recorded_at
        return before.last_evaluated_at

    def wrote(self, namespace: str, name: str, text: str, state: RolloutState) -> None:
        self._kept[(namespace, name)] = _Kept(text=text, state=state, recorded_at=state.last_evaluated_at)

    def held(
        self, namespace: str, name: str, configmap: Obj, state: RolloutState, recorded_at: float | None
    ) -> None:
        self._kept[(namespace, name)] = _Kept(
            text=annotation(configmap), state=state, recorded_at=recorded_at
        )

    def forget(self, namespace: str, name: str) -> None:
        self._kept.pop((namespace, name), None)


__all__ = ["CHECKPOINT", "StatusMemory", "annotation", "must_write", "read_state", "write_state"]
