"""Read the cluster for one rollout and reduce it to `analysis.decision.Facts`.

Every missing or foreign object becomes an error that names the object and the policy field that led to
it, so the user sees "canary.deployment: Deployment default/nginx-v2 not found" rather than a stack trace.
Every read also checks workload opt-in (`controller.consent`): the facts of a rollout exist only when the
five objects it may change or route to accept its policy, so no decision, and no write, is ever taken for
objects that did not opt in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from songbird.analysis.decision import Facts
from songbird.analysis.state import Phase, RolloutState
from songbird.config.errors import PolicyError
from songbird.config.policy import Policy
from songbird.controller.consent import refusal
from songbird.controller.errors import ConsentError
from songbird.controller.ports import ClusterReader, Kind, Obj
from songbird.controller.routers.base import RouteView


@dataclass(frozen=True, kw_only=True)
class Observed:
    facts: Facts
    view: RouteView
    canary: Obj  # the canary Deployment
    stable: Obj  # the stable Deployment


def revision(deployment: Obj) -> str:
    """Fingerprint of a Deployment's pod spec, without the nodeSelector Songbird itself sets."""
    spec = dict(((deployment.get("spec") or {}).get("template") or {}).get("spec") or {})
    spec.pop("nodeSelector", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _replicas(deployment: Obj) -> int:
    value = (deployment.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)  # the API server defaults spec.replicas to 1


def _ready(deployment: Obj) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def _require(reader: ClusterReader, kind: Kind, namespace: str, name: str, path: str) -> Obj:
    obj = reader.get(kind, namespace, name)
    if obj is None:
        raise PolicyError(f"{kind.value} {namespace}/{name} not found", path=path)
    return obj


def _selects(selector: dict[str, Any], deployment: Obj) -> bool:
    labels = (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def resolve_stable(reader: ClusterReader, namespace: str, policy: Policy, service_name: str) -> Obj:
    """The stable Deployment: the policy's, else the one whose pods the main route's Service selects."""
    if policy.stable.deployment:
        return _require(reader, Kind.DEPLOYMENT, namespace, policy.stable.deployment, "stable.deployment")
    service = _require(reader, Kind.SERVICE, namespace, service_name, "ingress")
    selector = (service.get("spec") or {}).get("selector") or {}
    matches = [d for d in reader.list_objects(Kind.DEPLOYMENT, namespace) if _selects(selector, d)]
    if len(matches) != 1:
        found = ", ".join(sorted((d.get("metadata") or {}).get("name", "?") for d in matches)) or "none"
        raise PolicyError(
            f"cannot tell the stable Deployment: Service {namespace}/{service_name} selects "
            f"{found}; set stable.deployment",
            path="stable.deployment",
        )
    return matches[0]


def read_facts(
    reader: ClusterReader,
    router_view: RouteView,
    namespace: str,
    policy: Policy,
    state: RolloutState,
    *,
    deleting: bool = False,
    rollout: str,
) -> Observed:
    """The facts of one rollout: its Deployments, the split in force (the truth on resume, see
    `analysis.decision`), and whether the policy is being deleted.

    Raises `ConsentError` unless the canary and stable Deployments and Services and the main Ingress all
    accept the policy ConfigMap named ``rollout``."""
    canary = _require(reader, Kind.DEPLOYMENT, namespace, policy.canary.deployment, "canary.deployment")
    canary_service = _require(reader, Kind.SERVICE, namespace, policy.canary.service, "canary.service")
    active = state.phase not in (Phase.IDLE, Phase.SUCCEEDED, Phase.FAILED) and state.stable
    if active and state.canary == policy.canary.deployment:
        # Mid-rollout the stable is the one recorded at the start, whatever the main route says now.
        stable = _require(reader, Kind.DEPLOYMENT, namespace, state.stable, "stable.deployment")
        stable_service = state.stable_service
    else:
        stable = resolve_stable(reader, namespace, policy, router_view.stable_service)
        stable_service = router_view.stable_service
    stable_service_obj = _require(reader, Kind.SERVICE, namespace, stable_service, "ingress")
    refused = refusal(
        [
            (Kind.DEPLOYMENT, canary),
            (Kind.DEPLOYMENT, stable),
            (Kind.SERVICE, canary_service),
            (Kind.SERVICE, stable_service_obj),
            (Kind.INGRESS, router_view.main),
        ],
        namespace,
        rollout,
    )
    if refused is not None:
        raise ConsentError(refused)
    facts = Facts(
        canary=policy.canary.deployment,
        stable=(stable.get("metadata") or {}).get("name", ""),
        canary_service=policy.canary.service,
        stable_service=stable_service,
        revision=revision(canary),
        stable_replicas=_replicas(stable),
        canary_replicas=_replicas(canary),
        canary_ready=_ready(canary),
        route=router_view.current,
        deleting=deleting,
    )
    return Observed(facts=facts, view=router_view, canary=canary, stable=stable)
