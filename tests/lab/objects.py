"""Builders for the Kubernetes objects of the lab's seed scenario (plain dicts, as the API serves them)."""

from __future__ import annotations

from typing import Any

PREFIX = "nginx.ingress.kubernetes.io"
HOST = "foo.example.com"


def ingress(
    name: str,
    service: str,
    *,
    host: str = HOST,
    path: str = "/",
    path_type: str = "Prefix",
    port: int | str = 80,
    annotations: dict[str, str] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    namespace: str = "default",
) -> dict[str, Any]:
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "annotations": {f"{PREFIX}/{k}": v for k, v in (annotations or {}).items()},
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": path_type,
                                "backend": {"service": {"name": service, "port": port_ref}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def canary(name: str = "nginx-canary", service: str = "nginx-v2", **annotations: str) -> dict[str, Any]:
    """A canary Ingress; keyword arguments are annotations with ``_`` for ``-`` (canary_weight="30")."""
    ann = {"canary": "true", **{k.replace("_", "-"): v for k, v in annotations.items()}}
    return ingress(name, service, annotations=ann, created="2026-01-02T00:00:00Z")


def main(name: str = "nginx", service: str = "nginx-v1", **annotations: str) -> dict[str, Any]:
    return ingress(name, service, annotations={k.replace("_", "-"): v for k, v in annotations.items()})


def deployment(name: str, version: str, replicas: int, **lab_annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "generation": 1, "labels": {"app": "nginx"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx", "version": version}},
            "template": {
                "metadata": {
                    "labels": {"app": "nginx", "version": version},
                    "annotations": {
                        f"lab.songbird.dev/{k.replace('_', '-')}": v for k, v in lab_annotations.items()
                    },
                },
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
            },
        },
    }


def service(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": "nginx", "version": version}, "ports": [{"port": 80, "targetPort": 80}]},
    }
