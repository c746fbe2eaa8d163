"""Where a scenario's objects live: kmock's emulator (integration tests) or a real cluster (e2e).

Both offer the same small surface to tests (put, get, list, events, and `kubelet`, which waits until every
Deployment's replicas are ready). On the emulator nothing runs pods, so `kubelet` writes the status a
Deployment controller would; on a real cluster it waits, bounded, for the real one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from songbird.controller.kube import ApiSettings, KubeClient
from songbird.controller.ports import Clock
from tests.support.kube_emulator import KubeEmulator

Obj = dict[str, Any]


class Cluster(Protocol):
    namespace: str

    def put(self, kind: str, namespace: str | None, obj: Mapping[str, Any]) -> Obj: ...
    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None: ...
    def list(self, kind: str, namespace: str | None = None) -> list[Obj]: ...
    def delete(self, kind: str, namespace: str | None, name: str) -> None: ...
    def events(self, namespace: str | None = None) -> list[Obj]: ...
    def kubelet(self) -> None: ...
    def client(self, clock: Clock) -> KubeClient: ...


class EmulatedCluster:
    """The emulator, with the test playing the Deployment controller."""

    def __init__(self, kube: KubeEmulator, namespace: str = "default") -> None:
        self.kube = kube
        self.namespace = namespace

    def put(self, kind: str, namespace: str | None, obj: Mapping[str, Any]) -> Obj:
        return self.kube.put(kind, namespace, obj)

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        return self.kube.get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.kube.list(kind, namespace)

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        self.kube.delete(kind, namespace, name)

    def events(self, namespace: str | None = None) -> list[Obj]:
        return self.kube.events(namespace)

    def kubelet(self) -> None:
        for dep in self.kube.list("Deployment", self.namespace):
            replicas = dep.get("spec", {}).get("replicas", 1)
            status = {
                "replicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "updatedReplicas": replicas,
            }
            if dep.get("status") != status:
                dep["status"] = status
                self.kube.put("Deployment", self.namespace, dep)

    def client(self, clock: Clock) -> KubeClient:
        return KubeClient.for_host(
            self.kube.url, settings=ApiSettings(connect_timeout=1.0, read_timeout=2.0), clock=clock
        )


_API = {
    "Namespace": ("v1", "namespaces", False),
    "ConfigMap": ("v1", "configmaps", True),
    "Service": ("v1", "services", True),
    "Event": ("v1", "events", True),
    "Deployment": ("apps/v1", "deployments", True),
    "Ingress": ("networking.k8s.io/v1", "ingresses", True),
    "Lease": ("coordination.k8s.io/v1", "leases", True),
}


class RealCluster:
    """A real API server from a kubeconfig; objects of one test namespace."""

    def __init__(self, kubeconfig: str | Path, namespace: str, *, ready_timeout: float = 180.0) -> None:
        from kubernetes import client, config

        self.kubeconfig = str(kubeconfig)
        self.namespace = namespace
        self.ready_timeout = ready_timeout
        self._conf = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=self._conf)
        self._api = client.ApiClient(self._conf)

    def _path(self, kind: str, namespace: str | None, name: str | None = None) -> str:
        version, plural, namespaced = _API[kind]
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        path = f"{base}/namespaces/{namespace}/{plural}" if namespaced and namespace else f"{base}/{plural}"
        return f"{path}/{name}" if name else path

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; None for 404; any other failure raises (a test setup error, not a finding)."""
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            body=body,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=(5, 30))
        try:
            data = response.read()
        finally:
            response.response.release_conn()
        if response.status == 404:
            return None
        if response.status >= 400:
            raise AssertionError(f"{method} {path}: HTTP {response.status}: {data!r}")
        return json.loads(data) if data else None

    def put(self, kind: str, namespace: str | None, obj: Mapping[str, Any]) -> Obj:
        name = obj["metadata"]["name"]
        current = self.get(kind, namespace, name)
        body = dict(obj)
        if current is None:
            created: Obj = self._call("POST", self._path(kind, namespace), body)
            return created
        body["metadata"] = {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
        replaced: Obj = self._call("PUT", self._path(kind, namespace, name), body)
        return replaced

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        found: Obj | None = self._call("GET", self._path(kind, namespace, name))
        return found

    def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        answer = self._call("GET", self._path(kind, namespace)) or {}
        items: list[Obj] = answer.get("items") or []
        return items

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        self._call("DELETE", self._path(kind, namespace, name))

    def events(self, namespace: str | None = None) -> list[Obj]:
        items = self.list("Event", namespace or self.namespace)
        return sorted(items, key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or "")

    def kubelet(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            pending = [
                d
                for d in self.list("Deployment", self.namespace)
                if (d.get("status", {}).get("readyReplicas") or 0) < d["spec"].get("replicas", 1)
            ]
            if not pending:
                return
            time.sleep(1.0)
        raise AssertionError(f"Deployments not ready after {self.ready_timeout:g}s")

    def client(self, clock: Clock) -> KubeClient:
        return KubeClient.from_config(self.kubeconfig, clock=clock)

    def close(self) -> None:
        self._api.close()
