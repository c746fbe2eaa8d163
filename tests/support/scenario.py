"""The canonical scenario every cluster test starts from, as plain object bodies.

One namespace (``default``) with two versions of an nginx app: ``nginx-v1`` (stable, 3 replicas, image
nginx:1.25) and ``nginx-v2`` (canary, 0 replicas, image nginx:1.27), a Service per version selecting
``app`` + ``version``, and the main Ingress ``nginx`` routing ``foo.example.com/`` to ``nginx-v1`` with TLS.

The bodies are what ``kubectl create -f`` would accept, so the e2e suite can create exactly the same
objects on a real cluster. Every function returns a fresh dict: callers may mutate what they get.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

NAMESPACE = "default"
APP = "nginx"
HOST = "foo.example.com"
TLS_SECRET = "foo-tls"
INGRESS_CLASS = "nginx"
MAIN_INGRESS = "nginx"
STABLE = "nginx-v1"
CANARY = "nginx-v2"
IMAGES = {"v1": "nginx:1.25", "v2": "nginx:1.27"}


def labels(version: str) -> dict[str, str]:
    return {"app": APP, "version": version}


def deployment(version: str, *, replicas: int, namespace: str = NAMESPACE) -> Obj:
    """Deployment ``nginx-<version>`` whose selector and pod template carry ``app`` and ``version``."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{APP}-{version}", "namespace": namespace, "labels": labels(version)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(version)},
            "template": {
                "metadata": {"labels": labels(version)},
                "spec": {
                    "containers": [
                        {
                            "name": APP,
                            "image": IMAGES[version],
                            "ports": [{"name": "http", "containerPort": 80}],
                        }
                    ]
                },
            },
        },
    }


def service(version: str, *, namespace: str = NAMESPACE) -> Obj:
    """Service ``nginx-<version>`` on port 80 selecting the pods of that version only."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{APP}-{version}", "namespace": namespace, "labels": labels(version)},
        "spec": {
            "selector": labels(version),
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}],
        },
    }


def main_ingress(*, backend: str = STABLE, namespace: str = NAMESPACE) -> Obj:
    """The user's Ingress: ``foo.example.com/`` (Prefix) to ``backend`` port 80, TLS from ``foo-tls``."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": MAIN_INGRESS, "namespace": namespace, "labels": {"app": APP}},
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "tls": [{"hosts": [HOST], "secretName": TLS_SECRET}],
            "rules": [
                {
                    "host": HOST,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": backend, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def namespace_object(name: str = NAMESPACE) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def objects(namespace: str = NAMESPACE) -> list[Obj]:
    """Every namespaced object of the scenario, in an order a real cluster accepts them."""
    return [
        deployment("v1", replicas=3, namespace=namespace),
        deployment("v2", replicas=0, namespace=namespace),
        service("v1", namespace=namespace),
        service("v2", namespace=namespace),
        main_ingress(namespace=namespace),
    ]
