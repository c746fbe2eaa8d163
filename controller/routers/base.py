"""The traffic-router edge: the `Router` protocol and the shapes it speaks in (`Change`, `RouteView`).

A router reads the objects it owns or depends on (through `ClusterReader`), checks ownership, and renders
the minimal changes that bring them to a desired `TrafficSplit`. Rendering is pure; the reconciler applies
the changes in the order given and skips none (a router returns no change for a no-op).
Providers live beside this module (`routers.ingress_nginx`) and are named in the registry of
`songbird.controller.routers`; they import this module, never the registry, so there is no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from songbird.analysis.plan import TrafficSplit
from songbird.config.policy import Policy
from songbird.controller.ports import ClusterReader, Kind, Obj


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
    def read(self, reader: ClusterReader, namespace: str, policy: Policy, rollout: str) -> RouteView:
        """Read the route objects; raise `NotFound`, `PolicyError` or `OwnershipError` naming the object."""
        ...

    def plan(self, view: RouteView, policy: Policy, rollout: str, split: TrafficSplit) -> list[Change]:
        """The changes, in a safe order, that make the route match ``split``. Empty for a no-op."""
        ...
