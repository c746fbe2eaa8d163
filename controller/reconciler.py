"""One tick of one rollout: policy -> observe -> judge -> decide -> act -> record.

The tick is the only place that sequences I/O, and it keeps the order that makes a crash at any point
safe to resume from:
- act before record (`controller.transitions`): the status annotation describes traffic that is already in
  force, so a restarted controller never repeats a weight increase it did not record;
- within act, scale-ups first, then the route, then scale-downs: a weight is raised only onto canary pods
  that exist, and a rollback withdraws traffic before it removes pods;
- a decision marked ``again`` (rollback, promotion) is recorded before the next transition is taken.
Bad input, a refused Prometheus endpoint, a transient API failure and a workload that does not accept the
policy are refused (`controller.refusal`): said in the status and a Warning Event, traffic not touched.
Deleting a policy (the cleanup finalizer, and what is withdrawn before it is removed) is
`controller.deletion`; the status writes are `controller.status`.

An operator's command (the ``songbird.dev/command`` annotation, `controller.commands`) is handed to the
tick's pure step, which decides it first; its outcome is recorded in the status (``lastCommand``) and said
in an Event naming who asked: a Warning for a refusal, an abort and a promotion that skips the analysis.
The annotation itself is only read, never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from songbird.analysis.cause import Cause
from songbird.analysis.decision import ACTIVE, Action, Decision
from songbird.analysis.plan import Target
from songbird.analysis.state import STATUS_ANNOTATION, Phase, RolloutState
from songbird.analysis.step import step
from songbird.config.endpoint_choice import Refusal, choose
from songbird.config.endpoints import EndpointSettings
from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_configmap
from songbird.config.policy import Policy
from songbird.controller.commands import read_request
from songbird.controller.deletion import deleting as _deleting
from songbird.controller.deletion import finish_deletion, set_finalizer, withdraw_own_traffic
from songbird.controller.errors import ClusterError, Conflict, ConsentError, NotFound, OwnershipError
from songbird.controller.facts import Observed, read_facts
from songbird.controller.notices import notices
from songbird.controller.ports import Clock, ClusterReader, ClusterWriter, Kind, Obj, Recorder
from songbird.controller.refusal import BLOCKED, NOT_ACCEPTED, describe, refuse, report, source
from songbird.controller.routers.base import Router
from songbird.controller.status import StatusMemory, must_write, read_state, write_state
from songbird.controller.transitions import Evaluator, Transitions

log = structlog.get_logger("songbird")


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
            report(self.writer, self.recorder, configmap, RolloutState(), message)
            return TickResult(state=None, error=message)
        now = self.clock.now()
        initial = state
        deleting = _deleting(configmap)
        try:
            policy = load_policy_configmap(configmap, namespace_label=self.namespace_label)
            refusal = self._endpoint_refusal(policy, namespace, deleting=deleting)
            if refusal is not None:
                return self._refuse(configmap, state, f"{source(configmap)}: {refusal.describe()}", now)
            view = self.router.read(self.reader, namespace, policy, name)
            observed = read_facts(
                self.reader, view, namespace, policy, state, deleting=deleting, rollout=name
            )
        except ConsentError as exc:
            if deleting and state.phase in ACTIVE:
                edges = (self.reader, self.writer, self.recorder, self.router)
                try:
                    withdraw_own_traffic(*edges, configmap, policy, view, exc.message)
                except ClusterError as error:
                    return self._refuse(configmap, state, f"Kubernetes API: {error}", now, transient=True)
                return TickResult(state=state)
            if deleting:
                finish_deletion(self.reader, self.writer, self.recorder, configmap, state)
                return TickResult(state=state)
            return self._refuse(configmap, state, exc.message, now, event_reason=NOT_ACCEPTED)
        except (PolicyError, OwnershipError, NotFound) as exc:
            if deleting and state.phase not in ACTIVE:
                # nothing of a rollout to withdraw
                finish_deletion(self.reader, self.writer, self.recorder, configmap, state)
                return TickResult(state=state)
            return self._refuse(configmap, state, describe(exc, configmap), now)
        except ClusterError as exc:
            return self._refuse(configmap, state, f"Kubernetes API: {exc}", now, transient=True)

        tick = Transitions(self, configmap, namespace, name, policy, observed, state, now)
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
                    finish_deletion(self.reader, self.writer, self.recorder, configmap, state)
                else:
                    set_finalizer(self.reader, self.writer, namespace, name, present=False)
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

    # -- act ---------------------------------------------------------------------------------------------

    def act(
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

    def record(
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
        event_reason: str = BLOCKED,
    ) -> TickResult:
        refuse(
            self.writer,
            self.recorder,
            configmap,
            state,
            message,
            now,
            transient=transient,
            event_reason=event_reason,
        )
        return TickResult(state=state, decisions=decisions, error=message)


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


__all__ = [
    "NOT_ACCEPTED",
    "Evaluator",
    "Reconciler",
    "TickListener",
    "TickResult",
    "read_state",
    "write_state",
]
