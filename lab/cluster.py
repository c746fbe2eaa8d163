"""The lab's only door to a real cluster (``songbird lab --kubeconfig``): the official ``kubernetes`` client
behind a few calls, so the rest of the lab keeps working on plain dicts in the Kubernetes JSON shape.

`KubeCluster` reads and writes the objects of one namespace (get, list, create-or-replace) with the
credentials of a kubeconfig, every request bounded by a timeout; `missing_seed` names the seed objects a
cluster lacks (the lab refuses to start without them); `routing_model` is the routing the cluster's
Ingress objects ask ingress-nginx for, read with the lab's own translator (`lab.translator`), a Service's
endpoints standing for the ready replicas of the Deployments it selects.

What it cannot see: inside ingress-nginx. The model says what the objects request; when ingress-nginx
applies it (usually within a second or two of a change) is not observable from the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config

from songbird.lab.model import RoutingModel
from songbird.lab.translator import translate

Obj = dict[str, Any]
_load_kube_config: Callable[..., None] = config.load_kube_config

TIMEOUT = (5.0, 15.0)  # seconds: connect, read

# Kind -> (API version, plural); every kind the lab uses is namespaced.
_API = {
    "ConfigMap": ("v1", "configmaps"),
    "Service": ("v1", "services"),
    "Deployment": ("apps/v1", "deployments"),
    "Ingress": ("networking.k8s.io/v1", "ingresses"),
    "Event": ("v1", "events"),
}


class ClusterError(RuntimeError):
    """The cluster did not answer as expected; the message names the request."""


class KubeCluster:
    """One namespace of the cluster a kubeconfig points at. Use as a context manager (or `close`)."""

    def __init__(self, kubeconfig: str | Path, namespace: str) -> None:
        self.namespace = namespace
        conf = client.Configuration()
        try:
            _load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
        except (config.ConfigException, OSError) as exc:
            raise ClusterError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
        self.server = str(conf.host)
        self._api: Any = client.ApiClient(conf)

    def __enter__(self) -> KubeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()

    def _path(self, kind: str, name: str | None = None) -> str:
        version, plural = _API[kind]
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        path = f"{base}/namespaces/{self.namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; None for 404; any other failure is a `ClusterError`."""
        try:
            request = self._api.param_serialize(
                method=method,
                resource_path=path,
                body=body,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                auth_settings=["BearerToken"],
            )
            response: Any = self._api.call_api(*request, _request_timeout=TIMEOUT)
            try:
                data = response.read()
            finally:
                response.response.release_conn()
        except Exception as exc:  # urllib3 and the client raise many kinds; all mean "no answer"
            raise ClusterError(f"{method} {self.server}{path}: {exc}") from exc
        if response.status == 404:
            return None
        if response.status >= 400:
            raise ClusterError(f"{method} {path}: HTTP {response.status}: {data[:300]!r}")
        return json.loads(data) if data else None

    def get(self, kind: str, name: str) -> Obj | None:
        found: Obj | None = self._call("GET", self._path(kind, name))
        return found

    def list(self, kind: str) -> list[Obj]:
        answer = self._call("GET", self._path(kind)) or {}
        items: list[Obj] = answer.get("items") or []
        return items

    def apply(self, obj: Mapping[str, Any]) -> Obj:
        """Create ``obj``, or replace the object of that name (keeping nothing of it but its version)."""
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        body = {**obj, "metadata": {**obj["metadata"], "namespace": self.namespace}}
        current = self.get(kind, name)
        if current is None:
            created: Obj = self._call("POST", self._path(kind), body)
            return created
        body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        replaced: Obj = self._call("PUT", self._path(kind, name), body)
        return replaced


def missing_seed(cluster: KubeCluster, wanted: list[tuple[str, str]]) -> list[str]:
    """``"<Kind> <name>"`` of every (kind, name) in ``wanted`` the cluster's namespace does not have."""
    return [f"{kind} {name}" for kind, name in wanted if cluster.get(kind, name) is None]


def routing_model(ingresses: list[Obj], services: list[Obj], deployments: list[Obj]) -> RoutingModel:
    """The routing the Ingress objects request, each Service's endpoints being one placeholder per ready
    replica of the Deployments (same namespace) whose pod template labels match its selector."""
    endpoints: dict[str, tuple[str, ...]] = {}
    for svc in services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        ns, name = _meta(svc)
        ready = 0
        for d in deployments:
            labels = ((d.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
            if selector and _meta(d)[0] == ns and all(labels.get(k) == v for k, v in selector.items()):
                ready += int((d.get("status") or {}).get("readyReplicas") or 0)
        endpoints[f"{ns}/{name}"] = tuple(f"{name}-ready-{i}" for i in range(ready))
    return translate(ingresses, endpoints)


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")
