"""The chart's RBAC is derived from what the controller really calls: a real `songbird run` process (the CLI a
pod runs) drives a rollout against the API emulator until Prometheus' silence rolls it back, which touches
every kind of call it makes (discovery, status, canary Ingress create/patch/delete, scaling through
``deployments/scale``, the placement's pod-template patch, Events, the Lease). Every request the emulator
saw must be allowed by the rendered chart (cluster-wide and namespaced modes), and every rule the chart
grants must have been used: nothing more.

Also: scaling changes only ``spec.replicas`` through the scale subresource and the only patch of a
Deployment itself is the placement's nodeSelector, so ``rbac.placement=false`` takes away exactly the
right to patch Deployments (the right to change what they run)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from songbird.analysis.state import Phase
from songbird.controller.reconciler import read_state
from tests.chart.test_chart import MODES, Render, by_kind, helm, render
from tests.integration.test_daemon import controller, kubelet, wait_for
from tests.support.kube_emulator import KubeEmulator, SeenRequest, rbac_rules
from tests.support.world import POLICY_NAME, policy_configmap, seed

__all__ = ["helm", "render"]  # fixtures used here

pytestmark = pytest.mark.slow

POLICY = """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
steps: [50]
interval: 2s
placement: {nodeSelector: {dtype: secondary}}
analysis:
  prometheus: {url: "http://127.0.0.1:9", timeout: 500ms}
  cadence: 1s
  window: 1s
  errorDeadline: 3s
"""

Triple = tuple[str, str, str]


@pytest.fixture(scope="module")
def rollout_requests(tmp_path_factory: pytest.TempPathFactory) -> list[SeenRequest]:
    """Every request a controller made in a rollout (with a Kubernetes verb)."""
    log = Path(tmp_path_factory.mktemp("rbac")) / "controller.log"
    with KubeEmulator() as kube:
        seed(kube)
        kube.put("ConfigMap", "default", policy_configmap(POLICY))
        kube.forget_requests()
        with controller(kube, "rbac-probe", log) as proc:

            def rolled_back() -> bool:
                kubelet(kube)
                cm = kube.get("ConfigMap", "default", POLICY_NAME)
                return cm is not None and read_state(cm).phase is Phase.FAILED

            wait_for("the rollout to be rolled back", rolled_back, timeout=60)
            time.sleep(1.5)  # a lease renewal and a discovery after the rollout
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        return [r for r in kube.requests if r.verb is not None]


@pytest.fixture(scope="module")
def used(rollout_requests: list[SeenRequest]) -> tuple[set[Triple], set[str]]:
    """(apiGroup, resource, verb) of every request a controller made in a rollout, and the Lease names."""
    requests = rollout_requests
    leases = {r.name for r in requests if r.resource == "leases" and r.name}
    triples = {(rule.api_group, rule.resource, verb) for rule in rbac_rules(requests) for verb in rule.verbs}
    return triples, leases


def granted(render: Render, *args: str) -> tuple[set[Triple], set[str]]:
    manifests = render(*args)
    triples: set[Triple] = set()
    lease_names: set[str] = set()
    for role in by_kind(manifests, "ClusterRole") + by_kind(manifests, "Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    triples |= {(group, resource, verb) for verb in rule["verbs"]}
                    if resource == "leases":
                        lease_names |= set(rule.get("resourceNames", []))
    return triples, lease_names


@pytest.mark.parametrize("mode", ["default", "namespaced"])
def test_chart_grants_exactly_what_the_controller_calls(
    render: Render, used: tuple[set[Triple], set[str]], mode: str
) -> None:
    calls, leases = used
    allowed, lease_names = granted(render, *MODES[mode])
    assert calls - allowed == set(), f"the controller calls what the chart does not allow: {calls - allowed}"
    assert allowed - calls == set(), f"the chart grants what the controller never calls: {allowed - calls}"
    assert leases <= lease_names, (leases, lease_names)


def test_deployments_are_scaled_through_the_subresource_and_patched_only_for_placement(
    rollout_requests: list[SeenRequest],
) -> None:
    writes = [r for r in rollout_requests if r.resource == "deployments" and r.verb == "patch"]
    scales = [r.body for r in writes if r.subresource == "scale"]
    patches = [r.body for r in writes if r.subresource is None]
    assert {r.subresource for r in writes} == {"scale", None}
    assert scales and all(body == {"spec": {"replicas": body["spec"]["replicas"]}} for body in scales)
    assert patches == [{"spec": {"template": {"spec": {"nodeSelector": {"dtype": "secondary"}}}}}]


@pytest.mark.parametrize("mode", ["default", "namespaced"])
def test_without_placement_the_chart_takes_away_only_the_deployment_patch(
    render: Render, used: tuple[set[Triple], set[str]], mode: str
) -> None:
    calls, _ = used
    allowed, _ = granted(render, *MODES[mode], "--set", "rbac.placement=false")
    assert allowed == calls - {("apps", "deployments", "patch")}
