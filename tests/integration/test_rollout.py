"""The rollout engine end to end, in virtual time: the real reconciler with the real Kubernetes client
against kmock's emulator over HTTP, and the real Prometheus adapter against a real Prometheus holding
ingress-nginx-shaped history (canary traffic under the main Ingress, told apart by the `canary` label).

Covers, each as its own test: a healthy canary promoted through every step with the objects in their final
state; a canary with 5% errors rolled back at the evaluation where the evidence suffices, with the reason in
status and Event; header routing present during the rollout and gone after; canary replicas following the
weight (scaled before each weight increase); placement applied to the canary only; a controller restarted
mid-rollout resuming at the same step, also after a crash between the traffic change and the status write;
an invalid policy rejected with its field path and no change to traffic; a missing Deployment and a
hand-made canary Ingress refused; a policy naming a Deployment that did not opt in (``postgres``, with a
placement) refused with a NotAccepted Warning naming it, postgres' replicas and pod template unchanged and
nothing written but the policy's status; an unreachable Prometheus holding the rollout, then rolling it
back after errorDeadline; a new pod template restarting from step 1; the next release after a promotion
starting from the promoted version; an API error (403) mid-advance reported with the object named,
traffic unchanged, and the rollout resuming once the API allows it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from songbird.analysis.state import Phase
from songbird.controller.routers.ingress_nginx import canary_name
from tests.support import scenario
from tests.support.clusters import EmulatedCluster
from tests.support.nginx_series import Traffic
from tests.support.world import BASE_POLICY, World

MakeWorld = Callable[..., AbstractContextManager[World]]

P = "nginx.ingress.kubernetes.io"
CANARY_INGRESS = canary_name(scenario.MAIN_INGRESS)
LATENCY = {0.02: 0.995, 1.0: 0.005}
HEALTHY = Traffic(rate=30.0, error_share=0.01, latency=LATENCY)
BAD = Traffic(rate=30.0, error_share=0.05, latency=LATENCY)

pytestmark = pytest.mark.slow


def weight_of(w: World) -> float | None:
    ing = w.ingress(CANARY_INGRESS)
    if ing is None:
        return None
    return float(ing["metadata"]["annotations"][f"{P}/canary-weight"])


def backend_of(w: World) -> str:
    ing = w.ingress(scenario.MAIN_INGRESS)
    assert ing is not None
    return ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]


def test_healthy_canary_is_promoted_through_every_step(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        seen_weights: list[float] = []
        for _ in range(400):
            w.tick()
            w.kubelet()
            weight = weight_of(w)
            if weight is not None and (not seen_weights or seen_weights[-1] != weight):
                seen_weights.append(weight)
            w.clock.advance(5)
            if w.state().phase.finished:
                break
        state = w.state()
        assert state.phase is Phase.SUCCEEDED, state.reason
        assert seen_weights == [0, 10, 20, 40, 60, 80]
        # Final objects: main route to v2, no canary Ingress, v2 at full size, v1 at 0.
        assert backend_of(w) == "nginx-v2"
        assert w.ingress(CANARY_INGRESS) is None
        assert w.replicas("nginx-v2") == 3 and w.replicas("nginx-v1") == 0
        assert state.reason == "succeeded: nginx-v2 is the stable version; nginx-v1 scaled to 0"
        # Said before the first step, from 30 req/s of stable traffic at 1% 5xx and 0.5% slow requests.
        # (the backfilled series' slow share is 0.51%: 37 in 7,202)
        assert re.match(
            r"at 30 req/s: error-rate ~960 canary requests, latency ~1,9\d\d canary", state.forecast
        )
        assert (
            "promotion evidence expected after" in state.forecast
            and "(step 4, schedule 5m)" in state.forecast
        )
        reasons = [e["reason"] for e in w.events()]
        assert reasons[0] == "RolloutStarted" and reasons.count("StepAdvanced") == 5
        assert reasons[-1] == "Promoted" and "Promoting" in reasons
        # Every promotion verdict is a PASS with its evidence figures.
        last = state.history[-1]
        assert {r.name for r in last.results} == {"error-rate", "latency"}
        assert all(r.verdict.value == "PASS" for r in last.results)
        # A later tick changes nothing: the rollout is finished.
        before = len(w.emulator.requests)
        w.tick()
        writes = [
            r for r in w.emulator.requests[before:] if r.verb in ("create", "patch", "delete", "update")
        ]
        assert writes == []


def test_canary_with_5_percent_errors_is_rolled_back_on_the_evidence(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=BAD) as w:
        state = w.run(300)
        assert state.phase is Phase.FAILED
        assert state.reason.startswith("error-rate: 5xx ") and state.reason.endswith(": rollback")
        # The evaluation that rolled back is the first whose evidence (against stable, or against the
        # 2% ceiling) crossed the bound: no waiting for failureLimit once the evidence suffices.
        evaluations = w.evaluations()

        def strongest(e: object) -> float:
            f = next(r for r in e.results if r.name == "error-rate").figures  # type: ignore[attr-defined]
            return float(max(f.e_bad, f.e_ceiling_bad or 0.0) / f.threshold_bad)

        assert strongest(evaluations[-1]) >= 1
        assert all(strongest(e) < 1 for e in evaluations[:-1])
        assert any(r.verdict.value == "FAIL" and r.decisive for r in evaluations[-1].results)
        # Never beyond the first step, traffic withdrawn, canary gone.
        assert max(e.weight for e in evaluations) == 10
        assert w.ingress(CANARY_INGRESS) is None and w.replicas("nginx-v2") == 0
        assert w.replicas("nginx-v1") == 3 and backend_of(w) == "nginx-v1"
        rolled = w.events("RolledBack")
        assert rolled and rolled[-1]["type"] == "Warning"
        assert rolled[-1]["message"] == f"Failed: {state.reason}"


def test_header_routing_during_the_rollout_and_gone_after_rollback(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=BAD) as w:
        w.run(10)
        ing = w.ingress(CANARY_INGRESS)
        assert ing is not None
        assert ing["metadata"]["annotations"][f"{P}/canary-by-header"] == "Region"
        assert f"{P}/canary-by-header-value" not in ing["metadata"]["annotations"]  # "always" needs none
        emulated = isinstance(w.cluster, EmulatedCluster)
        if emulated:
            w.emulator.forget_requests()
        assert w.run(300).phase is Phase.FAILED
        assert w.ingress(CANARY_INGRESS) is None
        if not emulated:
            return
        writes = [
            r for r in w.emulator.requests if r.resource == "ingresses" and r.verb in ("patch", "delete")
        ]
        # Header routing and weight withdrawn first, then the canary Ingress removed.
        assert [r.verb for r in writes] == ["patch", "delete"]
        assert writes[0].body["metadata"]["annotations"] == {
            f"{P}/canary-weight": "0",
            f"{P}/canary-by-header": None,
        }
        assert w.ingress(CANARY_INGRESS) is None


def test_header_routing_gone_after_promotion(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(30)
        ing = w.ingress(CANARY_INGRESS)
        assert ing is not None and ing["metadata"]["annotations"][f"{P}/canary-by-header"] == "Region"
        assert w.run(1200).phase is Phase.SUCCEEDED
        assert w.ingress(CANARY_INGRESS) is None
        main = w.ingress(scenario.MAIN_INGRESS)
        assert main is not None and not any("canary" in k for k in main["metadata"].get("annotations", {}))


def test_canary_replicas_follow_the_weight_and_lead_it(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        pairs: set[tuple[float, int]] = set()
        for _ in range(400):
            w.tick()
            weight = weight_of(w)
            if weight is not None:
                # Scaled before the weight rises: the canary never has fewer ready pods than its weight needs.
                dep = w.get("Deployment", "nginx-v2")
                assert dep is not None
                ready = dep.get("status", {}).get("readyReplicas", 0)
                needed = 0 if weight == 0 else -(-3 * weight // 100)
                assert ready >= needed, (weight, ready)
                pairs.add((weight, w.replicas("nginx-v2")))
            w.kubelet()
            w.clock.advance(5)
            if w.state().phase is Phase.PROMOTING:
                break
        by_weight: dict[float, set[int]] = {}
        for weight, replicas in pairs:
            by_weight.setdefault(weight, set()).add(replicas)
        # 3 replicas in all: ceil(3 x weight), at least 1; the next step's count one cadence before it.
        assert by_weight[10] <= {1} and by_weight[20] <= {1, 2} and by_weight[40] <= {2}
        assert by_weight[60] <= {2, 3} and by_weight[80] <= {3}
        assert w.replicas("nginx-v1") == 3  # the stable keeps its size until promotion


def test_placement_applied_to_the_canary_only(make_world: MakeWorld) -> None:
    policy = BASE_POLICY + "placement: {nodeSelector: {dtype: secondary}}\n"
    # On a real cluster, canary pods only start if a node carries the label (the seed scenario's setup).
    with make_world(stable=HEALTHY, canary=HEALTHY, policy=policy) as w:
        w.run(10)
        canary = w.get("Deployment", "nginx-v2")
        stable = w.get("Deployment", "nginx-v1")
        assert canary is not None and stable is not None
        assert canary["spec"]["template"]["spec"]["nodeSelector"] == {"dtype": "secondary"}
        assert "nodeSelector" not in stable["spec"]["template"]["spec"]
        # Placement is not a new version: the rollout is not restarted by it.
        assert w.run(60).phase is Phase.PROGRESSING and w.state().step >= 1


def test_restarted_controller_resumes_at_the_same_step(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(100)
        before = w.state()
        assert before.phase is Phase.PROGRESSING and before.step == 1
        # A new process: new client, new reconciler, nothing in memory.
        w.restart()
        w.tick()
        after = w.state()
        assert (after.step, after.weight, after.started_at) == (before.step, before.weight, before.started_at)
        assert after.evidence["error-rate"]["canary:total"] >= before.evidence["error-rate"]["canary:total"]
        assert weight_of(w) == before.weight


def test_crash_between_traffic_change_and_status_write_repeats_nothing(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(60)
        step = w.state().step
        # Tick until the step advances, with the status write of that tick failing (as a crash would).
        while True:
            w.emulator.fail("ConfigMap", method="PATCH", status=500, times=3)
            w.tick()
            w.kubelet()
            w.clock.advance(5)
            if weight_of(w) != scenario_weight(step):
                break
            w.emulator.forget_requests()
        advanced_to = weight_of(w)
        assert w.state().step == step  # the status did not record it
        w.emulator.forget_requests()
        w.tick()  # recovers: records the step whose weight is already in force
        assert w.state().step == step + 1 and w.state().weight == advanced_to
        weight_patches = [r for r in w.emulator.requests if r.resource == "ingresses" and r.verb == "patch"]
        assert weight_patches == []  # the weight was not written again


def scenario_weight(step: int) -> float:
    return [10, 20, 40, 60, 80][step]


def test_invalid_policy_is_rejected_with_its_field_path_and_traffic_untouched(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(30)
        weight, replicas = weight_of(w), w.replicas("nginx-v2")
        w.apply_policy(BASE_POLICY.replace("max: 0.5", "max: fast"))
        emulated = isinstance(w.cluster, EmulatedCluster)
        if emulated:
            w.emulator.forget_requests()
        w.run(120)
        state = w.state()
        assert "invalid policy: analysis.metrics[1].max: expected a number" in state.reason
        assert state.reason.startswith(f"ConfigMap {w.namespace}/nginx-rollout:")
        blocked = w.events("RolloutBlocked")
        assert len(blocked) == 1 and blocked[0]["type"] == "Warning"
        assert "analysis.metrics[1].max" in blocked[0]["message"]
        assert weight_of(w) == weight and w.replicas("nginx-v2") == replicas
        if not emulated:
            return
        # The request log: nothing but the status (and the Event) was written.
        writes = [
            r
            for r in w.emulator.requests
            if r.verb in ("create", "patch", "delete") and r.resource != "events"
        ]
        assert {r.resource for r in writes} <= {"configmaps"}  # only the status


def test_missing_canary_deployment_is_refused_before_any_change(make_world: MakeWorld) -> None:
    with make_world(
        stable=HEALTHY,
        canary=HEALTHY,
        policy=BASE_POLICY.replace("deployment: nginx-v2", "deployment: nginx-v3"),
    ) as w:
        w.run(10)
        assert f"canary.deployment: Deployment {w.namespace}/nginx-v3 not found" in w.state().reason
        assert w.ingress(CANARY_INGRESS) is None and w.replicas("nginx-v2") == 0
        assert "nginx-v3 not found" in w.events("RolloutBlocked")[0]["message"]


def test_a_deployment_that_did_not_opt_in_is_never_changed(make_world: MakeWorld) -> None:
    attack = BASE_POLICY.replace(
        "canary: {deployment: nginx-v2, service: nginx-v2}",
        "canary: {deployment: postgres, service: nginx-v2}\nplacement: {nodeSelector: {pool: tenant}}",
    )
    with make_world(stable=HEALTHY, canary=HEALTHY, policy=attack) as w:
        postgres = scenario.deployment("v1", replicas=3, namespace=w.namespace, accept=())
        labels = {"app": "postgres"}
        postgres["metadata"].update(name="postgres", labels=labels)
        postgres["spec"]["selector"] = {"matchLabels": labels}
        postgres["spec"]["template"]["metadata"]["labels"] = labels
        w.cluster.put("Deployment", w.namespace, postgres)
        before = w.get("Deployment", "postgres")
        assert before is not None
        emulated = isinstance(w.cluster, EmulatedCluster)
        if emulated:
            w.emulator.forget_requests()
        w.run(60)
        said = (
            f"Deployment {w.namespace}/postgres has no annotation songbird.dev/accept-policy naming policy "
            "'nginx-rollout'"
        )
        refused = w.events("NotAccepted")
        assert [(e["type"], e["message"]) for e in refused] == [("Warning", said)]
        assert w.state().reason == said and w.state().phase is Phase.IDLE
        after = w.get("Deployment", "postgres")
        assert after is not None
        assert after["spec"]["replicas"] == 3
        assert after["spec"]["template"] == before["spec"]["template"]  # no nodeSelector
        assert w.ingress(CANARY_INGRESS) is None
        if not emulated:
            return
        writes = [r for r in w.emulator.requests if r.verb in ("create", "patch", "update", "delete")]
        assert {(r.resource, r.name) for r in writes if r.resource != "events"} == {
            ("configmaps", "nginx-rollout")
        }


def test_hand_made_canary_ingress_is_refused(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        by_hand = scenario.main_ingress(backend="nginx-v2", namespace=w.namespace)
        by_hand["metadata"]["name"] = "nginx-by-hand"
        by_hand["metadata"]["annotations"] = {f"{P}/canary": "true", f"{P}/canary-weight": "10"}
        w.cluster.put("Ingress", w.namespace, by_hand)
        w.run(10)
        assert (
            f"Ingress {w.namespace}/nginx-by-hand already carries a canary for foo.example.com/"
            in w.state().reason
        )
        assert w.ingress(CANARY_INGRESS) is None and w.replicas("nginx-v2") == 0
        by_hand_now = w.ingress("nginx-by-hand")
        assert (
            by_hand_now is not None and by_hand_now["metadata"]["annotations"][f"{P}/canary-weight"] == "10"
        )


def test_unreachable_prometheus_holds_then_rolls_back_after_the_deadline(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY, prometheus_url="http://127.0.0.1:9") as w:
        w.run(50)
        state = w.state()
        assert state.phase is Phase.PROGRESSING and state.step == 0
        assert "holding" in state.reason and state.error_since is not None
        assert all(r.verdict.value == "ERROR" for r in state.history[-1].results)
        final = w.run(120)
        assert final.phase is Phase.FAILED
        assert final.reason.startswith("metrics unavailable for 1m")
        assert max(e.weight for e in w.evaluations()) == 10  # never advanced while blind


def test_new_canary_pod_template_restarts_from_the_first_step(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(130)
        assert w.state().step >= 2
        started = w.state().started_at
        canary = w.get("Deployment", "nginx-v2")
        assert canary is not None
        canary["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27.1"
        w.cluster.put("Deployment", w.namespace, canary)
        w.run(10)
        state = w.state()
        assert state.step == 0 and state.started_at != started
        assert weight_of(w) == 10
        assert any(
            e["reason"] == "RolloutStarted" and "pod template changed" in e["message"] for e in w.events()
        )


def version_v3(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a v2 object turned into v3 (name, labels, selectors, image)."""
    text = json.dumps(obj).replace("nginx-v2", "nginx-v3").replace('"version": "v2"', '"version": "v3"')
    return dict(json.loads(text.replace("nginx:1.27", "nginx:1.28")))


def test_next_release_after_a_promotion_starts_from_the_promoted_version(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        assert w.run(1200).phase is Phase.SUCCEEDED
        w.cluster.put(
            "Deployment",
            w.namespace,
            version_v3(scenario.deployment("v2", replicas=0, namespace=w.namespace)),
        )
        w.cluster.put("Service", w.namespace, version_v3(scenario.service("v2", namespace=w.namespace)))
        w.apply_policy(BASE_POLICY.replace("nginx-v2", "nginx-v3"))
        w.run(10)
        state = w.state()
        assert (state.canary, state.stable, state.stable_service) == ("nginx-v3", "nginx-v2", "nginx-v2")
        assert state.phase is Phase.PROGRESSING and weight_of(w) == 10
        canary = w.ingress(CANARY_INGRESS)
        assert canary is not None
        assert canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "nginx-v3"


def test_api_error_mid_advance_is_reported_and_changes_nothing(make_world: MakeWorld) -> None:
    with make_world(stable=HEALTHY, canary=HEALTHY) as w:
        w.run(60)
        started = w.state().step_started_at
        assert w.state().step == 0 and started is not None
        w.clock.t = started + 60  # the step's minute is over at this tick
        w.emulator.fail("Ingress", method="PATCH", status=403, times=1)
        w.tick()  # the advance to 20% is refused by RBAC
        state = w.state()
        assert (state.step, state.weight) == (0, 10) and weight_of(w) == 10
        assert f"Ingress {w.namespace}/{CANARY_INGRESS}" in state.reason and "403" in state.reason
        blocked = w.events("RolloutBlocked")
        assert blocked and blocked[-1]["type"] == "Warning" and CANARY_INGRESS in blocked[-1]["message"]
        w.clock.advance(5)
        w.tick()
        assert w.state().step == 1 and weight_of(w) == 20  # resumes once the API allows it
