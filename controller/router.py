"""The traffic-router edge: one protocol, one module per provider, one line in `make_router`.

A router reads the objects it owns or depends on (through `ClusterReader`), checks ownership, and renders
the minimal changes that bring them to a desired `TrafficSplit`. Rendering is pure; the reconciler applies
the changes in the order given and skips none (a router returns no change for a no-op).
Adding Gateway API means adding one module beside `controller.ingress_nginx`, not editing the reconciler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from analysis.plan import TrafficSplit
from config.policy import Policy
from controller.ports import ClusterReader, Kind, Obj


@dataclass(frozen=True, kw_only=True)
class Change:
    op: Literal["create", "patch", "delete"]
    kind: Kind
    name: str
    body: dict[str, Any] = field(default_factory=dict)  # the object to create, or the JSON merge patch
    what: str = ""  # for logs and events: "canary weight 10% -> 20%"


@dataclass(frozen=True, kw_only=True)
class RouteView:
    """What a router observed for one rollout: the objects, the split in force, and the stable Service."""

    namespace: str
    main: Obj
    canary: Obj | None
    stable_service: str  # the Service the main route sends traffic to now
    current: TrafficSplit


class Router(Protocol):
    def observe(self, reader: ClusterReader, namespace: str, policy: Policy, rollout: str) -> RouteView:
        """Read the route objects; raise `NotFound`, `PolicyError` or `OwnershipError` naming the object."""
        ...

    def plan(self, view: RouteView, policy: Policy, rollout: str, split: TrafficSplit) -> list[Change]:
        """The changes, in a safe order, that make the route match ``split``. Empty for a no-op."""
        ...


def make_router(provider: str, *, annotation_prefix: str = "nginx.ingress.kubernetes.io") -> Router:
    if provider == "ingress-nginx":
        from controller.ingress_nginx import IngressNginxRouter  # noqa: PLC0415  (one provider loaded)

        return IngressNginxRouter(prefix=annotation_prefix)
    raise ValueError(f"unknown traffic provider {provider!r} (known: ingress-nginx)")
