"""Deleting a policy mid-rollout: the cleanup finalizer, and what is withdrawn before it is removed.

The finalizer `CLEANUP_FINALIZER` is put on the policy ConfigMap by its own write just before the rollout's
first change to the cluster (the canary scale-up), so every object Songbird touches is covered, even when a
crash comes before the first status write. It is a separate merge patch because a merge patch replaces the
whole finalizers list: it carries the other finalizers and the resourceVersion it was computed from as a
precondition (a concurrent change answers 409 and the next tick tries again), which the status writes must
not carry. A ConfigMap with ``metadata.deletionTimestamp`` is rolled back as a failed analysis would be
(traffic withdrawn, then the canary Ingress deleted and the canary scaled to 0, the stable's replicas
restored), a ``PolicyDeleted`` Event is emitted, and only then is the finalizer removed
(`finish_deletion`). When a rollout ends (Succeeded, Failed) the finalizer is removed too.

The policy deleted while a workload no longer accepts it (`controller.consent`): Songbird withdraws the
canary traffic it added by deleting its own canary Ingress (managed-by songbird; no workload is touched,
and ingress-nginx then sends all traffic to the main Ingress's backend, as before the rollout), leaves the
Deployments' replicas and pod templates as they are (the Event says so), and removes the finalizer so the
deletion completes (`withdraw_own_traffic`). Taking back its own traffic needs no consent: it changes only
Songbird's object and returns the owner's route to what the owner set up.

Invariants: the finalizer is removed only after the withdrawal it guards was done and said in an Event;
no function here writes to a workload (Deployment, Service, main Ingress).
"""

from __future__ import annotations

import structlog

from songbird.analysis.plan import TrafficSplit
from songbird.analysis.state import Phase, RolloutState
from songbird.config.policy import Policy
from songbird.controller.keys import CLEANUP_FINALIZER
from songbird.controller.ports import ClusterReader, ClusterWriter, Kind, Obj, Recorder
from songbird.controller.routers.base import Router, RouteView

log = structlog.get_logger("songbird")


def deleting(configmap: Obj) -> bool:
    return bool((configmap.get("metadata") or {}).get("deletionTimestamp"))


def set_finalizer(
    reader: ClusterReader, writer: ClusterWriter, namespace: str, name: str, *, present: bool
) -> None:
    """Add or remove `CLEANUP_FINALIZER`, keeping the other finalizers, with the resourceVersion the
    list was read at as a precondition (a merge patch replaces the whole list)."""
    current = reader.get(Kind.CONFIGMAP, namespace, name)
    if current is None:
        return
    meta = current.get("metadata") or {}
    finalizers = [str(f) for f in meta.get("finalizers") or []]
    if (CLEANUP_FINALIZER in finalizers) == present:
        return
    kept = [f for f in finalizers if f != CLEANUP_FINALIZER]
    wanted = [*kept, CLEANUP_FINALIZER] if present else kept
    body = {"metadata": {"finalizers": wanted, "resourceVersion": meta.get("resourceVersion")}}
    writer.patch(Kind.CONFIGMAP, namespace, name, body)
    log.info(
        "finalizer added" if present else "finalizer removed",
        rollout=f"{namespace}/{name}",
        finalizer=CLEANUP_FINALIZER,
    )


def finish_deletion(
    reader: ClusterReader, writer: ClusterWriter, recorder: Recorder, configmap: Obj, state: RolloutState
) -> None:
    """The canary is withdrawn (or there was none): say so, then let the API server delete the policy."""
    meta = configmap.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    if CLEANUP_FINALIZER not in (meta.get("finalizers") or []):
        return
    what = (
        f"canary {state.canary} withdrawn: no canary traffic or route, {state.canary} scaled to 0"
        if state.canary and state.phase is Phase.FAILED
        else "no canary to withdraw"
    )
    recorder.event(configmap, reason="PolicyDeleted", message=f"policy deleted: {what}"[:1024], warning=False)
    set_finalizer(reader, writer, namespace, name, present=False)


def withdraw_own_traffic(
    reader: ClusterReader,
    writer: ClusterWriter,
    recorder: Recorder,
    router: Router,
    configmap: Obj,
    policy: Policy,
    view: RouteView,
    why: str,
) -> None:
    """The policy is deleted mid-rollout and a workload no longer accepts it: remove the canary
    Ingress Songbird made (its own object; the plan for "no canary" changes nothing else, since the
    main route keeps its stable Service), touch no workload, and let the deletion complete.
    A `ClusterError` is raised to the caller (the finalizer then stays: the next tick tries again)."""
    meta = configmap.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    withdraw = TrafficSplit(stable_service=view.stable_service)
    for change in router.plan(view, policy, name, withdraw):
        if change.kind is Kind.INGRESS and change.name != policy.ingress and change.op == "delete":
            writer.delete(change.kind, namespace, change.name)
            log.info("route changed", rollout=f"{namespace}/{name}", change=change.what)
    recorder.event(
        configmap,
        reason="PolicyDeleted",
        message=(
            f"policy deleted: canary traffic withdrawn (canary Ingress removed); Deployments and "
            f"Services left as they are because {why}"
        )[:1024],
        warning=True,
    )
    set_finalizer(reader, writer, namespace, name, present=False)


__all__ = ["deleting", "finish_deletion", "set_finalizer", "withdraw_own_traffic"]
