"""The sync loop driving real nginx and real backends from an in-memory cluster view.

The cluster here is an in-memory implementation of the lab's own three-method `ClusterView` protocol
plus a ``patch_status`` that merges into the stored Deployment, as the API server would.

Covers: the seed scenario comes up (replicas started, Deployment status written with ready/available/
updated replicas and observedGeneration, Region: always reaches v2); a step with nothing changed neither
reloads nginx nor patches status; scaling the canary to 0 leaves traffic on v1 and scaling the main to 0
gives 503; a weight change is applied by the running thread within a second or two; a profile annotation
(error rate 1.0) turns v2's answers into 500s; a deleted Deployment's replicas are stopped.
"""

from __future__ import annotations

import copy
import http.client
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from songbird.lab.model import RoutingModel
from songbird.lab.nginx import NginxServer
from songbird.lab.replicas import ReplicaSupervisor
from songbird.lab.sync import DataPlaneSync
from tests.lab.objects import HOST, PREFIX, canary, deployment, main, service
from tests.lab.test_nginx_routing import send, versions

Obj = dict[str, Any]


class InMemoryCluster:
    def __init__(self) -> None:
        self.ingresses: dict[str, Obj] = {}
        self.services: dict[str, Obj] = {}
        self.deployments: dict[str, Obj] = {}
        self.patches: list[tuple[str, Obj]] = []

    def list_ingresses(self) -> list[Obj]:
        return copy.deepcopy(list(self.ingresses.values()))

    def list_services(self) -> list[Obj]:
        return copy.deepcopy(list(self.services.values()))

    def list_deployments(self) -> list[Obj]:
        return copy.deepcopy(list(self.deployments.values()))

    def patch_status(self, name: str, status: Obj) -> None:
        self.patches.append((name, status))
        self.deployments[name].setdefault("status", {}).update(status)

    def put(self, obj: Obj) -> None:
        store = {"Ingress": self.ingresses, "Service": self.services, "Deployment": self.deployments}[
            obj["kind"]
        ]
        store[obj["metadata"]["name"]] = obj


@pytest.fixture
def cluster() -> InMemoryCluster:
    c = InMemoryCluster()
    for obj in (
        deployment("nginx-v1", "v1", 2, latency_median="0"),
        deployment("nginx-v2", "v2", 1, latency_median="0"),
        service("nginx-v1", "v1"),
        service("nginx-v2", "v2"),
        main(),
        canary(canary_by_header="Region", canary_weight="10"),
    ):
        c.put(obj)
    return c


def serving_both(nginx: NginxServer) -> bool:
    """nginx runs a model whose main and canary upstreams both have endpoints."""
    route = nginx.model.route("foo.example.com") if nginx.model else None
    return bool(route and route.main.endpoints and route.canary and route.canary.backend.endpoints)


@pytest.fixture
def sync(cluster: InMemoryCluster, nginx: NginxServer) -> Iterator[DataPlaneSync]:
    nginx.apply(RoutingModel())  # forget what an earlier test left behind
    with ReplicaSupervisor() as replicas:
        yield DataPlaneSync(cluster, cluster.patch_status, nginx=nginx, replicas=replicas, interval=0.2)


def test_seed_scenario_comes_up_and_idles(
    cluster: InMemoryCluster, nginx: NginxServer, sync: DataPlaneSync
) -> None:
    first = sync.step()
    assert first.applied and first.scaled == {"nginx-v1": 2, "nginx-v2": 1}
    assert cluster.deployments["nginx-v1"]["status"] == {
        "replicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "updatedReplicas": 2,
        "observedGeneration": 1,
    }
    assert cluster.deployments["nginx-v2"]["status"]["readyReplicas"] == 1
    assert versions(send(nginx, 50, {"Region": "always"})) == Counter({"v2": 50})
    generation = nginx.generation
    idle = sync.step()
    assert (idle.applied, idle.scaled, idle.patched) == (False, {}, [])
    assert nginx.generation == generation


def test_scaling_to_zero_moves_traffic_then_fails_it(
    cluster: InMemoryCluster, nginx: NginxServer, sync: DataPlaneSync
) -> None:
    sync.step()
    cluster.deployments["nginx-v2"]["spec"]["replicas"] = 0
    result = sync.step()
    assert result.scaled == {"nginx-v2": 0} and result.applied
    assert cluster.deployments["nginx-v2"]["status"]["readyReplicas"] == 0
    assert send(nginx, 20, {"Region": "always"}) == Counter({("v1", 200): 20})
    cluster.deployments["nginx-v1"]["spec"]["replicas"] = 0
    sync.step()
    assert send(nginx, 5) == Counter({("none", 503): 5})


def test_running_thread_applies_a_weight_change(
    cluster: InMemoryCluster, nginx: NginxServer, sync: DataPlaneSync
) -> None:
    with sync:
        deadline = time.monotonic() + 10
        while not serving_both(nginx):
            assert time.monotonic() < deadline, sync.last_error
            time.sleep(0.05)
        assert versions(send(nginx, 100, {"Region": "never"})) == Counter({"v1": 100})
        cluster.ingresses["nginx-canary"]["metadata"]["annotations"][f"{PREFIX}/canary-weight"] = "100"
        changed_at = time.monotonic()
        while True:
            try:
                # The change is in force once nginx's model has it: `NginxServer.apply` sets the model only
                # after the old workers exited. Before that, a new connection may still land on an old worker
                # and keep its old weight, even after another one was answered by v2.
                if versions(send(nginx, 1)) == Counter({"v2": 1}) and _canary_weight(nginx) == 100:
                    break
            except http.client.RemoteDisconnected:
                # The reload's old worker closed a connection it had accepted but not read from: an HTTP
                # client retries such an idempotent request (RFC 9112, 9.3.1), so the poll does too.
                pass
            assert time.monotonic() - changed_at < 5, sync.last_error
            time.sleep(0.05)
        assert versions(send(nginx, 100)) == Counter({"v2": 100})


def _canary_weight(nginx: NginxServer) -> int | None:
    route = nginx.model.route(HOST) if nginx.model is not None else None
    return route.canary.weight if route is not None and route.canary is not None else None


def test_profile_annotation_and_deletion(
    cluster: InMemoryCluster, nginx: NginxServer, sync: DataPlaneSync
) -> None:
    cluster.put(deployment("nginx-v2", "v2", 1, latency_median="0", error_rate="1.0"))
    sync.step()
    assert send(nginx, 10, {"Region": "always"}) == Counter({("v2", 500): 10})
    del cluster.deployments["nginx-v2"]
    result = sync.step()
    assert result.scaled == {"nginx-v2": 0}
    assert send(nginx, 10, {"Region": "always"}) == Counter({("v1", 200): 10})
