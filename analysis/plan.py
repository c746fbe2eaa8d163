"""What the world should look like after a decision: the traffic split and the replica counts.

Pure values and arithmetic. A `TrafficSplit` is provider-neutral (ingress-nginx canary annotations today,
Gateway API HTTPRoute weights behind the same `Router` protocol), and the replica rule is the one users
of Flagger and Argo Rollouts expect: the canary follows its weight, the stable keeps its full size until
promotion, so a rollback never shifts traffic onto a shrunken stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from songbird.config.policy import Policy


@dataclass(frozen=True, kw_only=True)
class TrafficSplit:
    """Desired routing. ``canary_service`` None means no canary route exists at all."""

    stable_service: str  # where the main route sends traffic
    canary_service: str | None = None  # where the canary route sends its share
    weight: float = 0.0  # percent of plain requests sent to the canary route
    match_routes: bool = False  # header/cookie routing to the canary switched on


@dataclass(frozen=True, kw_only=True)
class Target:
    """The desired state of one rollout's objects after a decision."""

    traffic: TrafficSplit
    canary_replicas: int
    stable_replicas: int


def canary_replicas(policy: Policy, weight: float, total: int) -> int:
    """Canary replicas for a weight: proportional to ``total`` (rounded up, at least ``min``), or fixed."""
    r = policy.replicas
    if weight <= 0:
        return 0
    if weight >= 100:
        return max(total, r.min)
    if r.mode == "fixed":
        return r.canary or r.min
    return max(r.min, math.ceil(total * weight / 100.0 - 1e-9))


def total_replicas(policy: Policy, stable_replicas: int) -> int:
    """Replicas of the whole service: ``replicas.total``, else the stable's count (at least 1)."""
    return policy.replicas.total or max(stable_replicas, 1)
