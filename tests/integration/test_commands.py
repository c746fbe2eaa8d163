"""Operator commands and pause steps end to end, in virtual time: the real reconciler and Kubernetes client
against kmock's emulator over HTTP, the real Prometheus adapter against a real Prometheus.

The command is the ``songbird.dev/command`` annotation, written as ``kubectl annotate`` would. kmock
records no ``managedFields``; the tests add the entry a real API server records for the writer
(``kubectl-annotate``, owning ``f:metadata.f:annotations.f:songbird.dev/command``), or none.

Covers: abort in Initializing, Progressing, Paused and Promoting (before the switch), each rolling back with
"aborted by <who>" in status and a Warning Event; promote in Initializing, Progressing and during a pause
step (all remaining steps skipped, said loudly) and promote --step while progressing and while paused (the
next weight now); pause holding the weight while the analysis goes on, resume moving
on, a FAIL while paused still rolling back; retry of a Failed rollout from step 1; each refused case (resume
when not paused, pause twice, retry while progressing, abort after success, promote --step before the
first step, an unreadable annotation) with a Warning Event, a status line and no traffic change; the
unknown manager; a command not executed again after a controller restart; a GitOps re-apply of the
unchanged policy (with the same command annotation, and without it) not undoing an abort, the annotation
and the policy left as written; pause steps, timed (the weight held for its time after the step's
interval, then the next one) and indefinite (until resume, or promote)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest

from songbird.analysis.state import Phase, RolloutState
from songbird.config.command import COMMAND_ANNOTATION
from songbird.controller.routers.ingress_nginx import canary_name
from tests.support import scenario
from tests.support.nginx_series import Traffic
from tests.support.world import BASE_POLICY, POLICY_NAME, World

MakeWorld = Callable[..., AbstractContextManager[World]]

pytestmark = pytest.mark.slow

P = "nginx.ingress.kubernetes.io"
CANARY_INGRESS = canary_name(scenario.MAIN_INGRESS)
LATENCY = {0.02: 0.995, 1.0: 0.005}
HEALTHY = Traffic(rate=30.0, error_share=0.01, latency=LATENCY)
BAD = Traffic(rate=30.0, error_share=0.05, latency=LATENCY)
PAUSE_STEPS = BASE_POLICY.replace(
    "steps: [10, 20, 40, 60, 80]", "steps: [10, {pause: 2m}, 20, {pause: {}}, 40]"
)


def weight_of(w: World) -> float | None:
    ing = w.ingress(CANARY_INGRESS)
    return None if ing is None else float(ing["metadata"]["annotations"][f"{P}/canary-weight"])


def backend_of(w: World) -> str:
    ing = w.ingress(scenario.MAIN_INGRESS)
    assert ing is not None
    return str(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"])


def annotate(w: World, body: dict[str, Any] | str, *, manager: str | None = "kubectl-annotate") -> None:
    """Write the command annotation as ``kubectl annotate --overwrite`` does, with the managedFields entry a
    real API server would record for the writer (``manager`` None: the server recorded none)."""
    cm = w.get("ConfigMap", POLICY_NAME)
    assert cm is not None
    meta = cm["metadata"]
    meta.setdefault("annotations", {})[COMMAND_ANNOTATION] = (
        body if isinstance(body, str) else json.dumps(body)
    )
    entries = [e for e in meta.get("managedFields") or [] if e.get("manager") != manager]
    if manager is not None:
        at = datetime.fromtimestamp(w.clock.t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entries.append(
            {
                "manager": manager,
                "operation": "Update",
                "apiVersion": "v1",
                "time": at,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{COMMAND_ANNOTATION}": {}}}},
            }
        )
    meta["managedFields"] = entries
    w.cluster.put("ConfigMap", w.namespace, cm)


def command(
    w: World, name: str, ident: str, *, step: bool = False, manager: str | None = "kubectl-annotate"
) -> RolloutState:
    body: dict[str, Any] = {"id": ident, "command": name}
    if step:
        body["step"] = True
    annotate(w, body, manager=manager)
    w.tick()
    w.kubelet()
    return w.state()


def gitops_apply(w: World, policy: str, annotation: str | None) -> None:
    """What a GitOps sync of the unchanged manifest does (``kubectl apply``, or a server-side apply): the
    manifest's fields are set again; annotations it does not carry (the status) are kept."""
    cm = w.get("ConfigMap", POLICY_NAME)
    assert cm is not None
    cm["data"] = {"policy.yaml": textwrap.dedent(policy.replace("PROM_URL", w.prom_url))}
    annotations = cm["metadata"].setdefault("annotations", {})
    if annotation is None:
        annotations.pop(COMMAND_ANNOTATION, None)
    else:
        annotations[COMMAND_ANNOTATION] = annotation
    w.cluster.put("ConfigMap", w.namespace, cm)


def messages(w: World, reason: str) -> list[tuple[str, str]]:
    return [(e["type"], e["message"]) for e in w.events(reason)]


def rolled_back(w: World) -> bool:
    return w.ingress(CANARY_INGRESS) is None and w.replicas("nginx-v2") == 0 and backend_of(w) == "nginx-v1"


def test_abort_while_progressing_survives_restart_and_gitops_reapply(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        assert w.run(70).step == 1 and weight_of(w) == 20
        state = command(w, "abort", "abort-1")
        assert state.phase is Phase.FAILED and state.reason == "aborted by kubectl-annotate"
        assert rolled_back(w)
        last = state.last_command
        assert last is not None and (last.id, last.command, last.result, last.by) == (
            "abort-1",
            "abort",
            "executed",
            "kubectl-annotate",
        )
        assert messages(w, "CommandExecuted") == [
            ("Warning", "abort requested by kubectl-annotate: aborted by kubectl-annotate")
        ]
        assert ("Warning", "Failed: aborted by kubectl-annotate") in messages(w, "RolledBack")
        raw = json.loads(w.get("ConfigMap", POLICY_NAME)["metadata"]["annotations"]["songbird.dev/status"])  # type: ignore[index]
        assert raw["lastCommand"]["id"] == "abort-1" and raw["paused"] is False
        # A new controller process: the command is in the status, so it is not executed again.
        w.restart()
        w.emulator.forget_requests()
        w.run(60)
        # GitOps: the unchanged policy applied again, with the same command annotation, then without it.
        annotation = w.get("ConfigMap", POLICY_NAME)["metadata"]["annotations"][COMMAND_ANNOTATION]  # type: ignore[index]
        gitops_apply(w, BASE_POLICY, annotation)
        w.run(120)
        gitops_apply(w, BASE_POLICY, None)
        after = w.run(120)
        assert after.phase is Phase.FAILED and after.last_command == last and rolled_back(w)
        assert len(w.events("CommandExecuted")) == 1
        writes = [
            r
            for r in w.emulator.requests
            if r.verb in ("create", "patch", "delete") and r.resource != "events"
        ]
        assert {r.resource for r in writes} <= {"configmaps"}
        # The controller changed neither the command nor the policy.
        cm = w.get("ConfigMap", POLICY_NAME)
        assert cm is not None and COMMAND_ANNOTATION not in cm["metadata"]["annotations"]
        assert "steps: [10, 20, 40, 60, 80]" in cm["data"]["policy.yaml"]


def test_abort_before_the_first_step_while_paused_and_while_promoting(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.tick()  # no kubelet: the canary pods never become ready
        assert w.state().phase is Phase.INITIALIZING
        state = command(w, "abort", "a-init", manager=None)
        assert state.phase is Phase.FAILED and state.reason == "aborted by an unknown manager"
        assert rolled_back(w) and state.last_command is not None and state.last_command.by is None
        assert (
            messages(w, "CommandExecuted")[-1][1]
            == "abort requested by an unknown manager: aborted by an unknown manager"
        )
        # retry: from step 1 again, then pause, then abort while paused.
        state = command(w, "retry", "r-1")
        assert state.phase is Phase.INITIALIZING
        assert w.run(20).phase is Phase.PROGRESSING and weight_of(w) == 10
        assert command(w, "pause", "p-1").phase is Phase.PAUSED
        state = command(w, "abort", "a-paused")
        assert state.phase is Phase.FAILED and not state.paused and rolled_back(w)
        # retry, promote (the canary scales up first), abort before the main route switches.
        command(w, "retry", "r-2")
        w.run(20)
        state = command(w, "promote", "pr-1")
        assert state.phase is Phase.PROMOTING
        state = command(w, "abort", "a-promoting")
        assert state.phase is Phase.FAILED and rolled_back(w)


def test_promote_skips_the_remaining_steps_and_says_so(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(20)
        assert weight_of(w) == 10
        state = command(w, "promote", "go")
        assert state.phase is Phase.PROMOTING
        assert "PROMOTE BY COMMAND from kubectl-annotate, ANALYSIS NOTWITHSTANDING: 4 remaining step(s)" in (
            state.last_command.message  # type: ignore[union-attr]
        )
        assert "(PROMOTE BY COMMAND from kubectl-annotate, analysis notwithstanding)" in state.reason
        kind, message = messages(w, "CommandExecuted")[-1]
        assert kind == "Warning" and message.startswith(
            "promote requested by kubectl-annotate: promoting: PROMOTE"
        )
        final = w.run(120)
        assert final.phase is Phase.SUCCEEDED and backend_of(w) == "nginx-v2"
        assert final.reason.endswith("(PROMOTE BY COMMAND from kubectl-annotate, analysis notwithstanding)")
        # After success, abort does not apply.
        state = command(w, "abort", "late")
        assert state.phase is Phase.SUCCEEDED and backend_of(w) == "nginx-v2"
        assert state.last_command is not None and state.last_command.result == "refused"
        assert "abort refused: the rollout is Succeeded" in state.last_command.message
        assert messages(w, "CommandRefused")[-1][0] == "Warning"


def test_promote_step_advances_one_step_now(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.tick()
        state = command(w, "promote", "too-early", step=True, manager=None)
        assert state.phase is Phase.INITIALIZING and "step 1 starts as soon as" in state.last_command.message  # type: ignore[union-attr]
        w.run(20)
        assert weight_of(w) == 10
        started = w.state().step_started_at
        w.run(15)  # less than the step's interval
        state = command(w, "promote", "next", step=True)
        assert state.step == 1 and weight_of(w) == 20 and state.step_started_at != started
        assert state.last_command is not None and state.last_command.result == "executed"
        assert w.replicas("nginx-v2") >= 1


def test_pause_holds_the_weight_while_the_analysis_goes_on_then_resume(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(20)
        state = command(w, "pause", "hold")
        assert state.phase is Phase.PAUSED and state.paused and weight_of(w) == 10
        assert "paused by kubectl-annotate" in state.reason
        before = len(w.evaluations())
        held = w.run(300)  # five intervals
        assert held.phase is Phase.PAUSED and held.paused and weight_of(w) == 10 and held.step == 0
        assert len(w.evaluations()) >= before + 15  # analysis kept running at 10%
        # refused while paused: pause again, retry.
        assert "already paused" in command(w, "pause", "hold-2").last_command.message  # type: ignore[union-attr]
        assert "only a Failed rollout can be retried" in command(w, "retry", "again").last_command.message  # type: ignore[union-attr]
        assert len(w.events("CommandRefused")) == 2 and weight_of(w) == 10
        state = command(w, "resume", "go-on")
        assert not state.paused and state.phase is Phase.PROGRESSING
        w.run(10)
        assert weight_of(w) == 20
        # resume when not paused: refused, nothing changes.
        state = command(w, "resume", "go-on-2")
        assert state.last_command is not None and state.last_command.result == "refused"
        assert "not paused" in state.last_command.message and weight_of(w) == 20


def test_a_failing_canary_is_rolled_back_while_paused(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=BAD) as w:
        w.run(10)
        assert weight_of(w) == 10
        assert command(w, "pause", "hold").paused
        state = w.run(300)
        assert state.phase is Phase.FAILED and state.reason.startswith("error-rate: ") and rolled_back(w)
        state = command(w, "retry", "retry-1")
        assert state.phase in (Phase.INITIALIZING, Phase.PROGRESSING)
        assert "retry requested by kubectl-annotate" in messages(w, "CommandExecuted")[-1][1]
        w.run(10)
        assert weight_of(w) == 10 and w.state().step == 0


def test_an_unreadable_command_is_refused_once_with_a_warning(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(20)
        annotate(w, '{"id": "x1", "command": "abort", "force": true}')
        w.emulator.forget_requests()
        state = w.run(60)
        assert state.phase is Phase.PROGRESSING and weight_of(w) is not None and weight_of(w) >= 10
        last = state.last_command
        assert last is not None and last.result == "refused" and last.command == "invalid"
        refused = messages(w, "CommandRefused")
        assert refused == [
            (
                "Warning",
                "invalid requested by kubectl-annotate: invalid refused: annotation songbird.dev/command: "
                'unknown key "force" (known: command, id, step)',
            )
        ]
        deletes = [r for r in w.emulator.requests if r.verb == "delete" and r.resource != "events"]
        assert deletes == [] and w.replicas("nginx-v2") >= 1  # nothing withdrawn


def test_pause_steps_timed_then_indefinite_until_resume(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY, policy=PAUSE_STEPS) as w:
        seen: list[tuple[float, float | None, Phase]] = []
        start = w.clock.t
        for _ in range(100):
            w.tick()
            w.kubelet()
            seen.append((w.clock.t - start, weight_of(w), w.state().phase))
            w.clock.advance(5)
        at_10 = [t for t, weight, _ in seen if weight == 10]
        # 10% for its interval (1 min), then the timed pause (2 min), then 20%.
        assert 175 <= at_10[-1] - at_10[0] <= 200, (at_10[0], at_10[-1])
        assert any(weight == 10 and phase is Phase.PAUSED for _, weight, phase in seen)
        # 20% for its interval, then the indefinite pause: still at 20% 5 minutes later.
        state = w.run(300)
        assert state.phase is Phase.PAUSED and state.paused and weight_of(w) == 20
        assert "pause step: holding until resume or promote" in state.reason
        state = command(w, "resume", "go")
        w.run(10)
        assert weight_of(w) == 40
        assert w.run(300).phase is Phase.SUCCEEDED


def test_an_indefinite_pause_step_ended_by_promote(make_world: MakeWorld) -> None:
    policy = BASE_POLICY.replace("steps: [10, 20, 40, 60, 80]", "steps: [10, {pause: {}}, 20]")
    with make_world(stable=HEALTHY, canary=HEALTHY, policy=policy) as w:
        state = w.run(200)
        assert state.phase is Phase.PAUSED and state.paused and weight_of(w) == 10
        state = command(w, "promote", "ship-it")
        assert state.phase is Phase.PROMOTING and not state.paused
        assert w.run(120).phase is Phase.SUCCEEDED and backend_of(w) == "nginx-v2"


def test_promote_before_the_first_step_and_promote_step_while_paused(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.tick()  # Initializing: the canary pods are not ready yet
        state = command(w, "promote", "early")
        assert state.phase is Phase.PROMOTING and backend_of(w) == "nginx-v1"
        assert w.run(120).phase is Phase.SUCCEEDED and backend_of(w) == "nginx-v2"
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(20)
        assert command(w, "pause", "hold").paused and weight_of(w) == 10
        w.run(30)
        state = command(w, "promote", "one-more", step=True)
        assert state.step == 1 and weight_of(w) == 20 and not state.paused
        assert state.phase is Phase.PROGRESSING
