"""``songbird lab --kubeconfig``'s checks before anything runs, against kmock's API emulator standing in for a
real cluster: the seed objects it lacks are named, a main Ingress already promoted is refused, the
command line asks for the cluster's Prometheus and ingress address, and the cluster adapter reads the
routing the Ingress objects ask for."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from songbird.lab import scenarios
from songbird.lab.apiserver import KubeEmulator
from songbird.lab.cluster import KubeCluster, routing_model
from songbird.lab.run import ClusterTarget, Lab, LabError, LabOptions
from songbird.lab.scenarios import Scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator() as k:
        yield k


def _seed(kube: KubeEmulator, namespace: str = "default", *, skip: tuple[str, ...] = ()) -> None:
    for kind, body in scenarios.seed_objects(Scenario.HEALTHY, namespace):
        if f"{kind} {body['metadata']['name']}" not in skip:
            kube.put(kind, namespace, body)


def _lab(kube: KubeEmulator, namespace: str = "default") -> Lab:
    target = ClusterTarget(
        kubeconfig=str(kube.kubeconfig_path),
        namespace=namespace,
        prometheus_url="http://127.0.0.1:9",
        ingress_url="http://127.0.0.1:9",
    )
    return Lab(LabOptions(scenario=Scenario.HEALTHY, timeout=5.0, cluster=target))


def test_missing_seed_objects_are_named_and_nothing_is_applied(kube: KubeEmulator) -> None:
    _seed(kube, skip=("Deployment nginx-v2", "Ingress nginx"))
    with pytest.raises(LabError) as raised:
        _lab(kube).run()
    message = str(raised.value)
    assert "namespace default: Deployment nginx-v2, Ingress nginx" in message
    assert "Service" not in message.split("\n", maxsplit=1)[0]
    assert kube.get("ConfigMap", "default", scenarios.POLICY_NAME) is None


def test_seed_objects_in_another_namespace_are_not_found_there(kube: KubeEmulator) -> None:
    _seed(kube, "team-a")
    with pytest.raises(LabError, match="namespace default: Deployment nginx-v1, Deployment nginx-v2"):
        _lab(kube).run()


def test_a_main_ingress_that_no_longer_routes_to_the_stable_is_refused(kube: KubeEmulator) -> None:
    _seed(kube)
    kube.put("Ingress", "default", scenarios.main_ingress(backend=scenarios.CANARY))
    with pytest.raises(LabError, match="does not route to nginx-v1"):
        _lab(kube).run()
    assert kube.get("ConfigMap", "default", scenarios.POLICY_NAME) is None


def test_routing_model_follows_the_ingress_objects_and_ready_replicas(kube: KubeEmulator) -> None:
    _seed(kube)
    canary = scenarios.main_ingress(backend=scenarios.CANARY)
    canary["metadata"]["name"] = "nginx-canary"
    canary["metadata"]["annotations"] = {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "20",
        "nginx.ingress.kubernetes.io/canary-by-header": "Region",
    }
    kube.put("Ingress", "default", canary)
    ready = {"readyReplicas": 1}
    with KubeCluster(kube.kubeconfig_path, "default") as cluster:

        def model_route() -> tuple[float | None, bool]:
            ingresses, services = cluster.list("Ingress"), cluster.list("Service")
            model = routing_model(ingresses, services, cluster.list("Deployment"))
            route = model.route(scenarios.HOST)
            assert route is not None
            if route.canary is None or not route.canary.backend.endpoints:
                return None, False
            return 100.0 * route.canary.weight / route.canary.effective_total, bool(route.canary.header)

        assert model_route() == (None, False)  # no ready canary replica: ingress-nginx skips the canary
        kube.merge_status("Deployment", "default", scenarios.STABLE, {"readyReplicas": 3})
        kube.merge_status("Deployment", "default", scenarios.CANARY, ready)
        assert model_route() == (20.0, True)


def test_command_line_asks_for_the_clusters_prometheus_and_ingress(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "songbird.lab.cli",
            "--scenario",
            "healthy",
            "--kubeconfig",
            str(tmp_path / "k"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--kubeconfig needs --prometheus-url" in done.stderr
    assert "--ingress-url" in done.stderr
