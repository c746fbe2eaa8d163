"""Workload opt-in: whether the objects a rollout would change have accepted its policy.

A policy is a ConfigMap, and writing a ConfigMap is often granted more widely than editing Deployments: a
policy naming ``canary.deployment: postgres`` must not let its author scale a database or set its pods'
nodeSelector. So every object a rollout changes or sends traffic to (the canary and stable Deployments and
Services, and the main Ingress) must carry `ACCEPT_POLICY_ANNOTATION` naming the policy; the canary Ingress
Songbird creates is its own (``app.kubernetes.io/managed-by: songbird``) and needs none.

This module is the one place that rule lives, as pure functions over the objects already read.
`controller.facts.read_facts` applies it every time it reads a rollout's objects, before any decision and
so before any write; a refusal is raised as `controller.errors.ConsentError`, whose message names every
object that lacks consent and what it lacks. What the reconciler does then (refuse before a rollout, hold
in the middle of one, withdraw only its own canary Ingress when the policy is deleted) is written down in
`controller.reconciler`.
"""

from __future__ import annotations

from collections.abc import Sequence

from songbird.controller.keys import ACCEPT_POLICY_ANNOTATION
from songbird.controller.ports import Kind, Obj


def accepted_policies(obj: Obj) -> frozenset[str]:
    """The policy names an object accepts: its annotation split on commas, blanks ignored."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(ACCEPT_POLICY_ANNOTATION)
    if not isinstance(value, str):
        return frozenset()
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def lacks(kind: Kind, obj: Obj, namespace: str, policy: str) -> str | None:
    """Why ``obj`` does not accept ``policy`` (one sentence naming the object), or None when it does."""
    accepted = accepted_policies(obj)
    if policy in accepted:
        return None
    name = (obj.get("metadata") or {}).get("name", "?")
    said = (
        f"{kind.value} {namespace}/{name} has no annotation {ACCEPT_POLICY_ANNOTATION} "
        f"naming policy '{policy}'"
    )
    if accepted:
        said += f" (it names: {', '.join(sorted(accepted))})"
    return said


def refusal(subjects: Sequence[tuple[Kind, Obj]], namespace: str, policy: str) -> str | None:
    """Why the rollout of ``policy`` may not touch ``subjects`` (every object lacking consent, each named
    once, in the order given), or None when all of them accept it."""
    reasons: list[str] = []
    for kind, obj in subjects:
        reason = lacks(kind, obj, namespace, policy)
        if reason is not None and reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons) or None


__all__ = ["accepted_policies", "lacks", "refusal"]
