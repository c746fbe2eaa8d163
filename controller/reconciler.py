"""One tick of one rollout: policy -> observe -> judge -> decide -> act -> record.

The tick is the only place that sequences I/O, and it keeps the order that makes a crash at any point
safe to resume from:
- act before record: the status annotation describes traffic that is already in force, so a restarted
  controller never repeats a weight increase it did not record (it re-applies the same weight: a no-op);
- within act, scale-ups first, then the route, then scale-downs: a weight is raised only onto canary pods
  that exist, and a rollback withdraws traffic before it removes pods;
- a decision marked ``again`` (rollback, promotion) is recorded before the next transition is taken.
Bad input (invalid policy, missing object, foreign canary Ingress, a Prometheus endpoint or URL the operator
does not allow for the policy's namespace: `config.endpoint_choice.choose`) is recorded in the status and
raised as a Warning Event on the policy ConfigMap, and traffic is not touched (nor is any request sent to
a refused address).

An operator's command (the ``songbird.dev/command`` annotation, `controller.commands`) is handed to the
tick's pure step, which decides it first; its outcome is recorded in the status (``lastCommand``) and said
in an Event naming who asked: a Warning for a refusal, an abort and a promotion that skips the analysis.
The annotation itself is only read, never changed.

Deleting a policy mid-rollout: the finalizer `CLEANUP_FINALIZER` is put on the policy ConfigMap by its own
write just before the rollout's first change to the cluster (the canary scale-up), so every object Songbird
touches is covered, even when a crash comes before the first status write. It is a separate merge patch
because a merge patch replaces the whole finalizers list: it carries the other finalizers and the
resourceVersion it was computed from as a precondition (a concurrent change answers 409 and the next tick
tries again), which the status writes must not carry. A ConfigMap with ``metadata.deletionTimestamp`` is
rolled back as a failed analysis would be (traffic withdrawn, then the canary Ingress deleted and the canary
scaled to 0, the stable's replicas restored), a ``PolicyDeleted`` Event is emitted, and only then is the
finalizer removed. When a rollout ends (Succeeded, Failed) the finalizer is removed too.

Workload opt-in (`controller.consent`): when an object the rollout would change or route to does not accept
the policy, `read_facts` raises `ConsentError` and the tick writes nothing to any workload:
- before a rollout: the policy is refused (a ``NotAccepted`` Warning Event naming each object and what it
  lacks, the same text as the status reason);
- in the middle of one (the annotation was removed, or changed to name other policies): the rollout holds
  where it is and warns the same way; no object is scaled, patched or routed to again, and no analysis is
  run. Canary traffic therefore stays at the weight in force: the canary Ingress Songbird made keeps
  sending that share to the canary Service until the owner restores the annotation (the rollout then
  resumes from its recorded step) or the policy is deleted;
- the policy deleted while consent is missing: Songbird withdraws the canary traffic it added by deleting
  its own canary Ingress (managed-by songbird; no workload is touched, and ingress-nginx then sends all
  traffic to the main Ingress's backend, as before the rollout), leaves the Deployments' replicas and pod
  templates as they are (the Event says so), and removes the finalizer so the deletion completes. Taking
  back its own traffic needs no consent: it changes only Songbird's object and returns the owner's route to
  what the owner set up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from songbird.analysis.cause import Cause
from songbird.analysis.decision import ACTIVE, Action, Decision, Facts
from songbird.analysis.plan import Target, TrafficSplit
from songbird.analysis.state import STATUS_ANNOTATION, Evidence, Phase, RolloutState
from songbird.analysis.step import step
from songbird.analysis.verdict import MetricResult
from songbird.config.endpoint_choice import Refusal, choose
from songbird.config.endpoints import EndpointSettings
from songbird.config.errors import PolicyError, SongbirdError
from songbird.config.loader import load_policy_configmap
from songbird.config.policy import Policy
from songbird.controller.commands import read_request
from songbird.controller.errors import ClusterError, Conflict, ConsentError, NotFound, OwnershipError
from songbird.controller.facts import Observed, read_facts
from songbird.controller.keys import CLEANUP_FINALIZER
from songbird.controller.notices import notices
from songbird.controller.ports import Clock, ClusterReader, ClusterWriter, Kind, Obj, Recorder
from songbird.controller.routers.base import Router, RouteView
from songbird.controller.status import StatusMemory, must_write

log = structlog.get_logger("songbird")

NOT_ACCEPTED = "NotAccepted"  # the Event reason when a workload has not opted in to the policy


class Evaluator(Protocol):
    def evaluate(
        self, policy: Policy, namespace: str, state: RolloutState, now: float
    ) -> tuple[tuple[MetricResult, ...], Evidence]:
        """Verdicts for every metric of the policy, and the judge's updated evidence sums."""
        ...

    def forecast(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> str:
        """Before a rollout: how long promotion evidence should take at the observed traffic."""
        ...

    def history(self, policy: Policy, namespace: str, state: RolloutState, now: float) -> Evidence:
        """Before a rollout: the stable's counts over the last hours, as evidence entries for the judge."""
        ...


class TickListener(Protocol):
    """Receives what a tick did (the controller's own /metrics)."""

    def tick_done(
        self,
        namespace: str,
        name: str,
        before: RolloutState,
        after: RolloutState,
        decisions: tuple[Decision, ...],
        canary_replicas: int | None,
        stable_replicas: int | None,
    ) -> None: ...


@dataclass(frozen=True, kw_only=True)
class TickResult:
    state: RolloutState | None
    decisions: tuple[Decision, ...] = ()
    error: str | None = None


class Reconciler:
    def __init__(
        self,
        *,
        reader: ClusterReader,
        writer: ClusterWriter,
        recorder: Recorder,
        router: Router,
        evaluator: Evaluator,
        clock: Clock,
        listener: TickListener | None = None,
        on_forget: Callable[[str, str], None] | None = None,
        prometheus: EndpointSettings | None = None,
        namespace_label: str | None = None,
    ) -> None:
        """``prometheus``: the operator's Prometheus endpoints; a policy that asks for one it may not use is
        refused before anything is read or changed (None: the evaluator alone decides, in-process use).
        ``namespace_label``: the label custom queries are scoped on; a query that cannot be scoped to the
        policy's namespace is then refused when the policy is read, before any change (`config.scope`)."""
        self.reader = reader
        self.writer = writer
        self.recorder = recorder
        self.router = router
        self.evaluator = evaluator
        self.clock = clock
        self.listener = listener
        self.on_forget = on_forget
        self.prometheus = prometheus
        self.namespace_label = namespace_label
        self.status = StatusMemory()  # what this replica decided since its last status write

    # -- the tick ----------------------------------------------------------------------------------------

    def tick(self, namespace: str, name: str) -> TickResult:
        configmap = self.reader.get(Kind.CONFIGMAP, namespace, name)
        if configmap is None:
            self.status.forget(namespace, name)
            if self.on_forget is not None:
                self.on_forget(namespace, name)
            return TickResult(state=None, error=f"ConfigMap {namespace}/{name} is gone")
        try:
            state = self.status.resume(namespace, name, configmap)
        except ValueError as exc:
            message = (
                f"status annotation {STATUS_ANNOTATION} is not a valid rollout status ({exc}); "
                "remove it to start over"
            )
            self._report(configmap, RolloutState(), message)
            return TickResult(state=None, error=message)
        now = self.clock.now()
        initial = state
        deleting = _deleting(configmap)
        try:
            policy = load_policy_configmap(configmap, namespace_label=self.namespace_label)
            refusal = self._endpoint_refusal(policy, namespace, deleting=deleting)
            if refusal is not None:
                return self._refuse(configmap, state, f"{_source(configmap)}: {refusal.describe()}", now)
            view = self.router.read(self.reader, namespace, policy, name)
            observed = read_facts(
                self.reader, view, namespace, policy, state, deleting=deleting, rollout=name
            )
        except ConsentError as exc:
            if deleting and state.phase in ACTIVE:
                return self._withdraw_own_traffic(configmap, state, policy, view, exc.message, now)
            if deleting:
                self._finish_deletion(configmap, state)
                return TickResult(state=state)
            return self._refuse(configmap, state, exc.message, now, event_reason=NOT_ACCEPTED)
        except (PolicyError, OwnershipError, NotFound) as exc:
            if deleting and state.phase not in ACTIVE:
                self._finish_deletion(configmap, state)  # nothing of a rollout to withdraw
                return TickResult(state=state)
            return self._refuse(configmap, state, _describe(exc, configmap), now)
        except ClusterError as exc:
            return self._refuse(configmap, state, f"Kubernetes API: {exc}", now, transient=True)

        tick = _Transitions(self, configmap, namespace, name, policy, observed, state, now)
        try:
            step(
                policy,
                state,
                observed.facts,
                now,
                verdicts=tick.verdicts,
                started=tick.started,
                acted=tick.acted,
                command=read_request(configmap),
            )
        except (ClusterError, OwnershipError) as exc:
            # Nothing after the failed call was done and the state of the failed transition is not recorded:
            # the next tick decides again from what is in force.
            return self._refuse(
                configmap, tick.state, f"Kubernetes API: {exc}", now, transient=True, decisions=tick.done
            )
        except ConsentError as exc:  # consent withdrawn between two transitions of this tick: hold there
            return self._refuse(
                configmap, tick.state, exc.message, now, decisions=tick.done, event_reason=NOT_ACCEPTED
            )
        decisions, state = tick.done, tick.state
        if state.phase not in ACTIVE:
            try:
                if deleting:
                    self._finish_deletion(configmap, state)
                else:
                    self._set_finalizer(namespace, name, present=False)
            except Conflict as exc:  # the ConfigMap changed since it was read: the next tick tries again
                log.info("finalizer not removed yet", rollout=f"{namespace}/{name}", reason=str(exc))
            except ClusterError as exc:
                return self._refuse(
                    configmap, state, f"Kubernetes API: {exc}", now, transient=True, decisions=decisions
                )
        if self.listener is not None:
            target = next((d.target for d in reversed(decisions) if d.target is not None), None)
            facts = tick.observed.facts
            self.listener.tick_done(
                namespace,
                name,
                initial,
                state,
                decisions,
                target.canary_replicas if target is not None else facts.canary_replicas,
                target.stable_replicas if target is not None else facts.stable_replicas,
            )
        return TickResult(state=state, decisions=decisions)

    def _endpoint_refusal(self, policy: Policy, namespace: str, *, deleting: bool) -> Refusal | None:
        """Why the policy may not query the Prometheus it names (never while withdrawing a deleted one)."""
        if self.prometheus is None or deleting:
            return None
        chosen = choose(self.prometheus, policy.analysis.prometheus, namespace)
        return chosen if isinstance(chosen, Refusal) else None

    # -- the cleanup finalizer ---------------------------------------------------------------------------

    def _set_finalizer(self, namespace: str, name: str, *, present: bool) -> None:
        """Add or remove `CLEANUP_FINALIZER`, keeping the other finalizers, with the resourceVersion the
        list was read at as a precondition (a merge patch replaces the whole list)."""
        current = self.reader.get(Kind.CONFIGMAP, namespace, name)
        if current is None:
            return
        meta = current.get("metadata") or {}
        finalizers = [str(f) for f in meta.get("finalizers") or []]
        if (CLEANUP_FINALIZER in finalizers) == present:
            return
        kept = [f for f in finalizers if f != CLEANUP_FINALIZER]
        wanted = [*kept, CLEANUP_FINALIZER] if present else kept
        body = {"metadata": {"finalizers": wanted, "resourceVersion": meta.get("resourceVersion")}}
        self.writer.patch(Kind.CONFIGMAP, namespace, name, body)
        log.info(
            "finalizer added" if present else "finalizer removed",
            rollout=f"{namespace}/{name}",
            finalizer=CLEANUP_FINALIZER,
        )

    def _finish_deletion(self, configmap: Obj, state: RolloutState) -> None:
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
        self.recorder.event(
            configmap, reason="PolicyDeleted", message=f"policy deleted: {what}"[:1024], warning=False
        )
        self._set_finalizer(namespace, name, present=False)

    def _withdraw_own_traffic(
        self, configmap: Obj, state: RolloutState, policy: Policy, view: RouteView, why: str, now: float
    ) -> TickResult:
        """The policy is deleted mid-rollout and a workload no longer accepts it: remove the canary
        Ingress Songbird made (its own object; the plan for "no canary" changes nothing else, since the
        main route keeps its stable Service), touch no workload, and let the deletion complete."""
        meta = configmap.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        withdraw = TrafficSplit(stable_service=view.stable_service)
        try:
            for change in self.router.plan(view, policy, name, withdraw):
                if change.kind is Kind.INGRESS and change.name != policy.ingress and change.op == "delete":
                    self.writer.delete(change.kind, namespace, change.name)
                    log.info("route changed", rollout=f"{namespace}/{name}", change=change.what)
            self.recorder.event(
                configmap,
                reason="PolicyDeleted",
                message=(
                    f"policy deleted: canary traffic withdrawn (canary Ingress removed); Deployments and "
                    f"Services left as they are because {why}"
                )[:1024],
                warning=True,
            )
            self._set_finalizer(namespace, name, present=False)
        except ClusterError as exc:
            return self._refuse(configmap, state, f"Kubernetes API: {exc}", now, transient=True)
        return TickResult(state=state)

    # -- act ---------------------------------------------------------------------------------------------

    def _act(
        self, policy: Policy, namespace: str, name: str, observed: Observed, target: Target | None
    ) -> None:
        if target is None:
            return
        facts = observed.facts
        canary, stable = facts.canary, facts.stable
        if target.canary_replicas > 0:
            self._place(policy, namespace, observed.canary)
        if target.canary_replicas > facts.canary_replicas:
            self._scale(namespace, canary, target.canary_replicas)
        if target.stable_replicas > facts.stable_replicas and stable != canary:
            self._scale(namespace, stable, target.stable_replicas)
        for change in self.router.plan(observed.view, policy, name, target.traffic):
            if change.op == "create":
                self.writer.create(change.kind, namespace, change.body)
            elif change.op == "patch":
                self.writer.patch(change.kind, namespace, change.name, change.body)
            else:
                self.writer.delete(change.kind, namespace, change.name)
            log.info("route changed", rollout=f"{namespace}/{name}", change=change.what)
        if target.canary_replicas < facts.canary_replicas:
            self._scale(namespace, canary, target.canary_replicas)
        if target.stable_replicas < facts.stable_replicas and stable != canary:
            self._scale(namespace, stable, target.stable_replicas)

    def _scale(self, namespace: str, deployment: str, replicas: int) -> None:
        # Through the scale subresource: the right to scale (deployments/scale) is not the right to
        # change what a Deployment runs. Only placement (`_place`) patches the Deployment itself.
        self.writer.scale(namespace, deployment, replicas)
        log.info("scaled", deployment=f"{namespace}/{deployment}", replicas=replicas)

    def _place(self, policy: Policy, namespace: str, canary: Obj) -> None:
        wanted = dict(policy.placement.node_selector)
        if not wanted:
            return
        template_spec = ((canary.get("spec") or {}).get("template") or {}).get("spec") or {}
        have = template_spec.get("nodeSelector") or {}
        if all(have.get(k) == v for k, v in wanted.items()):
            return
        name = (canary.get("metadata") or {}).get("name", "")
        self.writer.patch(
            Kind.DEPLOYMENT, namespace, name, {"spec": {"template": {"spec": {"nodeSelector": wanted}}}}
        )
        log.info("placement applied", deployment=f"{namespace}/{name}", node_selector=wanted)

    # -- record ------------------------------------------------------------------------------------------

    def _record(
        self,
        configmap: Obj,
        namespace: str,
        name: str,
        before: RolloutState,
        decision: Decision,
        *,
        evaluated: bool,
    ) -> None:
        state = decision.state
        recorded_at = self.status.recorded_at(namespace, name, configmap, before)
        if decision.action is Action.HOLD and not must_write(before, state, recorded_at=recorded_at):
            # An unchanged evaluation (or only the wording of a hold): kept in memory, not written
            # (`controller.status` says what a crash before the next write loses, and why that is safe).
            self.status.held(namespace, name, configmap, state, recorded_at)
            log.debug("hold", rollout=f"{namespace}/{name}", reason=decision.reason)
            return
        text = state.to_json()
        write_state(self.writer, namespace, name, state, text=text)
        configmap.setdefault("metadata", {}).setdefault("annotations", {})[STATUS_ANNOTATION] = text
        self.status.wrote(namespace, name, text, state)
        last = state.history[-1] if evaluated and state.history else None
        verdicts = {r.name: r.verdict.value for r in last.results} if last is not None else {}
        log.info(
            "decision",
            rollout=f"{namespace}/{name}",
            phase=state.phase.value,
            step=state.step + 1,
            weight=state.weight,
            action=decision.action.value,
            verdicts=verdicts,
            dry_run=sorted(r.name for r in last.results if r.dry_run) if last is not None else [],
            split=state.split.to_dict() if state.split is not None else None,
            reason=decision.reason,
            results=[r.to_dict() for r in last.results] if last is not None else [],
        )
        if state.last_command is not None and state.last_command != before.last_command:
            self._command_event(configmap, decision)
        if state.phase != before.phase or state.step != before.step:
            warning = state.phase in (Phase.ROLLING_BACK, Phase.FAILED, Phase.PAUSED)
            self.recorder.event(
                configmap,
                reason=_event_reason(before, state, decision),
                message=f"{state.phase.value}: {decision.reason}"[:1024],
                warning=warning,
            )
        for notice in notices(before, state):
            self.recorder.event(
                configmap, reason=notice.reason, message=notice.message[:1024], warning=notice.warning
            )

    def _command_event(self, configmap: Obj, decision: Decision) -> None:
        last = decision.state.last_command
        assert last is not None
        who = last.by if last.by is not None else "an unknown manager"
        refused = last.result == "refused"
        loud = refused or decision.cause in (Cause.ABORTED, Cause.COMMAND_PROMOTE)
        self.recorder.event(
            configmap,
            reason="CommandRefused" if refused else "CommandExecuted",
            message=f"{last.command} requested by {who}: {last.message}"[:1024],
            warning=loud,
        )
        (log.warning if loud else log.info)(
            "command",
            rollout=f"{(configmap.get('metadata') or {}).get('namespace')}/"
            f"{(configmap.get('metadata') or {}).get('name')}",
            id=last.id,
            command=last.command,
            result=last.result,
            by=last.by,
            message=last.message,
        )

    def _refuse(
        self,
        configmap: Obj,
        state: RolloutState,
        message: str,
        now: float,
        *,
        transient: bool = False,
        decisions: tuple[Decision, ...] = (),
        event_reason: str = "RolloutBlocked",
    ) -> TickResult:
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
            self._report(configmap, replace(state, reason=message, updated_at=now), message, event_reason)
        return TickResult(state=state, decisions=decisions, error=message)

    def _report(
        self, configmap: Obj, state: RolloutState, message: str, event_reason: str = "RolloutBlocked"
    ) -> None:
        meta = configmap.get("metadata") or {}
        self.recorder.event(configmap, reason=event_reason, message=message[:1024], warning=True)
        try:
            write_state(self.writer, meta.get("namespace", ""), meta.get("name", ""), state)
        except ClusterError as exc:
            log.warning(
                "status not written", configmap=f"{meta.get('namespace')}/{meta.get('name')}", error=str(exc)
            )


class _Transitions:
    """The I/O between the transitions of one tick, handed to `analysis.step.step`: judge the metrics,
    read the stable's history at a start, and for each decision act, then record, then (after an
    ``again``) read the cluster afresh for the next one."""

    def __init__(
        self,
        reconciler: Reconciler,
        configmap: Obj,
        namespace: str,
        name: str,
        policy: Policy,
        observed: Observed,
        state: RolloutState,
        now: float,
    ) -> None:
        self.r = reconciler
        self.configmap = configmap
        self.namespace = namespace
        self.name = name
        self.policy = policy
        self.observed = observed
        self.state = state  # the last state recorded (or read at the tick's start)
        self.now = now
        self.evaluated = False  # the metrics were judged this tick
        self.reported = False  # and the decision that took their verdicts was recorded
        self.done: tuple[Decision, ...] = ()  # decisions acted on and recorded, in order

    def verdicts(self, state: RolloutState) -> tuple[tuple[MetricResult, ...], Evidence]:
        self.evaluated = True
        self.reported = False
        return self.r.evaluator.evaluate(self.policy, self.namespace, state, self.now)

    def started(self, state: RolloutState) -> RolloutState:
        said = self.r.evaluator.forecast(self.policy, self.namespace, state, self.now)
        log.info("forecast", rollout=f"{self.namespace}/{self.name}", forecast=said)
        seen = self.r.evaluator.history(self.policy, self.namespace, state, self.now)
        return replace(state, forecast=said, evidence={**state.evidence, **seen})

    def acted(self, decision: Decision, facts: Facts) -> Facts:
        r = self.r
        if decision.target is not None and decision.state.phase in ACTIVE and not facts.deleting:
            # Before the rollout's first change: a later deletion of the policy waits for its cleanup.
            r._set_finalizer(self.namespace, self.name, present=True)
        r._act(self.policy, self.namespace, self.name, self.observed, decision.target)
        evaluated = self.evaluated and not self.reported  # only the first decision after them saw them
        self.reported = self.evaluated
        r._record(self.configmap, self.namespace, self.name, self.state, decision, evaluated=evaluated)
        self.done = (*self.done, decision)
        self.state = decision.state
        if decision.again:
            view = r.router.read(r.reader, self.namespace, self.policy, self.name)
            self.observed = read_facts(
                r.reader,
                view,
                self.namespace,
                self.policy,
                self.state,
                deleting=facts.deleting,
                rollout=self.name,
            )
        return self.observed.facts


def _deleting(configmap: Obj) -> bool:
    return bool((configmap.get("metadata") or {}).get("deletionTimestamp"))


def read_state(configmap: Obj) -> RolloutState:
    text = ((configmap.get("metadata") or {}).get("annotations") or {}).get(STATUS_ANNOTATION)
    return RolloutState() if not text else RolloutState.from_json(text)


def write_state(
    writer: ClusterWriter, namespace: str, name: str, state: RolloutState, *, text: str | None = None
) -> None:
    """Write ``state`` (its `RolloutState.to_json`, or ``text`` when already made) as the status."""
    body = state.to_json() if text is None else text
    writer.patch(Kind.CONFIGMAP, namespace, name, {"metadata": {"annotations": {STATUS_ANNOTATION: body}}})


def _source(configmap: Obj) -> str:
    meta = configmap.get("metadata") or {}
    return f"ConfigMap {meta.get('namespace', '')}/{meta.get('name', '')}"


def _describe(exc: SongbirdError, configmap: Obj) -> str:
    source = _source(configmap)
    if isinstance(exc, PolicyError):
        return f"{source}: invalid policy: {exc.path + ': ' if exc.path else ''}{exc.message}"
    if isinstance(exc, OwnershipError):
        return f"{source}: {exc}"
    return f"{source}: {exc}"


def _event_reason(before: RolloutState, after: RolloutState, decision: Decision) -> str:
    if after.phase is Phase.INITIALIZING:
        return "RolloutStarted"
    if after.phase is Phase.PROGRESSING and after.step != before.step:
        return "StepAdvanced"
    names: dict[Phase, str] = {
        Phase.PAUSED: "RolloutPaused",
        Phase.PROMOTING: "Promoting",
        Phase.SUCCEEDED: "Promoted",
        Phase.ROLLING_BACK: "RollingBack",
        Phase.FAILED: "RolledBack",
        Phase.PROGRESSING: "RolloutResumed",
        Phase.IDLE: "Idle",
    }
    return names.get(after.phase, decision.action.value.capitalize())


__all__ = ["Evaluator", "Reconciler", "TickListener", "TickResult", "read_state", "write_state"]
