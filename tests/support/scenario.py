"""The canonical scenario every cluster test starts from, as plain object bodies: the lab's seed objects
(`lab.scenarios`, the single definition) without the lab's backend-profile annotations.

One namespace (``default``) with two versions of an nginx app: ``nginx-v1`` (stable, 3 replicas, image
nginx:1.25) and ``nginx-v2`` (canary, 0 replicas, image nginx:1.27), a Service per version selecting
``app`` + ``version``, and the main Ingress ``nginx`` routing ``foo.example.com/`` to ``nginx-v1`` with TLS.
Each opts in to the policy ``nginx-rollout`` (annotation ``songbird.dev/accept-policy``), unless told to
accept other policies.

The bodies are what ``kubectl create -f`` would accept, so the e2e suite can create exactly the same
objects on a real cluster. Every function returns a fresh dict: callers may mutate what they get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from songbird.controller.keys import ACCEPT_POLICY_ANNOTATION
from songbird.lab import scenarios
from songbird.lab.scenarios import (
    ACCEPTED,
    APP,
    CANARY,
    HOST,
    IMAGES,
    INGRESS_CLASS,
    MAIN_INGRESS,
    NAMESPACE,
    STABLE,
    TLS_SECRET,
    labels,
    main_ingress,
    namespace_object,
    service,
)

Obj = dict[str, Any]

__all__ = [
    "ACCEPTED",
    "ACCEPT_POLICY_ANNOTATION",
    "APP",
    "CANARY",
    "HOST",
    "IMAGES",
    "INGRESS_CLASS",
    "MAIN_INGRESS",
    "NAMESPACE",
    "STABLE",
    "TLS_SECRET",
    "deployment",
    "labels",
    "main_ingress",
    "namespace_object",
    "objects",
    "service",
]


def deployment(
    version: str, *, replicas: int, namespace: str = NAMESPACE, accept: Sequence[str] = ACCEPTED
) -> Obj:
    """Deployment ``nginx-<version>`` whose selector and pod template carry ``app`` and ``version``,
    opted in to the policies ``accept`` names."""
    return scenarios.deployment(version, replicas=replicas, namespace=namespace, accept=accept)


def objects(namespace: str = NAMESPACE, *, accept: Sequence[str] = ACCEPTED) -> list[Obj]:
    """Every namespaced object of the scenario, in an order a real cluster accepts them, each opted in to
    the policies ``accept`` names (the annotation `ACCEPT_POLICY_ANNOTATION`)."""
    return scenarios.objects(namespace, accept=accept)
