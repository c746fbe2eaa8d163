"""Refusing a policy: the status reason and the Warning Event that say why a rollout does not go on.

Bad input (invalid policy, missing object, foreign canary Ingress, a Prometheus endpoint or URL the operator
does not allow for the policy's namespace: `config.endpoint_choice.choose`) is recorded in the status and
raised as a Warning Event on the policy ConfigMap, and traffic is not touched (nor is any request sent to
a refused address). A transient Kubernetes API failure is refused the same way; the next tick decides again
from what is in force.

Workload opt-in (`controller.consent`): when an object the rollout would change or route to does not accept
the policy, the tick writes nothing to any workload and refuses with the ``NOT_ACCEPTED`` reason:
- before a rollout: the policy is refused (a ``NotAccepted`` Warning Event naming each object and what it
  lacks, the same text as the status reason);
- in the middle of one (the annotation was removed, or changed to name other policies): the rollout holds
  where it is and warns the same way; no object is scaled, patched or routed to again, and no analysis is
  run. Canary traffic therefore stays at the weight in force: the canary Ingress Songbird made keeps
  sending that share to the canary Service until the owner restores the annotation (the rollout then
  resumes from its recorded step) or the policy is deleted (`controller.deletion`).

Invariants: a refusal never changes the phase, step or weight, only the status reason and its time; the
same reason is reported once (no Event and no status write while it is already the recorded reason); a
failure to write the status is logged, never raised, so a refusal cannot itself fail the tick.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from songbird.analysis.state import RolloutState
from songbird.config.errors import PolicyError, SongbirdError
from songbird.controller.errors import ClusterError, OwnershipError
from songbird.controller.ports import ClusterWriter, Obj, Recorder
from songbird.controller.status import write_state

log = structlog.get_logger("songbird")

NOT_ACCEPTED = "NotAccepted"  # the Event reason when a workload has not opted in to the policy
BLOCKED = "RolloutBlocked"  # the Event reason for every other refusal


def refuse(
    writer: ClusterWriter,
    recorder: Recorder,
    configmap: Obj,
    state: RolloutState,
    message: str,
    now: float,
    *,
    transient: bool = False,
    event_reason: str = BLOCKED,
) -> None:
    """Log the refusal; report it (Event and status reason) unless it is already the recorded reason."""
    meta = configmap.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    log.warning(
        "refused",
        rollout=f"{namespace}/{name}",
        phase=state.phase.value,
        error=message,
        transient=transient,
    )
    if message != state.reason:
        report(
            writer, recorder, configmap, replace(state, reason=message, updated_at=now), message, event_reason
        )


def report(
    writer: ClusterWriter,
    recorder: Recorder,
    configmap: Obj,
    state: RolloutState,
    message: str,
    event_reason: str = BLOCKED,
) -> None:
    """A Warning Event with ``message``, then ``state`` written as the status (a failure only logged)."""
    meta = configmap.get("metadata") or {}
    recorder.event(configmap, reason=event_reason, message=message[:1024], warning=True)
    try:
        write_state(writer, meta.get("namespace", ""), meta.get("name", ""), state)
    except ClusterError as exc:
        log.warning(
            "status not written", configmap=f"{meta.get('namespace')}/{meta.get('name')}", error=str(exc)
        )


def source(configmap: Obj) -> str:
    meta = configmap.get("metadata") or {}
    return f"ConfigMap {meta.get('namespace', '')}/{meta.get('name', '')}"


def describe(exc: SongbirdError, configmap: Obj) -> str:
    """The refusal's text for bad input, naming the policy ConfigMap (and the field, for a policy error)."""
    where = source(configmap)
    if isinstance(exc, PolicyError):
        return f"{where}: invalid policy: {exc.path + ': ' if exc.path else ''}{exc.message}"
    if isinstance(exc, OwnershipError):
        return f"{where}: {exc}"
    return f"{where}: {exc}"


__all__ = ["BLOCKED", "NOT_ACCEPTED", "describe", "refuse", "report", "source"]
