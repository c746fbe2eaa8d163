"""The narrow protocols at the controller's I/O edges. The reconciler talks only to these.

Objects are plain dicts in the Kubernetes API's JSON shape (as ``kubectl get -o json`` shows them), so the
pure rendering code needs no client models and tests can compare them directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from songbird.controller.errors import ClusterUnavailable

Obj = dict[str, Any]


class Kind(StrEnum):
    CONFIGMAP = "ConfigMap"
    SERVICE = "Service"
    DEPLOYMENT = "Deployment"
    INGRESS = "Ingress"
    LEASE = "Lease"


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ClusterReader(Protocol):
    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist. Other failures raise `ClusterError`."""
        ...

    def list_objects(self, kind: Kind, namespace: str) -> list[Obj]:
        """Every object of a kind in a namespace."""
        ...

    def list_policies(self, namespaces: Sequence[str] | None) -> list[Obj]:
        """ConfigMaps labelled ``songbird.dev/policy=true`` in the given namespaces (None: all)."""
        ...


class ClusterWriter(Protocol):
    def patch(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]) -> Obj:
        """Apply a JSON merge patch (``application/merge-patch+json``); None values delete keys."""
        ...

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> Obj: ...

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        """Delete; an object already gone is not an error."""
        ...

    def scale(self, namespace: str, name: str, replicas: int) -> Obj:
        """Set a Deployment's ``spec.replicas`` through its ``scale`` subresource (a merge patch of the
        autoscaling/v1 Scale object), so scaling needs no right to patch the Deployment itself. Returns the
        Scale; its ``metadata.resourceVersion`` is the Deployment's after the write."""
        ...


class Recorder(Protocol):
    def event(self, obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
        """Emit a Kubernetes Event about ``obj``. Never raises: events are best effort."""
        ...


class WatchExpired(ClusterUnavailable):
    """The resourceVersion a watch or a list continuation started from is too old (410 Gone): list
    again from scratch."""


@dataclass(frozen=True, kw_only=True)
class Page:
    """One page of a list: its items (apiVersion and kind set), the list's resourceVersion and the
    ``continue`` token of the next page ("" on the last)."""

    items: list[Obj]
    resource_version: str
    next: str


class WatchSource(Protocol):
    """List-then-watch, as ``controller.informer`` needs it (``controller.kube.KubeClient`` is one)."""

    def list_page(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int = 500,
        token: str = "",
    ) -> Page:
        """One page of a list; raises `ClusterError` (`WatchExpired` when ``token`` has expired)."""
        ...

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[Obj]:
        """Watch events after ``resource_version`` until the stream ends; `WatchExpired` on 410."""
        ...
