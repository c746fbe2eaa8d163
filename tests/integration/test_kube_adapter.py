"""The Kubernetes adapter (`controller.kube.KubeClient`) against the kmock API emulator over real HTTP.

Covers:
- construction from a kubeconfig file, from ``$KUBECONFIG`` and from a host URL; a missing kubeconfig;
- get (object as a plain dict; None when absent), list_policies (label filtered client-side, per namespace
  and cluster-wide, sorted);
- patch as a JSON merge patch with an explicit content type: None deletes a key, lists are replaced;
- create and delete (a missing object is not an error), and the RBAC verbs these calls need;
- scale: a merge patch of spec.replicas on ``deployments/NAME/scale`` (RBAC ``deployments/scale`` patch)
  that changes only the replicas and answers an autoscaling/v1 Scale; a missing Deployment names it;
- Events: involved object, source and reporting component, timestamps, type; an Event failure never raises;
- error mapping: 404 NotFound, 409 Conflict, 403 Forbidden, 429/500 ClusterUnavailable, each naming the
  object as ``Kind namespace/name``; 4xx are not retried, 429/5xx are retried at most ``attempts`` times
  (counted on the emulator's side), a retry that succeeds is invisible to the caller;
- a hanging API server: the call fails within its configured budget;
- the ``on_call`` hook sees every attempt with its verb, resource and outcome;
- the harness itself: PUT replaces, a stale resourceVersion is refused with 409; the scale subresource as
  the official client's ``read/patch/replace_namespaced_deployment_scale`` see it (a Scale with replicas,
  status and selector; a stale resourceVersion 409; negative replicas 422; only replicas change).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import kubernetes
import pytest

from songbird.controller.errors import ClusterUnavailable, Conflict, Forbidden, NotFound
from songbird.controller.kube import MERGE_PATCH, ApiSettings, KubeClient
from songbird.controller.ports import Kind
from tests.support import scenario
from tests.support.calls import CallCounts
from tests.support.kube_emulator import KubeEmulator, rbac_rules

FAST = ApiSettings(connect_timeout=1.0, read_timeout=1.0, attempts=3, backoff=0.01, budget=5.0)


class FixedClock:
    def __init__(self, now: float) -> None:
        self.value = now

    def now(self) -> float:
        return self.value


def client(
    kube: KubeEmulator,
    *,
    settings: ApiSettings = FAST,
    clock: FixedClock | None = None,
    on_call: CallCounts | None = None,
    reporting_instance: str | None = None,
) -> KubeClient:
    return KubeClient.for_host(
        kube.url, settings=settings, clock=clock, on_call=on_call, reporting_instance=reporting_instance
    )


def policy_configmap(namespace: str, name: str, *, labelled: bool = True) -> dict[str, object]:
    labels = {"songbird.dev/policy": "true"} if labelled else {"app": "nginx"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"policy.yaml": "canary: {}\n"},
    }


# -- construction --------------------------------------------------------------------------------------


def test_client_from_kubeconfig_file_reads_the_cluster(seed_scenario: KubeEmulator) -> None:
    kube = KubeClient.from_config(seed_scenario.kubeconfig_path, settings=FAST)
    deployment = kube.get(Kind.DEPLOYMENT, "default", "nginx-v1")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3
    kube.close()


def test_client_from_kubeconfig_env(seed_scenario: KubeEmulator) -> None:
    # A separate process, as the daemon would be started, with only $KUBECONFIG pointing at the cluster.
    code = (
        "from controller.kube import KubeClient; from controller.ports import Kind; "
        "print(KubeClient.from_config().get(Kind.SERVICE, 'default', 'nginx-v2')['spec']['selector'])"
    )
    env = {**os.environ, "KUBECONFIG": str(seed_scenario.kubeconfig_path), "HOME": "/nonexistent"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'app': 'nginx', 'version': 'v2'}"
    assert seed_scenario.requests[-1].path == "/api/v1/namespaces/default/services/nginx-v2"


def test_missing_kubeconfig_is_cluster_unavailable(tmp_path: object) -> None:
    with pytest.raises(ClusterUnavailable, match="no usable Kubernetes configuration"):
        KubeClient.from_config(f"{tmp_path}/absent-kubeconfig")


# -- reads ---------------------------------------------------------------------------------------------


def test_get_returns_the_object_as_json_dict(seed_scenario: KubeEmulator) -> None:
    ingress = client(seed_scenario).get(Kind.INGRESS, "default", "nginx")
    assert ingress is not None
    assert type(ingress) is dict
    assert ingress["spec"] == scenario.main_ingress()["spec"]
    assert ingress["spec"]["tls"] == [{"hosts": ["foo.example.com"], "secretName": "foo-tls"}]


def test_get_of_a_missing_object_is_none(seed_scenario: KubeEmulator) -> None:
    assert client(seed_scenario).get(Kind.DEPLOYMENT, "default", "nginx-v9") is None


def test_list_policies_filters_on_the_label_even_when_the_server_ignores_the_selector(
    kube: KubeEmulator,
) -> None:
    kube.put("ConfigMap", "team-a", policy_configmap("team-a", "web"))
    kube.put("ConfigMap", "default", policy_configmap("default", "api"))
    kube.put("ConfigMap", "default", policy_configmap("default", "unrelated", labelled=False))

    everywhere = client(kube).list_policies(None)
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in everywhere] == [
        ("default", "api"),
        ("team-a", "web"),
    ]
    assert all(p["kind"] == "ConfigMap" and p["apiVersion"] == "v1" for p in everywhere)
    assert [r.query.get("labelSelector") for r in kube.requests] == ["songbird.dev/policy=true"]

    only_a = client(kube).list_policies(["team-a"])
    assert [p["metadata"]["name"] for p in only_a] == ["web"]
    assert kube.requests[-1].path == "/api/v1/namespaces/team-a/configmaps"


# -- writes --------------------------------------------------------------------------------------------


def test_patch_is_a_merge_patch_where_none_deletes(seed_scenario: KubeEmulator) -> None:
    kube = client(seed_scenario)
    patched = kube.patch(
        Kind.INGRESS,
        "default",
        "nginx",
        {"metadata": {"labels": {"app": None}, "annotations": {"songbird.dev/owner": "songbird"}}},
    )
    assert "app" not in patched["metadata"].get("labels", {})
    merged = {"songbird.dev/accept-policy": "nginx-rollout", "songbird.dev/owner": "songbird"}
    assert patched["metadata"]["annotations"] == merged  # the seed's annotation kept, the new one added
    stored = seed_scenario.get("Ingress", "default", "nginx")
    assert stored is not None
    assert stored["metadata"]["annotations"] == merged
    assert stored["spec"]["rules"][0]["host"] == "foo.example.com"  # untouched keys stay
    request = seed_scenario.requests[-1]
    assert (request.method, request.content_type, request.verb) == ("PATCH", MERGE_PATCH, "patch")


def test_patch_replaces_lists_whole(seed_scenario: KubeEmulator) -> None:
    client(seed_scenario).patch(
        Kind.SERVICE, "default", "nginx-v2", {"spec": {"ports": [{"name": "web", "port": 8080}]}}
    )
    stored = seed_scenario.get("Service", "default", "nginx-v2")
    assert stored is not None
    assert stored["spec"]["ports"] == [{"name": "web", "port": 8080}]


def test_patch_of_a_missing_object_names_it(seed_scenario: KubeEmulator) -> None:
    with pytest.raises(NotFound) as caught:
        client(seed_scenario).patch(Kind.DEPLOYMENT, "default", "nginx-v9", {"spec": {"replicas": 1}})
    assert caught.value.obj == "Deployment default/nginx-v9"
    assert caught.value.status == 404
    assert caught.value.__cause__ is not None


def test_scale_patches_only_the_replicas_through_the_scale_subresource(seed_scenario: KubeEmulator) -> None:
    before = seed_scenario.get("Deployment", "default", "nginx-v2")
    assert before is not None
    scale = client(seed_scenario).scale("default", "nginx-v2", 2)
    after = seed_scenario.get("Deployment", "default", "nginx-v2")
    assert after is not None
    assert (scale["apiVersion"], scale["kind"], scale["spec"]) == ("autoscaling/v1", "Scale", {"replicas": 2})
    assert scale["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    assert scale["status"]["selector"] == "app=nginx,version=v2"
    assert after["spec"]["replicas"] == 2
    assert after["spec"]["template"] == before["spec"]["template"]
    (request,) = seed_scenario.requests
    assert (request.method, request.path, request.content_type) == (
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/nginx-v2/scale",
        MERGE_PATCH,
    )
    assert request.body == {"spec": {"replicas": 2}}
    rules = {(r.api_group, r.resource): set(r.verbs) for r in rbac_rules(seed_scenario.requests)}
    assert rules == {("apps", "deployments/scale"): {"patch"}}


def test_scale_of_a_missing_deployment_names_it(seed_scenario: KubeEmulator) -> None:
    with pytest.raises(NotFound) as caught:
        client(seed_scenario).scale("default", "nginx-v9", 1)
    assert caught.value.obj == "Deployment scale default/nginx-v9/scale"


def test_create_then_delete_and_delete_again(seed_scenario: KubeEmulator) -> None:
    kube = client(seed_scenario)
    canary = scenario.main_ingress(backend="nginx-v2")
    canary["metadata"]["name"] = "nginx-canary"
    created = kube.create(Kind.INGRESS, "default", canary)
    assert created["metadata"]["name"] == "nginx-canary"
    assert created["metadata"]["uid"]
    assert seed_scenario.get("Ingress", "default", "nginx-canary") is not None

    kube.delete(Kind.INGRESS, "default", "nginx-canary")
    assert seed_scenario.get("Ingress", "default", "nginx-canary") is None
    kube.delete(Kind.INGRESS, "default", "nginx-canary")  # already gone: not an error

    rules = {(r.api_group, r.resource): set(r.verbs) for r in rbac_rules(seed_scenario.requests)}
    assert rules == {("networking.k8s.io", "ingresses"): {"create", "delete"}}


def test_create_of_an_existing_object_is_conflict(seed_scenario: KubeEmulator) -> None:
    with pytest.raises(Conflict) as caught:
        client(seed_scenario).create(Kind.SERVICE, "default", scenario.service("v1"))
    assert caught.value.obj == "Service default/nginx-v1"


# -- events --------------------------------------------------------------------------------------------


def test_event_records_the_involved_object_and_reporter(seed_scenario: KubeEmulator) -> None:
    clock = FixedClock(1_790_000_000.25)
    kube = client(seed_scenario, clock=clock, reporting_instance="songbird-0")
    ingress = kube.get(Kind.INGRESS, "default", "nginx")
    assert ingress is not None

    kube.event(ingress, reason="RolloutAdvanced", message="weight 10 -> 20", warning=False)
    kube.event(ingress, reason="RolloutRolledBack", message="error-rate FAIL", warning=True)

    events = seed_scenario.events("default")
    assert [(e["reason"], e["type"]) for e in events] == [
        ("RolloutAdvanced", "Normal"),
        ("RolloutRolledBack", "Warning"),
    ]
    event = events[0]
    assert event["involvedObject"] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "name": "nginx",
        "namespace": "default",
        "uid": ingress["metadata"]["uid"],
        "resourceVersion": ingress["metadata"]["resourceVersion"],
    }
    assert event["message"] == "weight 10 -> 20"
    assert event["source"] == {"component": "songbird"}
    assert event["reportingComponent"] == "songbird.dev/controller"
    assert event["reportingInstance"] == "songbird-0"
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-09-21T14:13:20Z"
    assert event["eventTime"] == "2026-09-21T14:13:20.250000Z"
    assert event["metadata"]["name"].startswith("nginx.")
    assert events[0]["metadata"]["name"] != events[1]["metadata"]["name"]


def test_event_failure_never_raises_and_is_counted(seed_scenario: KubeEmulator) -> None:
    counts = CallCounts()
    kube = client(seed_scenario, on_call=counts)
    seed_scenario.fail("Event", status=403, method="POST")
    kube.event(scenario.service("v1"), reason="Test", message="denied")
    assert seed_scenario.events() == []
    assert kube.event_failures == 1
    assert counts.total(verb="create", resource="events", ok=False) == 1


# -- error mapping and retries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, Forbidden), (403, Forbidden), (404, NotFound), (409, Conflict), (422, ClusterUnavailable)],
)
def test_client_errors_are_mapped_and_not_retried(
    seed_scenario: KubeEmulator, status: int, error: type[Exception]
) -> None:
    seed_scenario.fail("Deployment", status=status, method="PATCH", name="nginx-v2")
    with pytest.raises(error) as caught:
        client(seed_scenario).patch(Kind.DEPLOYMENT, "default", "nginx-v2", {"spec": {"replicas": 1}})
    assert "Deployment default/nginx-v2" in str(caught.value)
    assert len(seed_scenario.requests) == 1
    stored = seed_scenario.get("Deployment", "default", "nginx-v2")
    assert stored is not None
    assert stored["spec"]["replicas"] == 0  # the refused patch changed nothing


@pytest.mark.parametrize("status", [429, 500, 503])
def test_server_errors_are_retried_a_bounded_number_of_times(
    seed_scenario: KubeEmulator, status: int
) -> None:
    counts = CallCounts()
    seed_scenario.fail("Deployment", status=status, method="GET", times=10)
    with pytest.raises(ClusterUnavailable) as caught:
        client(seed_scenario, on_call=counts).get(Kind.DEPLOYMENT, "default", "nginx-v1")
    assert caught.value.obj == "Deployment default/nginx-v1"
    assert caught.value.status == status
    assert f"HTTP {status} (after 3 attempts)" in str(caught.value)
    assert len(seed_scenario.requests) == 3
    assert counts.counts == {("get", "deployments", False): 3}


def test_a_retry_that_succeeds_is_invisible_to_the_caller(seed_scenario: KubeEmulator) -> None:
    counts = CallCounts()
    seed_scenario.fail("Deployment", status=500, method="PATCH", times=2)
    patched = client(seed_scenario, on_call=counts).patch(
        Kind.DEPLOYMENT, "default", "nginx-v2", {"spec": {"replicas": 1}}
    )
    assert patched["spec"]["replicas"] == 1
    assert [r.verb for r in seed_scenario.requests] == ["patch", "patch", "patch"]
    assert counts.counts == {("patch", "deployments", False): 2, ("patch", "deployments", True): 1}


def test_a_hanging_api_server_fails_within_the_budget(seed_scenario: KubeEmulator) -> None:
    settings = ApiSettings(connect_timeout=0.5, read_timeout=0.3, attempts=3, backoff=0.05, budget=2.0)
    seed_scenario.hang("ConfigMap", seconds=30, times=10)
    began = time.monotonic()
    with pytest.raises(ClusterUnavailable, match="got no answer after 3 attempt"):
        client(seed_scenario, settings=settings).list_policies(None)
    elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < settings.budget + 0.5
    assert len(seed_scenario.requests) == 3


def test_the_budget_cuts_retries_short(seed_scenario: KubeEmulator) -> None:
    settings = ApiSettings(connect_timeout=0.5, read_timeout=0.4, attempts=10, backoff=0.05, budget=1.0)
    seed_scenario.hang("Service", seconds=30, times=20)
    began = time.monotonic()
    with pytest.raises(ClusterUnavailable):
        client(seed_scenario, settings=settings).get(Kind.SERVICE, "default", "nginx-v1")
    assert time.monotonic() - began < settings.budget + 0.5
    assert 2 <= len(seed_scenario.requests) <= 3


def test_a_refused_connection_is_cluster_unavailable(kube: KubeEmulator) -> None:
    url = kube.url
    kube.stop()
    settings = ApiSettings(connect_timeout=0.5, read_timeout=0.5, attempts=2, backoff=0.01, budget=2.0)
    with pytest.raises(ClusterUnavailable) as caught:
        KubeClient.for_host(url, settings=settings).get(Kind.CONFIGMAP, "default", "policy")
    assert caught.value.obj == "ConfigMap default/policy"
    assert "no answer after 2 attempt" in str(caught.value)


# -- the harness itself --------------------------------------------------------------------------------


def test_emulator_put_replaces_and_refuses_a_stale_resource_version(seed_scenario: KubeEmulator) -> None:
    kube = client(seed_scenario)
    lease = kube.create_lease(
        "default",
        {"metadata": {"name": "songbird"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}},
    )
    replaced = kube.replace_lease(
        "default", "songbird", {"metadata": lease["metadata"], "spec": {"holderIdentity": "b"}}
    )
    assert replaced["spec"] == {"holderIdentity": "b"}  # replaced whole, not merged
    assert replaced["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"]
    with pytest.raises(Conflict, match="the object has been modified"):
        kube.replace_lease(
            "default", "songbird", {"metadata": lease["metadata"], "spec": {"holderIdentity": "c"}}
        )
    stored = seed_scenario.get("Lease", "default", "songbird")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "b"
    assert [r.verb for r in seed_scenario.requests] == ["create", "update", "update"]


def test_emulator_serves_the_scale_subresource_as_the_official_client_sees_it(
    seed_scenario: KubeEmulator,
) -> None:
    api = kubernetes.client.AppsV1Api(
        kubernetes.config.new_client_from_config(config_file=str(seed_scenario.kubeconfig_path))
    )
    seed_scenario.merge_status("Deployment", "default", "nginx-v1", {"replicas": 3})
    scale = api.read_namespaced_deployment_scale("nginx-v1", "default", _request_timeout=5)
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (
        3,
        3,
        "app=nginx,version=v1",
    )
    version = scale.metadata.resource_version
    patched = api.patch_namespaced_deployment_scale(
        "nginx-v1",
        "default",
        {"spec": {"replicas": 5}, "metadata": {"labels": {"x": "y"}}},
        _request_timeout=5,
    )
    assert patched.spec.replicas == 5 and patched.metadata.resource_version != version
    stored = seed_scenario.get("Deployment", "default", "nginx-v1")
    assert stored is not None
    assert stored["spec"]["replicas"] == 5 and "x" not in stored["metadata"]["labels"]  # replicas only
    stale = {"metadata": {"name": "nginx-v1", "resourceVersion": version}, "spec": {"replicas": 1}}
    with pytest.raises(kubernetes.client.ApiException) as conflict:
        api.replace_namespaced_deployment_scale("nginx-v1", "default", stale, _request_timeout=5)
    assert conflict.value.status == 409
    with pytest.raises(kubernetes.client.ApiException) as invalid:
        api.patch_namespaced_deployment_scale(
            "nginx-v1", "default", {"spec": {"replicas": -1}}, _request_timeout=5
        )
    assert invalid.value.status == 422
    stored = seed_scenario.get("Deployment", "default", "nginx-v1")
    assert stored is not None and stored["spec"]["replicas"] == 5
    replaced = api.replace_namespaced_deployment_scale(
        "nginx-v1", "default", {"metadata": {"name": "nginx-v1"}, "spec": {"replicas": 4}}, _request_timeout=5
    )
    assert replaced.spec.replicas == 4
